/**
 * Model-based test of the sealed page store (runtime/storage/page-store.ts) with fast-check's command
 * model: random writes, truncations, commits, rollbacks, reads, reopenings, commits that fail or crash
 * at a random I/O point (failed, short, full-disk writes, failed fsyncs; the store then loses its
 * handles as in kill -9), and adversarial replays of any earlier authentic state of its files. The
 * model is a plain buffer: the last acknowledged commit, and what the open transaction sees.
 *
 * Properties: reads always equal the model; an acknowledged commit survives every crash; a commit that
 * failed is all there or not at all after reopening; a replayed earlier file state is refused with a
 * StorageError or reads exactly the latest acknowledged state. Real files, real fsync, real platform.
 * SELKIE_MODEL_RUNS=10000 SELKIE_MODEL_TMP=/dev/shm for a long run (model-env.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { Platform } from "../../runtime/platform/platform.js";
import { BLOCK, PageStore, type StoreTrust } from "../../runtime/storage/page-store.js";
import { StorageError } from "../../runtime/storage/errors.js";
import type { Fault } from "../storage/faulty-files.js";
import { storeTrust } from "../storage/store-helpers.js";
import { CrashableFiles } from "./crashable-files.js";
import { modelRuns, modelSeed, modelTempDir } from "./model-env.js";

const MAX_BLOCKS = 8;

interface Model {
  committed: Buffer;
  pending: Buffer;
  history: Array<{ slots: Buffer; log: Buffer }>;
}

interface Real {
  files: CrashableFiles;
  trust: StoreTrust;
  path: string;
  store: PageStore;
}

function blockOf(b: number, fill: number): Buffer {
  const buf = Buffer.alloc(BLOCK, fill);
  buf.writeUInt32BE(b, 0);
  return buf;
}

function contentOf(s: PageStore): Buffer {
  const out = Buffer.alloc(s.size);
  for (let o = 0; o < s.size; o += BLOCK) s.read(out.subarray(o, Math.min(s.size, o + BLOCK)), o);
  return out;
}

function filesOf(r: Real): { slots: Buffer; log: Buffer } {
  return { slots: fs.readFileSync(r.path), log: fs.readFileSync(`${r.path}.log`) };
}

function remember(m: Model, r: Real): void {
  m.history.push(filesOf(r));
  if (m.history.length > 40) m.history.splice(1, 1);
}

function checkReads(m: Model, r: Real, what: string): void {
  assert.equal(r.store.size, m.pending.length, `${what}: size`);
  assert.ok(contentOf(r.store).equals(m.pending), `${what}: the store reads what the model holds`);
}

class Write implements fc.Command<Model, Real> {
  constructor(readonly block: number, readonly fill: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const b = Math.min(this.block, m.pending.length / BLOCK);
    r.store.write(blockOf(b, this.fill), b * BLOCK);
    if ((b + 1) * BLOCK > m.pending.length) m.pending = Buffer.concat([m.pending, Buffer.alloc(BLOCK)]);
    blockOf(b, this.fill).copy(m.pending, b * BLOCK);
    checkReads(m, r, this.toString());
  }
  toString(): string {
    return `write(${this.block}, ${this.fill})`;
  }
}

class Truncate implements fc.Command<Model, Real> {
  constructor(readonly blocks: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const n = Math.min(this.blocks, m.pending.length / BLOCK);
    r.store.truncate(n * BLOCK);
    m.pending = Buffer.from(m.pending.subarray(0, n * BLOCK));
    checkReads(m, r, this.toString());
  }
  toString(): string {
    return `truncate(${this.blocks})`;
  }
}

class Commit implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    r.store.commit();
    m.committed = Buffer.from(m.pending);
    remember(m, r);
    checkReads(m, r, "commit");
  }
  toString(): string {
    return "commit";
  }
}

class Rollback implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    r.store.rollback();
    m.pending = Buffer.from(m.committed);
    checkReads(m, r, "rollback");
  }
  toString(): string {
    return "rollback";
  }
}

/** Closes (dropping anything uncommitted) and opens again: the last acknowledged commit is there. */
class Reopen implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    r.store.close();
    r.store = PageStore.open(r.files, r.path, r.trust);
    m.pending = Buffer.from(m.committed);
    remember(m, r);
    checkReads(m, r, "reopen");
  }
  toString(): string {
    return "reopen";
  }
}

