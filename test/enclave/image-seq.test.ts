/**
 * Single-use image seq numbers (IMAGES.md "Single-use values"): an image that was never counted —
 * published just before a crash or a failed counter increment, or left complete by a failed write —
 * must never be served once a later image was acknowledged, even when an attacker kept a copy of it,
 * deleted it, and puts it back after the store wrote another image.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { ImageStore, type DurableOptions, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { SnapshotError } from "../../runtime/errors.js";
import type { EnclaveServices } from "../../runtime/platform/services.js";
import { tempDir, testPlatform } from "../helpers.js";
import { bindingOf, identity, imagePath, snapshotOf, Workload } from "./image-workload.js";

/**
 * Services whose counter increment throws, while `fail.on` is set, when it would count an image already
 * published in `dir` (the crash between "publish" and "count" of IMAGES.md "Write protocol").
 */
function flakyCounter(s: EnclaveServices, dir: string): { services: EnclaveServices; fail: { on: boolean } } {
  const fail = { on: false };
  const counters = {
    ...s.counters,
    increment: (id: string): number => {
      const published = fs.readdirSync(dir).filter((n) => /^\d+\.img$/.test(n)).map((n) => parseInt(n));
      if (fail.on && published.some((seq) => seq > s.counters.read(id))) throw new Error("simulated crash before the counter increment");
      return s.counters.increment(id);
    },
  };
  return { services: { ...s, counters } as EnclaveServices, fail };
}

function setup(name: string): { dir: string; o: DurableOptions; states: SnapshotState[]; fail: { on: boolean } } {
  const id = identity(name);
  const dir = tempDir("selkie-seq-");
  const { services, fail } = flakyCounter(testPlatform.servicesFor(id), dir);
  const w = new Workload(99, 8, 8);
  const states = [0, 1, 2, 3, 4].map(() => snapshotOf(w.next()));
  return { dir, o: { services, binding: bindingOf(id, testPlatform.platformId) }, states, fail };
}

/** What reopening and reading gives: the runtime step served, or the SnapshotError code. */
function served(dir: string, o: DurableOptions): string {
  try {
    const r = ImageStore.openDurable(dir, o).read();
    return `step ${String(r.runtime.step)}`;
  } catch (e) {
    assert.ok(e instanceof SnapshotError, `a SnapshotError, not ${String(e)}`);
    return e.code;
  }
}

test("an image published but never counted, kept by an attacker and put back after a later acknowledged write, is refused (crash between publish and count)", () => {
  const { dir, o, states, fail } = setup("seq-crash-after-publish");
  const attacker = tempDir("selkie-seq-copy-");
  ImageStore.openDurable(dir, o).write(states[0]!); // acknowledged: step 1
  const store = ImageStore.openDurable(dir, o);
  fail.on = true;
  assert.throws(() => store.write(states[1]!), (e: unknown) => e instanceof SnapshotError && e.code === "IMAGE_IO");
  fail.on = false;
  const uncounted = fs.readdirSync(dir).filter((n) => n.endsWith(".img")).sort((a, b) => parseInt(b) - parseInt(a))[0]!;
  fs.copyFileSync(path.join(dir, uncounted), path.join(attacker, uncounted));
  fs.unlinkSync(path.join(dir, uncounted)); // the host drops the uncounted image before the store reopens
  const again = ImageStore.openDurable(dir, o);
  assert.equal(again.read().runtime.step, 1, "the reopened store is at the last acknowledged image");
  const acked = again.write(states[2]!); // acknowledged: step 3
  assert.notEqual(`${acked.seq}.img`, uncounted, "the acknowledged image does not reuse the uncounted image's seq");
  // The attacker puts the never-acknowledged image back, in place of (or next to) the acknowledged one.
  for (const n of fs.readdirSync(dir).filter((x) => x.endsWith(".img") && parseInt(x) >= parseInt(uncounted))) fs.unlinkSync(path.join(dir, n));
  fs.copyFileSync(path.join(attacker, uncounted), path.join(dir, uncounted));
  const got = served(dir, o);
  assert.ok(got === "IMAGE_ROLLBACK" || got === "IMAGE_TAMPERED", `refused, not ${got}`);
  // Under the acknowledged image's own name as well.
  fs.copyFileSync(path.join(attacker, uncounted), imagePath(dir, acked.seq));
  const got2 = served(dir, o);
  assert.ok(got2 === "IMAGE_ROLLBACK" || got2 === "IMAGE_TAMPERED", `refused under the acknowledged name, not ${got2}`);
});

test("an uncounted image put back next to the acknowledged image that followed it is never served instead of it", () => {
  const { dir, o, states, fail } = setup("seq-crash-next-to");
  const attacker = tempDir("selkie-seq-copy-");
  ImageStore.openDurable(dir, o).write(states[0]!);
  const store = ImageStore.openDurable(dir, o);
  fail.on = true;
  assert.throws(() => store.write(states[1]!));
  fail.on = false;
  const uncounted = fs.readdirSync(dir).filter((n) => n.endsWith(".img")).sort((a, b) => parseInt(b) - parseInt(a))[0]!;
  fs.renameSync(path.join(dir, uncounted), path.join(attacker, uncounted));
  const again = ImageStore.openDurable(dir, o);
  again.write(states[2]!);
  again.write(states[3]!); // acknowledged: step 4
  fs.copyFileSync(path.join(attacker, uncounted), path.join(dir, uncounted));
  assert.equal(served(dir, o), "step 4", "the newest acknowledged image is served, the uncounted one ignored");
});

