/**
 * TRUSTED. Page digests of a memory computed in windows of 256 pages, shared between this thread and
 * the helper (helper.ts). The result is byte for byte the serial one (hashPagesInto on every page).
 *
 * Used where every page needs a digest before any is sealed (a delta's change detection); full
 * images hash each chunk where it is sealed instead (ChunkSealer, image-chunks.ts). A job can
 * advance in steps (pump() between other work); finish() hashes what is left here and waits for the
 * helper's windows. Memory does not change during a job (it runs inside one synchronous call).
 */
import { HASH_BYTES, hashPagesInto, PAGE } from "./page-digest.js";
import { alive, cancel, helperFor, isDone, isFree, release, settle, slotAux, slotData, submit, type Helper } from "./helper.js";
import { KIND_HASH, SLOT_PAGES, SLOTS } from "./helper-slots.js";

export class PageHashJob {
  readonly #mem: Uint8Array;
  readonly #pages: number;
  readonly #out: Buffer;
  readonly #h: Helper | null;
  /** First page of the window in each slot this job submitted, or -1. */
  readonly #own = new Int32Array(SLOTS).fill(-1);
  #next = 0;

  constructor(mem: Uint8Array) {
    this.#mem = mem;
    this.#pages = mem.length / PAGE;
    this.#out = Buffer.allocUnsafe(this.#pages * HASH_BYTES);
    this.#h = helperFor(mem.length);
  }

  /** Collects the helper's finished windows and gives it the next ones. Cheap; call it often. */
  pump(): void {
    const h = this.#h;
    if (h === null || !alive(h)) return;
    for (let s = 0; s < SLOTS; s++) {
      if (this.#own[s]! >= 0 && isDone(h, s)) this.#collect(h, s);
      if (this.#own[s]! < 0 && this.#next < this.#pages && isFree(h, s)) this.#submit(h, s);
    }
  }

  /** Hashes what is left here, waits for the helper's windows, and returns every page's digest. */
  finish(): Buffer {
    while (this.#next < this.#pages) {
      this.pump();
      if (this.#next >= this.#pages) break;
      const n = Math.min(SLOT_PAGES, this.#pages - this.#next);
      hashPagesInto(this.#mem, this.#out, this.#next, n);
      this.#next += n;
    }
    const h = this.#h;
    for (let s = 0; h !== null && s < SLOTS; s++) {
      const first = this.#own[s]!;
      if (first < 0) continue;
      if (settle(h, s) === "done") {
        this.#collect(h, s);
      } else {
        this.#own[s] = -1;
        hashPagesInto(this.#mem, this.#out, first, Math.min(SLOT_PAGES, this.#pages - first));
      }
    }
    return this.#out;
  }

  /** Frees this job's slots without using them (the caller failed part-way). */
  cancel(): void {
    if (this.#h !== null) cancel(this.#h, this.#own);
    this.#next = this.#pages;
  }

  #submit(h: Helper, s: number): void {
    const first = this.#next;
    const n = Math.min(SLOT_PAGES, this.#pages - first);
    slotData(h, s).set(this.#mem.subarray(first * PAGE, (first + n) * PAGE));
    this.#own[s] = first;
    this.#next += n;
    submit(h, s, KIND_HASH, n);
  }

  #collect(h: Helper, s: number): void {
    const first = this.#own[s]!;
    const n = Math.min(SLOT_PAGES, this.#pages - first);
    this.#out.set(slotAux(h, s).subarray(0, n * HASH_BYTES), first * HASH_BYTES);
    this.#own[s] = -1;
    release(h, s);
  }
}

/** SHA-256 of every 4 KiB page of `mem` (on two threads when it is large). */
export function hashPages(mem: Uint8Array): Buffer {
  return new PageHashJob(mem).finish();
}
