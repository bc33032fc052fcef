import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { SelkieError } from "../../runtime/index.js";
import { openDb, tempDir } from "../helpers.js";
import { FaultyFiles, type Fault } from "./faulty-files.js";

const snapshot = (db: ReturnType<typeof openDb>) => JSON.stringify(db.query("SELECT id, v, hex(b) AS b FROM t ORDER BY id"));

for (const fault of ["write-fails", "short-write", "fsync-fails"] as Fault[]) {
  test(`a ${fault} fault at any point of a commit fails cleanly or commits whole; the database stays consistent and usable`, () => {
    for (let at = 0; at < 12; at++) {
      const files = new FaultyFiles();
      const file = path.join(tempDir(), "f.db");
      const db = openDb(file, { files });
      db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)");
      db.transaction(() => {
        for (let i = 0; i < 50; i++) db.run("INSERT INTO t(v, b) VALUES (?, randomblob(300))", `row ${i}`);
      })();
      const before = snapshot(db);
      files.arm(fault, at);
      let failed = false;
      try {
        db.transaction(() => {
          db.run("UPDATE t SET v = 'changed' WHERE id % 3 = 0");
          for (let i = 0; i < 30; i++) db.run("INSERT INTO t(v, b) VALUES ('new', randomblob(500))");
        })();
      } catch (e) {
        failed = true;
        assert.ok(e instanceof SelkieError, `${fault}@${at}: a typed error (${String(e)})`);
        assert.ok(/^(SQLITE_IOERR|SQLITE_FULL|STORAGE_)/.test(e.code), `${fault}@${at}: code ${e.code}`);
      }
      files.disarm();
      const after = snapshot(db);
      if (failed) assert.equal(after, before, `${fault}@${at}: a failed transaction left nothing behind`);
      else assert.match(after, /changed/, `${fault}@${at}: a transaction that returned is complete`);
      assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
      db.run("INSERT INTO t(v) VALUES ('usable')");
      const live = snapshot(db);
      db.close();
      const again = openDb(file);
      assert.equal(snapshot(again), live, `${fault}@${at}: what was committed is what reopens`);
      again.close();
    }
  });
}

test("a full disk fails the transaction with SQLITE_FULL, and work resumes once space is back", () => {
  const files = new FaultyFiles();
  const file = path.join(tempDir(), "full.db");
  const db = openDb(file, { files });
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)");
  db.run("INSERT INTO t(v) VALUES ('kept')");
  const before = snapshot(db);
  files.arm("disk-full", 0);
  assert.throws(() => db.transaction(() => {
    for (let i = 0; i < 20; i++) db.run("INSERT INTO t(v, b) VALUES ('lost', randomblob(1000))");
  })(), (e: unknown) => e instanceof SelkieError && (e.code === "SQLITE_FULL" || e.code === "STORAGE_IO") && /ENOSPC|full/i.test(e.message));
  assert.ok(files.fired > 0);
  // While the disk stays full, even a read may fail: SQLite must first roll back the failed
  // transaction, and that is a write. Once space is back, nothing of it remains.
  files.disarm();
  assert.equal(snapshot(db), before);
  db.run("INSERT INTO t(v) VALUES ('after')");
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 2);
  db.close();
});
