/**
 * Snapshot images under attack (IMAGES.md "Checks", "Open and read"): every change an untrusted host
 * can make to the folder — flipped bytes, cut or extended files, swapped or spliced chunks, old images
 * put back, images deleted, images from another platform or enclave — is refused with a typed error,
 * and wrong bytes are never returned.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { randomFillSync } from "node:crypto";
import { ImageStore, type DurableOptions, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { SelkieError, SnapshotError } from "../../runtime/errors.js";
import { Platform } from "../../runtime/platform/platform.js";
import type { EnclaveServices } from "../../runtime/platform/services.js";
import { rng, tempDir, testPlatform } from "../helpers.js";
import { bindingOf, flipByte, identity, imagePath, imageSeqs, layoutOf, PAGE, snapshotOf, WASM_PAGE } from "./image-workload.js";

const CODES = ["IMAGE_TAMPERED", "IMAGE_ROLLBACK", "IMAGE_WRONG_PLATFORM", "IMAGE_WRONG_ENCLAVE", "IMAGE_VERSION_UNSUPPORTED", "IMAGE_MISSING"];

/** A durable lineage of three images on disk: 1 full (2 MiB, two chunks), 2 and 3 deltas. */
function lineage(name: string): { dir: string; o: DurableOptions; store: ImageStore; states: SnapshotState[] } {
  const id = identity(name);
  const o: DurableOptions = { services: testPlatform.servicesFor(id), binding: bindingOf(id, testPlatform.platformId) };
  const dir = tempDir("selkie-tamper-");
  const store = ImageStore.openDurable(dir, o);
  const mem = new Uint8Array(32 * WASM_PAGE);
  randomFillSync(mem);
  const states: SnapshotState[] = [];
  for (let seq = 1; seq <= 3; seq++) {
    if (seq > 1) for (let i = 0; i < 5; i++) mem[(seq * 40 + i * 7) * PAGE + i]! ^= 0x5a;
    const s = snapshotOf({ memory: mem, globals: [{ name: "g", type: "i32", value: seq }], runtime: { seq } });
    store.write(s);
    states.push(s);
  }
  return { dir, o, store, states };
}

/** The code a call throws (a SnapshotError with a known code), or "ok" with the state it returned. */
function outcome(fn: () => { memory: Uint8Array; globals: unknown; runtime: unknown }): { code: string; state?: { memory: Uint8Array; globals: unknown; runtime: unknown } } {
  try {
    return { code: "ok", state: fn() };
  } catch (e) {
    assert.ok(e instanceof SnapshotError, `a SnapshotError, not ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.ok(CODES.includes(e.code), `a known code, not ${e.code}`);
    return { code: e.code };
  }
}

function reopenAndRead(dir: string, o: DurableOptions): () => { memory: Uint8Array; globals: unknown; runtime: unknown } {
  return () => ImageStore.openDurable(dir, o).read();
}

/** Open file descriptors of this process (Linux), to show refused images leave none open. */
function openFds(): number {
  return fs.existsSync("/proc/self/fd") ? fs.readdirSync("/proc/self/fd").length : 0;
}

function sameState(got: { memory: Uint8Array; globals: unknown; runtime: unknown }, want: SnapshotState): boolean {
  return Buffer.from(got.memory).equals(Buffer.from(want.memory)) && JSON.stringify(got.runtime) === JSON.stringify(want.runtime);
}

/** Chunk sizes in pages of image seq of lineage(): the full image has two chunks of 256, deltas one of 5. */
const chunkPages = (seq: number): number[] => (seq === 1 ? [256, 256] : [5]);

test("every byte of the newest image's clear header, flipped, is refused on reopen with the code that names it", () => {
  const { dir, o, store } = lineage("flip-header");
  const file = imagePath(dir, 3);
  const { clear } = layoutOf(file, chunkPages(3));
  const seen = new Map<string, number[]>();
  for (let at = 0; at < clear; at++) {
    flipByte(file, at);
    const { code } = outcome(reopenAndRead(dir, o));
    flipByte(file, at);
    seen.set(code, [...(seen.get(code) ?? []), at]);
    if (at < 4) assert.equal(code, "IMAGE_TAMPERED", `magic byte ${at}`);
    else if (at === 4) assert.equal(code, "IMAGE_VERSION_UNSUPPORTED");
    else if (at < 68) assert.equal(code, "IMAGE_TAMPERED", `header byte ${at}`);
    else if (at >= 68 + 16 && at < 68 + 32) assert.equal(code, "IMAGE_WRONG_PLATFORM", `sealed key's platform tag, byte ${at}`);
    else if (at >= 68 + 32 && at < 68 + 64) assert.equal(code, "IMAGE_WRONG_ENCLAVE", `sealed key's MRENCLAVE, byte ${at}`);
    else assert.notEqual(code, "ok", `sealed key byte ${at}`);
  }
  assert.equal(seen.get("ok"), undefined);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "ok", "the restored file opens again");
  store.destroy();
});

