import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { Database, EnclaveFault, SqliteError } from "../../runtime/index.js";
import { tempDir, openDb } from "../helpers.js";

/** Reaches into the running enclave the way a bug in guest code would: corrupts its stack pointer. */
function corruptStackPointer(db: Database): void {
  const enclave = (db as unknown as { _x: Record<string, unknown> })._x;
  const sp = enclave.__stack_pointer as WebAssembly.Global;
  sp.value = 0; // the next call that uses the shadow stack writes below address 0 and traps
}

test("an enclave at its EPC cap gets SQLITE_NOMEM, recovers, and stays consistent", () => {
  const file = path.join(tempDir(), "cap.db");
  const db = openDb(file, { epc: "4MiB" });
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
  db.run("INSERT INTO t(b) VALUES (randomblob(1000))");
  assert.throws(
    () => db.query("SELECT length(zeroblob(8000000) || randomblob(10)) AS n"),
    (e: unknown) => e instanceof SqliteError && (e.primaryCode === 7 || e.code === "SQLITE_TOOBIG"),
  );
  assert.throws(() => db.transaction(() => {
    db.run("INSERT INTO t(b) VALUES (randomblob(100))");
    db.run("INSERT INTO t(b) VALUES (zeroblob(6000000))");
  })(), (e: unknown) => e instanceof SqliteError && e.primaryCode === 7);
  assert.ok(db.enclave.peakBytes <= 4 * 1024 * 1024, "memory never exceeded the cap");
  assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 1, "the failed transaction left nothing behind");
  db.run("INSERT INTO t(b) VALUES (randomblob(1000))");
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 2, "and work continues");
  db.close();
});

test("a trap restarts the enclave cleanly: committed rows kept, the open transaction rolled back", () => {
  const file = path.join(tempDir(), "trap.db");
  const db = openDb(file);
  db.exec("CREATE TABLE t(x)");
  db.run("INSERT INTO t VALUES (1)");
  const sel = db.prepare("SELECT count(*) AS n FROM t");
  db.exec("BEGIN");
  db.run("INSERT INTO t VALUES (2)");
  corruptStackPointer(db);
  assert.throws(() => db.run("INSERT INTO t VALUES (3)"), (e: unknown) => e instanceof EnclaveFault && e.code === "ENCLAVE_TRAPPED" && /rolled back/.test(e.message));
  assert.equal(db.enclave.faults, 1);
  assert.equal(db.inTransaction, false);
  assert.deepEqual(sel.get(), { n: 1 }, "a statement prepared before the trap re-prepares itself");
  assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  db.run("INSERT INTO t VALUES (4)");
  db.close();
  const again = openDb(file);
  assert.deepEqual(again.query("SELECT x FROM t ORDER BY x").map((r) => r.x), [1, 4]);
  again.close();
});

test("a trap in the middle of a transaction() function rolls the transaction back", () => {
  const file = path.join(tempDir(), "trap2.db");
  const db = openDb(file);
  db.exec("CREATE TABLE t(x)");
  assert.throws(() => db.transaction(() => {
    for (let i = 0; i < 100; i++) db.run("INSERT INTO t VALUES (?)", i);
    corruptStackPointer(db);
    db.run("INSERT INTO t VALUES (-1)");
  })(), { code: "ENCLAVE_TRAPPED" });
  assert.deepEqual(db.query("SELECT count(*) AS n FROM t"), [{ n: 0 }]);
  db.close();
});

test("a huge statement is handled without crashing, and the database stays usable", () => {
  const db = openDb(path.join(tempDir(), "huge.db"));
  db.exec("CREATE TABLE t(x)");
  const values = Array.from({ length: 200_000 }, (_, i) => `(${i})`).join(",");
  db.exec(`INSERT INTO t VALUES ${values}`);
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 200_000);
  const deep = "SELECT " + "(".repeat(5000) + "1" + ")".repeat(5000);
  assert.throws(() => db.query(deep), (e: unknown) => e instanceof SqliteError);
  assert.throws(() => db.query("SELECT '" + "x".repeat(70 * 1024 * 1024) + "'"), (e: unknown) => e instanceof SqliteError && (e.primaryCode === 7 || e.primaryCode === 18));
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 200_000);
  db.close();
});
