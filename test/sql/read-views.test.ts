// Two connections (two enclaves) over one sealed store: readers read a pinned view of the last
// commit and never block a writer (runtime/host/server/hrana/ISOLATION.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { tempDir, openDb } from "../helpers.js";

function pair() {
  const file = path.join(tempDir(), "views.db");
  const a = openDb(file);
  const b = openDb(file);
  a.exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1)");
  return { a, b, file };
}

const count = (db: ReturnType<typeof openDb>) => db.query<{ n: number }>("SELECT count(*) AS n FROM t")[0]!.n;

test("a read transaction keeps one snapshot while another connection commits, and the writer is not blocked by it", () => {
  const { a, b } = pair();
  b.exec("BEGIN");
  assert.equal(count(b), 1);
  a.exec("INSERT INTO t VALUES (2)"); // the commit needs EXCLUSIVE while b holds SHARED
  a.exec("BEGIN; INSERT INTO t SELECT x + 10 FROM t; COMMIT");
  assert.equal(count(a), 4);
  assert.equal(count(b), 1, "b still reads the commit its transaction started at");
  assert.deepEqual(b.query("SELECT x FROM t ORDER BY x"), [{ x: 1 }]);
  b.exec("COMMIT");
  assert.equal(count(b), 4, "a new transaction sees every commit");
  a.close();
  b.close();
});

test("a read transaction that writes after another connection committed gets SQLITE_BUSY, flagged as a stale view", () => {
  const { a, b } = pair();
  b.exec("BEGIN");
  assert.equal(count(b), 1);
  a.exec("INSERT INTO t VALUES (2)");
  assert.throws(() => b.run("INSERT INTO t VALUES (3)"), { code: "SQLITE_BUSY" });
  assert.equal(b.takeStaleView(), true);
  assert.equal(b.takeStaleView(), false, "the flag clears when read");
  b.exec("ROLLBACK");
  b.run("INSERT INTO t VALUES (3)");
  assert.deepEqual(a.query("SELECT x FROM t ORDER BY x"), [{ x: 1 }, { x: 2 }, { x: 3 }], "no commit was lost");
  a.close();
  b.close();
});

test("a second writer is busy while the first holds the write lock, and not flagged stale", () => {
  const { a, b } = pair();
  a.exec("BEGIN IMMEDIATE");
  a.run("INSERT INTO t VALUES (2)");
  assert.throws(() => b.run("INSERT INTO t VALUES (3)"), { code: "SQLITE_BUSY" });
  assert.equal(b.takeStaleView(), false);
  assert.equal(count(b), 1, "b reads the last commit, not a's pending write");
  a.exec("COMMIT");
  b.run("INSERT INTO t VALUES (3)");
  assert.equal(count(a), 3);
  a.close();
  b.close();
});

test("a view still reads its blocks after many commits rewrote and compacted the store, and they survive a reopen", () => {
  const { a, b, file } = pair();
  a.exec("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)");
  for (let i = 0; i < 40; i++) a.run("INSERT INTO big(v) VALUES (randomblob(3000))");
  b.exec("BEGIN");
  const before = b.query<{ h: string }>("SELECT group_concat(hex(substr(v, 1, 8)), ',') AS h FROM big")[0]!.h;
  for (let round = 0; round < 10; round++) a.exec("UPDATE big SET v = randomblob(3000); DELETE FROM big WHERE id % 7 = " + String(round % 7));
  a.exec("VACUUM");
  const again = b.query<{ h: string }>("SELECT group_concat(hex(substr(v, 1, 8)), ',') AS h FROM big")[0]!.h;
  assert.equal(again, before);
  assert.deepEqual(b.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  b.exec("COMMIT");
  const now = a.query<{ n: number }>("SELECT count(*) AS n FROM big")[0]!.n;
  assert.equal(b.query<{ n: number }>("SELECT count(*) AS n FROM big")[0]!.n, now);
  a.close();
  b.close();
  const c = openDb(file);
  assert.equal(c.query<{ n: number }>("SELECT count(*) AS n FROM big")[0]!.n, now);
  assert.deepEqual(c.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  c.close();
});