test("flipped bytes in a parent's header, in any manifest, or in any chunk are refused; read() returns nothing and wipes its destination", () => {
  const { dir, o, store, states } = lineage("flip-body");
  const open = reopenAndRead(dir, o);
  for (let seq = 1; seq <= 3; seq++) {
    const file = imagePath(dir, seq);
    const l = layoutOf(file, chunkPages(seq));
    const spots: Array<[string, number]> = [];
    if (seq < 3) for (const at of [0, 8, 30, 50, 64, 70, l.clear - 1]) spots.push([`header byte ${at}`, at]);
    for (let i = 0; i < 24; i++) spots.push([`manifest byte ${i}`, l.manifest.at + Math.floor((i * (l.manifest.bytes - 1)) / 23)]);
    l.chunks.forEach((c, i) => {
      for (const at of [c.at, c.at + Math.floor(c.bytes / 2), c.at + c.bytes - 1]) spots.push([`chunk ${i} byte ${at - c.at}`, at]);
    });
    for (const [what, at] of spots) {
      flipByte(file, at, 0x40);
      let dest: Uint8Array | undefined;
      const reopened = outcome(() => ImageStore.openDurable(dir, o).read((n) => (dest = new Uint8Array(n).fill(0xee))));
      const same = outcome(() => store.read());
      flipByte(file, at, 0x40);
      assert.equal(reopened.code, "IMAGE_TAMPERED", `image ${seq}, ${what}, reopened`);
      assert.equal(same.code, "IMAGE_TAMPERED", `image ${seq}, ${what}, same store`);
      if (dest) assert.ok(dest.every((b) => b === 0), `image ${seq}, ${what}: the destination was wiped`);
    }
  }
  const r = open();
  assert.ok(sameState(r, states[2]!), "the repaired lineage reads back the newest state");
  store.destroy();
});

test("a cut or extended image file is refused, whichever image of the chain it is", () => {
  const { dir, o, store } = lineage("truncate");
  for (let seq = 1; seq <= 3; seq++) {
    const file = imagePath(dir, seq);
    const pristine = fs.readFileSync(file);
    const l = layoutOf(file, chunkPages(seq));
    const lengths = [0, 1, 67, 68, l.clear - 1, l.clear, l.chunks[0]!.at + 100, l.manifest.at, l.size - 1];
    for (const len of lengths) {
      fs.writeFileSync(file, pristine.subarray(0, len));
      assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", `image ${seq} cut to ${len} bytes`);
    }
    for (const extra of [1, 16, PAGE]) {
      fs.writeFileSync(file, Buffer.concat([pristine, Buffer.alloc(extra, 1)]));
      assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", `image ${seq} extended by ${extra} bytes`);
    }
    fs.writeFileSync(file, pristine);
  }
  assert.equal(outcome(reopenAndRead(dir, o)).code, "ok");
  store.destroy();
});

