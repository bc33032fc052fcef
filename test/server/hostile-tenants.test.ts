/**
 * Hostile tenants against a spawned `selkie serve`, with the real @libsql/client: each attack of
 * issue 12 (runaway statements, transactions held open, settings changed from a token that should
 * not, ...) is refused or cut short, and after each one: the server answers /health, the other
 * tenant's point reads work, nothing acknowledged is lost and the attacked database is usable.
 *
 * Every statement ends at its request's deadline. With worker threads (`selkie serve` runs 2 by
 * default), /health and the other tenants also answer *during* a long statement: the last suite
 * holds a tenant for 10 s and asserts /health p99 < 100 ms and the other tenant's point reads
 * within 2x of their unloaded p99.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { createClient, type Client } from "@libsql/client";
import { tempDir } from "../helpers.js";
import { acquireProcessLock, releaseProcessLock } from "../../runtime/host/process-lock.js";
import { clientMessage } from "../../runtime/host/server/errors.js";
import { toHranaError } from "../../runtime/host/server/hrana/execute.js";
import { StorageError } from "../../runtime/storage/errors.js";
import { api, createDb, exec, pipeline, startServer, type ServerProc } from "./harness.js";

const REQUEST_TIMEOUT = 1500;
const MAX_TXN = 1500;
const MAX_READ_TXN = 400;
const MAX_RESPONSE = 4 * 1024 * 1024;
const rowsOf = (n: number): string => `(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT ${n}) SELECT i FROM c)`;
const RUNAWAY = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c";

async function token(s: ServerProc, scope: "read-only" | "read-write", db: string): Promise<string> {
  const r = await api(s, s.adminToken, "POST", "/v1/tokens", { scope, db });
  assert.equal(r.status, 201, r.text);
  return r.json.token as string;
}

/** ms for one /health answer. */
async function health(s: ServerProc): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  await r.text();
  return performance.now() - t0;
}

const codeOf = (e: unknown): string => (e as { code?: string }).code ?? String(e);

