/**
 * Snapshot images under kill -9 (IMAGES.md "Write protocol"): a real child process writes durable
 * images in a loop and is killed at random moments; reopening must always succeed and restore exactly
 * the last acknowledged state or the one being written, never anything else.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { ImageStore } from "../../runtime/enclave/snapshot/image-store.js";
import { SnapshotError } from "../../runtime/errors.js";
import { Platform } from "../../runtime/platform/platform.js";
import { ROOT, rng, runUntilKilled, tempDir } from "../helpers.js";
import { bindingOf, CRASH, identity, Workload } from "./image-workload.js";

const WRITER = path.join(ROOT, "dist", "test", "enclave", "image-crash-writer.js");
const SEED = 20260511;

/** Starts the writer, kills it `killAfterMs` after it is ready; returns the steps it acknowledged. */
async function runAndKill(platformDir: string, dir: string, killAfterMs: number, attempts?: Map<number, string>): Promise<number[]> {
  const out = await runUntilKilled(WRITER, [platformDir, dir, String(SEED)], /^ready \d+$/m, killAfterMs);
  const acks = [...out.matchAll(/^ack (\d+) ([0-9a-f]+)$/gm)];
  for (const m of acks) attempts?.set(Number(m[1]), m[2]!);
  return acks.map((m) => Number(m[1]));
}

/** The writer's attempt id in the image restoredStep() read last. */
let restoredAttempt = "";

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
    const { attempt, ...runtime } = got.runtime;
    assert.equal(typeof attempt, "string", `${what}: the writer's attempt id`);
    restoredAttempt = attempt as string;
    assert.deepStrictEqual(runtime, want.runtime, `${what}: runtime state of step ${step}`);
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
    // At least 30 ms: a reopened writer burns a counter value (IMAGES.md "Single-use values") before
    // its first image, so the shortest windows would often end before any write on a busy machine.
    const acks = await runAndKill(platformDir, dir, 30 + Math.floor(r() * 150));
    const lastAck = Math.max(confirmed, ...acks);
    const step = await restoredStep(platformDir, dir, `trial ${trial}`);
    assert.ok(step === lastAck || step === lastAck + 1, `trial ${trial}: restored step ${step}, but the last acknowledged step was ${lastAck}`);
    if (step === lastAck + 1) inFlight++;
    confirmed = step;
  }
  assert.ok(confirmed > 20, `the writer made progress across trials (${confirmed} steps)`);
  process.stdout.write(`# ${confirmed} steps over 20 kills; ${inFlight} restores found the write in flight\n`);
});

/** Every distinct file state the host has seen, by the name it had, and every whole-folder state. */
interface Seen {
  files: Map<string, { name: string; bytes: Buffer }>;
  folders: Array<Map<string, Buffer>>;
}

function remember(dir: string, seen: Seen): void {
  const folder = new Map<string, Buffer>();
  for (const name of fs.readdirSync(dir)) {
    const bytes = fs.readFileSync(path.join(dir, name));
    folder.set(name, bytes);
    // A tmp image is put back under its final name; an epoch.tmp as the record.
    const as = name === "epoch.tmp" ? "epoch" : name.replace(/\.tmp$/, ".img");
    seen.files.set(`${as}:${createHash("sha256").update(bytes).digest("hex")}`, { name: as, bytes });
  }
  seen.folders.push(folder);
}

/**
 * What the lineage serves when the host replaces the folder's content by `files` (on a copy of the
 * platform, so the real lineage's counter is untouched): the restored step, or a SnapshotError code.
 */