/**
 * A commit whose `after`-th I/O of the fault's kind fails, then a crash (every handle dropped) and a
 * reopen. Acknowledged: the new state must be there. Failed: the old or the new state, whole.
 */
class CrashingCommit implements fc.Command<Model, Real> {
  constructor(readonly fault: Fault, readonly after: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    r.files.arm(this.fault, this.after);
    let acked = false;
    try {
      r.store.commit();
      acked = true;
    } catch (e) {
      assert.ok(e instanceof StorageError, `a failed commit throws a StorageError, not ${String(e)}`);
    }
    r.files.crash();
    r.store = PageStore.open(r.files, r.path, r.trust);
    const got = contentOf(r.store);
    if (acked) assert.ok(got.equals(m.pending), `${this}: an acknowledged commit survived the crash`);
    else assert.ok(got.equals(m.committed) || got.equals(m.pending), `${this}: after a failed commit, the database is the old or the new state, whole`);
    m.committed = got;
    m.pending = Buffer.from(got);
    remember(m, r);
  }
  toString(): string {
    return `crashingCommit(${this.fault}, after ${this.after})`;
  }
}

/** The adversary puts back an earlier authentic state of both files; then the real files return. */
class Replay implements fc.Command<Model, Real> {
  constructor(readonly pick: number, readonly mix: boolean) {}
  check(m: Readonly<Model>): boolean {
    return m.history.length > 0;
  }
  run(m: Model, r: Real): void {
    r.store.close();
    const now = filesOf(r);
    const old = m.history[this.pick % m.history.length]!;
    // mix: an old log with the current slots (or the reverse), as a partial restore would leave.
    const slots = this.mix ? now.slots : old.slots;
    fs.writeFileSync(r.path, slots);
    fs.writeFileSync(`${r.path}.log`, old.log);
    try {
      const s = PageStore.open(r.files, r.path, r.trust, { readonly: true });
      try {
        assert.ok(contentOf(s).equals(m.committed), `${this}: a replayed state was accepted, so it must read the latest acknowledged commit`);
      } finally {
        s.close();
      }
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.ok(e instanceof StorageError, `${this}: refused with a StorageError, not ${String(e)}`);
    }
    fs.writeFileSync(r.path, now.slots);
    fs.writeFileSync(`${r.path}.log`, now.log);
    r.store = PageStore.open(r.files, r.path, r.trust);
    m.pending = Buffer.from(m.committed);
    checkReads(m, r, `${this}, then the real files back`);
  }
  toString(): string {
    return `replay(${this.pick}${this.mix ? ", with the current slots" : ""})`;
  }
}

const commands = [
  fc.tuple(fc.nat(MAX_BLOCKS - 1), fc.integer({ min: 1, max: 255 })).map(([b, f]) => new Write(b, f)),
  fc.nat(MAX_BLOCKS).map((n) => new Truncate(n)),
  fc.constant(new Commit()),
  fc.constant(new Commit()),
  fc.constant(new Rollback()),
  fc.constant(new Reopen()),
  fc.tuple(fc.constantFrom<Fault>("write-fails", "short-write", "fsync-fails", "disk-full"), fc.nat(6)).map(([f, n]) => new CrashingCommit(f, n)),
  fc.tuple(fc.nat(), fc.boolean()).map(([k, mix]) => new Replay(k, mix)),
];

test("the sealed page store behaves as its model under writes, commits, rollbacks, crashes and replays", async () => {
  const dir = modelTempDir("selkie-model-store-");
  const platform = await Platform.create(path.join(dir, "platform"));
  const trust = storeTrust(platform);
  let n = 0;
  try {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 30 }), (cmds) => {
        const files = new CrashableFiles();
        const file = path.join(dir, `db${n++}`);
        const real: Real = { files, trust, path: file, store: PageStore.create(files, file, trust) };
        const model: Model = { committed: Buffer.alloc(0), pending: Buffer.alloc(0), history: [] };
        remember(model, real);
        try {
          fc.modelRun(() => ({ model, real }), cmds);
        } finally {
          files.crash();
          for (const f of [file, `${file}.log`]) fs.rmSync(f, { force: true });
        }
      }),
      { numRuns: modelRuns(40), ...(modelSeed() !== undefined ? { seed: modelSeed()! } : {}) },
    );
    console.log(`page store model: ${n} cases run`);
  } finally {
    platform.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
