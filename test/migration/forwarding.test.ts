/**
 * Clients follow a database that moved (issue 13 item 6): the unmodified @libsql/client keeps the old
 * server's URL and its reads, writes and transactions land on the new owner. The forwarding entry is
 * recorded directly, as the migration protocol does when a migration commits.
 */
import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createClient } from "@libsql/client";
import { serve, type RunningServer } from "../../runtime/host/server/serve.js";
import { TokenStore } from "../../runtime/host/server/tokens.js";
import { ForwardingError, ForwardingTable, recordForwarding } from "../../runtime/migration/forwarding/index.js";
import { tempDir } from "../helpers.js";
import { formatPs, psReport } from "../../runtime/host/cli/ps-command.js";
import { cleanup, newCa, newPlatform } from "./channel-harness.js";

after(cleanup);
const ca = newCa();

interface Peer {
  s: RunningServer;
  dir: string;
  admin: string;
}

async function peer(dir = tempDir("selkie-fwd-")): Promise<Peer> {
  const tokens = new TokenStore(dir);
  const admin = tokens.create("admin", null).token;
  const s = await serve({ dir, platform: await newPlatform(ca), port: 0 });
  return { s, dir, admin };
}

/** A running server re-reads tokens.json at most every 250 ms: wait until a token made beside it counts. */
const tokensSettle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

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

test("@libsql/client keeping the old URL reads, writes and runs transactions on the new owner", async () => {
  const a = await peer();
  const b = await peer();
  try {
    assert.equal((await api(b, "POST", "/v1/databases", { name: "orders" })).status, 201);
    const token = new TokenStore(b.dir).create("read-write", "orders").token; // moved with the database
    await tokensSettle();
    recordForwarding(a.s.handler.context.forwarding, "orders", b.s.url);

    const old = createClient({ url: `${a.s.url}/db/orders/`, authToken: token });
    const direct = createClient({ url: `${b.s.url}/db/orders/`, authToken: token });
    await old.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    await old.execute({ sql: "INSERT INTO t(v) VALUES (?)", args: ["via old url"] });
    await old.batch([{ sql: "INSERT INTO t(v) VALUES (?)", args: ["batch 1"] }, { sql: "INSERT INTO t(v) VALUES (?)", args: ["batch 2"] }], "write");
    const tx = await old.transaction("write");
    await tx.execute({ sql: "INSERT INTO t(v) VALUES (?)", args: ["in tx"] });
    assert.equal((await tx.execute("SELECT count(*) AS n FROM t")).rows[0]!.n, 4);
    await tx.commit();
    // Every write is on the new owner, read back directly there and through the old URL.
    const there = await direct.execute("SELECT v FROM t ORDER BY id");
    assert.deepEqual(there.rows.map((r) => r.v), ["via old url", "batch 1", "batch 2", "in tx"]);
    assert.deepEqual((await old.execute("SELECT v FROM t ORDER BY id")).rows.map((r) => r.v), ["via old url", "batch 1", "batch 2", "in tx"]);
    // The old server has no such database of its own.
    assert.equal(fs.existsSync(path.join(a.dir, "databases", "orders.db")), false);
    // A wrong token is refused by the new owner, through the old URL too.
    const wrong = createClient({ url: `${a.s.url}/db/orders/`, authToken: "sk_wrong" });
    await assert.rejects(wrong.execute("SELECT 1"), (e: Error) => /401|unauthori/i.test(e.message));
    old.close();
    direct.close();
    wrong.close();

    const list = await api(a, "GET", "/v1/forwarding");
    assert.equal(list.status, 200);
    assert.equal(list.json.forwarding.length, 1);
    assert.equal(list.json.forwarding[0].name, "orders");
    assert.equal(list.json.forwarding[0].to, b.s.url);
    assert.ok(list.json.forwarding[0].requests >= 6, `requests counted: ${list.json.forwarding[0].requests}`);
    const metrics = await api(a, "GET", "/metrics");
    assert.match(metrics.json, /^selkie_forwarded_databases 1$/m);
    assert.match(metrics.json, /^selkie_forwarded_requests_total\{db="orders"\} \d+$/m);
    const res = await fetch(`${a.s.url}/db/orders/v2`);
    assert.equal(res.headers.get("x-selkie-forwarded-to"), b.s.url);
  } finally {
    await a.s.close();
    await b.s.close();
  }
});