test("two chunks swapped, or a chunk spliced in from another image or from a write that was never counted, are refused", () => {
  const { dir, o, store, states } = lineage("splice");
  const full = imagePath(dir, 1);
  const pristine = fs.readFileSync(full);
  const [c0, c1] = layoutOf(full, chunkPages(1)).chunks as [{ at: number; bytes: number }, { at: number; bytes: number }];
  const swapped = Buffer.from(pristine);
  pristine.copy(swapped, c0.at, c1.at, c1.at + c1.bytes);
  pristine.copy(swapped, c1.at, c0.at, c0.at + c0.bytes);
  fs.writeFileSync(full, swapped);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", "chunks 0 and 1 swapped");
  fs.writeFileSync(full, pristine);

  // Another image of the same lineage with the same layout: a forced full image 4.
  const four = snapshotOf({ ...states[2]!, memory: states[2]!.memory.map((b) => b ^ 1), runtime: { seq: 4 } });
  store.write(four, { full: true });
  const f4 = imagePath(dir, 4);
  const l4 = layoutOf(f4, chunkPages(1));
  const other = Buffer.from(pristine.subarray(c0.at, c0.at + c0.bytes));
  const b4 = fs.readFileSync(f4);
  const spliced = Buffer.from(b4);
  other.copy(spliced, l4.chunks[0]!.at);
  fs.writeFileSync(f4, spliced);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", "chunk 0 of image 1 spliced into image 4");
  fs.writeFileSync(f4, b4);

  // A write that published image 6 and crashed before counting it (seq numbers are single-use, so
  // two counted writes never share a seq: IMAGES.md "Single-use values"). The host keeps that image and
  // drops it; the reopened store burns 6 and writes image 7. A chunk of the uncounted image 6, spliced
  // into image 7, is refused.
  const fail = { on: true };
  const crashing = ImageStore.openDurable(dir, { ...o, services: failingIncrements(o.services, fail, dir) });
  assert.throws(() => crashing.write(snapshotOf({ ...four, runtime: { seq: "uncounted" } }), { full: true }), (e: SelkieError) => e.code === "IMAGE_IO");
  const uncounted = Math.max(...imageSeqs(dir));
  const uncountedBytes = fs.readFileSync(imagePath(dir, uncounted));
  fs.rmSync(imagePath(dir, uncounted));
  const next = ImageStore.openDurable(dir, o).write(four, { full: true });
  assert.ok(next.seq > uncounted, "the uncounted image's seq is not used again");
  const real = fs.readFileSync(imagePath(dir, next.seq));
  const ln = layoutOf(imagePath(dir, next.seq), chunkPages(1));
  const mixed = Buffer.from(real);
  uncountedBytes.copy(mixed, ln.chunks[1]!.at, ln.chunks[1]!.at, ln.chunks[1]!.at + ln.chunks[1]!.bytes);
  assert.ok(!mixed.equals(real));
  fs.writeFileSync(imagePath(dir, next.seq), mixed);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", "chunk 1 of the uncounted write spliced in");
  fs.writeFileSync(imagePath(dir, next.seq), real);
  assert.ok(sameState(reopenAndRead(dir, o)(), four));
  store.destroy();
});

test("an older image copied over the newest, or the folder restored from an older copy, is a rollback", () => {
  const { dir, o, store } = lineage("rollback");
  const backup = tempDir("selkie-tamper-backup-");
  fs.cpSync(dir, backup, { recursive: true });
  const newest = fs.readFileSync(imagePath(dir, 3));
  fs.copyFileSync(imagePath(dir, 2), imagePath(dir, 3));
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_ROLLBACK", "image 2 in the place of image 3, reopened");
  assert.equal(outcome(() => store.read()).code, "IMAGE_ROLLBACK", "image 2 in the place of image 3, same store");
  fs.writeFileSync(imagePath(dir, 3), newest);
  store.write({ memory: new Uint8Array(WASM_PAGE), globals: [], runtime: { seq: 4 } });
  fs.rmSync(dir, { recursive: true });
  fs.cpSync(backup, dir, { recursive: true });
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_ROLLBACK", "the whole folder from before image 4");
});

test("a deleted newest image is a rollback, a deleted parent is missing, a replaced parent is tampering, and an emptied folder holds no image", () => {
  const { dir, o, store } = lineage("delete");
  const fds = openFds();
  const bytes = (seq: number): Buffer => fs.readFileSync(imagePath(dir, seq));
  const [b1, b2, b3] = [bytes(1), bytes(2), bytes(3)];
  fs.rmSync(imagePath(dir, 3));
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_ROLLBACK", "newest deleted");
  assert.equal(outcome(() => store.read()).code, "IMAGE_MISSING", "newest deleted, same store");
  fs.writeFileSync(imagePath(dir, 3), b3);
  fs.rmSync(imagePath(dir, 2));
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_MISSING", "parent deleted");
  fs.writeFileSync(imagePath(dir, 2), b3);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_TAMPERED", "parent replaced by another image");
  fs.writeFileSync(imagePath(dir, 2), b2);
  assert.equal(outcome(() => store.read()).code, "ok");
  fs.rmSync(imagePath(dir, 1));
  assert.equal(outcome(() => store.read()).code, "IMAGE_MISSING", "the full image deleted, same store");
  assert.equal(openFds(), fds, "refused reads and opens left no file open");
  fs.writeFileSync(imagePath(dir, 1), b1);
  assert.equal(outcome(reopenAndRead(dir, o)).code, "ok");
  store.write({ memory: new Uint8Array(WASM_PAGE).fill(3), globals: [], runtime: {} }, { full: true });
  assert.deepEqual(fs.readdirSync(dir), ["4.img"]);
  fs.rmSync(imagePath(dir, 4));
  assert.equal(outcome(reopenAndRead(dir, o)).code, "IMAGE_MISSING", "the only image deleted");
  assert.equal(outcome(() => (ImageStore.openDurable(dir, { ...o, create: false }), { memory: new Uint8Array(), globals: [], runtime: {} })).code, "IMAGE_MISSING", "create: false");
});

