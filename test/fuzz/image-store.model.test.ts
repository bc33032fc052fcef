/**
 * Model-based test of the durable snapshot image store (runtime/enclave/snapshot/image-store.ts) with
 * fast-check's command model: full and delta images of a changing memory (pages rewritten, zeroed,
 * memory grown), reads, reopenings (each burns a counter value before its next write), and an
 * adversary who puts back any earlier authentic state of the whole folder, or of one image file. The
 * model is the last acknowledged state.
 *
 * Properties: read() returns exactly the last acknowledged state; a replayed folder or image is
 * refused with a documented SnapshotError code or reads exactly the last acknowledged state; after the
 * real folder is back, the lineage goes on.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { ImageStore, type DurableOptions, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { SnapshotError } from "../../runtime/errors.js";
import { Platform } from "../../runtime/platform/platform.js";
import { bindingOf, identity } from "../enclave/image-workload.js";
import { modelRuns, modelSeed, modelTempDir } from "./model-env.js";

const PAGE = 4096;
const WASM_PAGE = 65536;
const CODES = ["IMAGE_TAMPERED", "IMAGE_ROLLBACK", "IMAGE_WRONG_PLATFORM", "IMAGE_WRONG_ENCLAVE", "IMAGE_MISSING"];

type Folder = Map<string, Buffer>;

interface Model {
  latest: SnapshotState | undefined;
  writes: number;
  history: Folder[];
}

interface Real {
  dir: string;
  o: DurableOptions;
  store: ImageStore;
}

function folderOf(dir: string): Folder {
  return new Map(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f))]));
}

function putFolder(dir: string, f: Folder): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { force: true });
  for (const [name, bytes] of f) fs.writeFileSync(path.join(dir, name), bytes);
}

function same(got: { memory: Uint8Array; globals: unknown; runtime: unknown }, want: SnapshotState): boolean {
  const norm = (v: unknown): string => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));
  return Buffer.from(got.memory).equals(Buffer.from(want.memory)) && norm(got.globals) === norm(want.globals) && norm(got.runtime) === norm(want.runtime);
}

function checkRead(m: Model, r: Real, what: string): void {
  if (!m.latest) return;
  assert.ok(same(r.store.read(), m.latest), `${what}: read() returns the last acknowledged state`);
}

function remember(m: Model, r: Real): void {
  m.history.push(folderOf(r.dir));
  if (m.history.length > 24) m.history.splice(0, 1);
}

class Write implements fc.Command<Model, Real> {
  constructor(readonly full: boolean, readonly grow: boolean, readonly pages: Array<[number, number]>) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const prev = m.latest?.memory ?? new Uint8Array(WASM_PAGE);
    const memory = new Uint8Array(prev.length + (this.grow && prev.length < 4 * WASM_PAGE ? WASM_PAGE : 0));
    memory.set(prev);
    for (const [p, fill] of this.pages) {
      const at = (p % (memory.length / PAGE)) * PAGE;
      memory.fill(fill, at, at + PAGE);
      if (fill) memory[at] = m.writes & 0xff;
    }
    const n = ++m.writes;
    const state: SnapshotState = { memory, globals: [{ name: "n", type: "i32", value: n }, { name: "big", type: "i64", value: BigInt(n) << 40n }], runtime: { n, grow: this.grow } };
    r.store.write(state, { full: this.full });
    m.latest = { ...state, memory: new Uint8Array(memory) };
    remember(m, r);
    checkRead(m, r, this.toString());
  }
  toString = (): string => `write(${this.full ? "full" : "delta"}${this.grow ? ", grow" : ""}, pages ${this.pages.map(([p, f]) => `${p}=${f}`).join(" ")})`;
}

class Read implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>): boolean => m.latest !== undefined;
  run(m: Model, r: Real): void {
    checkRead(m, r, "read");
  }
  toString = (): string => "read";
}

class Reopen implements fc.Command<Model, Real> {
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    r.store = ImageStore.openDurable(r.dir, r.o);
    checkRead(m, r, "reopen");
  }
  toString = (): string => "reopen";
}

/** The adversary restores an earlier authentic folder, or only one earlier file over today's folder. */
class Replay implements fc.Command<Model, Real> {
  constructor(readonly pick: number, readonly oneFile: number | undefined) {}
  check = (m: Readonly<Model>): boolean => m.history.length > 1;
  run(m: Model, r: Real): void {
    const now = folderOf(r.dir);
    const old = m.history[this.pick % m.history.length]!;
    let planted: Folder = old;
    if (this.oneFile !== undefined && old.size) {
      const [name, bytes] = [...old][this.oneFile % old.size]!;
      planted = new Map(now).set(name, bytes);
    }
    putFolder(r.dir, planted);
    try {
      const got = ImageStore.openDurable(r.dir, r.o).read();
      assert.ok(m.latest && same(got, m.latest), `${this}: a replayed folder was accepted, so it must hold the last acknowledged state`);
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.ok(e instanceof SnapshotError && CODES.includes(e.code), `${this}: refused with a documented SnapshotError, not ${String(e)}`);
    }
    putFolder(r.dir, now);
    r.store = ImageStore.openDurable(r.dir, r.o);
    checkRead(m, r, `${this}, then the real folder back`);
  }
  toString = (): string => `replay(${this.pick}${this.oneFile !== undefined ? `, one file ${this.oneFile}` : ""})`;
}

const commands = [
  fc.tuple(fc.boolean(), fc.boolean(), fc.array(fc.tuple(fc.nat(63), fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 255 }))), { minLength: 1, maxLength: 4 }))
    .map(([full, grow, pages]) => new Write(full, grow, pages)),
  fc.tuple(fc.constant(false), fc.constant(false), fc.array(fc.tuple(fc.nat(63), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 2 }))
    .map(([full, grow, pages]) => new Write(full, grow, pages)),
  fc.constant(new Read()),
  fc.constant(new Reopen()),
  fc.tuple(fc.nat(), fc.option(fc.nat(), { nil: undefined })).map(([k, one]) => new Replay(k, one)),
];

test("the durable image store behaves as its model under full and delta writes, reopenings and replays", { timeout: 600_000 }, async () => {
  const dir = modelTempDir("selkie-model-images-");
  const platform = await Platform.create(path.join(dir, "platform"));
  const id = identity("model-images");
  const o: DurableOptions = { services: platform.servicesFor(id), binding: bindingOf(id, platform.platformId), maxChain: 3 };
  let n = 0;
  try {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 16 }), (cmds) => {
        const folder = path.join(dir, `images${n++}`);
        fs.mkdirSync(folder);
        const real: Real = { dir: folder, o, store: ImageStore.openDurable(folder, o) };
        try {
          fc.modelRun(() => ({ model: { latest: undefined, writes: 0, history: [folderOf(folder)] }, real }), cmds);
        } finally {
          try {
            ImageStore.openDurable(folder, o).destroy();
          } catch {
            // a lineage with no image has nothing to destroy
          }
          fs.rmSync(folder, { recursive: true, force: true });
        }
      }),
      { numRuns: modelRuns(25), ...(modelSeed() !== undefined ? { seed: modelSeed()! } : {}) },
    );
    console.log(`image store model: ${n} cases run`);
  } finally {
    platform.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
