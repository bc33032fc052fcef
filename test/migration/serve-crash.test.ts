/**
 * Crash safety of live migration between two real `selkie serve` processes (issue 13): the source or
 * the destination is killed with SIGKILL at a protocol step (SELKIE_MIGRATION_CRASH, crash-points.ts)
 * while @libsql/client writes through the source's URL; the dead server restarts on its port; then
 * exactly one server serves the database, every acknowledged write is there, and the other answers
 * for it only by forwarding (the source) or not at all (the destination).
 * The library-level crash tests (protocol-crash.test.ts) cover every step; these cover the server's
 * wiring: recovery before listening, forwarding recorded by recovery, the periodic retry of an
 * in-doubt destination.
 */
import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createClient, type Client } from "@libsql/client";
import { Platform } from "../../runtime/platform/index.js";
import { TokenStore } from "../../runtime/host/server/tokens.js";
import { CLI, ROOT, tempDir } from "../helpers.js";
import { cleanup, newCa } from "./channel-harness.js";
import { freePort } from "./harness.js";

const ca = newCa();
const caCert = path.join(ca.dir, "ca.cert");
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  cleanup();
});

interface Node {
  dir: string;
  platform: string;
  port: number;
  url: string;
  admin: string;
  proc?: ChildProcess;
  out: string;
}

async function node(): Promise<Node> {
  const base = tempDir("selkie-scrash-");
  const platform = path.join(base, "platform");
  (await Platform.create(platform, { ca })).close();
  const dir = path.join(base, "data");
  const admin = new TokenStore(dir).create("admin", null).token;
  const port = await freePort();
  return { dir, platform, port, url: `http://127.0.0.1:${port}`, admin, out: "" };
}

async function start(n: Node, crash?: string): Promise<void> {
  const env = { ...process.env, ...(crash ? { SELKIE_MIGRATION_CRASH: crash } : {}) };
  delete (env as Record<string, string | undefined>)["SELKIE_MIGRATION_CUT"];
  if (!crash) delete (env as Record<string, string | undefined>)["SELKIE_MIGRATION_CRASH"];
  const p = spawn(process.execPath, [CLI, "serve", "--dir", n.dir, "--platform", n.platform, "--port", String(n.port), "--host", "127.0.0.1", "--fleet-ca", caCert, "--workers", "1"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  procs.push(p);
  n.proc = p;
  p.stdout!.on("data", (d: Buffer) => (n.out += d.toString()));
  p.stderr!.on("data", (d: Buffer) => (n.out += d.toString()));
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`selkie serve exited early:\n${n.out}`);
    try {
      if ((await fetch(`${n.url}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`selkie serve did not start:\n${n.out}`);
}

function dead(n: Node): Promise<void> {
  return new Promise((r) => {
    if (n.proc!.exitCode !== null || n.proc!.signalCode !== null) return r();
    n.proc!.once("exit", () => r());
  });
}

async function get(n: Node, route: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${n.url}${route}`, { headers: { authorization: `Bearer ${n.admin}` } });
  return { status: res.status, json: await res.json().catch(() => undefined) };
}

async function trial(point: string): Promise<void> {
  const a = await node();
  const b = await node();
  const sourceCrash = point.startsWith("source:");
  await start(a, sourceCrash ? point : undefined);
  await start(b, sourceCrash ? undefined : point);
  const mk = await fetch(`${a.url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${a.admin}`, "content-type": "application/json" }, body: JSON.stringify({ name: "orders" }) });
  assert.equal(mk.status, 201);
  const tok = await fetch(`${a.url}/v1/tokens`, { method: "POST", headers: { authorization: `Bearer ${a.admin}`, "content-type": "application/json" }, body: JSON.stringify({ scope: "read-write", db: "orders" }) });
  const token = ((await tok.json()) as { token: string }).token;
  const client: Client = createClient({ url: `${a.url}/db/orders/`, authToken: token });
  await client.execute("CREATE TABLE t(n INTEGER PRIMARY KEY)");
  for (let i = 1; i <= 20; i++) await client.execute({ sql: "INSERT INTO t VALUES (?)", args: [i] });
  const acked: number[] = Array.from({ length: 20 }, (_, i) => i + 1);

  const migration = fetch(`${a.url}/v1/databases/orders/migrate`, { method: "POST", headers: { authorization: `Bearer ${a.admin}`, "content-type": "application/json" }, body: JSON.stringify({ to: b.url }) }).then(
    (r) => r.status,
    () => -1,
  );
  let n = 1000;
  let stop = false;
  const writing = (async () => {
    while (!stop) {
      n++;
      try {
        await client.execute({ sql: "INSERT INTO t VALUES (?)", args: [n] });
        acked.push(n);
      } catch {
        await new Promise((r) => setTimeout(r, 20)); // unacknowledged: may or may not be there
      }
    }
  })();
  const victim = sourceCrash ? a : b;
  await Promise.race([dead(victim), new Promise((r) => setTimeout(r, 20_000))]);
  assert.ok(victim.proc!.signalCode === "SIGKILL", `${point}: the ${sourceCrash ? "source" : "destination"} died there\n${victim.out.slice(-2000)}`);
  await migration;
  stop = true;
  await writing;
  client.close();
  await start(victim); // same port, same folders, no crash point

  // Settled: exactly one serves. The destination in doubt asks the source every second.
  let owner: "a" | "b" | undefined;
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    const [ma, mb] = await Promise.all([get(a, "/v1/migrations"), get(b, "/v1/migrations")]);
    const ra = await get(a, "/v1/databases/orders");
    const rb = await get(b, "/v1/databases/orders");
    if (ma.json.running.length === 0 && mb.json.running.length === 0) {
      if (ra.status === 200 && rb.status === 404) owner = "a";
      else if (ra.status === 410 && rb.status === 200) owner = "b";
      if (owner) break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(owner, `${point}: one owner after recovery\nA: ${a.out.slice(-1500)}\nB: ${b.out.slice(-1500)}`);
  const files = (n: Node) => fs.existsSync(path.join(n.dir, "databases", "orders.db.log"));
  assert.equal(files(a), owner === "a", `${point}: only the owner keeps the database's files`);
  assert.equal(files(b), owner === "b", `${point}: only the owner keeps the database's files`);
  // Every acknowledged write is on the owner; the old URL reaches it either way.
  const check = createClient({ url: `${a.url}/db/orders/`, authToken: token });
  const have = new Set((await check.execute("SELECT n FROM t")).rows.map((r) => Number(r.n)));
  check.close();
  for (const x of acked) assert.ok(have.has(x), `${point}: acknowledged write ${x} survived (owner ${owner})`);
  for (const p of [a, b]) {
    p.proc!.kill("SIGKILL");
    await dead(p);
  }
}

// The steps that decide: before the commit point (abort), the commit point itself, after it with
// `commit` lost (the destination in doubt asks), and the destination after PREPARED and COMMITTED.
for (const point of ["source:after-frozen-journal", "source:after-committing-journal", "source:after-counter-destroyed", "destination:after-prepared-journal", "destination:after-committed-journal"]) {
  test(`kill -9 at ${point} while a client writes: after a restart exactly one server serves, with every acknowledged write`, { timeout: 120_000 }, () => trial(point));
}
