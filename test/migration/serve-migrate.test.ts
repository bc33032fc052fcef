/**
 * Live migration between two running `selkie serve` instances (issue 13): two platforms certified by
 * one fleet CA, real HTTP on loopback, the attested channel on the servers' own ports, the
 * unmodified @libsql/client writing through the old URL the whole time. The source runs its
 * databases on worker threads, the destination in-process: both engines freeze and serve.
 */
import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import { createClient, type Client } from "@libsql/client";
import { serve, type RunningServer } from "../../runtime/host/server/serve.js";
import { TokenStore } from "../../runtime/host/server/tokens.js";
import type { CertificateAuthority } from "../../runtime/platform/index.js";
import { tempDir } from "../helpers.js";
import { cleanup, newCa, newPlatform } from "./channel-harness.js";

const ca = newCa();
const servers: RunningServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close({ timeoutMs: 2_000 }).catch(() => undefined)));
  cleanup();
});

interface Peer {
  s: RunningServer;
  dir: string;
  admin: string;
}

async function peer(o: { workers?: number; fleetCa?: CertificateAuthority | null } = {}): Promise<Peer> {
  const dir = tempDir("selkie-smig-");
  const admin = new TokenStore(dir).create("admin", null).token;
  const fleet = o.fleetCa === undefined ? ca : o.fleetCa;
  const s = await serve({ dir, platform: await newPlatform(ca), port: 0, workers: o.workers ?? 0, ...(fleet ? { migration: { fleetCa: fleet.certificate } } : {}) });
  servers.push(s);
  return { s, dir, admin };
}

