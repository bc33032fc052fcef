/**
 * TRUSTED. Sealing memory pages into chunks and restoring a chain's chunks into memory
 * (IMAGES.md "Pages and chunks"). No names or freshness here: image-store.ts hands in checked images.
 *
 * Invariants:
 *  1. Each chunk is one AES-256-GCM message under the lineage key with its own random nonce and the
 *     chunk AAD; ciphertext goes to the writer slice by slice (no concatenated copy of the image).
 *     Chunks hold ascending pages, at most CHUNK_PAGES each.
 *  2. The read plan is checked before any allocation or decryption: runs valid, chunk and manifest
 *     offsets exact, every non-zero page of the newest image held by some chunk of the chain.
 *  3. A chunk's plaintext reaches the destination only after its tag verified (on this thread or
 *     the helper's); a failing tag throws IMAGE_TAMPERED.
 *  4. Writes shared with the helper keep the format exactly: chunk index, nonce (random per chunk)
 *     and AAD are fixed on this thread when the chunk is formed, and chunks reach the file in index
 *     order, each written by this thread. A chunk sealed again here (the helper never started it,
 *     stalled, died or gave no ciphertext) gets a fresh nonce, recorded in its entry.
 *  5. Only ciphertext reaches the file: a helper slot is written only when it is DONE and reports
 *     finished ciphertext (RESULT 1); its plaintext copy never leaves the process.
 *  6. No wait depends on the helper (helper.ts invariant 2), and a job ends with finish() or close()
 *     (also on a throw), which settles every slot it holds and wipes the key area. A failed write
 *     throws before a manifest exists, so image-store.ts discards the tmp: nothing is published.
 */
import { randomBytes, type KeyObject } from "node:crypto";
import { openInPlace, sealRuns, type FileSink, type Sink } from "./chunk-cipher.js";
import { CHUNK_PAGES, chunkAad, decodeRuns, encodeRuns, NONCE, tampered, TAG, type ChunkEntry, type Header, type Manifest, type Run } from "./image-format.js";
import { readAt } from "./image-files.js";
import { alive, cancel, helperFor, isDone, isFree, reclaim, release, settle, slotAux, slotData, submit, verified, type Helper } from "./helper.js";
import { AUX_CIPHER, KIND_OPEN, KIND_SEAL, KIND_SEAL_HASH, SLOTS } from "./helper-slots.js";
import { hashPagesInto } from "./page-digest.js";
import { asBuffer, HASH_BYTES, isZeroContent, isZeroPage, PAGE, ZERO_PAGE_HASH } from "./pages.js";

/** A chunk between its seal and the file, in index order. */
interface Queued {
  index: number;
  runs: Run[];
  count: number;
  aad: Buffer;
  /** The helper slot sealing it, or -1: sealed here, `parts` are its ciphertext slices and tag. */
  slot: number;
  parts: Uint8Array[];
}

/**
 * Sealed chunks wait at most this many behind the oldest one the helper holds (~8 MiB of ciphertext);
 * then this thread waits for it (or takes it back).
 */
const MAX_QUEUED = 8;

/**
 * Gathers ascending pages into chunks of CHUNK_PAGES and seals each as it fills (invariant 1). With
 * `digests`, also writes the SHA-256 of every page it seals there (at the page's position), hashed by
 * the thread that seals the chunk.
 *
 * Jobs of PARALLEL_MIN or more share the chunks with the helper (invariants 4-6): whenever a slot is
 * free the next chunk goes there (copied pages, nonce, AAD; the helper hashes and seals it in place),
 * otherwise this thread seals it. Chunks reach the file strictly in index order: this thread's
 * ciphertext waits in `#queue` behind the helper's older chunks. finish() must end every job, and
 * close() every job, also a failed one (it frees the slots and wipes the key area).
 */
