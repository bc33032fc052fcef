/**
 * Snapshot images (runtime/enclave/snapshot/IMAGES.md): what goes in comes out, across full and delta
 * chains, growth, consolidation, reopening, both modes, and the page helpers the benchmark uses.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash, randomFillSync } from "node:crypto";
import { changedPagesByCompare, changedPagesByHash, ImageStore, pageHashes, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { SelkieError } from "../../runtime/errors.js";
import { rng, tempDir, testPlatform } from "../helpers.js";
import { bindingOf, identity, imageSeqs, PAGE, snapshotOf, WASM_PAGE, Workload } from "./image-workload.js";

function durable(name: string, dir = tempDir("selkie-images-"), maxChain?: number): { store: ImageStore; dir: string; reopen: () => ImageStore } {
  const id = identity(name);
  const o = { services: testPlatform.servicesFor(id), binding: bindingOf(id, testPlatform.platformId), ...(maxChain ? { maxChain } : {}) };
  return { store: ImageStore.openDurable(dir, o), dir, reopen: () => ImageStore.openDurable(dir, o) };
}

function assertState(got: { memory: Uint8Array; globals: unknown; runtime: unknown }, want: SnapshotState, what: string): void {
  assert.equal(got.memory.length, want.memory.length, `${what}: memory size`);
  assert.ok(Buffer.from(got.memory).equals(Buffer.from(want.memory)), `${what}: memory bytes`);
  assert.deepStrictEqual(got.globals, want.globals, `${what}: globals`);
  assert.deepStrictEqual(got.runtime, want.runtime, `${what}: runtime state`);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SelkieError, `a typed error, not ${String(e)}`);
    return e.code;
  }
  return "(no error)";
}

for (const seed of [11, 12]) {
  test(`a durable chain of random page changes and memory growth reads back exactly after every write and every reopen (seed ${seed})`, () => {
    const { store, dir, reopen } = durable(`chain-${seed}`, undefined, 4);
    const w = new Workload(seed, 3, 12);
    const pick = rng(seed * 31);
    let s = store;
    let fulls = 0;
    let seq = 0;
    let reopened = false;
    for (let i = 0; i < 40; i++) {
      const want = snapshotOf(w.next());
      const info = s.write(want, { full: pick() < 0.1 });
      seq += reopened ? 2 : 1; // a reopened store burns one seq before it writes (IMAGES.md "Single-use values")
      reopened = false;
      assert.equal(info.seq, seq);
      assert.ok(info.chainLength >= 1 && info.chainLength <= 4, `chain length ${info.chainLength} within maxChain`);
      assert.equal(info.kind === "full", info.chainLength === 1);
      assert.equal(info.memoryBytes, want.memory.length);
      if (info.kind === "full") fulls++;
      const onDisk = imageSeqs(dir);
      assert.equal(onDisk.length, info.chainLength, "only the newest chain is on disk");
      assert.equal(onDisk[onDisk.length - 1], info.seq);
      assertState(s.read(), want, `step ${w.step}`);
      if (pick() < 0.3) {
        s = reopen();
        reopened = true;
        assert.deepEqual(s.latest && { seq: s.latest.seq, kind: s.latest.kind }, { seq: info.seq, kind: info.kind });
        assertState(s.read(), want, `step ${w.step} after reopening`);
      }
    }
    assert.ok(fulls >= 10 && fulls < 40, `deltas and consolidations both happened (${fulls} full images)`);
    s.destroy();
  });
}

test("a volatile chain reads back exactly, and consolidates into a full image at maxChain", () => {
  const id = identity("volatile-chain");
  const store = ImageStore.volatile(path.join(tempDir(), "v"), { binding: bindingOf(id, testPlatform.platformId), maxChain: 3 });
  const w = new Workload(5, 2, 6);
  const kinds: string[] = [];
  for (let i = 0; i < 9; i++) {
    const want = snapshotOf(w.next());
    const info = store.write(want);
    kinds.push(`${info.kind}${info.chainLength}`);
    assertState(store.read(), want, `step ${w.step}`);
  }
  assert.deepEqual(kinds, ["full1", "delta2", "delta3", "full1", "delta2", "delta3", "full1", "delta2", "delta3"]);
  store.destroy();
});

test("a delta stores only the changed non-zero pages; a page that became zero is restored as zeros", () => {
  const { store } = durable("delta-pages");
  const mem = new Uint8Array(4 * WASM_PAGE);
  randomFillSync(mem);
  const base = { memory: mem, globals: [], runtime: {} };
  const full = store.write(base);
  assert.deepEqual([full.kind, full.storedPages, full.changedPages, full.totalPages], ["full", 64, 64, 64]);
  mem[5 * PAGE + 17]! ^= 0xff;
  mem.fill(0, 9 * PAGE, 10 * PAGE);
  mem[40 * PAGE]! ^= 1;
  const delta = store.write(base);
  assert.deepEqual([delta.kind, delta.changedPages, delta.storedPages], ["delta", 3, 2]);
  assert.ok(delta.fileBytes < 3 * PAGE + 2048, `the delta file is small (${delta.fileBytes} bytes)`);
  const garbage = new Uint8Array(mem.length).fill(0xaa);
  const r = store.read(() => garbage);
  assert.equal(r.memory, garbage, "restored into the caller's buffer");
  assert.ok(Buffer.from(r.memory).equals(Buffer.from(mem)), "every page, including the zeroed one, is exact");
  store.destroy();
});

test("zero pages are stored in no chunk, and a full image of zeros holds no page at all", () => {
  const { store } = durable("zeros");
  const mem = new Uint8Array(16 * WASM_PAGE);
  const info = store.write({ memory: mem, globals: [], runtime: {} });
  assert.deepEqual([info.storedPages, info.totalPages], [0, 256]);
  assert.ok(info.fileBytes < 16 * 1024, `${info.fileBytes} bytes for 1 MiB of zeros`);
  mem[123_456] = 9;
  const again = store.write({ memory: mem, globals: [], runtime: {} }, { full: true });
  assert.deepEqual([again.kind, again.storedPages], ["full", 1]);
  const r = store.read((n) => new Uint8Array(n).fill(7));
  assert.ok(Buffer.from(r.memory).equals(Buffer.from(mem)));
  store.destroy();
});

test("memory that shrank, or where more than half the pages changed, is written as a full image", () => {
  const { store } = durable("consolidate");
  const mem = new Uint8Array(8 * WASM_PAGE);
  randomFillSync(mem);
  store.write({ memory: mem, globals: [], runtime: {} });
  randomFillSync(mem.subarray(0, mem.length / 2 + PAGE));
  assert.equal(store.write({ memory: mem, globals: [], runtime: {} }).kind, "full", "more than half changed");
  mem[0]! ^= 1;
  assert.equal(store.write({ memory: mem, globals: [], runtime: {} }).kind, "delta");
  const smaller = mem.slice(0, 4 * WASM_PAGE);
  const info = store.write({ memory: smaller, globals: [], runtime: {} });
  assert.deepEqual([info.kind, info.memoryBytes], ["full", 4 * WASM_PAGE]);
  assert.ok(Buffer.from(store.read().memory).equals(Buffer.from(smaller)));
  store.destroy();
});

test("globals come back bit-exact (-0, NaN, i64 extremes, f32) and runtime state as plain data", () => {
  const { store, reopen } = durable("globals");
  const globals = [
    { name: "a", type: "i32" as const, value: -2147483648 },
    { name: "b", type: "i64" as const, value: -(2n ** 63n) },
    { name: "c", type: "i64" as const, value: 2n ** 63n - 1n },
    { name: "d", type: "f64" as const, value: -0 },
    { name: "e", type: "f64" as const, value: NaN },
    { name: "f", type: "f32" as const, value: Math.fround(3.1) },
    { name: "g", type: "f64" as const, value: Number.MIN_VALUE },
  ];
  const runtime = { sql: { db: 65536, stmts: [1, 2, 3], open: true, name: "orders", none: null }, big: 12345678901234567n, bytes: Buffer.from("xyz"), nested: [[{ a: [] }]] };
  store.write({ memory: new Uint8Array(WASM_PAGE), globals, runtime });
  for (const r of [store.read(), reopen().read()]) {
    assert.ok(Object.is(r.globals[3]!.value, -0), "-0 stays -0");
    assert.ok(Number.isNaN(r.globals[4]!.value));
    assert.deepStrictEqual(r.globals, globals);
    assert.deepStrictEqual(r.runtime, runtime);
  }
  store.destroy();
});

test("write() refuses states it cannot seal exactly, with a usage error naming the problem", () => {
  const { store } = durable("bad-state");
  const mem = new Uint8Array(WASM_PAGE);
  const bad: Array<[string, unknown]> = [
    ["memory not a multiple of 64 KiB", { memory: new Uint8Array(4096), globals: [], runtime: {} }],
    ["i64 given as a number", { memory: mem, globals: [{ name: "x", type: "i64", value: 1 }], runtime: {} }],
    ["i32 out of range", { memory: mem, globals: [{ name: "x", type: "i32", value: 2 ** 33 }], runtime: {} }],
    ["f32 not representable", { memory: mem, globals: [{ name: "x", type: "f32", value: 0.1 }], runtime: {} }],
    ["unknown type", { memory: mem, globals: [{ name: "x", type: "v128", value: 0 }], runtime: {} }],
    ["runtime not an object", { memory: mem, globals: [], runtime: [1] }],
    ["runtime with a bigint past 64 bits", { memory: mem, globals: [], runtime: { x: 2n ** 70n } }],
  ];
  for (const [what, state] of bad) assert.equal(codeOf(() => store.write(state as SnapshotState)), "IMAGE_BAD_STATE", what);
  assert.equal(store.latest, undefined, "nothing was written");
  assert.deepEqual(fs.readdirSync(store.dir), [], "and no file was left behind");
  store.destroy();
});

test("read() calls alloc after the image checked out and refuses a destination of the wrong size", () => {
  const { store } = durable("alloc");
  const mem = new Uint8Array(3 * WASM_PAGE).fill(5);
  store.write({ memory: mem, globals: [], runtime: {} });
  const asked: number[] = [];
  assert.equal(
    codeOf(() => store.read((n) => (asked.push(n), new Uint8Array(n - 1)))),
    "IMAGE_BAD_ALLOC",
  );
  assert.deepEqual(asked, [3 * WASM_PAGE]);
  assert.equal(codeOf(() => ImageStore.openDurable(tempDir(), { services: testPlatform.servicesFor(identity("alloc")), binding: bindingOf(identity("alloc"), testPlatform.platformId) }).read()), "IMAGE_MISSING");
  store.destroy();
});

test("a large memory round-trips through the helper thread: full image, delta and reopen", () => {
  const { store, reopen } = durable("large");
  const mem = new Uint8Array(24 * 1024 * 1024);
  for (let o = 0; o < mem.length; o += 65536) randomFillSync(mem, o, 65536);
  mem.fill(0, 5 * 1024 * 1024, 6 * 1024 * 1024);
  const state = { memory: mem, globals: [], runtime: {} };
  const full = store.write(state);
  assert.equal(full.storedPages, full.totalPages - 256, "the zeroed MiB is not stored");
  assertState(store.read(), state, "full");
  const r = rng(3);
  for (let i = 0; i < 500; i++) mem[Math.floor(r() * mem.length)]! ^= 1 + Math.floor(r() * 255);
  const delta = store.write(state);
  assert.equal(delta.kind, "delta");
  assert.ok(delta.changedPages > 400 && delta.changedPages <= 500);
  assertState(reopen().read(), state, "delta after reopening");
  store.destroy();
});

test("images hold no plaintext: memory and runtime markers are absent from every file", () => {
  const { store, dir } = durable("plaintext");
  const marker = Buffer.from("SELKIE-IMAGE-MARKER-5f1d");
  const mem = new Uint8Array(4 * WASM_PAGE);
  for (let o = 0; o + marker.length < mem.length; o += 1000) mem.set(marker, o);
  store.write({ memory: mem, globals: [{ name: "SELKIE-IMAGE-MARKER-g", type: "i32", value: 1 }], runtime: { note: marker.toString() } });
  mem.set(marker, 7);
  store.write({ memory: mem, globals: [], runtime: { note: marker.toString() } });
  const files = fs.readdirSync(dir);
  assert.equal(files.length, 2);
  for (const f of files) {
    const bytes = fs.readFileSync(path.join(dir, f));
    assert.equal(bytes.indexOf("SELKIE-IMAGE-MARKER"), -1, `${f} holds plaintext`);
  }
  store.destroy();
});

test("destroy() deletes the files and the folder, destroys the counter, and refuses later calls", () => {
  const id = identity("destroy");
  const services = testPlatform.servicesFor(id);
  const dir = path.join(tempDir(), "images");
  const store = ImageStore.openDurable(dir, { services, binding: bindingOf(id, testPlatform.platformId) });
  store.write({ memory: new Uint8Array(WASM_PAGE).fill(1), globals: [], runtime: {} });
  const counters = services.counters.list().length;
  store.destroy();
  assert.equal(fs.existsSync(dir), false);
  assert.equal(services.counters.list().length, counters - 1, "the lineage's counter is gone");
  assert.equal(store.latest, undefined);
  assert.equal(codeOf(() => store.read()), "IMAGE_STORE_DESTROYED");
  assert.equal(codeOf(() => store.write({ memory: new Uint8Array(WASM_PAGE), globals: [], runtime: {} })), "IMAGE_STORE_DESTROYED");
  const v = ImageStore.volatile(path.join(tempDir(), "vol"), { binding: bindingOf(id, testPlatform.platformId) });
  v.write({ memory: new Uint8Array(WASM_PAGE), globals: [], runtime: {} });
  v.destroy();
  assert.equal(fs.existsSync(v.dir), false);
});

test("pageHashes is SHA-256 of each page, and both diff helpers find exactly the changed and added pages", () => {
  for (const size of [2 * WASM_PAGE, 6 * 1024 * 1024]) {
    const mem = new Uint8Array(size);
    randomFillSync(mem);
    const h = pageHashes(mem);
    assert.equal(h.length, (size / PAGE) * 32);
    for (const p of [0, 1, size / PAGE - 1]) assert.ok(h.subarray(p * 32, p * 32 + 32).equals(createHash("sha256").update(mem.subarray(p * PAGE, (p + 1) * PAGE)).digest()), `page ${p}`);
    const prev = Uint8Array.from(mem);
    const r = rng(size);
    const want = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const p = Math.floor(r() * (size / PAGE));
      mem[p * PAGE + Math.floor(r() * PAGE)]! ^= 0x80;
      want.add(p);
    }
    const grown = new Uint8Array(size + WASM_PAGE);
    grown.set(mem);
    for (let p = size / PAGE; p < grown.length / PAGE; p++) want.add(p);
    const sorted = [...want].sort((a, b) => a - b);
    assert.deepEqual(changedPagesByHash(grown, h), sorted);
    assert.deepEqual(changedPagesByCompare(grown, prev), sorted);
  }
});