async function api(p: Peer, method: string, route: string, body?: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${p.s.url}${route}`, { method, headers: { authorization: `Bearer ${p.admin}`, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

/** A database `name` on `p` with a table and a read-write token limited to it (which must travel). */
async function database(p: Peer, name: string): Promise<{ token: string; client: Client }> {
  assert.equal((await api(p, "POST", "/v1/databases", { name })).status, 201);
  const token = (await api(p, "POST", "/v1/tokens", { scope: "read-write", db: name })).json.token as string;
  const client = createClient({ url: `${p.s.url}/db/${name}/`, authToken: token });
  await client.execute("CREATE TABLE t(n INTEGER PRIMARY KEY, pad TEXT)");
  return { token, client };
}

/** Writes rows one by one until stopped; every resolved insert is acknowledged. */
function writer(client: Client): { acked: number[]; errors: string[]; stop(): Promise<void> } {
  const acked: number[] = [];
  const errors: string[] = [];
  let stopped = false;
  const done = (async () => {
    for (let n = 1; !stopped; n++) {
      try {
        await client.execute({ sql: "INSERT INTO t VALUES (?, ?)", args: [n, "w".repeat(100)] });
        acked.push(n);
      } catch (e) {
        errors.push((e as Error).message);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    acked,
    errors,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

async function rows(client: Client): Promise<number[]> {
  return (await client.execute("SELECT n FROM t ORDER BY n")).rows.map((r) => Number(r.n));
}

test("a served database migrates under a live @libsql/client write load: no acknowledged write lost, the old URL keeps working, tokens work on the new owner", async () => {
  const a = await peer({ workers: 2 });
  const b = await peer();
  const { token, client } = await database(a, "orders");
  await client.execute({ sql: "INSERT INTO t SELECT value + 1000000, randomblob(400) FROM generate_series(1, 3000)", args: [] }).catch(async () => {
    for (let i = 0; i < 300; i++) await client.execute({ sql: "INSERT INTO t VALUES (?, ?)", args: [1_000_000 + i, "p".repeat(400)] });
  });
  const w = writer(client);
  await new Promise((r) => setTimeout(r, 300));
  const r = await api(a, "POST", "/v1/databases/orders/migrate", { to: b.s.url });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.to, b.s.url);
  assert.ok(r.json.stats.rounds >= 1 && r.json.stats.attestMs > 0 && r.json.stats.frozenMs >= 0, JSON.stringify(r.json.stats));
  await new Promise((r) => setTimeout(r, 300)); // writes go on through the old URL
  await w.stop();
  client.close();
  assert.deepEqual(w.errors, [], `no write failed during the migration: ${w.errors.join(" / ")}`);
  assert.ok(w.acked.length > 5, `writes went on (${w.acked.length})`);
  if (process.env.SELKIE_TEST_VERBOSE) console.log(w.acked.length, JSON.stringify(r.json.stats));

  // The new owner has every acknowledged write, and the token limited to the database works there.
  const direct = createClient({ url: `${b.s.url}/db/orders/`, authToken: token });
  const have = new Set(await rows(direct));
  for (const n of w.acked) assert.ok(have.has(n), `acknowledged write ${n} is on the destination`);
  direct.close();

  // The source no longer serves it: it says where it went, and lists the migration.
  assert.equal((await api(a, "GET", "/v1/databases/orders")).json.code, "DB_MOVED");
  const fw = (await api(a, "GET", "/v1/forwarding")).json.forwarding as Array<{ name: string; to: string }>;
  assert.deepEqual(fw.map((e) => [e.name, e.to]), [["orders", b.s.url]]);
  const ma = (await api(a, "GET", "/v1/migrations")).json;
  assert.equal(ma.recent[0].name, "orders");
  assert.equal(ma.recent[0].phase, "done");
  assert.equal(ma.recent[0].role, "source");
  const mb = (await api(b, "GET", "/v1/migrations")).json;
  assert.equal(mb.recent[0].role, "destination");
  const metrics = (await api(a, "GET", "/metrics")).json as string;
  assert.match(metrics, /selkie_migrations_total\{role="source",result="done"\} 1/);

  // A root-URL client with the database token follows too.
  const root = createClient({ url: a.s.url, authToken: token });
  assert.ok((await rows(root)).length >= w.acked.length);
  root.close();
});

test("a database migrates away and back; each side serves only while it owns it", async () => {
  const a = await peer();
  const b = await peer({ workers: 1 });
  const { token, client } = await database(a, "ledger");
  await client.execute("INSERT INTO t VALUES (1, 'a')");
  assert.equal((await api(a, "POST", "/v1/databases/ledger/migrate", { to: b.s.url })).status, 200);
  await client.execute("INSERT INTO t VALUES (2, 'via a, on b')");
  const r = await api(b, "POST", "/v1/databases/ledger/migrate", { to: a.s.url });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual((await api(a, "GET", "/v1/forwarding")).json.forwarding, [], "the entry went when it came back");
  assert.equal((await api(a, "GET", "/v1/databases/ledger")).status, 200);
  assert.equal((await api(b, "GET", "/v1/databases/ledger")).json.code, "DB_MOVED");
  // A third peer's own "ledger" cannot take the name where A forwards it... (B forwards it to A now)
  const c = await peer();
  await database(c, "ledger");
  const other = await api(c, "POST", "/v1/databases/ledger/migrate", { to: b.s.url });
  assert.equal(other.status, 409, JSON.stringify(other.json));
  assert.equal(other.headers.get("x-selkie-peer-code"), "MIGRATION_POLICY");
  assert.match(other.json.message, /only that peer may migrate it back/);
  const viaB = createClient({ url: `${b.s.url}/db/ledger/`, authToken: token });
  await viaB.execute("INSERT INTO t VALUES (3, 'via b, on a')");
  assert.deepEqual(await rows(client), [1, 2, 3]);
  viaB.close();
  client.close();
});

test("refusals leave the database serving where it was: unknown name, itself, a name the peer has, a peer of another fleet, no fleet CA", async () => {
  const a = await peer();
  const b = await peer();
  const { client } = await database(a, "kept");
  await client.execute("INSERT INTO t VALUES (1, 'x')");
  await database(b, "kept"); // the destination has that name already

  const nope = await api(a, "POST", "/v1/databases/nope/migrate", { to: b.s.url });
  assert.equal(nope.status, 404);
  assert.equal(nope.json.code, "DB_NOT_FOUND");
  const self = await api(a, "POST", "/v1/databases/kept/migrate", { to: a.s.url });
  assert.equal(self.json.code, "MIGRATION_TO_SELF");
  const taken = await api(a, "POST", "/v1/databases/kept/migrate", { to: b.s.url });
  assert.equal(taken.status, 409);
  assert.equal(taken.json.code, "MIGRATION_REFUSED");
  assert.equal(taken.headers.get("x-selkie-peer-code"), "MIGRATION_NAME_TAKEN");
  assert.match(taken.json.message, /kept/);

  const other = await peer({ fleetCa: newCa() }); // certified by our CA, but trusting another fleet
  const foreign = await api(a, "POST", "/v1/databases/kept/migrate", { to: other.s.url });
  assert.equal(foreign.status, 502, JSON.stringify(foreign.json));
  assert.match(foreign.json.code, /^CHANNEL_/);

  const unconfigured = await peer({ fleetCa: null });
  await database(unconfigured, "solo");
  const nc = await api(unconfigured, "POST", "/v1/databases/solo/migrate", { to: b.s.url });
  assert.equal(nc.status, 503);
  assert.equal(nc.json.code, "MIGRATION_NOT_CONFIGURED");
  const bad = await api(a, "POST", "/v1/databases/kept/migrate", { to: "ftp://x" });
  assert.equal(bad.json.code, "BAD_PEER_URL");

  await client.execute("INSERT INTO t VALUES (2, 'still here')");
  assert.deepEqual(await rows(client), [1, 2]);
  assert.deepEqual((await api(a, "GET", "/v1/forwarding")).json.forwarding, []);
  client.close();
});

test("an open interactive transaction blocks the freeze until its wait ends, then the migration is refused; asked to, the freeze rolls it back", async () => {
  const a = await peer({ workers: 1 });
  const b = await peer();
  const { client } = await database(a, "tx");
  await client.execute("INSERT INTO t VALUES (1, 'committed')");
  const tx = await client.transaction("write");
  await tx.execute("INSERT INTO t VALUES (2, 'open')");
  const refused = await api(a, "POST", "/v1/databases/tx/migrate", { to: b.s.url, waitMs: 300 });
  assert.equal(refused.status, 409, JSON.stringify(refused.json));
  assert.equal(refused.json.code, "MIGRATION_TRANSACTION_OPEN");
  // The transaction is intact and can still commit; the database serves here.
  await tx.execute("INSERT INTO t VALUES (3, 'open too')");
  await tx.commit();
  assert.deepEqual(await rows(client), [1, 2, 3]);

  const tx2 = await client.transaction("write");
  await tx2.execute("INSERT INTO t VALUES (4, 'never committed')");
  const r = await api(a, "POST", "/v1/databases/tx/migrate", { to: b.s.url, waitMs: 200, rollbackOpenTransaction: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await assert.rejects(tx2.commit()); // its stream ended with the freeze
  assert.deepEqual(await rows(client), [1, 2, 3], "the rolled-back transaction is nowhere, the committed ones arrived");
  client.close();
});

test("a WebSocket client of the old URL follows the database: its next statements reach the new owner through a tunnel", async () => {
  const a = await peer();
  const b = await peer({ workers: 1 });
  const { token, client } = await database(a, "chat");
  await client.execute("INSERT INTO t VALUES (1, 'before')");
  const ws = createClient({ url: `${a.s.url.replace("http", "ws")}/db/chat`, authToken: token });
  assert.deepEqual(await rows(ws), [1]);
  assert.equal((await api(a, "POST", "/v1/databases/chat/migrate", { to: b.s.url })).status, 200);
  // The connection opened before the move ends at its next request; the client reconnects.
  let moved = 0;
  for (let i = 2; i <= 4; i++) {
    try {
      await ws.execute({ sql: "INSERT INTO t VALUES (?, 'after')", args: [i] });
    } catch (e) {
      moved++;
      assert.match(String((e as Error).message), /DB_MOVED/);
      await new Promise((r) => setTimeout(r, 100)); // the close frame follows the error: then it reconnects
      await ws.execute({ sql: "INSERT INTO t VALUES (?, 'after')", args: [i] });
    }
  }
  assert.ok(moved <= 1, "at most the first statement after the move fails");
  const onB = createClient({ url: `${b.s.url}/db/chat/`, authToken: token });
  assert.deepEqual(await rows(onB), [1, 2, 3, 4]);
  // A fresh WebSocket client of the old URL is tunnelled from its first statement on.
  const fresh = createClient({ url: `${a.s.url.replace("http", "ws")}/db/chat`, authToken: token });
  assert.deepEqual(await rows(fresh), [1, 2, 3, 4]);
  fresh.close();
  onB.close();
  ws.close();
  client.close();
});
