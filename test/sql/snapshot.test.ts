/**
 * Durable snapshots of a SQLite enclave (Database.snapshot / Database.restore): a restored
 * connection continues exactly where the image left it and sees every commit made after it; older,
 * foreign or damaged images are refused with typed errors; kill -9 during image writing never
 * leaves a database that cannot be restored, nor loses an acknowledged commit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database, Platform } from "../../runtime/index.js";
import { SelkieError } from "../../runtime/errors.js";
import { openDb, ROOT, rng, runUntilKilled, tempDir, testPlatform } from "../helpers.js";
import { outcome, workload } from "./workload.js";

const code = (c: string) => (e: unknown) => e instanceof SelkieError && e.code === c;

for (const seed of [31, 32]) {
  test(`seeded workload ${seed}: durable snapshots and restores at random points answer exactly as the uninterrupted original`, () => {
    const dir = tempDir();
    const ref = openDb(path.join(dir, "ref.db"), { paging: false });
    let sub = openDb(path.join(dir, "sub.db"));
    const images = path.join(dir, "sub.images");
    const r = rng(seed * 77);
    let restores = 0;
    try {
      workload(seed, 300).forEach((s, i) => {
        if (r() < 0.15 && !sub.inTransaction) {
          try {
            sub.snapshot(images);
          } catch (e) {
            if (!code("SNAPSHOT_BUSY")(e)) throw e;
            return;
          }
          sub.close();
          sub = Database.restore(path.join(dir, "sub.db"), images, { platform: testPlatform });
          restores++;
        }
        assert.equal(outcome(sub, s), outcome(ref, s), `step ${i}: ${s.sql}`);
      });
      assert.ok(restores >= 10, `restored ${restores} times`);
      assert.deepEqual(sub.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
    } finally {
      ref.close();
      sub.close();
    }
  });
}

test("a restore sees commits made after the snapshot, keeps the open transaction state, and later snapshots are deltas", () => {
  const dir = tempDir();
  const file = path.join(dir, "a.db");
  const images = path.join(dir, "a.images");
  let db = openDb(file);
  db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
  const first = db.snapshot(images);
  assert.equal(first.kind, "full");
  db.exec("INSERT INTO t VALUES (2)");
  db.close();
  db = Database.restore(file, images, { platform: testPlatform });
  assert.deepEqual(db.query("SELECT x FROM t ORDER BY x"), [{ x: 1 }, { x: 2 }], "the commit after the snapshot is there");
  db.exec("INSERT INTO t VALUES (3)");
  const second = db.snapshot(images);
  assert.equal(second.kind, "delta");
  assert.ok(second.changedPages < second.totalPages / 2, `a delta holds only changed pages (${second.changedPages} of ${second.totalPages})`);
  // Busy connections are not snapshotted.
  const it = db.prepare("SELECT x FROM t").iterate();
  it.next();
  assert.throws(() => db.snapshot(images), code("SNAPSHOT_BUSY"));
  it.return?.(undefined);
  db.close();
  db = Database.restore(file, images, { platform: testPlatform });
  assert.deepEqual(db.query("SELECT count(*) AS n FROM t"), [{ n: 3 }]);
  db.close();
});

test("an older image, another platform's, another database's or a damaged one is refused with a typed error; nothing is lost", async () => {
  const dir = tempDir();
  const file = path.join(dir, "a.db");
  const images = path.join(dir, "a.images");
  const db = openDb(file);
  db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
  db.snapshot(images, { full: true });
  const old = path.join(dir, "old.images");
  fs.cpSync(images, old, { recursive: true });
  db.exec("INSERT INTO t VALUES (2)");
  db.snapshot(images, { full: true });
  db.close();

  // Rollback: the older copy of the image folder.
  assert.throws(() => Database.restore(file, old, { platform: testPlatform }), code("IMAGE_ROLLBACK"));
  // Another platform cannot unseal it.
  const other = await Platform.create(tempDir("selkie-other-"));
  const otherFile = path.join(dir, "other.db");
  const o = new Database(otherFile, { platform: other });
  o.close();
  assert.throws(() => Database.restore(otherFile, images, { platform: other }), code("IMAGE_WRONG_PLATFORM"));
  other.close();
  // Another database on this platform: same enclave, but the image is of a.db (its instance binding),
  // refused by the image store before any memory is restored.
  const b = openDb(path.join(dir, "b.db"));
  b.close();
  assert.throws(() => Database.restore(path.join(dir, "b.db"), images, { platform: testPlatform }), code("IMAGE_WRONG_INSTANCE"));
  // Damaged: a flipped byte anywhere in the newest image file.
  const files = fs.readdirSync(images).map((f) => path.join(images, f)).filter((f) => fs.statSync(f).isFile() && fs.statSync(f).size > 65536);
  assert.ok(files.length >= 1);
  const f = files.sort()[files.length - 1]!;
  const orig = fs.readFileSync(f);
  for (const at of [10, Math.floor(orig.length / 3), orig.length - 5]) {
    const bad = Buffer.from(orig);
    bad[at]! ^= 1;
    fs.writeFileSync(f, bad);
    assert.throws(() => Database.restore(file, images, { platform: testPlatform }), code("IMAGE_TAMPERED"), `byte ${at}`);
  }
  fs.writeFileSync(f, orig.subarray(0, orig.length - 100));
  assert.throws(() => Database.restore(file, images, { platform: testPlatform }), code("IMAGE_TAMPERED"), "truncated");
  fs.writeFileSync(f, orig);
  const db2 = Database.restore(file, images, { platform: testPlatform });
  assert.deepEqual(db2.query("SELECT count(*) AS n FROM t"), [{ n: 2 }], "the intact image still restores; nothing was lost");
  db2.close();
});

const WRITER = path.join(ROOT, "dist", "test", "sql", "fixtures", "snapshot-writer.js");

async function runAndKill(platformDir: string, file: string, images: string, killAfterMs: number): Promise<{ commit: number; snap: number }> {
  const out = await runUntilKilled(WRITER, [platformDir, file, images], /^ready$/m, killAfterMs);
  const last = (re: RegExp) => Math.max(0, ...[...out.matchAll(re)].map((m) => Number(m[1])));
  // "snap N" also means N rows were committed (the writer's first line counts the rows already there).
  return { commit: last(/^(?:commit|snap) (\d+)$/gm), snap: last(/^snap (\d+)$/gm) };
}

test("kill -9 during image writing: the newest complete image always restores and no acknowledged commit is lost (8 kills)", { timeout: 120_000 }, async () => {
  const platformDir = tempDir("selkie-snapcrash-");
  (await Platform.create(platformDir)).close();
  const dir = tempDir();
  const file = path.join(dir, "c.db");
  const images = path.join(dir, "c.images");
  const r = rng(99);
  for (let trial = 0; trial < 8; trial++) {
    const acked = await runAndKill(platformDir, file, images, 40 + Math.floor(r() * 250));
    const platform = await Platform.open(platformDir);
    try {
      const db = Database.restore(file, images, { platform });
      try {
        const n = db.query<{ n: number; m: number | null }>("SELECT count(*) AS n, max(id) AS m FROM t")[0]!;
        assert.ok(n.n >= acked.commit && n.n <= acked.commit + 1, `trial ${trial}: ${n.n} rows, ${acked.commit} acknowledged`);
        assert.equal(n.m ?? 0, n.n, "rows are whole and in order");
        assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
      } finally {
        db.close();
      }
    } finally {
      platform.close();
    }
  }
});