test("the forwarding table is durable: a restarted server keeps forwarding, and a damaged table stops it from starting", async () => {
  const dir = tempDir("selkie-fwd-");
  const b = await peer();
  let a = await peer(dir);
  try {
    await api(b, "POST", "/v1/databases", { name: "kv" });
    const token = new TokenStore(b.dir).create("read-write", "kv").token;
    await tokensSettle();
    a.s.handler.context.forwarding.record("kv", `${b.s.url}/`);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, "forwarding.json"), "utf8"));
    assert.equal(onDisk.format, 1);
    assert.equal(onDisk.databases.kv.to, b.s.url, "stored without the trailing slash");
    assert.equal(fs.readdirSync(dir).filter((f) => f.includes(".tmp-")).length, 0, "no temporary file left");
    await a.s.close();
    a = { ...a, s: await serve({ dir, platform: await newPlatform(ca), port: 0 }) };
    const c = createClient({ url: `${a.s.url}/db/kv/`, authToken: token });
    assert.equal((await c.execute("SELECT 41 + 1 AS x")).rows[0]!.x, 42);
    c.close();
  } finally {
    await a.s.close();
    await b.s.close();
  }
  fs.writeFileSync(path.join(dir, "forwarding.json"), "{ not json");
  assert.throws(() => ForwardingTable.open(dir), (e: unknown) => e instanceof ForwardingError && e.code === "FORWARDING_CORRUPT");
  await assert.rejects(serve({ dir, platform: await newPlatform(ca), port: 0 }), (e: Error & { code?: string }) => e.code === "FORWARDING_CORRUPT");
  fs.writeFileSync(path.join(dir, "forwarding.json"), JSON.stringify({ format: 2, databases: {} }));
  assert.throws(() => ForwardingTable.open(dir), (e: unknown) => e instanceof ForwardingError && e.code === "FORWARDING_VERSION_UNSUPPORTED");
  assert.throws(() => ForwardingTable.open(tempDir()).record("x", "ftp://y"), (e: unknown) => e instanceof ForwardingError && e.code === "FORWARDING_BAD_URL");
  assert.throws(() => ForwardingTable.open(tempDir()).record("../x", "http://y"), (e: unknown) => e instanceof ForwardingError && e.code === "FORWARDING_BAD_NAME");
});

test("a moved database is managed where it lives: 410 DB_MOVED, 409 on reuse of its name, and DELETE /v1/forwarding/NAME ends forwarding", async () => {
  const a = await peer();
  try {
    a.s.handler.context.forwarding.record("gone", "http://127.0.0.1:9");
    const get = await api(a, "GET", "/v1/databases/gone");
    assert.equal(get.status, 410);
    assert.equal(get.json.code, "DB_MOVED");
    assert.equal(get.headers.get("location"), "http://127.0.0.1:9/v1/databases/gone");
    const create = await api(a, "POST", "/v1/databases", { name: "gone" });
    assert.equal(create.status, 409);
    assert.equal(create.json.code, "DB_MOVED");
    assert.match(create.json.message, /DELETE \/v1\/forwarding\/gone/);
    // The new owner does not answer: 502, nothing served here.
    const down = await fetch(`${a.s.url}/db/gone/v2/pipeline`, { method: "POST", body: "{}", headers: { authorization: "Bearer x" } });
    assert.equal(down.status, 502);
    assert.equal(((await down.json()) as { code: string }).code, "FORWARD_FAILED");
    assert.equal((await api(a, "DELETE", "/v1/forwarding/gone")).status, 200);
    assert.equal((await api(a, "DELETE", "/v1/forwarding/gone")).status, 404);
    assert.equal((await api(a, "POST", "/v1/databases", { name: "gone" })).status, 201);
  } finally {
    await a.s.close();
  }
});

