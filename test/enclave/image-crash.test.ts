/**
 * Snapshot images under kill -9 (IMAGES.md "Write protocol"): a real child process writes durable
 * images in a loop and is killed at random moments; reopening must always succeed and restore exactly
 * the last acknowledged state or the one being written, never anything else.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { ImageStore } from "../../runtime/enclave/snapshot/image-store.js";
import { Platform } from "../../runtime/platform/platform.js";
import { ROOT, rng, runUntilKilled, tempDir } from "../helpers.js";
import { bindingOf, CRASH, identity, Workload } from "./image-workload.js";

const WRITER = path.join(ROOT, "dist", "test", "enclave", "image-crash-writer.js");
const SEED = 20260511;

/** Starts the writer, kills it `killAfterMs` after it is ready; returns the steps it acknowledged. */
async function runAndKill(platformDir: string, dir: string, killAfterMs: number): Promise<number[]> {
  const out = await runUntilKilled(WRITER, [platformDir, dir, String(SEED)], /^ready \d+$/m, killAfterMs);
  return [...out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
}

/** Reopens the lineage as the writer would and returns the restored step, after checking every byte of it. */
async function restoredStep(platformDir: string, dir: string, what: string): Promise<number> {
  const platform = await Platform.open(platformDir);
  try {
    const id = identity(CRASH.identity);
    const store = ImageStore.openDurable(dir, { services: platform.servicesFor(id), binding: bindingOf(id, platform.platformId), maxChain: CRASH.maxChain });
    if (!store.latest) return 0;
    const got = store.read();
    const step = got.runtime.step as number;
    const want = new Workload(SEED, CRASH.startPages, CRASH.maxPages).advanceTo(step).state();
    assert.ok(Buffer.from(got.memory).equals(Buffer.from(want.memory)), `${what}: memory of step ${step} is exact`);
    assert.deepStrictEqual(got.globals, want.globals, `${what}: globals of step ${step}`);
    assert.deepStrictEqual(got.runtime, want.runtime, `${what}: runtime state of step ${step}`);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith(".tmp")), [], `${what}: no tmp file is left after opening`);
    assert.ok(fs.readdirSync(dir).filter((f) => f.endsWith(".img")).length <= CRASH.maxChain, `${what}: only the newest chain is kept`);
    return step;
  } finally {
    platform.close();
  }
}

test("kill -9 at random moments while images are written: reopening always succeeds with the last acknowledged state or the one in flight (20 kills)", { timeout: 60_000 }, async () => {
  const platformDir = tempDir("selkie-image-crash-platform-");
  (await Platform.create(platformDir)).close();
  const dir = path.join(tempDir("selkie-image-crash-"), "images");
  const r = rng(SEED);
  let confirmed = 0;
  let inFlight = 0;
  for (let trial = 0; trial < 20; trial++) {
    const acks = await runAndKill(platformDir, dir, Math.floor(r() * 150));
    const lastAck = Math.max(confirmed, ...acks);
    const step = await restoredStep(platformDir, dir, `trial ${trial}`);
    assert.ok(step === lastAck || step === lastAck + 1, `trial ${trial}: restored step ${step}, but the last acknowledged step was ${lastAck}`);
    if (step === lastAck + 1) inFlight++;
    confirmed = step;
  }
  assert.ok(confirmed > 30, `the writer made progress across trials (${confirmed} steps)`);
  process.stdout.write(`# ${confirmed} steps over 20 kills; ${inFlight} restores found the write in flight\n`);
});