test("an image opened on another platform is IMAGE_WRONG_PLATFORM, by another enclave build IMAGE_WRONG_ENCLAVE", async () => {
  const { dir, o, store } = lineage("identity");
  const other = await Platform.create(tempDir("selkie-platform-b-"));
  try {
    const id = identity("identity");
    assert.equal(outcome(reopenAndRead(dir, { services: other.servicesFor(id), binding: bindingOf(id, other.platformId) })).code, "IMAGE_WRONG_PLATFORM", "other platform");
    assert.equal(outcome(reopenAndRead(dir, { ...o, binding: { ...o.binding, platformId: other.platformId } })).code, "IMAGE_WRONG_PLATFORM", "binding names another platform");
    const v2 = identity("identity", { mrenclave: identity("identity v2").mrenclave });
    assert.equal(outcome(reopenAndRead(dir, { services: testPlatform.servicesFor(v2), binding: bindingOf(v2, testPlatform.platformId) })).code, "IMAGE_WRONG_ENCLAVE", "other MRENCLAVE");
    assert.equal(outcome(reopenAndRead(dir, { ...o, binding: { ...o.binding, isvSvn: 3 } })).code, "IMAGE_WRONG_ENCLAVE", "binding names another version");
    assert.equal(outcome(reopenAndRead(dir, { ...o, binding: { ...o.binding, mrsigner: identity("x").mrsigner } })).code, "IMAGE_WRONG_ENCLAVE", "binding names another signer");
  } finally {
    other.close();
  }
  store.destroy();
});

test("a volatile store reads only its own newest image: another store's image, an older one or none is refused", () => {
  const binding = bindingOf(identity("volatile"), testPlatform.platformId);
  const a = ImageStore.volatile(path.join(tempDir(), "a"), { binding });
  const b = ImageStore.volatile(path.join(tempDir(), "b"), { binding });
  const mem = new Uint8Array(2 * WASM_PAGE).fill(1);
  for (let i = 0; i < 3; i++) {
    mem[i * PAGE] = 9;
    a.write({ memory: mem, globals: [], runtime: { who: "a" } });
    b.write({ memory: mem, globals: [], runtime: { who: "b" } });
  }
  const b3 = fs.readFileSync(imagePath(b.dir, 3));
  fs.copyFileSync(imagePath(a.dir, 3), imagePath(b.dir, 3));
  assert.equal(outcome(() => b.read()).code, "IMAGE_TAMPERED", "a's image 3 in b's folder");
  fs.copyFileSync(imagePath(b.dir, 2), imagePath(b.dir, 3));
  assert.equal(outcome(() => b.read()).code, "IMAGE_ROLLBACK", "b's image 2 in the place of its image 3");
  fs.rmSync(imagePath(b.dir, 3));
  assert.equal(outcome(() => b.read()).code, "IMAGE_MISSING");
  fs.writeFileSync(imagePath(b.dir, 3), b3);
  assert.deepEqual(b.read().runtime, { who: "b" });
  assert.throws(() => ImageStore.volatile(b.dir, { binding }), (e: SelkieError) => e.code === "IMAGE_DIR_IN_USE");
  a.destroy();
  b.destroy();
});

test("a copy of a destroyed (or migrated-away) lineage never opens again", () => {
  const { dir, o, store } = lineage("tombstone");
  const copy = tempDir("selkie-tamper-copy-");
  fs.cpSync(dir, copy, { recursive: true });
  store.destroy();
  assert.equal(outcome(reopenAndRead(copy, o)).code, "IMAGE_ROLLBACK");
});

/** The real services, with counter increments failing while `fail.on` (fault injection, STYLE 10). */
/**
 * Services whose counter increments fail while `fail.on` is set; with `dir`, only the increment that
 * would count an image already published there (a crash between "publish" and "count").
 */