export class ChunkSealer {
  readonly entries: ChunkEntry[] = [];
  readonly #out: FileSink;
  readonly #key: KeyObject;
  readonly #ids: { lineage: Buffer; imageId: Buffer; seq: number };
  readonly #mem: Uint8Array;
  readonly #digests: Buffer | undefined;
  readonly #h: Helper | null;
  readonly #queue: Queued[] = [];
  #pending: number[] = [];

  /** `bytes`: the job's size, which decides whether the helper takes part (helperFor). */
  constructor(out: FileSink, key: KeyObject, ids: { lineage: Buffer; imageId: Buffer; seq: number }, mem: Uint8Array, o: { bytes: number; digests?: Buffer }) {
    this.#out = out;
    this.#key = key;
    this.#ids = ids;
    this.#mem = mem;
    this.#digests = o.digests;
    this.#h = helperFor(o.bytes);
    if (this.#h !== null) {
      const raw = key.export();
      this.#h.key.set(raw);
      raw.fill(0);
    }
  }

  add(page: number): void {
    this.#pending.push(page);
    if (this.#pending.length === CHUNK_PAGES) this.flush();
  }

  /** Seals the pages added since the last chunk as one chunk (here or on the helper). */
  flush(): void {
    const count = this.#pending.length;
    if (count === 0) return;
    const { pages, runs } = encodeRuns(this.#pending);
    this.#pending = [];
    const { lineage, imageId, seq } = this.#ids;
    const index = this.entries.length;
    const c: Queued = { index, runs, count, aad: chunkAad(lineage, imageId, seq, index, pages), slot: -1, parts: [] };
    const nonce = randomBytes(NONCE);
    this.entries.push({ nonce, pages });
    const h = this.#h;
    if (h !== null) this.#writeSealed(false);
    if (this.#queue.length === 0 && (h === null || !alive(h) || freeSlot(h) < 0)) {
      this.#sealHere(c, nonce, this.#out); // nothing older is waiting: straight to the file
      return;
    }
    const s = h !== null && alive(h) ? freeSlot(h) : -1;
    if (s >= 0) this.#submit(h!, s, c, nonce);
    else this.#sealHere(c, nonce, { write: (b) => void c.parts.push(b) });
    this.#queue.push(c);
    this.#writeSealed(this.#queue.length > MAX_QUEUED);
  }

  /**
   * Seals what is left and writes every chunk; entries are then complete. Rather than wait for the
   * helper's last chunks, this thread takes back the newest one it has not started and seals it
   * here (the helper works from the oldest), until only chunks it holds are left.
   */
  finish(): void {
    this.flush();
    const h = this.#h;
    while (this.#queue.length > 0) {
      this.#writeSealed(false);
      const c = h === null ? undefined : this.#newestUnstarted(h);
      if (c === undefined) {
        this.#writeSealed(true);
        continue;
      }
      c.slot = -1;
      this.#sealHere(c, this.entries[c.index]!.nonce, { write: (b) => void c.parts.push(b) });
    }
    this.close();
  }

  /** Ends the job: frees the slots it holds without using them and wipes the key area. Idempotent. */
  close(): void {
    const h = this.#h;
    if (h === null) return;
    try {
      for (const c of this.#queue.splice(0)) if (c.slot >= 0 && settle(h, c.slot) === "done") release(h, c.slot);
    } finally {
      h.key.fill(0);
    }
  }

  /** The newest queued chunk the helper has not started, taken back from it. */
  #newestUnstarted(h: Helper): Queued | undefined {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const c = this.#queue[i]!;
      if (c.slot >= 0 && reclaim(h, c.slot)) return c;
    }
    return undefined;
  }

  /** Hashes (with digests) and seals chunk c on this thread into `out`. */
  #sealHere(c: Queued, nonce: Buffer, out: Sink): void {
    if (this.#digests) for (const r of c.runs) hashPagesInto(this.#mem, this.#digests, r.first, r.count);
    sealRuns(out, this.#key, nonce, c.aad, c.runs, this.#mem);
  }

  /** Copies chunk c's pages and cipher inputs into slot s and hands it to the helper. */
  #submit(h: Helper, s: number, c: Queued, nonce: Buffer): void {
    const data = slotData(h, s);
    let at = 0;
    for (const r of c.runs) {
      data.set(this.#mem.subarray(r.first * PAGE, (r.first + r.count) * PAGE), at);
      at += r.count * PAGE;
    }
    const aux = slotAux(h, s);
    aux.set(nonce, AUX_CIPHER);
    aux.set(c.aad, AUX_CIPHER + NONCE);
    c.slot = s;
    submit(h, s, this.#digests ? KIND_SEAL_HASH : KIND_SEAL, c.count, NONCE + c.aad.length);
  }

  /**
   * Writes the chunks at the front of the queue that are sealed. With `wait`, the first is written in
   * any case: the helper's result when it finishes, else (never started, stalled, dead, or no finished
   * ciphertext) sealed here under a fresh nonce. Slot data reaches the file only from a slot in DONE
   * whose result says it holds ciphertext (invariant 5).
   */
  #writeSealed(wait: boolean): void {
    const h = this.#h!;
    for (; this.#queue.length > 0; wait = false) {
      const c = this.#queue[0]!;
      if (c.slot < 0) {
        this.#queue.shift();
        for (const b of c.parts) this.#out.write(b);
        continue;
      }
      if (!wait && alive(h) && !isDone(h, c.slot)) return;
      this.#queue.shift();
      const s = c.slot;
      c.slot = -1;
      const outcome = settle(h, s);
      let written = false;
      try {
        if (outcome === "done" && verified(h, s)) {
          if (this.#digests) scatterDigests(slotAux(h, s), c.runs, this.#digests);
          this.#out.writeNow(slotData(h, s).subarray(0, c.count * PAGE + TAG));
          written = true;
        }
      } finally {
        if (outcome === "done") release(h, s);
      }
      if (!written) {
        const nonce = randomBytes(NONCE);
        this.entries[c.index]!.nonce = nonce;
        this.#sealHere(c, nonce, this.#out);
      }
    }
  }
}

function freeSlot(h: Helper): number {
  for (let s = 0; s < SLOTS; s++) if (isFree(h, s)) return s;
  return -1;
}

/** Puts a chunk's digests (aux [0, 32 x pages), in page order) at its pages' positions. */
function scatterDigests(aux: Uint8Array, runs: readonly Run[], digests: Buffer): void {
  let at = 0;
  for (const r of runs) {
    digests.set(aux.subarray(at * HASH_BYTES, (at + r.count) * HASH_BYTES), r.first * HASH_BYTES);
    at += r.count;
  }
}

/**
 * Seals every non-zero page of `mem` (a full image). With `digests` (memory/4096 x 32 bytes), fills
 * in every page's digest: a zero page's is ZERO_PAGE_HASH (its content was compared with zeros), the
 * others come from the sealer, which hashes each chunk where it seals it. The caller finishes and
 * closes the sealer.
 */
export function sealNonZeroPages(mem: Uint8Array, sealer: ChunkSealer, digests?: Buffer): void {
  const view = asBuffer(mem);
  const total = mem.length / PAGE;
  for (let p = 0; p < total; p++) {
    if (!isZeroContent(view, p)) sealer.add(p);
    else if (digests) ZERO_PAGE_HASH.copy(digests, p * HASH_BYTES);
  }
}

/** An image of a chain as the reader holds it: open file, checked header and manifest. */
export interface ChainImage {
  file: string;
  fd: number;
  size: number;
  header: Header;
  manifest: Manifest;
}

interface ChunkRef {
  image: ChainImage;
  index: number;
  runs: Run[];
  pages: number;
  offset: number;
}

export interface ReadPlan {
  memoryBytes: number;
  chunks: ChunkRef[];
  /** Per page of the newest image: the ordinal in `chunks` of the chunk holding it, or -1 (zero page). */
  holder: Int32Array;
}

/** Checks a chain (oldest first) and decides which chunk supplies each page (invariant 2). */
export function planRead(chain: readonly ChainImage[]): ReadPlan {
  const top = chain[chain.length - 1]!;
  const total = top.manifest.memoryBytes / PAGE;
  const holder = new Int32Array(total).fill(-1);
  const chunks: ChunkRef[] = [];
  for (const image of chain) {
    const pagesOfImage = image.manifest.memoryBytes / PAGE;
    let offset = image.header.clearBytes;
    let after = -1;
    image.manifest.chunks.forEach((c, index) => {
      const runs = decodeRuns(c.pages, pagesOfImage, after, image.file);
      let pages = 0;
      for (const r of runs) {
        holder.fill(chunks.length, r.first, r.first + r.count);
        pages += r.count;
      }
      const last = runs[runs.length - 1]!;
      after = last.first + last.count - 1;
      chunks.push({ image, index, runs, pages, offset });
      offset += pages * PAGE + TAG;
    });
    const end = image.header.manifestStart;
    if (offset !== end) throw tampered(image.file, `its chunks end at byte ${offset}, but its manifest starts at ${end} (the file was cut short or extended)`);
  }
  const hashes = top.manifest.pageHashes;
  if (hashes.length === 0) {
    // A full image without digests (validated: kind full): a page no chunk holds is zero.
    return { memoryBytes: top.manifest.memoryBytes, chunks, holder };
  }
  for (let p = 0; p < total; p++) {
    const h = holder[p]!;
    if (isZeroPage(hashes, p)) {
      if (h >= 0 && chunks[h]!.image === top) throw tampered(top.file, `page ${p} is stored although its digest says it is zero`);
      holder[p] = -1;
    } else if (h < 0) {
      throw tampered(top.file, `page ${p} is held by no image of the chain`);
    }
  }
  return { memoryBytes: top.manifest.memoryBytes, chunks, holder };
}

let scratch: Buffer | undefined;

/**
 * Opens, oldest image first, each chunk that supplies at least one page, copying its pages into `mem`
 * once its tag verified; large restores share the chunks with the helper. Then zeroes the zero pages
 * unless `memIsZeroed`. Throws IMAGE_TAMPERED on a failed tag or a short read.
 */
export function restoreInto(plan: ReadPlan, key: KeyObject, mem: Uint8Array, memIsZeroed: boolean): void {
  const needed = plan.chunks.map((_, i) => i).filter((i) => supplies(plan.holder, plan.chunks[i]!.runs, i));
  const bytes = needed.reduce((n, i) => n + plan.chunks[i]!.pages * PAGE, 0);
  const h = helperFor(bytes);
  if (h === null) {
    for (const i of needed) openHere(plan, i, key, mem);
  } else {
    openShared(plan, needed, h, key, mem);
  }
  if (!memIsZeroed) zeroPages(plan.holder, mem);
}

/** Chunks go to free helper slots as they come; this thread opens the rest and copies every result. */
function openShared(plan: ReadPlan, needed: readonly number[], h: Helper, key: KeyObject, mem: Uint8Array): void {
  const own = new Int32Array(SLOTS).fill(-1);
  const raw = key.export();
  h.key.set(raw);
  raw.fill(0);
  try {
    for (const i of needed) {
      collectDone(plan, h, own, mem);
      const s = alive(h) ? freeOwnSlot(h, own) : -1;
      if (s >= 0) submitOpen(plan, i, h, s, own);
      else openHere(plan, i, key, mem);
    }
    for (let s = 0; s < SLOTS; s++) {
      const i = own[s]!;
      if (i < 0) continue;
      if (settle(h, s) === "done") {
        collect(plan, h, s, own, mem);
      } else {
        own[s] = -1;
        openHere(plan, i, key, mem);
      }
    }
  } catch (e) {
    cancel(h, own);
    throw e;
  } finally {
    h.key.fill(0);
  }
}

function freeOwnSlot(h: Helper, own: Int32Array): number {
  for (let s = 0; s < SLOTS; s++) if (own[s]! < 0 && isFree(h, s)) return s;
  return -1;
}

/** Reads chunk i's ciphertext straight into slot s and hands it to the helper. */
function submitOpen(plan: ReadPlan, i: number, h: Helper, s: number, own: Int32Array): void {
  const ref = plan.chunks[i]!;
  const len = ref.pages * PAGE;
  if (!readAt(ref.image.fd, slotData(h, s).subarray(0, len + TAG), ref.offset)) throw tampered(ref.image.file, `chunk ${ref.index} is cut short`);
  const aux = slotAux(h, s);
  const { nonce, aad } = cipherInputs(ref);
  aux.set(nonce, AUX_CIPHER);
  aux.set(aad, AUX_CIPHER + NONCE);
  own[s] = i;
  submit(h, s, KIND_OPEN, ref.pages, NONCE + aad.length);
}

function collectDone(plan: ReadPlan, h: Helper, own: Int32Array, mem: Uint8Array): void {
  for (let s = 0; s < SLOTS; s++) if (own[s]! >= 0 && isDone(h, s)) collect(plan, h, s, own, mem);
}

function collect(plan: ReadPlan, h: Helper, s: number, own: Int32Array, mem: Uint8Array): void {
  const i = own[s]!;
  own[s] = -1;
  const ok = verified(h, s);
  try {
    if (!ok) throw failed(plan.chunks[i]!);
    copyHeld(slotData(h, s), plan.chunks[i]!, i, plan.holder, mem);
  } finally {
    release(h, s);
  }
}

/** Opens chunk i on this thread (in the scratch buffer) and copies its pages once the tag verified. */
function openHere(plan: ReadPlan, i: number, key: KeyObject, mem: Uint8Array): void {
  const ref = plan.chunks[i]!;
  const len = ref.pages * PAGE;
  scratch ??= Buffer.allocUnsafe(CHUNK_PAGES * PAGE + TAG);
  const buf = scratch.subarray(0, len + TAG);
  if (!readAt(ref.image.fd, buf, ref.offset)) throw tampered(ref.image.file, `chunk ${ref.index} is cut short`);
  const { nonce, aad } = cipherInputs(ref);
  if (!openInPlace(buf, len, key, nonce, aad)) throw failed(ref);
  copyHeld(buf, ref, i, plan.holder, mem);
}

function cipherInputs(ref: ChunkRef): { nonce: Buffer; aad: Buffer } {
  const { image, index } = ref;
  const c = image.manifest.chunks[index]!;
  return { nonce: c.nonce, aad: chunkAad(image.header.lineage, image.header.imageId, image.header.seq, index, c.pages) };
}

function failed(ref: ChunkRef): Error {
  return tampered(ref.image.file, `chunk ${ref.index} failed authentication (changed, swapped, or taken from another image)`);
}

function supplies(holder: Int32Array, runs: readonly Run[], ordinal: number): boolean {
  for (const r of runs) for (let p = r.first; p < r.first + r.count; p++) if (holder[p] === ordinal) return true;
  return false;
}

/** Copies the pages of a verified chunk that it supplies (`holder`) to their places; runs at a time. */
function copyHeld(plain: Uint8Array, ref: ChunkRef, ordinal: number, holder: Int32Array, mem: Uint8Array): void {
  let at = 0;
  for (const r of ref.runs) {
    for (let p = r.first, end = r.first + r.count; p < end; ) {
      if (holder[p] !== ordinal) {
        p++;
        at += PAGE;
        continue;
      }
      let q = p + 1;
      while (q < end && holder[q] === ordinal) q++;
      mem.set(plain.subarray(at, at + (q - p) * PAGE), p * PAGE);
      at += (q - p) * PAGE;
      p = q;
    }
  }
}

function zeroPages(holder: Int32Array, mem: Uint8Array): void {
  for (let p = 0; p < holder.length; ) {
    if (holder[p] !== -1) {
      p++;
      continue;
    }
    let end = p + 1;
    while (end < holder.length && holder[end] === -1) end++;
    mem.fill(0, p * PAGE, end * PAGE);
    p = end;
  }
}