describe("hostile tenants cannot stop, starve or reconfigure the others", () => {
  let s: ServerProc;
  let roA: string;
  let rwA: string;
  let rwB: string;
  let a: Client;
  let b: Client;
  let ro: Client;
  /** Rows acknowledged in a (each insert that returned). */
  let acked = 0;

  /** After each attack: the server, the other tenant and the attacked database are fine. */
  const intact = async (): Promise<void> => {
    assert.ok((await health(s)) < 1000, "/health answers at once once the attack is over");
    const rb = await b.execute({ sql: "SELECT v FROM kv WHERE k = ?", args: [7] });
    assert.equal(rb.rows[0]!.v, "seven", "the other tenant's point read");
    const ra = await a.execute("SELECT count(*) AS n FROM t");
    assert.equal(Number(ra.rows[0]!.n), acked, "acknowledged rows of the attacked database");
    await a.execute({ sql: "INSERT INTO t(x) VALUES (?)", args: [acked] });
    acked++;
    const settings = await a.execute("SELECT * FROM pragma_hard_heap_limit, pragma_query_only, pragma_max_page_count, pragma_foreign_keys");
    assert.equal(Number(settings.rows[0]![0]), 0, "hard_heap_limit untouched");
    assert.equal(Number(settings.rows[0]![1]), 0, "query_only untouched");
    assert.ok(Number(settings.rows[0]![2]) > 1000, "max_page_count untouched");
    assert.equal(s.proc.exitCode, null);
  };

  before(async () => {
    s = await startServer({
      args: ["--request-timeout", String(REQUEST_TIMEOUT), "--max-transaction", String(MAX_TXN), "--max-read-transaction", String(MAX_READ_TXN), "--stream-idle", "5000", "--max-response-bytes", String(MAX_RESPONSE)],
    });
    await createDb(s, "a");
    await createDb(s, "b");
    roA = await token(s, "read-only", "a");
    rwA = await token(s, "read-write", "a");
    rwB = await token(s, "read-write", "b");
    a = createClient({ url: `${s.url}/db/a/`, authToken: rwA });
    b = createClient({ url: `${s.url}/db/b/`, authToken: rwB });
    ro = createClient({ url: `${s.url}/db/a/`, authToken: roA });
    await a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x)");
    await b.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)");
    await b.execute("INSERT INTO kv VALUES (7, 'seven')");
    await intact();
  });

  after(async () => {
    a?.close();
    b?.close();
    ro?.close();
    await s?.stop();
  });

  it("a runaway recursive CTE from a read-only token is interrupted at the request's deadline with STATEMENT_TIMEOUT", async () => {
    const t0 = Date.now();
    await assert.rejects(ro.execute(RUNAWAY), (e) => codeOf(e) === "STATEMENT_TIMEOUT");
    const ms = Date.now() - t0;
    assert.ok(ms >= REQUEST_TIMEOUT - 100 && ms < REQUEST_TIMEOUT + 1000, `interrupted after ${ms} ms`);
    await intact();
  });

  it("a runaway statement in a read-write transaction is interrupted and the transaction's writes are gone", async () => {
    const tx = await a.transaction("write");
    await tx.execute({ sql: "INSERT INTO t(x) VALUES (?)", args: ["not acknowledged"] });
    await assert.rejects(tx.execute(RUNAWAY), (e) => ["STATEMENT_TIMEOUT", "REQUEST_TIMEOUT"].includes(codeOf(e)));
    await assert.rejects(tx.commit());
    tx.close();
    await intact();
  });

  it("a runaway write (INSERT ... SELECT from a recursive CTE) is interrupted and leaves no row", async () => {
    await assert.rejects(a.execute("INSERT INTO t(x) SELECT i FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT i FROM c)"), (e) => codeOf(e) === "STATEMENT_TIMEOUT");
    await intact();
  });

  it("a read-only token cannot hold the database: writers go on at once, and its transaction is rolled back at --max-read-transaction", async () => {
    const tx = await ro.transaction("read");
    await tx.execute("SELECT 1");
    const t0 = Date.now();
    await a.execute({ sql: "INSERT INTO t(x) VALUES (?)", args: ["after the reader"] });
    acked++;
    const waited = Date.now() - t0;
    assert.ok(waited < MAX_READ_TXN, `the writer waited ${waited} ms for the reader (it reads a snapshot: hrana/ISOLATION.md)`);
    await new Promise((r) => setTimeout(r, Math.max(0, MAX_READ_TXN + 200 - (Date.now() - t0))));
    await assert.rejects(tx.execute("SELECT 1"), (e) => ["TRANSACTION_TIMEOUT", "STREAM_EXPIRED"].includes(codeOf(e)));
    tx.close();
    await intact();
  });

  it("an interactive read-write transaction is rolled back at --max-transaction, even when kept busy", async () => {
    const tx = await a.transaction("write");
    await tx.execute({ sql: "INSERT INTO t(x) VALUES (?)", args: ["held too long"] });
    const t0 = Date.now();
    let failed: unknown;
    while (Date.now() - t0 < MAX_TXN + 2000) {
      try {
        await tx.execute("SELECT 1"); // a baton kept alive
      } catch (e) {
        failed = e;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(failed, "the transaction outlived --max-transaction");
    assert.ok(Date.now() - t0 < MAX_TXN + 1000);
    assert.ok(["TRANSACTION_TIMEOUT", "STREAM_EXPIRED", "REQUEST_TIMEOUT", "STATEMENT_TIMEOUT"].includes(codeOf(failed)), codeOf(failed));
    tx.close();
    await intact();
  });

  it("a read-only token changes no setting and writes nothing: each attempt is a 403 READ_ONLY_TOKEN naming the statement", async () => {
    for (const sql of [
      "PRAGMA hard_heap_limit=100000",
      "PRAGMA soft_heap_limit=100000",
      "PRAGMA query_only=1",
      "PRAGMA max_page_count=1",
      "PRAGMA ignore_check_constraints=1",
      "PRAGMA foreign_keys=OFF",
      "PRAGMA writable_schema=1",
      "PRAGMA locking_mode=EXCLUSIVE",
      "PRAGMA synchronous=OFF",
      "PRAGMA journal_mode=OFF",
      "PRAGMA cache_size=1000000",
      "ATTACH ':memory:' AS m",
      "REINDEX",
      "ANALYZE",
      "PRAGMA optimize",
      "PRAGMA optimize=0x10002",
      "BEGIN IMMEDIATE",
      "BEGIN EXCLUSIVE",
      "CREATE TEMP TABLE x(a)",
      "INSERT INTO t(x) VALUES (1)",
    ]) {
      await assert.rejects(ro.execute(sql), (e) => codeOf(e) === "READ_ONLY_TOKEN", sql);
      const r = await pipeline(s, roA, [exec(sql), { type: "close" }], { db: "a" });
      assert.equal(r.status, 403, sql);
      assert.equal(r.json.code, "READ_ONLY_TOKEN");
      assert.match(r.json.message, /read-only/);
      assert.ok(r.json.message.includes(JSON.stringify(sql)), `the message names the statement: ${r.json.message}`);
    }
    // What it may do: read, read settings, look at the schema.
    assert.equal(Number((await ro.execute("SELECT count(*) AS n FROM t")).rows[0]!.n), acked);
    await ro.execute("PRAGMA user_version");
    await ro.execute("PRAGMA table_info(t)");
    await ro.execute("SELECT name FROM pragma_table_list");
    await intact();
  });

  it("a read-write token cannot change settings other clients share: 403 SETTING_NOT_ALLOWED; its own data it may", async () => {
    for (const sql of [
      "PRAGMA hard_heap_limit=100000",
      "PRAGMA soft_heap_limit=100000",
      "PRAGMA query_only=1",
      "PRAGMA max_page_count=1",
      "PRAGMA ignore_check_constraints=1",
      "PRAGMA writable_schema=1",
      "PRAGMA locking_mode=EXCLUSIVE",
      "PRAGMA synchronous=OFF",
      "PRAGMA journal_mode=OFF",
      "PRAGMA foreign_keys=OFF",
      "PRAGMA cache_size=1000000",
      "ATTACH ':memory:' AS m",
      "CREATE TEMP TRIGGER spy AFTER INSERT ON t BEGIN DELETE FROM t; END",
    ]) {
      await assert.rejects(a.execute(sql), (e) => codeOf(e) === "SETTING_NOT_ALLOWED", sql);
    }
    await a.execute("PRAGMA user_version = 5");
    assert.equal(Number((await ro.execute("PRAGMA user_version")).rows[0]![0]), 5);
    await a.execute("CREATE INDEX IF NOT EXISTS t_x ON t(x)");
    await a.execute("REINDEX");
    await a.execute("ANALYZE");
    await intact();
  });

  it("a response past --max-response-bytes fails with RESPONSE_TOO_LARGE before it is built, duplicate column names too", async () => {
    for (const sql of [`SELECT randomblob(1000000) AS b FROM ${rowsOf(450)}`, `SELECT randomblob(1000000) AS b, 1 AS b FROM ${rowsOf(450)}`]) {
      await assert.rejects(ro.execute(sql), (e) => codeOf(e) === "RESPONSE_TOO_LARGE", sql);
    }
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${s.proc.pid}/status`, "utf8"))![1]) * 1024;
    assert.ok(rss < 600 * 1024 * 1024, `server resident ${rss} bytes`);
    await intact();
  });

  it("a query that pushes its enclave to the EPC cap (NOMEM) gives the memory back: the enclave is recycled", async () => {
    await assert.rejects(ro.execute(`SELECT length(group_concat(hex(zeroblob(1000000)))) FROM ${rowsOf(40)}`), (e) => /NOMEM|RESPONSE|TOO/.test(codeOf(e)) || /memory/i.test(String(e)));
    const info = await api(s, s.adminToken, "GET", "/v1/databases/a");
    assert.equal(info.status, 200, info.text);
    assert.ok(info.json.enclave.committedBytes <= 24 * 1024 * 1024, `the enclave keeps ${info.json.enclave.committedBytes} bytes`);
    const m = await api(s, s.adminToken, "GET", "/metrics");
    assert.match(m.text, /selkie_enclave_recycles [1-9]/);
    await intact();
  });

  it("Infinity comes back to @libsql/client as Infinity (not a null float it refuses)", async () => {
    const r = await ro.execute("SELECT 1e999 AS p, -1e999 AS n, 0.5 AS h");
    assert.equal(r.rows[0]!.p, Infinity);
    assert.equal(r.rows[0]!.n, -Infinity);
    assert.equal(r.rows[0]!.h, 0.5);
    await intact();
  });

  it("clients that never read their responses do not stop the server: it keeps answering, its memory bounded", async () => {
    // Each response is near --max-response-bytes; what the kernel's socket buffers cannot take
    // stays in the server until the connection is cut at the request timeout (serve.ts).
    const url = new URL(s.url);
    const body = JSON.stringify({ baton: null, requests: [{ type: "execute", stmt: { sql: `SELECT randomblob(950000) AS b FROM ${rowsOf(3)}` } }, { type: "close" }] });
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const sock = net.connect(Number(url.port), url.hostname);
      sock.pause(); // never reads
      sock.on("error", () => {});
      sock.write(`POST /db/a/v2/pipeline HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${roA}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      sockets.push(sock);
    }
    await new Promise((r) => setTimeout(r, REQUEST_TIMEOUT + 1000));
    await intact();
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${s.proc.pid}/status`, "utf8"))![1]) * 1024;
    assert.ok(rss < 600 * 1024 * 1024, `server resident ${rss} bytes`);
    for (const sock of sockets) sock.destroy();
  });

  it("an aborted request body is not logged as an internal error", async () => {
    const url = new URL(s.url);
    const sock = net.connect(Number(url.port), url.hostname);
    await new Promise((r) => sock.once("connect", r));
    sock.write(`POST /db/a/v2/pipeline HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${rwA}\r\ncontent-type: application/json\r\ncontent-length: 10000\r\n\r\n{"baton":`);
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(s.stdout(), /internal error|"level":50/);
    await intact();
  });
});

describe("SIGTERM stops a server whatever runs", () => {
  it("a server busy with a statement longer than its grace period exits within the grace period (its watchdog), data intact", async () => {
    const s = await startServer({ args: ["--request-timeout", "30000", "--shutdown-timeout", "1000"] });
    try {
      await createDb(s, "a");
      const c = createClient({ url: `${s.url}/db/a/`, authToken: s.adminToken! });
      await c.execute("CREATE TABLE t(x)");
      await c.execute("INSERT INTO t VALUES (1)");
      const running = c.execute(RUNAWAY).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await s.stop("SIGTERM");
      const ms = Date.now() - t0;
      // The grace period (1 s) plus the watchdog's 2 s for closing databases, plus scheduling slack.
      assert.ok(ms < 1000 + 2000 + 1500, `stopped after ${ms} ms`);
      assert.match(s.stderr(), /graceful shutdown did not finish within/);
      await running;
      c.close();
      const again = await startServer({ dir: s.dir });
      try {
        const c2 = createClient({ url: `${again.url}/db/a/`, authToken: s.adminToken! });
        assert.equal(Number((await c2.execute("SELECT count(*) AS n FROM t")).rows[0]!.n), 1);
        c2.close();
      } finally {
        await again.stop();
      }
    } finally {
      await s.stop("SIGKILL");
    }
  });

  it("a statement that ends within the grace period lets the server shut down gracefully (exit code 0)", async () => {
    const s = await startServer({ args: ["--request-timeout", "1000", "--shutdown-timeout", "5000"] });
    try {
      await createDb(s, "a");
      const c = createClient({ url: `${s.url}/db/a/`, authToken: s.adminToken! });
      const running = c.execute(RUNAWAY).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await s.stop("SIGTERM"), 0);
      assert.equal(codeOf(await running), "STATEMENT_TIMEOUT");
      c.close();
    } finally {
      await s.stop("SIGKILL");
    }
  });
});

describe("one tenant's 10 s statement does not slow the others (worker threads)", () => {
  let s: ServerProc;
  let a: Client;
  let b: Client;
  before(async () => {
    s = await startServer({ args: ["--request-timeout", "10000", "--log-level", "warn"] });
    await createDb(s, "a");
    await createDb(s, "b");
    a = createClient({ url: `${s.url}/db/a/`, authToken: await token(s, "read-write", "a") });
    b = createClient({ url: `${s.url}/db/b/`, authToken: await token(s, "read-write", "b") });
    await b.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)");
    await b.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO kv SELECT i, 'v' || i FROM n");
  });
  after(async () => {
    a?.close();
    b?.close();
    await s?.stop();
  });

  it("keeps /health under 100 ms p99 and the other tenant's point reads within 2x of their unloaded p99", async () => {
    const p99 = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.ceil(xs.length * 0.99) - 1]!;
    const readB = async (): Promise<number> => {
      const t0 = performance.now();
      const r = await b.execute({ sql: "SELECT v FROM kv WHERE k = ?", args: [1 + Math.floor(Math.random() * 1000)] });
      assert.equal(r.rows.length, 1);
      return performance.now() - t0;
    };
    const sample = async (ms: number): Promise<{ health: number[]; reads: number[] }> => {
      const out = { health: [] as number[], reads: [] as number[] };
      const until = performance.now() + ms;
      while (performance.now() < until) {
        out.health.push(await health(s));
        out.reads.push(await readB());
      }
      return out;
    };
    for (let i = 0; i < 50; i++) await readB(); // warm the connection and the statement cache
    // Samples of the same length, so their p99s compare like with like.
    const unloaded = await sample(6000);
    const t0 = Date.now();
    const long = a.execute(RUNAWAY).then(
      () => "finished",
      (e: unknown) => codeOf(e),
    );
    await new Promise((r) => setTimeout(r, 300));
    const loaded = await sample(6000);
    assert.equal(await long, "STATEMENT_TIMEOUT");
    assert.ok(Date.now() - t0 >= 9_900, "the statement ran for its whole 10 s");
    const h99 = p99(loaded.health);
    const hu99 = p99(unloaded.health);
    const r99 = p99(loaded.reads);
    const u99 = p99(unloaded.reads);
    process.stdout.write(`# during the 10 s statement: /health p99 ${h99.toFixed(1)} ms (unloaded ${hu99.toFixed(1)} ms); b's point reads p99 ${r99.toFixed(1)} ms vs unloaded ${u99.toFixed(1)} ms (${loaded.reads.length} / ${unloaded.reads.length} reads)\n`);
    // 100 ms, unless the machine itself (other processes) does not answer /health that fast even
    // unloaded: then within 2x of that. Without workers /health would wait the whole 10 s.
    assert.ok(h99 < Math.max(100, 2 * hu99), `/health p99 ${h99.toFixed(1)} ms (unloaded ${hu99.toFixed(1)} ms)`);
    assert.ok(r99 <= 2 * u99, `b's point reads p99 ${r99.toFixed(1)} ms, unloaded ${u99.toFixed(1)} ms`);
  });
});

