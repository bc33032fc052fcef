/**
 * The connection limits the server sets inside the enclave, through the local API: a deadline
 * (setDeadline) interrupts inside SQLite, a scope (setScope) refuses statements at prepare, both
 * survive an enclave restart, and recycle() gives grown memory back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { openDb, tempDir } from "../helpers.js";
import { SqlNotAuthorizedError, StatementTimeoutError, type Database } from "../../runtime/index.js";

const RUNAWAY = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c";

function fresh(name: string): Database {
  const db = openDb(path.join(tempDir(), name));
  db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
  return db;
}

test("setDeadline interrupts a runaway statement inside SQLite with STATEMENT_TIMEOUT; the database is unchanged and usable", () => {
  const db = fresh("deadline.db");
  db.setDeadline(Date.now() + 200);
  const t0 = Date.now();
  assert.throws(() => db.query(RUNAWAY), (e) => e instanceof StatementTimeoutError && e.code === "STATEMENT_TIMEOUT");
  assert.ok(Date.now() - t0 < 1500, `interrupted after ${Date.now() - t0} ms`);
  db.setDeadline(Date.now() + 200);
  assert.throws(() => db.run("INSERT INTO t SELECT i FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT i FROM c)"), StatementTimeoutError);
  db.setDeadline(undefined);
  assert.deepEqual(db.query("SELECT count(*) AS n FROM t"), [{ n: 1 }], "the interrupted INSERT left no row");
  db.run("INSERT INTO t VALUES (2)");
  assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  db.close();
});

test("setScope('read-only') refuses writes and settings at prepare, naming what was refused", () => {
  const db = fresh("scope.db");
  db.setScope("read-only");
  for (const [sql, what] of [
    ["INSERT INTO t VALUES (2)", /INSERT t/],
    ["PRAGMA hard_heap_limit = 100000", /PRAGMA hard_heap_limit = 100000/],
    ["ATTACH ':memory:' AS m", /ATTACH ':memory:'/],
    ["REINDEX", /REINDEX/],
    ["BEGIN IMMEDIATE", /write lock/],
  ] as const) {
    assert.throws(() => db.prepare(sql), (e) => e instanceof SqlNotAuthorizedError && e.scope === "read-only" && what.test(e.denied), sql);
  }
  assert.deepEqual(db.query("SELECT count(*) AS n FROM t"), [{ n: 1 }]);
  db.query("PRAGMA table_info(t)");
  db.setScope("all");
  db.run("INSERT INTO t VALUES (2)");
  db.close();
});

test("a scope survives an enclave restart (a trap) and a recycle", () => {
  const db = fresh("scope-restart.db");
  db.setScope("read-write");
  const sp = (db as unknown as { _x: Record<string, unknown> })._x.__stack_pointer as WebAssembly.Global;
  sp.value = 0; // the next call traps; the enclave restarts
  assert.throws(() => db.run("INSERT INTO t VALUES (2)"), { code: "ENCLAVE_TRAPPED" });
  assert.throws(() => db.exec("PRAGMA query_only = 1"), SqlNotAuthorizedError);
  assert.equal(db.recycle(), true);
  assert.throws(() => db.exec("PRAGMA foreign_keys = OFF"), SqlNotAuthorizedError);
  db.run("INSERT INTO t VALUES (3)");
  db.close();
});

test("recycle() gives back the memory a big query grew, between transactions only", () => {
  const db = fresh("recycle.db");
  const st = db.prepare("SELECT count(*) AS n FROM t");
  db.query("SELECT length(group_concat(hex(zeroblob(1000000)))) AS n FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT 8) SELECT i FROM c)");
  const grown = db.enclave.committedBytes;
  assert.ok(grown > 16 * 1024 * 1024, `grew to ${grown}`);
  db.exec("BEGIN");
  assert.equal(db.recycle(), false, "not inside a transaction");
  db.exec("COMMIT");
  assert.equal(db.recycle(), true);
  assert.ok(db.enclave.committedBytes < grown / 4, `${db.enclave.committedBytes} bytes after the recycle`);
  assert.deepEqual(st.get(), { n: 1 }, "statements prepared before re-prepare themselves");
  db.close();
});
