import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { Database, EnclaveFault } from "../../runtime/index.js";
import { openDb, tempDir } from "../helpers.js";

/** Reaches into the running enclave the way a bug in guest code would: corrupts its stack pointer. */
function corruptStackPointer(db: Database): void {
  const enclave = (db as unknown as { _x: Record<string, unknown> })._x;
  (enclave.__stack_pointer as WebAssembly.Global).value = 0; // the next shadow-stack write traps
}

test("a trap in one connection keeps another connection's pending writes, and its commit is intact after reopen", () => {
  const file = path.join(tempDir(), "two.db");
  const a = openDb(file);
  const b = openDb(file);
  a.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  a.run("INSERT INTO t(v) VALUES (randomblob(100))");
  // A tiny page cache makes B spill its dirty pages into the shared store before COMMIT: the
  // pending writes the trap must not throw away.
  b.exec("PRAGMA cache_size=2");
  b.exec("BEGIN IMMEDIATE");
  for (let i = 0; i < 200; i++) b.run("INSERT INTO t(v) VALUES (randomblob(2000))");
  corruptStackPointer(a);
  assert.throws(() => a.query("SELECT count(*) AS n FROM t"), (e: unknown) => e instanceof EnclaveFault && e.code === "ENCLAVE_TRAPPED");
  for (let i = 0; i < 50; i++) b.run("INSERT INTO t(v) VALUES (randomblob(2000))");
  b.exec("COMMIT");
  assert.equal(b.query("SELECT count(*) AS n FROM t")[0]!.n, 251);
  assert.deepEqual(a.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }], "the restarted connection sees a sound database");
  a.close();
  b.close();
  const again = openDb(file);
  assert.deepEqual(again.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  assert.equal(again.query("SELECT count(*) AS n FROM t")[0]!.n, 251, "B's acknowledged commit is all there");
  again.close();
});

test("a trap in the connection that holds the write lock rolls back its own pending writes only", () => {
  const file = path.join(tempDir(), "own.db");
  const a = openDb(file);
  const b = openDb(file);
  a.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  a.run("INSERT INTO t(v) VALUES (randomblob(100))");
  a.exec("PRAGMA cache_size=2");
  a.exec("BEGIN IMMEDIATE");
  for (let i = 0; i < 200; i++) a.run("INSERT INTO t(v) VALUES (randomblob(2000))");
  corruptStackPointer(a);
  assert.throws(() => a.run("INSERT INTO t(v) VALUES (1)"), (e: unknown) => e instanceof EnclaveFault && e.code === "ENCLAVE_TRAPPED");
  assert.equal(b.query("SELECT count(*) AS n FROM t")[0]!.n, 1, "the trapped transaction left nothing behind");
  b.run("INSERT INTO t(v) VALUES (randomblob(10))");
  assert.deepEqual(b.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  a.close();
  b.close();
  const again = openDb(file);
  assert.equal(again.query("SELECT count(*) AS n FROM t")[0]!.n, 2);
  assert.deepEqual(again.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  again.close();
});

test("a second opener of an open database on another platform is refused as STORAGE_WRONG_PLATFORM, as a first open would be", async () => {
  const { Platform } = await import("../../runtime/platform/platform.js");
  const { SelkieError } = await import("../../runtime/index.js");
  const file = path.join(tempDir(), "shared.db");
  const owner = openDb(file);
  owner.exec("CREATE TABLE secret(x TEXT)");
  owner.run("INSERT INTO secret VALUES ('only for platform 1')");
  const other = await Platform.create(tempDir("selkie-other-platform-"));
  try {
    const wrong = (e: unknown): boolean => e instanceof SelkieError && e.code === "STORAGE_WRONG_PLATFORM" && /--platform/.test(e.message);
    assert.throws(() => new Database(file, { platform: other }), wrong, "refused while the store is open and shared");
    assert.throws(() => new Database(file, { platform: other, readonly: true }), wrong, "read-only too");
    assert.equal(owner.query("SELECT x FROM secret")[0]!.x, "only for platform 1", "the owner's connection is unaffected");
    const second = openDb(file);
    assert.equal(second.query("SELECT count(*) AS n FROM secret")[0]!.n, 1, "an opener on the right platform still shares the store");
    second.close();
    owner.close();
    assert.throws(() => new Database(file, { platform: other }), wrong, "and a first open says the same");
  } finally {
    other.close();
  }
});

test("closing one connection leaves another connection's open transaction and its pending writes alone", () => {
  const file = path.join(tempDir(), "close.db");
  const a = openDb(file);
  const b = openDb(file);
  a.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  b.exec("PRAGMA cache_size=2");
  b.exec("BEGIN IMMEDIATE");
  for (let i = 0; i < 200; i++) b.run("INSERT INTO t(v) VALUES (randomblob(2000))");
  a.close();
  b.exec("COMMIT");
  b.close();
  const again = openDb(file);
  assert.deepEqual(again.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  assert.equal(again.query("SELECT count(*) AS n FROM t")[0]!.n, 200);
  again.close();
});
