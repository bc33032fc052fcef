// A database's connections in the server (db-host.ts, hrana/ISOLATION.md), driven directly over
// real enclaves and a real sealed store.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { DbHost } from "../../runtime/host/server/db-host.js";
import { openDb, tempDir } from "../helpers.js";

function host(): DbHost {
  const file = path.join(tempDir(), "h.db");
  const db = openDb(file);
  db.exec("CREATE TABLE t(x)");
  return new DbHost("h", db, () => openDb(file, { create: false }));
}

const soon = Date.now;
const settled = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setTimeout(r, 30));
  return done;
};

test("a stream in a transaction keeps its connection and the next stream gets another, up to the limit", async () => {
  const h = host();
  const [a, b, c] = [{}, {}, {}];
  const ca = await h.acquire(a, soon() + 5000, 10, 2);
  ca.db.exec("BEGIN; INSERT INTO t VALUES (1)");
  const cb = await h.acquire(b, soon() + 5000, 10, 2);
  assert.notEqual(cb, ca);
  assert.equal(h.connections, 2);
  assert.deepEqual(cb.db.query("SELECT count(*) AS n FROM t"), [{ n: 0 }], "the other connection reads the last commit");
  assert.equal(await h.acquire(a, soon() + 5000, 10, 2), ca, "the holder finds its own connection");
  const waiting = h.acquire(c, soon() + 5000, 10, 2);
  assert.equal(await settled(waiting), false, "at the limit a third stream waits");
  h.release(b);
  assert.equal(await waiting, cb);
  ca.db.exec("COMMIT");
  h.release(a);
  h.release(c);
  h.close();
});

test("acquireAll waits for every connection, closes the extra ones, and holds new requests until released", async () => {
  const h = host();
  const [a, b, q, later] = [{}, {}, {}, {}];
  const ca = await h.acquire(a, soon() + 5000, 10, 4);
  ca.db.exec("BEGIN; INSERT INTO t VALUES (1)");
  const cb = await h.acquire(b, soon() + 5000, 10, 4);
  cb.db.exec("BEGIN; SELECT * FROM t");
  const all = h.acquireAll(q, soon() + 5000);
  assert.equal(await settled(all), false, "it waits for the stream holding the primary");
  const queued = h.acquire(later, soon() + 5000, 10, 4);
  ca.db.exec("COMMIT");
  h.release(a);
  assert.equal(await settled(all), false, "and for the one holding the extra connection");
  cb.db.exec("COMMIT");
  h.release(b);
  const primary = await all;
  assert.equal(primary.db, h.db);
  assert.equal(h.connections, 1, "the extra connection was closed");
  assert.equal(await settled(queued), false, "nobody takes a connection while the database is quiesced");
  h.release(q);
  assert.equal((await queued).db, h.db);
  assert.deepEqual(h.db.query("SELECT count(*) AS n FROM t"), [{ n: 1 }]);
  h.release(later);
  h.close();
});

test("acquireAll gives up at its deadline holding nothing, and the database goes on", async () => {
  const h = host();
  const [a, b, q] = [{}, {}, {}];
  await h.acquire(a, soon() + 5000, 10, 4);
  const cb = await h.acquire(b, soon() + 5000, 10, 4);
  cb.db.exec("BEGIN; INSERT INTO t VALUES (2)");
  h.release(a);
  await assert.rejects(h.acquireAll(q, soon() + 150), { code: "REQUEST_TIMEOUT" });
  assert.equal(h.owns(q), false);
  const again = await h.acquire({}, soon() + 1000, 10, 4);
  assert.equal(again.db, h.db);
  cb.db.exec("COMMIT");
  h.release(b);
  h.close();
});