async function replay(platformDir: string, files: Map<string, Buffer>, want: (step: number) => Buffer): Promise<{ step: number; attempt: string } | string> {
  const pdir = tempDir("selkie-image-replay-platform-");
  fs.cpSync(platformDir, pdir, { recursive: true });
  const dir = path.join(tempDir("selkie-image-replay-"), "images");
  fs.mkdirSync(dir);
  for (const [name, bytes] of files) fs.writeFileSync(path.join(dir, name), bytes);
  const platform = await Platform.open(pdir);
  try {
    const id = identity(CRASH.identity);
    const store = ImageStore.openDurable(dir, { services: platform.servicesFor(id), binding: bindingOf(id, platform.platformId), maxChain: CRASH.maxChain, create: false });
    const got = store.read();
    const step = got.runtime.step as number;
    assert.ok(Buffer.from(got.memory).equals(want(step)), `a served image holds exactly step ${step}`);
    return { step, attempt: got.runtime.attempt as string };
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    assert.ok(e instanceof SnapshotError, `refused with a SnapshotError, not ${String(e)}`);
    return e.code;
  } finally {
    platform.close();
    fs.rmSync(pdir, { recursive: true, force: true });
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }
}

test("kill -9 during durable writes, then the host puts back any file or folder state it saw earlier: never an image older than the last acknowledged one, never one never acknowledged while a later one was (12 kills)", { timeout: 180_000 }, async () => {
  const platformDir = tempDir("selkie-image-replay-platform-");
  (await Platform.create(platformDir)).close();
  const dir = path.join(tempDir("selkie-image-replay-"), "images");
  const r = rng(SEED + 1);
  const memo = new Map<number, Buffer>();
  const want = (step: number): Buffer => {
    if (!memo.has(step)) memo.set(step, Buffer.from(new Workload(SEED, CRASH.startPages, CRASH.maxPages).advanceTo(step).state().memory));
    return memo.get(step)!;
  };
  const seen: Seen = { files: new Map(), folders: [] };
  const acked = new Map<number, string>();
  let confirmed = 0;
  let replays = 0;
  let served = 0;
  for (let trial = 0; trial < 12; trial++) {
    const acks = await runAndKill(platformDir, dir, 20 + Math.floor(r() * 150), acked);
    const lastAck = Math.max(confirmed, ...acks);
    if (fs.existsSync(dir)) remember(dir, seen);
    const step = await restoredStep(platformDir, dir, `trial ${trial}`);
    assert.ok(step === lastAck || step === lastAck + 1, `trial ${trial}: restored step ${step}, last acknowledged ${lastAck}`);
    confirmed = step;
    if (step > 0 && step <= lastAck) assert.equal(restoredAttempt, acked.get(step) ?? restoredAttempt, `trial ${trial}: the restored image is the acknowledged write of step ${step}`);
    // Allowed: exactly the state just restored (the acknowledged write of that step, when it was
    // acknowledged), or (when that is the last acknowledged one) the write that was in flight at the
    // kill: never acknowledged, but nothing later was either.
    const ok = (got: { step: number; attempt: string } | string): boolean =>
      typeof got === "string" || (got.step === step && got.attempt === restoredAttempt) || (got.step === step + 1 && step === lastAck);
    const current = new Map<string, Buffer>(fs.readdirSync(dir).map((n) => [n, fs.readFileSync(path.join(dir, n))]));
    for (const { name, bytes } of seen.files.values()) {
      const files = new Map(current).set(name, bytes);
      const got = await replay(platformDir, files, want);
      assert.ok(ok(got), `trial ${trial}: ${name} (seen earlier) put back next to the current files served ${JSON.stringify(got)}, the current step is ${step}`);
      const alone = new Map([...current].filter(([n]) => !n.endsWith(".img"))).set(name, bytes);
      const got2 = await replay(platformDir, alone, want);
      assert.ok(ok(got2), `trial ${trial}: ${name} (seen earlier) in place of every image served ${JSON.stringify(got2)}, the current step is ${step}`);
      replays += 2;
      if (typeof got !== "string") served++;
    }
    for (const folder of seen.folders) {
      const got = await replay(platformDir, folder, want);
      assert.ok(ok(got), `trial ${trial}: an earlier folder state served ${JSON.stringify(got)}, the current step is ${step}`);
      replays++;
    }
  }
  assert.ok(confirmed > 15, `the writer made progress across trials (${confirmed} steps)`);
  process.stdout.write(`# ${confirmed} steps over 12 kills; ${replays} replays of earlier file states, ${served} served the current state\n`);
});
