/**
 * Full image writes shared with the helper thread (runtime/enclave/snapshot/helper.ts, ChunkSealer in
 * image-chunks.ts): multi-chunk images sealed partly on the helper read back exactly and still detect
 * tampering in every chunk; a helper that died, or that stalls or reports no ciphertext, only costs
 * speed: the image is still correct, holds no plaintext, and the key area is wiped after the job.
 *
 * The tests share this process's one helper and run in order: the last one disables it for good.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { randomFillSync } from "node:crypto";
import { Worker } from "node:worker_threads";
import { ImageStore, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { alive, helperFor, PARALLEL_MIN } from "../../runtime/enclave/snapshot/helper.js";
import { BELL, BUSY, DONE, FIELDS, KIND, KIND_SEAL, KIND_SEAL_HASH, READY, RESULT, SLOTS, STATE } from "../../runtime/enclave/snapshot/helper-slots.js";
import { SnapshotError } from "../../runtime/errors.js";
import { tempDir, testPlatform } from "../helpers.js";
import { bindingOf, flipByte, identity, imagePath, layoutOf, PAGE } from "./image-workload.js";

const MiB = 1024 * 1024;
const MARKER = Buffer.from("SELKIE-HELPER-MARKER-81c3");

/** `mib` MiB of random pages with a marker in each (so plaintext in a file is found), every 8th MiB zero. */
function memoryOf(mib: number): Uint8Array {
  const mem = new Uint8Array(mib * MiB);
  randomFillSync(mem);
  for (let o = 0; o < mem.length; o += PAGE) mem.set(MARKER, o + 100);
  for (let m = 7; m < mib; m += 8) mem.fill(0, m * MiB, (m + 1) * MiB);
  return mem;
}

/** Pages per chunk of a full image of memoryOf(): the non-zero pages, 256 per chunk. */
function chunkPagesOf(mem: Uint8Array): number[] {
  let stored = 0;
  for (let p = 0; p < mem.length / PAGE; p++) if (mem.subarray(p * PAGE, (p + 1) * PAGE).some((b) => b !== 0)) stored++;
  const pages: number[] = [];
  for (; stored > 0; stored -= 256) pages.push(Math.min(256, stored));
  return pages;
}

function stores(name: string): Array<{ what: string; store: ImageStore; dir: string }> {
  const id = identity(name);
  const binding = bindingOf(id, testPlatform.platformId);
  const d = tempDir("selkie-helper-");
  const v = tempDir("selkie-helper-");
  const p = tempDir("selkie-helper-");
  return [
    { what: "durable (digests)", dir: d, store: ImageStore.openDurable(d, { services: testPlatform.servicesFor(id), binding }) },
    { what: "volatile (digests)", dir: v, store: ImageStore.volatile(v, { binding }) },
    { what: "paging (maxChain 1, no digests)", dir: p, store: ImageStore.volatile(p, { binding, maxChain: 1 }) },
  ];
}

function assertNoPlaintext(dir: string): void {
  for (const f of fs.readdirSync(dir)) assert.equal(fs.readFileSync(path.join(dir, f)).indexOf(MARKER), -1, `${f} holds plaintext`);
}

/** Writes `mem` full to each store, then checks the bytes read back, the file and the key area. */
function writeAndCheck(name: string, mem: Uint8Array): Array<{ what: string; store: ImageStore; dir: string; state: SnapshotState }> {
  const h = helperFor(PARALLEL_MIN)!;
  return stores(name).map(({ what, store, dir }) => {
    const state: SnapshotState = { memory: mem, globals: [{ name: "g", type: "i32", value: 7 }], runtime: { what } };
    const info = store.write(state, { full: true });
    assert.equal(info.kind, "full", what);
    assert.ok(h.key.every((b) => b === 0), `${what}: the key area is wiped after the write`);
    assertNoPlaintext(dir);
    const got = store.read();
    assert.ok(Buffer.from(got.memory).equals(Buffer.from(mem)), `${what}: memory reads back exactly`);
    assert.deepEqual(got.runtime, { what });
    return { what, store, dir, state };
  });
}

