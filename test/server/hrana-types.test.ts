/**
 * SQLite's storage classes, declared types and error codes survive the wire as sqld answers them
 * (issue 14, items 1-3), seen through the unmodified @libsql/client in each of its int modes and
 * through raw Hrana JSON.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient, type Client } from "@libsql/client";
import { createDb, pipeline, startServer, type ServerProc } from "./harness.js";

describe("Hrana values keep SQLite's storage class", () => {
  let s: ServerProc;
  const clients: Record<string, Client> = {};

  before(async () => {
    s = await startServer();
    await createDb(s, "types");
    for (const intMode of ["number", "bigint", "string"] as const) {
      clients[intMode] = createClient({ url: `${s.url}/db/types/`, authToken: s.adminToken!, intMode });
    }
    await clients.number!.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, r REAL, t TEXT, b BLOB, any_)");
  });
  after(async () => {
    for (const c of Object.values(clients)) c.close();
    await s?.stop();
  });

  it("binds a JavaScript number as REAL even when it is integral, as sqld does", async () => {
    for (const c of Object.values(clients)) {
      const rs = await c.execute({ sql: "SELECT typeof(?) AS a, typeof(?) AS b, typeof(?) AS c", args: [0, 3, 2.5] });
      assert.deepEqual([rs.rows[0]!.a, rs.rows[0]!.b, rs.rows[0]!.c], ["real", "real", "real"]);
    }
    const rs = await clients.bigint!.execute({ sql: "SELECT typeof(?) AS a", args: [7n] });
    assert.equal(rs.rows[0]!.a, "integer");
  });

  it("returns an integral REAL as a number in every int mode, and an INTEGER as that mode's type", async () => {
    const want = { number: [2, 2, -2023], bigint: [2, 2n, -2023], string: [2, "2", -2023] } as const;
    for (const [mode, c] of Object.entries(clients)) {
      const rs = await c.execute({ sql: "SELECT 2.0 AS f, 2 AS i, ? + 0 AS back", args: [-2023] });
      const row = rs.rows[0]!;
      assert.deepEqual([row.f, row.i, row.back], want[mode as keyof typeof want], `intMode ${mode}`);
    }
  });

  it("stores a Date as a number and reads it back as a number, not a bigint", async () => {
    const at = new Date("2026-12-04T05:00:00Z");
    await clients.bigint!.execute({ sql: "INSERT INTO m(id, r, any_) VALUES (1, ?, ?)", args: [1.0, at] });
    const rs = await clients.bigint!.execute("SELECT r, any_, typeof(r) AS tr, typeof(any_) AS ta FROM m WHERE id = 1");
    const row = rs.rows[0]!;
    assert.equal(row.r, 1);
    assert.equal(typeof row.r, "number");
    assert.equal(row.any_, at.getTime());
    assert.equal(typeof row.any_, "number");
    assert.deepEqual([row.tr, row.ta], ["real", "real"]);
  });

  it("carries +-Infinity both ways", async () => {
    const rs = await clients.number!.execute("SELECT 1e999 AS p, -1e999 AS n");
    assert.deepEqual([rs.rows[0]!.p, rs.rows[0]!.n], [Infinity, -Infinity]);
    // The client refuses to send Infinity; raw Hrana JSON can (1e999), and it binds as REAL.
    const body = '{"baton":null,"requests":[{"type":"execute","stmt":{"sql":"SELECT ? > 1e308 AS big, typeof(?) AS t","args":[{"type":"float","value":1e999},{"type":"float","value":-1e999}]}}]}';
    const res = await fetch(`${s.url}/db/types/v2/pipeline`, { method: "POST", headers: { authorization: `Bearer ${s.adminToken}`, "content-type": "application/json" }, body });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const rows = JSON.parse(text).results[0].response.result.rows;
    assert.deepEqual(rows[0], [{ type: "integer", value: "1" }, { type: "text", value: "real" }]);
  });

  it("answers declared column types in execute results (ResultSet.columnTypes)", async () => {
    const rs = await clients.number!.execute("SELECT id, r, t, b, any_, 1 + 1 AS expr FROM m");
    assert.deepEqual(rs.columnTypes, ["INTEGER", "REAL", "TEXT", "BLOB", "", ""]);
    const raw = await pipeline(s, s.adminToken, [{ type: "execute", stmt: { sql: "SELECT id, 1 AS e FROM m" } }], { db: "types" });
    assert.deepEqual(raw.json.results[0].response.result.cols, [
      { name: "id", decltype: "INTEGER" },
      { name: "e", decltype: null },
    ]);
  });

  it("reports SQLite's primary code as the error code, the extended one beside it, and sqld's multi-statement error", async () => {
    const c = clients.number!;
    await assert.rejects(c.execute("INSERT INTO m(id) VALUES (1)"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "SQLITE_CONSTRAINT");
      assert.match(e.message, /^SQLITE_CONSTRAINT: UNIQUE constraint failed: m\.id$/);
      return true;
    });
    await assert.rejects(c.execute("SELECT * FROM nowhere"), (e: Error & { code?: string }) => e.code === "SQLITE_ERROR" && /^SQLITE_ERROR: no such table: nowhere$/.test(e.message));
    await assert.rejects(c.execute("SELECT 1; SELECT 2"), (e: Error & { code?: string }) => e.code === "SQL_MANY_STATEMENTS" && /more than one statement/.test(e.message));
    const raw = await pipeline(s, s.adminToken, [{ type: "execute", stmt: { sql: "INSERT INTO m(id) VALUES (1)" } }], { db: "types" });
    const err = raw.json.results[0].error;
    assert.deepEqual(err, { message: "UNIQUE constraint failed: m.id", code: "SQLITE_CONSTRAINT", extended_code: "SQLITE_CONSTRAINT_PRIMARYKEY" });
  });
});
