/**
 * Bad input at every endpoint of a spawned `selkie serve`: each case gets the right 4xx (or 5xx for
 * limits) with a JSON {message, code}, and after each one the server still serves and every row
 * written before is still there.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createClient } from "@libsql/client";
import { cli } from "../helpers.js";
import { readCaCertificate, verifyQuote } from "../../runtime/platform/index.js";
import { api, createDb, exec, pipeline, startServer, type ServerProc } from "./harness.js";

const ROWS = 5;

describe("selkie serve refuses bad input and keeps serving", () => {
  let s: ServerProc;
  let tok: string;
  let expected = ROWS;

  /** The server answers, and nothing written before is lost. */
  const intact = async (): Promise<void> => {
    const r = await pipeline(s, tok, [exec("SELECT count(*), sum(x) FROM t"), { type: "close" }]);
    assert.equal(r.status, 200, r.text);
    const row = r.json.results[0].response.result.rows[0];
    assert.equal(row[0].value, String(expected), "rows were lost or added");
    assert.equal(s.proc.exitCode, null);
  };
  const refused = (r: { status: number; json: any; headers: Headers }, status: number, code: string): void => {
    assert.equal(r.status, status, JSON.stringify(r.json));
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(r.json.code, code);
    assert.equal(typeof r.json.message, "string");
    assert.ok(r.json.message.length > 10);
  };

  before(async () => {
    s = await startServer({ args: ["--max-body", "65536", "--max-sql", "4096", "--max-rows", "100", "--stream-idle", "400", "--max-concurrent", "2", "--connections-per-db", "1"] });
    tok = s.adminToken!;
    await createDb(s, "app");
    await createDb(s, "other");
    const r = await pipeline(s, tok, [{ type: "sequence", sql: "CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e');" }, { type: "close" }]);
    assert.equal(r.json.results[0].type, "ok", r.text);
  });
  after(async () => assert.equal(await s.stop(), 0));

  it("malformed JSON gets 400 BAD_JSON", async () => {
    refused(await api(s, tok, "POST", "/db/app/v2/pipeline", "{not json"), 400, "BAD_JSON");
    refused(await api(s, tok, "POST", "/v1/databases", "{\"name\":"), 400, "BAD_JSON");
    refused(await api(s, tok, "POST", "/db/app/v2/pipeline", new Uint8Array([0xff, 0xfe, 0x00])), 400, "BAD_JSON");
    await intact();
  });

  it("wrong types get 400 HRANA_PROTO_ERROR naming the field", async () => {
    const bodies: unknown[] = [
      [],
      { requests: "x" },
      { baton: 5, requests: [] },
      { requests: [{ type: "execute", stmt: { sql: 5 } }] },
      { requests: [{ type: "execute", stmt: { sql: "SELECT ?", args: [{ type: "integer", value: "abc" }] } }] },
      { requests: [{ type: "execute", stmt: { sql: "SELECT ?", args: [{ type: "integer", value: "9223372036854775808" }] } }] },
      { requests: [{ type: "execute", stmt: { sql: "SELECT ?", args: [{ type: "float", value: "1" }] } }] },
      { requests: [{ type: "execute", stmt: { sql: "SELECT ?", args: [{ type: "blob", base64: "!!" }] } }] },
      { requests: [{ type: "execute", stmt: { sql: "SELECT 1", sql_id: 1 } }] },
      { requests: [{ type: "batch", batch: { steps: [{ condition: { type: "ok", step: 0 }, stmt: { sql: "SELECT 1" } }] } }] },
      { requests: [{ type: "batch", batch: { steps: [{ stmt: { sql: "SELECT 1" } }, { condition: { type: "nope" }, stmt: { sql: "SELECT 1" } }] } }] },
      { requests: [{ type: "open_cursor" }] },
      { requests: [{ type: "execute", stmt: { sql: "DELETE FROM t" } }, { type: "bogus" }] },
    ];
    for (const b of bodies) {
      const r = await api(s, tok, "POST", "/db/app/v2/pipeline", b);
      refused(r, 400, "HRANA_PROTO_ERROR");
    }
    await intact(); // the DELETE in the last body never ran: the whole body is checked first
  });

  it("huge bodies get 413, whether or not they declare their length", async () => {
    const big = JSON.stringify({ requests: [exec(`SELECT '${"x".repeat(100_000)}'`)] });
    refused(await api(s, tok, "POST", "/db/app/v2/pipeline", big), 413, "BODY_TOO_LARGE");
    const chunks = 40;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new Uint8Array(4096).fill(0x20));
        if (--(stream as unknown as { n: number }).n <= 0) c.close();
      },
    });
    (stream as unknown as { n: number }).n = chunks;
    const res = await fetch(`${s.url}/db/app/v2/pipeline`, { method: "POST", headers: { authorization: `Bearer ${tok}` }, body: stream, duplex: "half" } as RequestInit);
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { code: string }).code, "BODY_TOO_LARGE");
    await intact();
  });

  it("over-long SQL gets 400 SQL_TOO_LONG and runs nothing", async () => {
    const r = await pipeline(s, tok, [exec("DELETE FROM t"), exec(`SELECT 1 ${"-- pad\n".repeat(1000)}`)]);
    refused(r, 400, "SQL_TOO_LONG");
    await intact();
  });

  it("too many rows fail the statement with ROWS_LIMIT, and a RETURNING write is rolled back", async () => {
    const r = await pipeline(s, tok, [
      exec("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 500) SELECT n FROM c"),
      exec("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 100) SELECT n FROM c"),
      exec("INSERT INTO t(y) SELECT 'r' || value FROM json_each((SELECT json_group_array(n) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 200) SELECT n FROM c))) RETURNING x"),
      { type: "close" },
    ]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.results[0].error.code, "ROWS_LIMIT");
    assert.equal(r.json.results[1].response.result.rows.length, 100);
    assert.equal(r.json.results[2].error.code, "ROWS_LIMIT");
    await intact();
  });

  it("unknown routes get 404 and wrong methods 405", async () => {
    refused(await api(s, tok, "GET", "/nope"), 404, "NOT_FOUND");
    refused(await api(s, tok, "GET", "/db/app"), 404, "NOT_FOUND");
    refused(await api(s, tok, "POST", "/db/v2/pipeline", { requests: [] }), 404, "NOT_FOUND");
    refused(await api(s, tok, "GET", "/v1/nothing"), 404, "NOT_FOUND");
    const m = await api(s, tok, "GET", "/db/app/v2/pipeline");
    refused(m, 405, "METHOD_NOT_ALLOWED");
    assert.equal(m.headers.get("allow"), "POST");
    refused(await api(s, tok, "DELETE", "/v1/platform"), 405, "METHOD_NOT_ALLOWED");
    refused(await api(s, tok, "PUT", "/v1/databases"), 405, "METHOD_NOT_ALLOWED");
    refused(await api(s, tok, "POST", "/health"), 405, "METHOD_NOT_ALLOWED");
    refused(await api(s, tok, "POST", "/db/app/v2/cursor", { batch: { steps: [] } }), 404, "NOT_FOUND");
    refused(await api(s, tok, "POST", "/db/%E0%A4%A/v2/pipeline", { requests: [] }), 400, "BAD_PATH");
    await intact();
  });

  it("missing and wrong tokens get the same 401, with no hint", async () => {
    const body = { requests: [exec("DELETE FROM t")] };
    const answers = [
      await api(s, undefined, "POST", "/db/app/v2/pipeline", body),
      await api(s, "sk_wrong", "POST", "/db/app/v2/pipeline", body),
      await api(s, `${tok}x`, "POST", "/db/app/v2/pipeline", body),
      await api(s, undefined, "POST", "/db/app/v2/pipeline", body, { authorization: `Basic ${Buffer.from(`u:${tok}`).toString("base64")}` }),
      await api(s, "sk_wrong", "POST", "/db/missing/v2/pipeline", body),
      await api(s, "sk_wrong", "GET", "/v1/databases"),
      await api(s, undefined, "GET", "/metrics"),
    ];
    for (const r of answers) {
      refused(r, 401, "UNAUTHORIZED");
      assert.equal(r.text, answers[0]!.text);
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
    }
    await intact();
  });

  it("a read-only token reads, and gets 403 for any statement that writes", async () => {
    const ro = (await api(s, tok, "POST", "/v1/tokens", { scope: "read-only", db: "app" })).json.token as string;
    const ok = await pipeline(s, ro, [exec("SELECT count(*) FROM t"), { type: "close" }]);
    assert.equal(ok.status, 200);
    for (const reqs of [
      [exec("DELETE FROM t")],
      [exec("SELECT 1"), exec("INSERT INTO t(y) VALUES ('ro')")],
      [exec("BEGIN"), exec("UPDATE t SET y = 'ro'")],
      [{ type: "sequence", sql: "SELECT 1; DROP TABLE t" }],
      [{ type: "batch", batch: { steps: [{ stmt: { sql: "SELECT 1" } }, { stmt: { sql: "CREATE TABLE z(a)" } }] } }],
      [exec("PRAGMA user_version = 7")],
    ]) {
      refused(await pipeline(s, ro, reqs), 403, "READ_ONLY_TOKEN");
      await intact(); // also proves the stream's BEGIN was rolled back and the lease released
    }
    const client = createClient({ url: s.url, authToken: ro });
    await assert.rejects(client.execute("INSERT INTO t(y) VALUES ('c')"), (e: { code: string }) => e.code === "READ_ONLY_TOKEN");
    assert.equal((await client.execute("SELECT count(*) AS n FROM t")).rows[0]!.n, expected);
    client.close();
  });

  it("a database token is refused on other databases (403) and on the management API", async () => {
    const rw = (await api(s, tok, "POST", "/v1/tokens", { scope: "read-write", db: "app" })).json.token as string;
    refused(await pipeline(s, rw, [exec("SELECT 1")], { db: "other" }), 403, "TOKEN_SCOPE");
    refused(await pipeline(s, rw, [exec("SELECT 1")], { db: "nonexistent" }), 403, "TOKEN_SCOPE");
    refused(await api(s, rw, "GET", "/v1/databases"), 403, "ADMIN_REQUIRED");
    refused(await api(s, rw, "GET", "/metrics"), 403, "ADMIN_REQUIRED");
    const w = await pipeline(s, rw, [exec("INSERT INTO t(x, y) VALUES (6, 'rw')"), { type: "close" }], { db: "" });
    assert.equal(w.json.results[0].type, "ok", w.text);
    expected++;
    refused(await pipeline(s, tok, [exec("SELECT 1")], { db: "" }), 400, "NO_DATABASE");
    await intact();
  });

  it("unknown, forged and expired batons get 400 STREAM_EXPIRED; an expired transaction is rolled back", async () => {
    refused(await pipeline(s, tok, [exec("SELECT 1")], { baton: "forged-baton-value" }), 400, "STREAM_EXPIRED");
    const a = await pipeline(s, tok, [exec("BEGIN"), exec("DELETE FROM t")]);
    assert.ok(a.json.baton);
    // Another database's stream cannot use it either.
    refused(await pipeline(s, tok, [exec("COMMIT")], { baton: a.json.baton, db: "other" }), 400, "STREAM_EXPIRED");
    await new Promise((r) => setTimeout(r, 700)); // --stream-idle 400
    refused(await pipeline(s, tok, [exec("COMMIT")], { baton: a.json.baton }), 400, "STREAM_EXPIRED");
    await intact();
  });

  it("requests beyond the per-database queue get 503 DB_BUSY while a transaction holds the database's only connection", async () => {
    const a = await pipeline(s, tok, [exec("BEGIN"), exec("INSERT INTO t(x, y) VALUES (7, 'held')")]);
    const waiting = [1, 2].map(() => pipeline(s, tok, [exec("SELECT count(*) FROM t"), { type: "close" }]));
    // Until both are queued (a loaded machine may take a while to deliver them).
    for (let i = 0; i < 100 && (await api(s, tok, "GET", "/v1/databases/app")).json.waiting < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const busy = await pipeline(s, tok, [exec("SELECT 1"), { type: "close" }]);
    refused(busy, 503, "DB_BUSY");
    assert.equal(busy.headers.get("retry-after"), "1");
    const c = await pipeline(s, tok, [exec("COMMIT"), { type: "close" }], { baton: a.json.baton });
    assert.equal(c.json.results[0].type, "ok");
    expected++;
    for (const w of await Promise.all(waiting)) assert.equal(w.json.results[0].response.result.rows[0][0].value, String(expected));
    await intact();
  });

  it("management input is checked: names, duplicates, missing databases", async () => {
    refused(await api(s, tok, "POST", "/v1/databases", { name: "../evil" }), 400, "BAD_DB_NAME");
    refused(await api(s, tok, "POST", "/v1/databases", { name: "" }), 400, "BAD_DB_NAME");
    refused(await api(s, tok, "POST", "/v1/databases", { name: 7 }), 400, "BAD_REQUEST");
    refused(await api(s, tok, "POST", "/v1/databases", [1]), 400, "BAD_REQUEST");
    refused(await api(s, tok, "POST", "/v1/databases", { name: "app" }), 409, "DB_EXISTS");
    refused(await api(s, tok, "GET", "/v1/databases/missing"), 404, "DB_NOT_FOUND");
    refused(await api(s, tok, "DELETE", "/v1/databases/missing"), 404, "DB_NOT_FOUND");
    refused(await pipeline(s, tok, [exec("SELECT 1")], { db: "missing" }), 404, "DB_NOT_FOUND");
    refused(await pipeline(s, tok, [exec("SELECT 1")], { db: "bad name!" }), 400, "BAD_DB_NAME");
    refused(await api(s, tok, "POST", "/v1/tokens", { scope: "root" }), 400, "BAD_REQUEST");
    refused(await api(s, tok, "DELETE", "/v1/tokens/tok_nothing"), 404, "TOKEN_NOT_FOUND");
    refused(await api(s, tok, "POST", "/v1/platform/quote", { nonce: "abc" }), 400, "BAD_NONCE");
    refused(await api(s, tok, "POST", "/v1/enclaves", {}), 400, "BAD_MODULE");
    refused(await api(s, tok, "POST", "/v1/enclaves/nothing/ecall/f", { args: [] }), 404, "ENCLAVE_NOT_FOUND");
    const list = await api(s, tok, "GET", "/v1/databases");
    assert.deepEqual(list.json.databases.map((d: { name: string }) => d.name), ["app", "other"]);
    await intact();
  });

  it("deletes a database, closing it and revoking its tokens", async () => {
    await createDb(s, "gone");
    const t = (await api(s, tok, "POST", "/v1/tokens", { scope: "read-write", db: "gone" })).json.token as string;
    assert.equal((await pipeline(s, t, [exec("CREATE TABLE g(a)"), { type: "close" }], { db: "gone" })).json.results[0].type, "ok");
    const file = path.join(s.dir, "databases", "gone.db");
    const copy = [fs.readFileSync(file), fs.readFileSync(`${file}.log`)] as const;
    const d = await api(s, tok, "DELETE", "/v1/databases/gone");
    assert.equal(d.status, 200);
    assert.equal(d.json.revokedTokens, 1);
    refused(await pipeline(s, t, [exec("SELECT 1")], { db: "gone" }), 401, "UNAUTHORIZED");
    refused(await pipeline(s, tok, [exec("SELECT 1")], { db: "gone" }), 404, "DB_NOT_FOUND");
    // Its files copied back do not bring it back: deletion destroyed its counter.
    fs.writeFileSync(file, copy[0]);
    fs.writeFileSync(`${file}.log`, copy[1]);
    const back = await pipeline(s, tok, [exec("SELECT 1")], { db: "gone" });
    assert.ok(back.status >= 400, `a copied-back deleted database is refused (${back.status})`);
    assert.match(JSON.stringify(back.json), /STORAGE_DELETED/);
    fs.rmSync(file);
    fs.rmSync(`${file}.log`);
    await intact();
  });

  it("serves platform info, EPC usage and a quote that verifies against the platform's CA", async () => {
    const p = await api(s, tok, "GET", "/v1/platform");
    assert.equal(p.status, 200);
    assert.ok(p.json.epc.budget > 0 && p.json.epc.committed > 0);
    assert.ok(p.json.epc.enclaves.length >= 2);
    const nonce = "00112233445566778899aabbccddeeff";
    const q = await api(s, tok, "POST", "/v1/platform/quote", { nonce });
    assert.equal(q.status, 200, q.text);
    const v = verifyQuote(Buffer.from(q.json.quote, "base64"), {
      ca: readCaCertificate(path.join(s.dir, "platform", "dev-ca", "ca.cert")),
      allowDev: true,
      nonce: Buffer.from(nonce, "hex"),
      mrenclave: q.json.mrenclave,
    });
    assert.equal(Buffer.from(v.identity.mrenclave).toString("hex"), q.json.mrenclave);
    assert.equal(v.platformId, p.json.platform.platformId);
    const info = await api(s, tok, "GET", "/v1/databases/app");
    assert.equal(info.json.enclave.mrenclave, q.json.mrenclave);
  });

  it("serves Prometheus metrics to the admin", async () => {
    const m = await api(s, tok, "GET", "/metrics");
    assert.equal(m.status, 200);
    for (const name of ["selkie_http_requests_total", "selkie_http_request_duration_seconds_bucket", "selkie_enclaves_open", "selkie_epc_committed_bytes", "selkie_epc_budget_bytes", "selkie_hrana_streams_open"]) {
      assert.ok(m.text.includes(name), name);
    }
    assert.match(m.text, /selkie_errors_total\{code="BAD_JSON"\} \d+/);
    assert.match(m.text, /selkie_errors_total\{code="READ_ONLY_TOKEN"\} \d+/);
    assert.match(m.text, /selkie_http_requests_total\{route="hrana_pipeline",method="POST",status="200"\} \d+/);
  });

  it("token create and revoke from the CLI take effect on the running server", async () => {
    const c = cli(["token", "create", "--dir", s.dir, "--db", "app", "--read-only"]);
    assert.equal(c.status, 0, c.stderr);
    const t = c.stdout.trim();
    assert.equal((await pipeline(s, t, [exec("SELECT 1"), { type: "close" }])).status, 200);
    const id = /token (tok_[0-9a-f]+)/.exec(c.stderr)![1]!;
    const l = cli(["token", "list", "--dir", s.dir]);
    assert.match(l.stdout, new RegExp(`${id}\\tread-only\\tapp`));
    assert.doesNotMatch(l.stdout, /sk_/);
    assert.equal(cli(["token", "revoke", id, "--dir", s.dir]).status, 0);
    refused(await pipeline(s, t, [exec("SELECT 1")]), 401, "UNAUTHORIZED");
    assert.equal(cli(["token", "revoke", id, "--dir", s.dir]).status, 2);
    assert.equal(cli(["token", "create", "--dir", s.dir]).status, 2);
    await intact();
  });
});

