/**
 * Model-based test of a database's enclave through its whole paging and snapshot life (runtime/sql/
 * database.ts over the pager and the image store) with fast-check's command model: inserts and
 * transactions, hibernation (paged out) and wake (the next statement), durable snapshots (full or
 * delta), restores from the newest snapshot, and an adversary who puts back an earlier snapshot
 * folder. The model is the list of committed rows.
 *
 * Properties: every query returns the model's rows whether the enclave was hibernated, woken or
 * restored (commits live in the sealed store, not in images); an older snapshot folder is refused
 * with a documented code (IMAGE_ROLLBACK...) or restores a connection that still reads the latest
 * rows. Each case boots a real SQLite enclave, so this model runs fewer cases than the others.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { Database } from "../../runtime/index.js";
import { SelkieError } from "../../runtime/errors.js";
import { Platform } from "../../runtime/platform/platform.js";
import { modelRuns, modelSeed, modelTempDir } from "./model-env.js";

const CODES = ["IMAGE_ROLLBACK", "IMAGE_TAMPERED", "IMAGE_MISSING"];

interface Model {
  rows: number[];
  /** Copies of the snapshot folder after each snapshot. */
  folders: string[];
}

interface Real {
  platform: Platform;
  file: string;
  images: string;
  db: Database;
  dir: string;
}

function checkRows(m: Model, r: Real, what: string): void {
  const got = r.db.query<{ x: number }>("SELECT x FROM t ORDER BY rowid").map((row) => row.x);
  assert.deepEqual(got, m.rows, `${what}: the rows committed so far`);
}

class Insert implements fc.Command<Model, Real> {
  constructor(readonly values: number[], readonly rollback: boolean) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    r.db.exec("BEGIN");
    for (const v of this.values) r.db.run("INSERT INTO t VALUES (?)", v);
    r.db.exec(this.rollback ? "ROLLBACK" : "COMMIT");
    if (!this.rollback) m.rows.push(...this.values);
    checkRows(m, r, this.toString());
  }
  toString = (): string => `insert(${this.values.join(",")}${this.rollback ? ", rolled back" : ""})`;
}

class Hibernate implements fc.Command<Model, Real> {
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    assert.equal(r.db.hibernate(), true, "an idle database hibernates");
    assert.equal(r.db.paging.state, "hibernated");
    checkRows(m, r, "hibernate, then a query wakes it");
    assert.equal(r.db.paging.state, "running");
  }
  toString = (): string => "hibernate";
}

class Snapshot implements fc.Command<Model, Real> {
  constructor(readonly full: boolean) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    r.db.snapshot(r.images, { full: this.full });
    const copy = path.join(r.dir, `folder${m.folders.length}`);
    fs.cpSync(r.images, copy, { recursive: true });
    m.folders.push(copy);
    checkRows(m, r, this.toString());
  }
  toString = (): string => `snapshot(${this.full ? "full" : "delta"})`;
}

class Restore implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>): boolean => m.folders.length > 0;
  run(m: Model, r: Real): void {
    r.db.close();
    r.db = Database.restore(r.file, r.images, { platform: r.platform });
    checkRows(m, r, "restore");
  }
  toString = (): string => "restore";
}

class ReplayFolder implements fc.Command<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.folders.length > 1;
  run(m: Model, r: Real): void {
    r.db.close();
    const now = path.join(r.dir, "now");
    fs.rmSync(now, { recursive: true, force: true });
    fs.renameSync(r.images, now);
    fs.cpSync(m.folders[this.pick % m.folders.length]!, r.images, { recursive: true });
    try {
      const db = Database.restore(r.file, r.images, { platform: r.platform });
      try {
        r.db = db;
        checkRows(m, r, `${this}: accepted, so it is the newest image and reads the latest rows`);
      } finally {
        db.close();
      }
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.ok(e instanceof SelkieError && CODES.includes(String(e.code)), `${this}: refused with a documented code, not ${String(e)}`);
    }
    fs.rmSync(r.images, { recursive: true, force: true });
    fs.renameSync(now, r.images);
    r.db = Database.restore(r.file, r.images, { platform: r.platform });
    checkRows(m, r, `${this}, then the real folder back`);
  }
  toString = (): string => `replayFolder(${this.pick})`;
}

const commands = [
  fc.tuple(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 3 }), fc.boolean()).map(([v, rb]) => new Insert(v, rb)),
  fc.constant(new Hibernate()),
  fc.boolean().map((full) => new Snapshot(full)),
  fc.constant(new Restore()),
  fc.nat().map((k) => new ReplayFolder(k)),
];

test("a database's enclave behaves as its model through hibernation, wakes, snapshots, restores and replays", { timeout: 600_000 }, async () => {
  const dir = modelTempDir("selkie-model-pager-");
  const platform = await Platform.create(path.join(dir, "platform"));
  let n = 0;
  try {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 10 }), (cmds) => {
        const cdir = path.join(dir, `case${n++}`);
        fs.mkdirSync(cdir);
        const file = path.join(cdir, "app.db");
        const real: Real = { platform, file, images: path.join(cdir, "images"), db: new Database(file, { platform }), dir: cdir };
        real.db.exec("CREATE TABLE t(x)");
        try {
          fc.modelRun(() => ({ model: { rows: [], folders: [] }, real }), cmds);
        } finally {
          try {
            real.db.close();
          } catch {
            // already closed by a failed command
          }
          fs.rmSync(cdir, { recursive: true, force: true });
        }
      }),
      { numRuns: modelRuns(4), ...(modelSeed() !== undefined ? { seed: modelSeed()! } : {}) },
    );
    console.log(`pager model: ${n} cases run`);
  } finally {
    platform.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