test("a complete image left by a failed write (publish refused) cannot replace the image acknowledged after it", async () => {
  const { dir, o, states } = setup("seq-failed-write");
  const attacker = tempDir("selkie-seq-copy-");
  const store = ImageStore.openDurable(dir, o);
  store.write(states[0]!); // acknowledged: step 1
  // The host makes the next publish fail: it puts a file under every name the next image may take,
  // and a thread of its own hard-links each tmp file the moment it appears, so it keeps the
  // complete sealed image the store then removes.
  const blockers = [2, 3, 4].map((s) => imagePath(dir, s));
  for (const b of blockers) fs.writeFileSync(b, "blocker");
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const spy = new Worker(
    `const fs = require("node:fs"); const path = require("node:path"); const { workerData: d } = require("node:worker_threads");
     const seen = new Set();
     while (Atomics.load(d.stop, 0) === 0) {
       let names = []; try { names = fs.readdirSync(d.dir); } catch {}
       for (const n of names) if (/^\\d+\\.tmp$/.test(n) && !seen.has(n)) { try { fs.linkSync(path.join(d.dir, n), path.join(d.out, n)); seen.add(n); } catch {} }
     }`,
    { eval: true, workerData: { dir, out: attacker, stop } },
  );
  await new Promise((r) => setTimeout(r, 50));
  let failed = 0;
  for (let i = 0; i < 20 && !fs.readdirSync(attacker).some((n) => /^\d+\.tmp$/.test(n)); i++) {
    try {
      store.write(states[1]!);
    } catch (e) {
      assert.ok(e instanceof SnapshotError, String(e));
      failed++;
    }
  }
  Atomics.store(stop, 0, 1);
  await spy.terminate();
  assert.ok(failed > 0, "the publish failed");
  const kept = fs.readdirSync(attacker).filter((n) => /^\d+\.tmp$/.test(n));
  assert.ok(kept.length > 0, "the host kept a copy of a complete tmp");
  for (const b of blockers) fs.rmSync(b, { force: true });
  const acked = store.write(states[2]!); // the store continues: acknowledged: step 3
  for (const k of kept) assert.notEqual(parseInt(k), acked.seq, "the acknowledged image does not reuse a seq of the failed write");
  for (const k of kept) {
    for (const n of fs.readdirSync(dir).filter((x) => x.endsWith(".img"))) fs.unlinkSync(path.join(dir, n));
    fs.copyFileSync(path.join(attacker, k), imagePath(dir, parseInt(k)));
    const got = served(dir, o);
    assert.ok(got === "IMAGE_ROLLBACK" || got === "IMAGE_TAMPERED", `the failed write's image ${k} is refused, not ${got}`);
    fs.copyFileSync(path.join(attacker, k), imagePath(dir, acked.seq));
    const got2 = served(dir, o);
    assert.ok(got2 === "IMAGE_ROLLBACK" || got2 === "IMAGE_TAMPERED", `the failed write's image under the acknowledged name is refused, not ${got2}`);
  }
});

test("the epoch record: while it is current a flipped byte is tampering and its deletion a rollback; an older record put back never brings back an older state", () => {
  const { dir, o, states } = setup("seq-epoch-record");
  const epoch = path.join(dir, "epoch");
  ImageStore.openDurable(dir, o).write(states[0]!); // image 1, acknowledged
  // A reopened store burns 2 (the record names image 1), then its image 3 cannot be published.
  const store = ImageStore.openDurable(dir, o);
  fs.writeFileSync(imagePath(dir, 3), "blocker");
  assert.throws(() => store.write(states[1]!), (e: unknown) => e instanceof SnapshotError);
  fs.rmSync(imagePath(dir, 3));
  const record = fs.readFileSync(epoch);
  assert.equal(served(dir, o), "step 1", "the record at the counter's value names image 1");
  for (const at of [0, 4, 8, 24, 40, 60, record.length - 1]) {
    const bad = Buffer.from(record);
    bad[at]! ^= 1;
    fs.writeFileSync(epoch, bad);
    assert.equal(served(dir, o), at === 4 ? "IMAGE_VERSION_UNSUPPORTED" : "IMAGE_TAMPERED", `record byte ${at} flipped`);
  }
  fs.rmSync(epoch);
  assert.equal(served(dir, o), "IMAGE_ROLLBACK", "the current record deleted: image 1 is below the counter");
  fs.writeFileSync(epoch, record);
  const acked = ImageStore.openDurable(dir, o).write(states[2]!); // burns 3, writes image 4
  assert.equal(acked.seq, 4);
  fs.writeFileSync(epoch, record);
  assert.equal(served(dir, o), "step 3", "an older record next to the current image means nothing");
  fs.rmSync(imagePath(dir, 4));
  assert.equal(served(dir, o), "IMAGE_ROLLBACK", "an older record in place of the acknowledged image 4");
});