describe("selkie serve request time limit", () => {
  it("a request waiting for a connection past --request-timeout gets 503 REQUEST_TIMEOUT", async () => {
    const s = await startServer({ args: ["--request-timeout", "1000", "--stream-idle", "8000", "--connections-per-db", "1"] });
    try {
      await createDb(s, "app");
      assert.equal((await pipeline(s, s.adminToken, [exec("CREATE TABLE t(x)"), { type: "close" }])).json.results[0].type, "ok");
      const a = await pipeline(s, s.adminToken, [exec("BEGIN"), exec("INSERT INTO t VALUES (1)")]);
      assert.ok(a.json.baton, a.text);
      const r = await pipeline(s, s.adminToken, [exec("SELECT count(*) FROM t")]);
      assert.equal(r.status, 503);
      assert.equal(r.json.code, "REQUEST_TIMEOUT");
      const c = await pipeline(s, s.adminToken, [exec("COMMIT"), { type: "close" }], { baton: a.json.baton });
      assert.equal(c.json.results[0].type, "ok");
      const n = await pipeline(s, s.adminToken, [exec("SELECT count(*) FROM t"), { type: "close" }]);
      assert.equal(n.json.results[0].response.result.rows[0][0].value, "1");
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });
});

describe("selkie serve EPC budget", () => {
  it("pages an idle database out to open another; while the other is busy it waits, then refuses with 503 at its deadline, leaving nothing behind", async () => {
    const s = await startServer({ args: ["--epc", "2MiB", "--request-timeout", "1500"] });
    try {
      await createDb(s, "a");
      // a is busy: a stream keeps a write transaction (and its lock) open.
      assert.equal((await pipeline(s, s.adminToken, [exec("CREATE TABLE t(x)"), { type: "close" }], { db: "a" })).json.results[0].type, "ok");
      const tx = await pipeline(s, s.adminToken, [exec("BEGIN"), exec("INSERT INTO t VALUES (1)")], { db: "a" });
      assert.ok(tx.json.baton, tx.text);
      const t0 = Date.now();
      const r = await api(s, s.adminToken, "POST", "/v1/databases", { name: "b" });
      assert.ok(Date.now() - t0 >= 1000, `waited ${Date.now() - t0} ms for a to leave its transaction`);
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.code, "EPC_ADMISSION_REFUSED");
      assert.match(r.json.message, /free of 2\.0 MiB/);
      const list = await api(s, s.adminToken, "GET", "/v1/databases");
      assert.deepEqual(list.json.databases.map((d: { name: string }) => d.name), ["a"]);
      const epc = await api(s, s.adminToken, "GET", "/v1/platform/epc");
      assert.equal(epc.json.budget, 2 * 1024 * 1024);
      assert.ok(epc.json.committed <= epc.json.budget);
      // Once a commits it is idle: b, waiting, is created by hibernating a.
      const creating = api(s, s.adminToken, "POST", "/v1/databases", { name: "b" });
      await new Promise((r) => setTimeout(r, 200));
      const c = await pipeline(s, s.adminToken, [exec("COMMIT"), { type: "close" }], { db: "a", baton: tx.json.baton });
      assert.equal(c.json.results[0].type, "ok");
      const created = await creating;
      assert.equal(created.status, 201, created.text);
      const a = await api(s, s.adminToken, "GET", "/v1/databases/a");
      assert.equal(a.json.paging.state, "hibernated");
      const n = await pipeline(s, s.adminToken, [exec("SELECT count(*) FROM t"), { type: "close" }], { db: "a" });
      assert.equal(n.json.results[0].response.result.rows[0][0].value, "1", "a wakes (b is paged out) with its commit");
      assert.equal((await api(s, s.adminToken, "DELETE", "/v1/databases/a")).status, 200);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it("a request to a hibernated database waits for EPC room while every resident one is in a transaction, then 503s at its deadline", async () => {
    // 3 MiB holds two SQLite enclaves: with a and b inside transactions, c cannot be woken.
    const s = await startServer({ args: ["--epc", "3MiB", "--request-timeout", "1500"] });
    try {
      for (const name of ["a", "b", "c"]) {
        await createDb(s, name);
        assert.equal((await pipeline(s, s.adminToken, [exec("CREATE TABLE t(x)"), { type: "close" }], { db: name })).json.results[0].type, "ok");
      }
      const open = async (name: string): Promise<string> => {
        const tx = await pipeline(s, s.adminToken, [exec("BEGIN"), exec("INSERT INTO t VALUES (1)")], { db: name });
        assert.ok(tx.json.baton, tx.text);
        return tx.json.baton as string;
      };
      const batonA = await open("a");
      const batonB = await open("b");
      assert.equal((await api(s, s.adminToken, "GET", "/v1/databases/c")).json.paging.state, "hibernated");

      // c waits; a's commit makes a idle, and c is woken in its place.
      const t0 = Date.now();
      const waiting = pipeline(s, s.adminToken, [exec("INSERT INTO t VALUES (3)"), exec("SELECT count(*) FROM t"), { type: "close" }], { db: "c" });
      await new Promise((r) => setTimeout(r, 300));
      const commit = await pipeline(s, s.adminToken, [exec("COMMIT"), { type: "close" }], { db: "a", baton: batonA });
      assert.equal(commit.json.results[0].type, "ok", commit.text);
      const c = await waiting;
      assert.equal(c.status, 200, c.text);
      assert.equal(c.json.results[1].response.result.rows[0][0].value, "1", c.text);
      assert.ok(Date.now() - t0 >= 250, "c was answered only once a left its transaction");

      // With b and (again) a in transactions and nothing leaving, the wait ends at the deadline.
      const batonA2 = await open("a");
      const t1 = Date.now();
      const refused = await pipeline(s, s.adminToken, [exec("INSERT INTO t VALUES (4)"), { type: "close" }], { db: "c" });
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.json.code, "EPC_ADMISSION_REFUSED", refused.text);
      assert.ok(Date.now() - t1 >= 1000, `waited ${Date.now() - t1} ms before refusing`);
      for (const [db, baton] of [["a", batonA2], ["b", batonB]] as const) {
        assert.equal((await pipeline(s, s.adminToken, [exec("COMMIT"), { type: "close" }], { db, baton })).json.results[0].type, "ok");
      }
      const counts = await Promise.all(["a", "b", "c"].map((db) => pipeline(s, s.adminToken, [exec("SELECT count(*) FROM t"), { type: "close" }], { db })));
      assert.deepEqual(counts.map((r) => r.json.results[0].response.result.rows[0][0].value), ["2", "1", "1"], "the refused insert left nothing");
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });
});