test("two servers forwarding a database to each other answer 508 FORWARD_LOOP instead of looping", async () => {
  const a = await peer();
  const b = await peer();
  try {
    a.s.handler.context.forwarding.record("ping", b.s.url);
    b.s.handler.context.forwarding.record("ping", a.s.url);
    const res = await fetch(`${a.s.url}/db/ping/v2/pipeline`, { method: "POST", body: "{}", headers: { authorization: "Bearer x" } });
    assert.equal(res.status, 508);
    assert.equal(((await res.json()) as { code: string }).code, "FORWARD_LOOP");
  } finally {
    await a.s.close();
    await b.s.close();
  }
});

test("a token limited to a moved database, on the old server's bare URL, is forwarded too", async () => {
  const b = await peer();
  await api(b, "POST", "/v1/databases", { name: "solo" });
  const token = new TokenStore(b.dir).create("read-write", "solo").token;
  await tokensSettle();
  // The migration carries the database's tokens; here the old server keeps the same ones (a copy of
  // the token file), so it can tell which database the token is for.
  const aDir = tempDir("selkie-fwd-");
  fs.copyFileSync(path.join(b.dir, "tokens.json"), path.join(aDir, "tokens.json"));
  const a = await peer(aDir);
  try {
    a.s.handler.context.forwarding.record("solo", b.s.url);
    const c = createClient({ url: a.s.url, authToken: token });
    await c.execute("CREATE TABLE s(x)");
    await c.execute("INSERT INTO s VALUES (7)");
    c.close();
    const d = createClient({ url: `${b.s.url}/db/solo/`, authToken: token });
    assert.equal((await d.execute("SELECT x FROM s")).rows[0]!.x, 7);
    d.close();
  } finally {
    await a.s.close();
    await b.s.close();
  }
});

test("selkie ps lists a moved database as moved, with where it went", async () => {
  const a = await peer();
  try {
    await api(a, "POST", "/v1/databases", { name: "here" });
    a.s.handler.context.forwarding.record("away", "https://edge-b.example:7700");
    const r = await psReport(a.s.url, a.admin);
    const away = r.rows.find((x) => x.name === "away");
    assert.equal(away?.state, "moved -> https://edge-b.example:7700");
    assert.equal(away?.movedTo, "https://edge-b.example:7700");
    assert.equal(r.rows.find((x) => x.name === "here")?.state, "running", "a database of its own is listed as before");
    assert.match(formatPs(r), /^database\s+away\s+moved -> https:\/\/edge-b\.example:7700/m);
  } finally {
    await a.s.close();
  }
});

test("why forwarding and not a redirect: fetch drops the token when a redirect crosses to another origin", async () => {
  // The new owner records the Authorization header it receives; the old one only redirects (307).
  const seen: Array<string | undefined> = [];
  const owner = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  await new Promise<void>((r) => owner.listen(0, "127.0.0.1", r));
  const ownerUrl = `http://127.0.0.1:${(owner.address() as AddressInfo).port}`;
  const redirector = http.createServer((req, res) => res.writeHead(307, { location: `${ownerUrl}${req.url}` }).end());
  await new Promise<void>((r) => redirector.listen(0, "127.0.0.1", r));
  try {
    const res = await fetch(`http://127.0.0.1:${(redirector.address() as AddressInfo).port}/db/x/v2/pipeline`, { method: "POST", body: "{}", headers: { authorization: "Bearer sk_secret" } });
    assert.equal(res.status, 200);
    assert.deepEqual(seen, [undefined], "the redirected request reached the new owner without its token");
  } finally {
    owner.close();
    redirector.close();
  }
});
