/**
 * TRUSTED. A second thread for the heavy loops of images: sealing (and hashing) chunks on write,
 * hashing pages for deltas and opening chunks on read run partly on one helper worker
 * (helper-worker.ts) while this thread does the same to other chunks, writes or copies. It stays in
 * this process, inside the trust boundary; linear memory cannot be shared, so tasks go through shared
 * slots (copies of windows or of a chunk's pages, or chunk ciphertext read straight from the file).
 *
 * Invariants:
 *  1. The helper only changes speed: every task it runs is one this thread could run (the same
 *     functions), and callers use a result only from a slot in DONE.
 *  2. No wait depends on the helper being alive: a task it has not started is reclaimed (settle()
 *     says "reclaimed" and the caller does it itself); a task it holds for longer than STALL_MS
 *     disables the helper for good in this thread ("lost") and the worker is terminated.
 *  3. One job at a time: jobs run inside synchronous calls and settle or cancel every slot they
 *     submitted before returning or throwing.
 *  4. The key area holds a lineage key only while a read job or a sealing job runs (wiped by the
 *     job when it ends, also when it throws).
 *
 * Slot states: FREE --submit()--> READY --helper claims (CAS)--> BUSY --helper done--> DONE
 *   DONE --release()--> FREE;  READY --settle() reclaims (CAS)--> FREE
 */
import { Worker } from "node:worker_threads";
import { at, BELL, BUSY, CONTROL_INTS, COUNT, AUX_LEN, DONE, FREE, KIND, READY, RESULT, SLOT_AUX, SLOT_DATA, SLOTS, STATE } from "./helper-slots.js";

/**
 * Jobs smaller than this run on this thread only (no copies, no thread start, no waiting for a
 * thread the scheduler may not run soon: a paging wake of a ~1.3 MiB SQLite enclave stays on one
 * thread, which keeps its tail latency down on a busy host).
 */
export const PARALLEL_MIN = 4 * 1024 * 1024;
const STALL_MS = 2000;

export interface Helper {
  readonly worker: Worker;
  readonly st: Int32Array;
  readonly data: Uint8Array;
  readonly aux: Uint8Array;
  readonly key: Uint8Array;
}

/** undefined: not started yet; null: unavailable or disabled in this thread. */
let current: Helper | null | undefined;

function start(): Helper | null {
  try {
    const ctrl = new SharedArrayBuffer(CONTROL_INTS * 4);
    const data = new SharedArrayBuffer(SLOTS * SLOT_DATA);
    const aux = new SharedArrayBuffer(SLOTS * SLOT_AUX);
    const key = new SharedArrayBuffer(32);
    const worker = new Worker(new URL("./helper-worker.js", import.meta.url), { workerData: { ctrl, data, aux, key } });
    worker.unref();
    worker.on("error", disable);
    worker.on("exit", disable);
    return { worker, st: new Int32Array(ctrl), data: new Uint8Array(data), aux: new Uint8Array(aux), key: new Uint8Array(key) };
  } catch {
    return null;
  }
}

function disable(): void {
  const h = current;
  current = null;
  if (h) void h.worker.terminate().catch(() => {});
}

/** The helper for a job of `bytes`, or null (small job, or no helper in this thread). */
export function helperFor(bytes: number): Helper | null {
  if (bytes < PARALLEL_MIN) return null;
  if (current === undefined) current = start();
  return current;
}

/** True while `h` is the live helper (invariant 2). */
export function alive(h: Helper): boolean {
  return current === h;
}

export function slotData(h: Helper, s: number): Uint8Array {
  return h.data.subarray(s * SLOT_DATA, (s + 1) * SLOT_DATA);
}

export function slotAux(h: Helper, s: number): Uint8Array {
  return h.aux.subarray(s * SLOT_AUX, (s + 1) * SLOT_AUX);
}

export function isFree(h: Helper, s: number): boolean {
  return Atomics.load(h.st, at(s, STATE)) === FREE;
}

export function isDone(h: Helper, s: number): boolean {
  return Atomics.load(h.st, at(s, STATE)) === DONE;
}

/** Open tasks: whether the tag verified; seal tasks: whether the slot holds the finished ciphertext. */
export function verified(h: Helper, s: number): boolean {
  return h.st[at(s, RESULT)] === 1;
}

/** Hands slot s (FREE, its data and aux filled) to the helper. */
export function submit(h: Helper, s: number, kind: number, count: number, auxLen = 0): void {
  h.st[at(s, KIND)] = kind;
  h.st[at(s, COUNT)] = count;
  h.st[at(s, AUX_LEN)] = auxLen;
  h.st[at(s, RESULT)] = 0;
  Atomics.store(h.st, at(s, STATE), READY);
  Atomics.add(h.st, BELL, 1);
  Atomics.notify(h.st, BELL);
}

export function release(h: Helper, s: number): void {
  Atomics.store(h.st, at(s, STATE), FREE);
}

/** Takes back a task the helper has not started; true when it did (the slot is free again). */
export function reclaim(h: Helper, s: number): boolean {
  return Atomics.compareExchange(h.st, at(s, STATE), READY, FREE) === READY;
}

/**
 * Ends a submitted task: "done" (result in the slot, release() it after use), "reclaimed" (never
 * started; the slot is free again) or "lost" (the helper stalled or died: do the task here).
 */
export function settle(h: Helper, s: number): "done" | "reclaimed" | "lost" {
  if (!alive(h)) return "lost";
  if (reclaim(h, s)) return "reclaimed";
  const deadline = performance.now() + STALL_MS;
  while (Atomics.load(h.st, at(s, STATE)) === BUSY) {
    const left = deadline - performance.now();
    if (left <= 0) {
      disable();
      return "lost";
    }
    Atomics.wait(h.st, at(s, STATE), BUSY, left);
  }
  return "done";
}

/** Settles and frees every slot in `own` (ordinals or page numbers, -1 = none) without using results. */
export function cancel(h: Helper, own: Int32Array): void {
  for (let s = 0; s < SLOTS; s++) {
    if (own[s]! < 0) continue;
    if (settle(h, s) === "done") release(h, s);
    own[s] = -1;
  }
}