describe("server errors and locks", () => {
  it("storage errors reach database-token clients without the server's paths", () => {
    const e = new StorageError("STORE_TAMPERED", "/srv/selkie/databases/app.db.log: the commit record at 4096 fails authentication", "/srv/selkie/databases/app.db.log");
    const h = toHranaError(e);
    assert.equal(h.code, "STORE_TAMPERED");
    assert.doesNotMatch(h.message, /\/srv/);
    assert.match(h.message, /app\.db\.log: the commit record/);
    assert.equal(clientMessage("near \"/\": syntax error"), "near \"/\": syntax error");
  });

  it("a lock left by a process that exited but is not reaped yet (a zombie) is taken over, not DB_LOCKED_BY_PROCESS", async () => {
    // sh starts a short child and replaces itself with sleep, which never reaps it: a zombie.
    const parent = spawn("sh", ["-c", "sleep 0.05 & echo $!; exec sleep 10"], { stdio: ["ignore", "pipe", "ignore"] });
    const pid = Number(await new Promise<string>((r) => parent.stdout!.once("data", (c: Buffer) => r(c.toString().trim()))));
    assert.ok(pid > 0);
    let state = "";
    for (let i = 0; i < 50 && state !== "Z"; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    }
    assert.equal(state, "Z", "the test needs a zombie");
    const db = path.join(tempDir("selkie-zombie-"), "app.db");
    fs.writeFileSync(`${db}.lock`, `${pid}\n`);
    acquireProcessLock(db);
    assert.equal(fs.readFileSync(`${db}.lock`, "utf8").trim(), String(process.pid));
    releaseProcessLock(db);
    parent.kill("SIGKILL");
  });
});
