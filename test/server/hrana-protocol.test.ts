/**
 * Hrana over HTTP, request by request, with raw JSON (the parts @libsql/client does not reach):
 * batch conditions, sequence, describe, stored SQL, autocommit, batons, close.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { api, createDb, exec, pipeline, startServer, type ServerProc } from "./harness.js";

describe("Hrana pipeline protocol", () => {
  let s: ServerProc;
  let tok: string;
  before(async () => {
    s = await startServer();
    tok = s.adminToken!;
    await createDb(s, "app");
    const r = await pipeline(s, tok, [{ type: "sequence", sql: "CREATE TABLE t(x INTEGER, y TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');" }, { type: "close" }]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.results[0].type, "ok", r.text);
  });
  after(async () => assert.equal(await s.stop(), 0));

  it("answers the version probes of v2, v3 and v3-protobuf", async () => {
    for (const p of ["/v2", "/v3", "/db/app/v2", "/db/app/v3", "/v3-protobuf", "/db/app/v3-protobuf"]) assert.equal((await api(s, undefined, "GET", p)).status, 200, p);
    assert.equal((await api(s, undefined, "GET", "/v4")).status, 404);
  });

  it("executes on v2 and v3 with the spec's value encoding and result shape", async () => {
    for (const v of ["v2", "v3"] as const) {
      const r = await pipeline(s, tok, [exec("SELECT x, y, 1.5 AS f, x'ff' AS b, NULL AS n, 9223372036854775807 AS big FROM t ORDER BY x"), { type: "close" }], { v });
      assert.equal(r.status, 200);
      assert.equal(r.json.baton, null);
      const res = r.json.results[0].response.result;
      assert.deepEqual(res.cols.map((c: { name: string }) => c.name), ["x", "y", "f", "b", "n", "big"]);
      assert.deepEqual(res.rows[0], [
        { type: "integer", value: "1" },
        { type: "text", value: "a" },
        { type: "float", value: 1.5 },
        { type: "blob", base64: "/w==" },
        { type: "null" },
        { type: "integer", value: "9223372036854775807" },
      ]);
      assert.equal(res.affected_row_count, 0);
      assert.equal(r.json.results[1].response.type, "close");
    }
    const w = await pipeline(s, tok, [exec("INSERT INTO t VALUES (?, ?)", [3, "c"]), { type: "close" }]);
    assert.equal(w.json.results[0].response.result.affected_row_count, 1);
    assert.equal(w.json.results[0].response.result.last_insert_rowid, "3");
  });

  it("evaluates batch conditions: ok, error, not, and, or, is_autocommit", async () => {
    const steps = [
      { stmt: { sql: "BEGIN" } },
      { condition: { type: "ok", step: 0 }, stmt: { sql: "INSERT INTO t VALUES (10, 'batch')" } },
      { condition: { type: "ok", step: 1 }, stmt: { sql: "INSERT INTO nowhere VALUES (1)" } },
      { condition: { type: "error", step: 2 }, stmt: { sql: "SELECT 'saw error'" } },
      { condition: { type: "not", cond: { type: "is_autocommit" } }, stmt: { sql: "SELECT 'in tx'" } },
      { condition: { type: "and", conds: [{ type: "ok", step: 0 }, { type: "ok", step: 2 }] }, stmt: { sql: "SELECT 'skipped'" } },
      { condition: { type: "or", conds: [{ type: "ok", step: 2 }, { type: "ok", step: 3 }] }, stmt: { sql: "ROLLBACK" } },
      { condition: { type: "is_autocommit" }, stmt: { sql: "SELECT count(*) FROM t WHERE x = 10" } },
    ];
    const r = await pipeline(s, tok, [{ type: "batch", batch: { steps } }, { type: "close" }]);
    assert.equal(r.status, 200, r.text);
    const { step_results: res, step_errors: err } = r.json.results[0].response.result;
    assert.equal(res.length, 8);
    assert.ok(res[0] && res[1] && !res[2] && err[2] && res[3] && res[4] && !res[5] && !err[5] && res[6] && res[7]);
    assert.equal(err[2].code, "SQLITE_ERROR");
    assert.deepEqual(res[7].rows, [[{ type: "integer", value: "0" }]]);
  });

  it("stores SQL texts per stream, describes statements, reports autocommit", async () => {
    const r = await pipeline(s, tok, [
      { type: "store_sql", sql_id: 1, sql: "SELECT y FROM t WHERE x = ?" },
      { type: "execute", stmt: { sql_id: 1, args: [{ type: "integer", value: "2" }] } },
      { type: "store_sql", sql_id: 1, sql: "SELECT 1" },
      { type: "describe", sql: "SELECT x AS xx, y FROM t WHERE x = :k AND y = ?" },
      { type: "get_autocommit" },
      { type: "close_sql", sql_id: 1 },
      { type: "execute", stmt: { sql_id: 1 } },
      { type: "close" },
      { type: "get_autocommit" },
    ]);
    assert.equal(r.status, 200, r.text);
    const res = r.json.results;
    assert.deepEqual(res[1].response.result.rows, [[{ type: "text", value: "b" }]]);
    assert.equal(res[2].error.code, "SQL_ID_IN_USE");
    assert.deepEqual(res[3].response.result, {
      params: [{ name: ":k" }, { name: null }],
      cols: [
        { name: "xx", decltype: "INTEGER" },
        { name: "y", decltype: "TEXT" },
      ],
      is_explain: false,
      is_readonly: true,
    });
    assert.equal(res[4].response.is_autocommit, true);
    assert.equal(res[6].error.code, "SQL_ID_UNKNOWN");
    assert.equal(res[8].error.code, "STREAM_CLOSED");
    assert.equal(r.json.baton, null);
  });

  it("rotates the baton on every response and refuses a used one", async () => {
    const a = await pipeline(s, tok, [exec("BEGIN"), exec("INSERT INTO t VALUES (20, 'baton')")]);
    const b1 = a.json.baton as string;
    assert.match(b1, /^[A-Za-z0-9_-]{20,}$/);
    const b = await pipeline(s, tok, [{ type: "get_autocommit" }], { baton: b1 });
    assert.equal(b.json.results[0].response.is_autocommit, false);
    const b2 = b.json.baton as string;
    assert.notEqual(b2, b1);
    const reused = await pipeline(s, tok, [exec("COMMIT")], { baton: b1 });
    assert.equal(reused.status, 400);
    assert.equal(reused.json.code, "STREAM_EXPIRED");
    const c = await pipeline(s, tok, [exec("COMMIT"), { type: "close" }], { baton: b2 });
    assert.equal(c.json.results[0].type, "ok");
    const n = await pipeline(s, tok, [exec("SELECT count(*) FROM t WHERE x = 20"), { type: "close" }]);
    assert.deepEqual(n.json.results[0].response.result.rows, [[{ type: "integer", value: "1" }]]);
  });

  it("binds named arguments with or without their prefix, and honours want_rows", async () => {
    const r = await pipeline(s, tok, [
      { type: "execute", stmt: { sql: "SELECT :a, @b, $c", named_args: [{ name: ":a", value: { type: "integer", value: "1" } }, { name: "b", value: { type: "text", value: "x" } }, { name: "$c", value: { type: "null" } }] } },
      { type: "execute", stmt: { sql: "SELECT x FROM t", want_rows: false } },
      { type: "close" },
    ]);
    assert.deepEqual(r.json.results[0].response.result.rows, [[{ type: "integer", value: "1" }, { type: "text", value: "x" }, { type: "null" }]]);
    assert.deepEqual(r.json.results[1].response.result.rows, []);
  });

  it("rolls back a transaction left open when its stream is closed", async () => {
    const r = await pipeline(s, tok, [exec("BEGIN"), exec("INSERT INTO t VALUES (30, 'lost')"), { type: "close" }]);
    assert.equal(r.json.baton, null);
    const n = await pipeline(s, tok, [exec("SELECT count(*) FROM t WHERE x = 30"), { type: "get_autocommit" }, { type: "close" }]);
    assert.deepEqual(n.json.results[0].response.result.rows, [[{ type: "integer", value: "0" }]]);
    assert.equal(n.json.results[1].response.is_autocommit, true);
  });
});