function failingIncrements(s: EnclaveServices, fail: { on: boolean }, dir?: string): EnclaveServices {
  const counting = (id: string): boolean => dir === undefined || imageSeqs(dir).some((seq) => seq > s.counters.read(id));
  const counters = { ...s.counters, increment: (id: string) => (fail.on && counting(id) ? assert.fail("injected: counter increment failed") : s.counters.increment(id)) };
  return { ...s, seal: s.seal, unseal: s.unseal, counters } as EnclaveServices;
}

test("a crash between publishing an image and counting it leaves that image, accepted and counted on reopen", () => {
  const { dir, o, states } = lineage("uncounted");
  const fail = { on: true };
  const faulty = ImageStore.openDurable(dir, { ...o, services: failingIncrements(o.services, fail, dir) });
  const next = snapshotOf({ ...states[2]!, runtime: { seq: 4 } });
  // The reopened store burns 4 first (IMAGES.md "Single-use values"), so its image is 5.
  assert.throws(() => faulty.write(next), (e: SelkieError) => e.code === "IMAGE_IO" && /counter could not be incremented/.test(e.message));
  fail.on = false;
  assert.throws(() => faulty.write(next), (e: SelkieError) => e.code === "IMAGE_IO" && /reopen/.test(e.message), "the store refuses until reopened");
  assert.equal(Math.max(...imageSeqs(dir)), 5, "image 5 was published");
  fs.writeFileSync(path.join(dir, "6.tmp"), "a crashed write");
  const reopened = ImageStore.openDurable(dir, o);
  assert.equal(reopened.latest?.seq, 5);
  assert.ok(sameState(reopened.read(), next));
  assert.equal(fs.existsSync(path.join(dir, "6.tmp")), false, "the leftover tmp file was removed");
  assert.equal(reopened.write(next).seq, 7, "the counter was brought to 5, and 6 is burned by the reopened store, so 7 follows");
  reopened.destroy();
});

test("a second store writing to the same folder (a forked enclave) is refused before it replaces an image", () => {
  const { dir, o, store, states } = lineage("fork");
  const fork = ImageStore.openDurable(dir, o);
  store.write(snapshotOf({ ...states[2]!, runtime: { seq: 4 } }));
  const real = fs.readFileSync(imagePath(dir, 4));
  assert.throws(() => fork.write(states[0]!), (e: SelkieError) => e.code === "IMAGE_ROLLBACK" && /another copy/.test(e.message));
  assert.ok(fs.readFileSync(imagePath(dir, 4)).equals(real), "image 4 is untouched");
  assert.equal(outcome(() => fork.read()).code, "IMAGE_ROLLBACK", "the fork cannot read either: the counter moved on");
  assert.deepEqual(store.read().runtime, { seq: 4 });
  store.destroy();
});

test("random damage to a lineage's files gives a typed error or the exact newest state, never a crash or wrong data", () => {
  const { dir, o, store, states } = lineage("fuzz");
  const pristine = new Map([1, 2, 3].map((seq) => [seq, fs.readFileSync(imagePath(dir, seq))]));
  const r = rng(4242);
  let refused = 0;
  const fds = openFds();
  for (let i = 0; i < 150; i++) {
    const seq = 1 + Math.floor(r() * 3);
    const b = Buffer.from(pristine.get(seq)!);
    const kind = Math.floor(r() * 4);
    let damaged: Buffer;
    if (kind === 0) {
      for (let k = 1 + Math.floor(r() * 4); k > 0; k--) b[Math.floor(r() * b.length)]! ^= 1 + Math.floor(r() * 255);
      damaged = b;
    } else if (kind === 1) {
      damaged = b.subarray(0, Math.floor(r() * b.length));
    } else if (kind === 2) {
      damaged = Buffer.concat([b, Buffer.alloc(1 + Math.floor(r() * 5000), Math.floor(r() * 256))]);
    } else {
      const at = Math.floor(r() * b.length);
      const len = Math.min(b.length - at, 1 + Math.floor(r() * 300));
      for (let k = 0; k < len; k++) b[at + k] = Math.floor(r() * 256);
      damaged = b;
    }
    fs.writeFileSync(imagePath(dir, seq), damaged);
    const res = outcome(reopenAndRead(dir, o));
    if (res.code === "ok") assert.ok(sameState(res.state!, states[2]!), `damage ${i} (kind ${kind}) returned wrong data`);
    else refused++;
    fs.writeFileSync(imagePath(dir, seq), pristine.get(seq)!);
  }
  assert.ok(refused > 140, `nearly every change was refused (${refused} of 150)`);
  assert.equal(openFds(), fds, "no refused image left a file open");
  store.destroy();
});
