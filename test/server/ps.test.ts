/**
 * `selkie ps` against a spawned `selkie serve`: databases closed and open (MRENCLAVE, EPC committed,
 * peak, cap), the platform's EPC budget and committed, table and JSON output; a wrong token, an
 * unreachable server and a missing token fail with their exit codes.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createPrivateKey } from "node:crypto";
import { createClient } from "@libsql/client";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { measureEnclave, sha256 } from "../../runtime/enclave/measure.js";
import { generateSigningKey, signEnclave } from "../../runtime/enclave/sigstruct.js";
import { CLI, ROOT } from "../helpers.js";
import { api, createDb, startServer, type ServerProc } from "./harness.js";

/** Runs the CLI as a child process without blocking this test process. */
function selkie(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, SELKIE_TOKEN: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
    p.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe("selkie ps", () => {
  let s: ServerProc;
  before(async () => {
    s = await startServer();
    await createDb(s, "alpha");
    await createDb(s, "beta");
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it("lists databases with state, MRENCLAVE and memory, and the platform's EPC (JSON)", async () => {
    // alpha gets used (open, with an enclave); beta is only created (open or closed, as the server chose)
    const c = createClient({ url: `${s.url}/db/alpha/`, authToken: s.adminToken! });
    await c.execute("CREATE TABLE t(x)");
    await c.execute({ sql: "INSERT INTO t VALUES (?)", args: ["hello"] });
    c.close();

    const r = await selkie(["ps", "--server", s.url, "--token", s.adminToken!, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { server: string; epc: { budget: number; committed: number; peak: number; free: number }; rows: Array<Record<string, any>> };
    assert.equal(out.server, s.url);
    const epc = (await api(s, s.adminToken, "GET", "/v1/platform/epc")).json;
    assert.equal(out.epc.budget, epc.budget);
    assert.ok(out.epc.budget > 0);
    assert.ok(out.epc.committed > 0 && out.epc.committed <= out.epc.budget);
    assert.equal(out.epc.committed, epc.committed);

    const alpha = out.rows.find((x) => x.name === "alpha")!;
    const info = (await api(s, s.adminToken, "GET", "/v1/databases/alpha")).json;
    assert.equal(alpha.kind, "database");
    assert.equal(alpha.state, "running");
    assert.match(alpha.mrenclave, /^[0-9a-f]{64}$/);
    assert.equal(alpha.mrenclave, info.enclave.mrenclave);
    assert.ok(alpha.committedBytes > 0);
    assert.ok(alpha.peakBytes >= alpha.committedBytes);
    assert.equal(alpha.epcBytes, info.enclave.epcBytes);
    assert.ok(alpha.diskBytes > 0);

    const beta = out.rows.find((x) => x.name === "beta")!;
    assert.equal(beta.kind, "database");
    assert.ok(beta.state === "running" || beta.state === "closed");
    if (beta.state === "closed") {
      assert.equal(beta.mrenclave, null);
      assert.equal(beta.committedBytes, null);
    }
    assert.deepEqual(out.rows.filter((x) => x.kind === "database").map((x) => x.name).sort(), ["alpha", "beta"]);
  });

  it("lists custom enclaves with their state, MRENCLAVE and EPC", async () => {
    const dir = path.join(ROOT, "enclaves", "counter-as");
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Record<string, unknown>;
    const module = fs.readFileSync(path.join(dir, "build", "counter.wasm"));
    const m = parseManifest(manifest);
    const signature = signEnclave(m, measureEnclave(sha256(module), m), createPrivateKey(generateSigningKey().pem));
    const up = await api(s, s.adminToken, "POST", "/v1/enclaves", { manifest, module: module.toString("base64"), signature });
    assert.equal(up.status, 201, up.text);
    const call = await api(s, s.adminToken, "POST", "/v1/enclaves/counter-as/ecall/add", { args: [1] });
    assert.equal(call.status, 200, call.text);

    const r = await selkie(["ps", "--server", s.url, "--token", s.adminToken!, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const row = (JSON.parse(r.stdout) as { rows: Array<Record<string, any>> }).rows.find((x) => x.kind === "enclave" && x.name === "counter-as")!;
    const info = (await api(s, s.adminToken, "GET", "/v1/enclaves/counter-as")).json;
    assert.equal(row.state, info.state);
    assert.equal(row.state, "running");
    assert.equal(row.mrenclave, info.mrenclave);
    assert.equal(row.epcBytes, info.epcBytes);
    assert.ok(row.committedBytes > 0);
    assert.ok(row.peakBytes >= row.committedBytes, JSON.stringify(row));
    assert.equal(row.diskBytes, module.length);
    const table = await selkie(["ps", "--server", s.url, "--token", s.adminToken!]);
    assert.match(table.stdout, /\nenclave\s+counter-as\s+running\s+[0-9a-f]{16}\s/);
  });

  it("prints a table with the EPC summary", async () => {
    const r = await selkie(["ps", "--server", `${s.url}/`], { SELKIE_TOKEN: s.adminToken! });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^server http:\/\/127\.0\.0\.1:\d+\n/);
    assert.match(r.stdout, /EPC: \S+ committed of \S+ budget \(\d+\.\d%\), peak \S+, free \S+\n/);
    assert.match(r.stdout, /KIND\s+NAME\s+STATE\s+MRENCLAVE\s+COMMITTED\s+PEAK\s+EPC CAP\s+DISK/);
    assert.match(r.stdout, /\ndatabase\s+alpha\s+running\s+[0-9a-f]{16}\s+\d+(\.\d)?[KMG]iB\s+\d/);
  });

  it("fails clearly: wrong token, no token, bad URL, unreachable server", async () => {
    const wrong = await selkie(["ps", "--server", s.url, "--token", "sk_wrong"]);
    assert.equal(wrong.status, 6);
    assert.match(wrong.stderr, /SERVER_UNAUTHORIZED.*refused the token \(401\)/);
    assert.equal(wrong.stdout, "");

    const none = await selkie(["ps", "--server", s.url]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /NO_TOKEN/);

    const bad = await selkie(["ps", "--server", "not a url", "--token", "x"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /BAD_URL/);

    const missing = await selkie(["ps", "--token", "x"]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--server/);

    // A port that was just free: nothing listens there.
    const net = await import("node:net");
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as import("node:net").AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const down = await selkie(["ps", "--server", `http://127.0.0.1:${port}`, "--token", "x"]);
    assert.equal(down.status, 6);
    assert.match(down.stderr, /SERVER_UNREACHABLE.*ECONNREFUSED/);
  });

  it("has complete --help", async () => {
    const r = await selkie(["ps", "--help"]);
    assert.equal(r.status, 0);
    for (const w of ["--server <url>", "--token <token>", "SELKIE_TOKEN", "--json", "MRENCLAVE", "EPC", "Exit codes"]) assert.ok(r.stdout.includes(w), w);
    const top = await selkie(["--help"]);
    assert.match(top.stdout, /ps \[options\]\s+list the databases and enclaves a running/);
  });
});

describe("selkie ps under EPC pressure", () => {
  let s: ServerProc;
  before(async () => {
    // 8 MiB of EPC: room for about five SQLite enclaves; twelve databases make the pager work.
    s = await startServer({ args: ["--epc", "8MiB"] });
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it("shows hibernated databases, their wakes and the pager's counts; every database still answers", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `db${i}`);
    for (const n of names) {
      await createDb(s, n);
      const c = createClient({ url: `${s.url}/db/${n}/`, authToken: s.adminToken! });
      await c.execute("CREATE TABLE t(x)");
      await c.execute({ sql: "INSERT INTO t VALUES (?)", args: [n] });
      c.close();
    }
    // Touch the first one again: it was evicted, so it wakes.
    const c0 = createClient({ url: `${s.url}/db/db0/`, authToken: s.adminToken! });
    assert.deepEqual((await c0.execute("SELECT x FROM t")).rows.map((r) => r.x), ["db0"]);
    c0.close();

    const r = await selkie(["ps", "--server", s.url, "--token", s.adminToken!, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { epc: { budget: number; committed: number }; paging: Record<string, any>; rows: Array<Record<string, any>> };
    const rows = out.rows.filter((x) => names.includes(x.name));
    const hibernated = rows.filter((x) => x.state === "hibernated");
    assert.ok(hibernated.length >= 5, `${hibernated.length} of 12 hibernated`);
    for (const h of hibernated) assert.equal(h.committedBytes, 0, "a hibernated enclave holds no EPC");
    assert.ok(rows.some((x) => x.state === "running"));
    const db0 = rows.find((x) => x.name === "db0")!;
    assert.ok(db0.wakes >= 1, "db0 was woken");
    assert.ok(out.epc.committed <= out.epc.budget);
    assert.ok(out.paging.evictions >= 7 && out.paging.wakes >= 1, JSON.stringify(out.paging));
    assert.equal(out.paging.hibernated, hibernated.length);

    const t = await selkie(["ps", "--server", s.url, "--token", s.adminToken!]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /paging: \d+ resident, \d+ hibernated, \d+ evictions, \d+ wakes \(p50 [\d.]+ ms, p99 [\d.]+ ms\)/);
    assert.match(t.stdout, /database\s+db\d+\s+hibernated/);

    // Metrics carry the same counts.
    const m = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${s.adminToken}` } });
    const text = await m.text();
    assert.match(text, /selkie_enclaves_hibernated \d+/);
    assert.match(text, /selkie_epc_wake_seconds\{quantile="0.99"\} [\d.e-]+/);

    // Snapshots and hibernation on request, through the database's lease.
    const snap1 = await api(s, s.adminToken, "POST", "/v1/databases/db3/snapshot");
    assert.equal(snap1.status, 200, JSON.stringify(snap1.json));
    assert.equal(snap1.json.image.kind, "full");
    const snap2 = await api(s, s.adminToken, "POST", "/v1/databases/db3/snapshot", {});
    assert.equal(snap2.json.image.kind, "delta");
    assert.ok(snap2.json.image.fileBytes < snap1.json.image.fileBytes);
    assert.ok(fs.existsSync(path.join(s.dir, "databases", "db3.db.snapshot")) || fs.readdirSync(s.dir, { recursive: true }).some((f) => String(f).endsWith("db3.db.snapshot")));
    const hib = await api(s, s.adminToken, "POST", "/v1/databases/db3/hibernate");
    assert.equal(hib.status, 200);
    assert.equal(hib.json.hibernated, true);
    assert.equal(hib.json.paging.state, "hibernated");
    assert.equal((await api(s, s.adminToken, "POST", "/v1/databases/nope/snapshot")).status, 404);
    assert.equal((await api(s, s.adminToken, "GET", "/v1/databases/db3/snapshot")).status, 405);

    // Every database answers, each waking in turn.
    for (const n of names) {
      const c = createClient({ url: `${s.url}/db/${n}/`, authToken: s.adminToken! });
      assert.deepEqual((await c.execute("SELECT x FROM t")).rows.map((r) => r.x), [n]);
      c.close();
    }
  });
});
