/**
 * `selkie serve --tls-cert --tls-key`: https:// and libsql:// URLs through the unmodified
 * @libsql/client, with a certificate chain from a throwaway CA that only the client trusts
 * (NODE_EXTRA_CA_CERTS, read by Node at start: the client runs in its own process).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { CLI, ROOT, tempDir } from "../helpers.js";
import { startServer, type ServerProc } from "./harness.js";

/** A CA and a server certificate for 127.0.0.1 / localhost, made by the openssl command line. */
function throwawayPki(dir: string): { ca: string; cert: string; key: string } {
  const f = (n: string): string => path.join(dir, n);
  const ssl = (...args: string[]): void => void execFileSync("openssl", args, { stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=selkie test CA");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1");
  fs.writeFileSync(f("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
  ssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf"));
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

/** Runs a client script in a child process that trusts `ca` (or nothing extra); returns its stdout. */
function clientRun(script: string, env: Record<string, string>): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe("selkie serve over TLS", () => {
  let s: ServerProc;
  let pki: { ca: string; cert: string; key: string };

  before(async () => {
    pki = throwawayPki(tempDir("selkie-pki-"));
    s = await startServer({ args: ["--tls-cert", pki.cert, "--tls-key", pki.key] });
  });
  after(async () => {
    await s?.stop();
  });

  it("listens on https and serves @libsql/client through https:// and libsql:// URLs", async () => {
    assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const port = new URL(s.url).port;
    const script = `
      import { createClient } from "@libsql/client";
      const out = [];
      for (const url of ["https://127.0.0.1:${port}", "libsql://localhost:${port}"]) {
        const c = createClient({ url, authToken: ${JSON.stringify(s.adminToken)} });
        const r = await fetch(url.replace("libsql:", "https:") + "/v1/databases", { method: "POST", headers: { authorization: "Bearer ${s.adminToken}", "content-type": "application/json" }, body: JSON.stringify({ name: "t" + out.length }) });
        if (r.status !== 201 && r.status !== 200) throw new Error("create: " + r.status + " " + await r.text());
        const d = createClient({ url: url + "/db/t" + out.length + "/", authToken: ${JSON.stringify(s.adminToken)} });
        await d.execute("CREATE TABLE x(v)");
        await d.execute({ sql: "INSERT INTO x VALUES (?)", args: [url] });
        const rs = await d.execute("SELECT v FROM x");
        out.push(rs.rows[0].v);
        c.close(); d.close();
      }
      console.log(JSON.stringify(out));
    `;
    const r = clientRun(script, { NODE_EXTRA_CA_CERTS: pki.ca });
    assert.equal(r.status, 0, r.err);
    assert.deepEqual(JSON.parse(r.out.trim()), [`https://127.0.0.1:${port}`, `libsql://localhost:${port}`]);
  });

  it("serves Hrana over WebSocket on the same port through wss://, and a client without the CA is refused", async () => {
    const port = new URL(s.url).port;
    const script = `
      import { createClient } from "@libsql/client";
      const r = await fetch("https://127.0.0.1:${port}/v1/databases", { method: "POST", headers: { authorization: "Bearer ${s.adminToken}", "content-type": "application/json" }, body: JSON.stringify({ name: "wss" }) });
      if (r.status !== 201) throw new Error("create: " + r.status + " " + await r.text());
      const d = createClient({ url: "wss://localhost:${port}/db/wss", authToken: ${JSON.stringify(s.adminToken)}, intMode: "bigint" });
      await d.batch(["CREATE TABLE x(v)", { sql: "INSERT INTO x VALUES (?)", args: [7n] }], "write");
      const rs = await d.execute("SELECT v, typeof(v) AS t FROM x");
      console.log(JSON.stringify([String(rs.rows[0].v), rs.rows[0].t]));
      d.close();
    `;
    const r = clientRun(script, { NODE_EXTRA_CA_CERTS: pki.ca });
    assert.equal(r.status, 0, r.err);
    assert.deepEqual(JSON.parse(r.out.trim()), ["7", "integer"]);
    const untrusted = clientRun(
      `
      import { createClient } from "@libsql/client";
      const d = createClient({ url: "wss://localhost:${port}/db/wss", authToken: ${JSON.stringify(s.adminToken)} });
      try { await d.execute("SELECT 1"); console.log("connected"); } catch (e) { console.log("refused", e.code, String(e.cause?.message ?? e.message)); }
      d.close();
    `,
      { NODE_EXTRA_CA_CERTS: "" },
    );
    assert.equal(untrusted.status, 0, untrusted.err);
    assert.match(untrusted.out, /^refused/);
  });

  it("is refused by a client that does not trust the CA (a real certificate check)", () => {
    const script = `
      try { await fetch(${JSON.stringify(s.url)} + "/health"); console.log("connected"); }
      catch (e) { console.log(String(e.cause?.code ?? e.code ?? e)); }
    `;
    const r = clientRun(script, { NODE_EXTRA_CA_CERTS: "" });
    assert.equal(r.status, 0, r.err);
    assert.match(r.out, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/);
  });

  it("refuses a missing key, a half pair or a key that is not PEM with a usage error", () => {
    const bad = path.join(tempDir("selkie-pki-bad-"), "bad.key");
    fs.writeFileSync(bad, "not a key\n");
    for (const [args, code] of [
      [["--tls-cert", pki.cert], "TLS_INCOMPLETE"],
      [["--tls-cert", pki.cert, "--tls-key", bad], "TLS_BAD_PEM"],
      [["--tls-cert", pki.cert, "--tls-key", path.join(ROOT, "no-such.key")], "TLS_FILE"],
    ] as const) {
      const r = spawnSync(process.execPath, [CLI, "serve", "--dir", tempDir("selkie-serve-"), "--port", "0", ...args], { encoding: "utf8", timeout: 20_000 });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`\\[${code}\\]`));
    }
  });
});