test("a multi-chunk full image sealed on both threads round-trips, takes a delta, and detects a flipped byte in every chunk", () => {
  const h = helperFor(PARALLEL_MIN);
  assert.ok(h !== null && alive(h), "this test needs the helper thread");
  const mem = memoryOf(24);
  const chunkPages = chunkPagesOf(mem);
  for (const { what, store, dir, state } of writeAndCheck("helper-live", mem)) {
    const file = imagePath(dir, 1);
    const layout = layoutOf(file, chunkPages);
    assert.equal(layout.chunks[layout.chunks.length - 1]!.at + layout.chunks[layout.chunks.length - 1]!.bytes, layout.manifest.at, `${what}: chunks end where the manifest starts`);
    layout.chunks.forEach((c, i) => {
      const at = c.at + ((i * 7919) % c.bytes);
      flipByte(file, at);
      assert.throws(() => store.read(), (e: unknown) => e instanceof SnapshotError && e.code === "IMAGE_TAMPERED", `${what}: chunk ${i} changed`);
      flipByte(file, at);
    });
    if (!what.startsWith("paging")) {
      // The digests the shared write recorded are the real ones: a delta of a few pages follows.
      mem[3 * MiB + 5]! ^= 1;
      const delta = store.write(state);
      assert.equal(delta.kind, "delta", what);
      assert.equal(delta.changedPages, 1, `${what}: only the changed page differs from the recorded digests`);
      assert.ok(Buffer.from(store.read().memory).equals(Buffer.from(mem)), `${what}: the delta reads back`);
      mem[3 * MiB + 5]! ^= 1;
    }
    store.destroy();
  }
});

test("a helper that died without notice only costs speed: its unstarted chunks are taken back", async () => {
  const h = helperFor(PARALLEL_MIN)!;
  // Kill the worker behind the store's back: it never learns (no exit event), so every task it is
  // given stays unstarted and the writer must reclaim it.
  h.worker.removeAllListeners("exit");
  h.worker.removeAllListeners("error");
  await h.worker.terminate();
  assert.ok(alive(h));
  const t0 = performance.now();
  for (const { store } of writeAndCheck("helper-dead", memoryOf(12))) store.destroy();
  assert.ok(performance.now() - t0 < 2000 * 3, "reclaiming never waits for the stall timeout");
});

test("a helper that reports no ciphertext and then stalls mid-job is dropped; the image is still correct and sealed", async () => {
  const h = helperFor(PARALLEL_MIN)!;
  assert.ok(alive(h), "the previous test left the (dead) helper in place");
  // A stand-in helper on the same slots: it finishes its first two seal tasks without sealing them
  // (the slots still hold plaintext) and then holds the next task forever.
  const fake = new Worker(
    `const { workerData: w, parentPort } = require("node:worker_threads");
     const st = new Int32Array(w.ctrl);
     let claimed = 0;
     parentPort.postMessage("ready");
     for (;;) {
       for (let s = 0; s < w.SLOTS; s++) {
         const state = s * w.FIELDS + w.STATE;
         if (Atomics.compareExchange(st, state, w.READY, w.BUSY) !== w.READY) continue;
         const sealing = st[s * w.FIELDS + w.KIND] === w.KIND_SEAL || st[s * w.FIELDS + w.KIND] === w.KIND_SEAL_HASH;
         if (++claimed > 2 || !sealing) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
         st[s * w.FIELDS + w.RESULT] = 0;
         Atomics.store(st, state, w.DONE);
         Atomics.notify(st, state);
       }
       Atomics.wait(st, w.BELL, Atomics.load(st, w.BELL), 50);
     }`,
    { eval: true, workerData: { ctrl: h.st.buffer, SLOTS, FIELDS, STATE, KIND, RESULT, READY, BUSY, DONE, BELL, KIND_SEAL, KIND_SEAL_HASH } },
  );
  try {
    await new Promise((resolve) => fake.once("message", resolve));
    const t0 = performance.now();
    const written = writeAndCheck("helper-stall", memoryOf(12));
    assert.equal(alive(h), false, "the stalled helper is disabled");
    assert.ok(performance.now() - t0 >= 1900, "the first write waited out the stalled task");
    for (const { store } of written) store.destroy();
  } finally {
    await fake.terminate();
  }
});
