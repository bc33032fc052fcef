/**
 * `selkie migrate` (runtime/host/cli/migrate-command.ts) as a user runs it: a real child process
 * asking a running server to migrate one of its databases to a peer; its --json statistics, its
 * exit code per failure class, and `selkie ps` showing where the database went.
 */
import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createClient } from "@libsql/client";
import { serve, type RunningServer } from "../../runtime/host/server/serve.js";
import { TokenStore } from "../../runtime/host/server/tokens.js";
import { EXIT_MIGRATE_NOT_HERE, EXIT_MIGRATE_REFUSED, EXIT_MIGRATE_ATTESTATION } from "../../runtime/host/cli/migrate-command.js";
import { CLI, ROOT, tempDir } from "../helpers.js";
import { cleanup, newCa, newPlatform } from "./channel-harness.js";

const ca = newCa();
const servers: RunningServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close({ timeoutMs: 2_000 }).catch(() => undefined)));
  cleanup();
});

async function peer(fleet = true): Promise<{ s: RunningServer; admin: string }> {
  const dir = tempDir("selkie-mcli-");
  const admin = new TokenStore(dir).create("admin", null).token;
  const s = await serve({ dir, platform: await newPlatform(ca), port: 0, ...(fleet ? { migration: { fleetCa: ca.certificate } } : {}) });
  servers.push(s);
  return { s, admin };
}

/** Runs the CLI without blocking this process's event loop (the servers live here). */
function selkie(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    c.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    c.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

async function create(p: { s: RunningServer; admin: string }, name: string): Promise<void> {
  const r = await fetch(`${p.s.url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${p.admin}`, "content-type": "application/json" }, body: JSON.stringify({ name }) });
  assert.equal(r.status, 201);
}

test("selkie migrate moves a served database and prints its statistics as JSON; selkie ps shows where it went", async () => {
  const a = await peer();
  const b = await peer();
  await create(a, "shop");
  const tok = await fetch(`${a.s.url}/v1/tokens`, { method: "POST", headers: { authorization: `Bearer ${a.admin}`, "content-type": "application/json" }, body: JSON.stringify({ scope: "read-write", db: "shop" }) });
  const dbToken = ((await tok.json()) as { token: string }).token; // travels with the database (admin tokens do not)
  const c = createClient({ url: `${a.s.url}/db/shop/`, authToken: dbToken });
  await c.execute("CREATE TABLE t(x)");
  await c.execute("INSERT INTO t VALUES (42)");
  const r = await selkie(["migrate", "shop", "--to", b.s.url, "--server", a.s.url, "--json"], { SELKIE_TOKEN: a.admin });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { name: string; to: string; stats: { totalMs: number; frozenMs: number; attestMs: number; rounds: number; bytes: { precopy: number; final: number } } };
  assert.equal(out.name, "shop");
  assert.equal(out.to, b.s.url);
  assert.ok(out.stats.totalMs > 0 && out.stats.attestMs > 0 && out.stats.rounds >= 1 && out.stats.bytes.precopy > 0, r.stdout);
  const onB = createClient({ url: `${b.s.url}/db/shop/`, authToken: b.admin });
  assert.equal(Number((await onB.execute("SELECT x FROM t")).rows[0]!.x), 42);
  onB.close();
  assert.equal(Number((await c.execute("SELECT x FROM t")).rows[0]!.x), 42, "the old URL is forwarded");
  c.close();
  const ps = await selkie(["ps", "--server", a.s.url, "--token", a.admin]);
  assert.equal(ps.status, 0, ps.stderr);
  assert.match(ps.stdout, new RegExp(`shop\\s+moved -> ${b.s.url.replace(/[.]/g, "\\.")}`));
});

test("selkie migrate's exit code names the failure class and the database stays where it was", async () => {
  const a = await peer();
  const b = await peer();
  await create(a, "kept");
  await create(b, "kept");
  const taken = await selkie(["migrate", "kept", "--to", b.s.url, "--server", a.s.url, "--token", a.admin]);
  assert.equal(taken.status, EXIT_MIGRATE_REFUSED, taken.stderr);
  assert.match(taken.stderr, /MIGRATION_REFUSED.*MIGRATION_NAME_TAKEN/s);
  const none = await selkie(["migrate", "ghost", "--to", b.s.url, "--server", a.s.url, "--token", a.admin]);
  assert.equal(none.status, EXIT_MIGRATE_NOT_HERE, none.stderr);
  const unfleeted = await peer(false);
  await create(unfleeted, "solo");
  const nc = await selkie(["migrate", "solo", "--to", b.s.url, "--server", unfleeted.s.url, "--token", unfleeted.admin]);
  assert.equal(nc.status, EXIT_MIGRATE_ATTESTATION, nc.stderr);
  assert.match(nc.stderr, /--fleet-ca/);
  const usage = await selkie(["migrate", "kept", "--to", b.s.url, "--server", a.s.url]);
  assert.equal(usage.status, 2, "no token is a usage error");
  const r = await fetch(`${a.s.url}/v1/databases/kept`, { headers: { authorization: `Bearer ${a.admin}` } });
  assert.equal(r.status, 200, "still served here");
});
