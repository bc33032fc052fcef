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
 */
import { randomBytes, type KeyObject } from "node:crypto";
import { openInPlace, sealRuns, type Sink } from "./chunk-cipher.js";
import { CHUNK_PAGES, chunkAad, decodeRuns, encodeRuns, NONCE, tampered, TAG, type ChunkEntry, type Header, type Manifest, type Run } from "./image-format.js";
import { readAt } from "./image-files.js";
import { alive, cancel, helperFor, isDone, isFree, release, settle, slotAux, slotData, submit, verified, type Helper } from "./helper.js";
import { KIND_OPEN, SLOTS } from "./helper-slots.js";
import { PageHashJob } from "./page-hasher.js";
import { asBuffer, isZeroContent, isZeroPage, PAGE } from "./pages.js";

/** Gathers ascending pages into chunks of CHUNK_PAGES and seals each as it fills. */
export class ChunkSealer {
  readonly entries: ChunkEntry[] = [];
  readonly #out: Sink;
  readonly #key: KeyObject;
  readonly #ids: { lineage: Buffer; imageId: Buffer; seq: number };
  readonly #mem: Uint8Array;
  #pending: number[] = [];

  constructor(out: Sink, key: KeyObject, ids: { lineage: Buffer; imageId: Buffer; seq: number }, mem: Uint8Array) {
    this.#out = out;
    this.#key = key;
    this.#ids = ids;
    this.#mem = mem;
  }

  add(page: number): void {
    this.#pending.push(page);
    if (this.#pending.length === CHUNK_PAGES) this.flush();
  }

  flush(): void {
    if (this.#pending.length === 0) return;
    const { pages, runs } = encodeRuns(this.#pending);
    const nonce = randomBytes(NONCE);
    const { lineage, imageId, seq } = this.#ids;
    sealRuns(this.#out, this.#key, nonce, chunkAad(lineage, imageId, seq, this.entries.length, pages), runs, this.#mem);
    this.entries.push({ nonce, pages });
    this.#pending = [];
  }
}

/**
 * Seals every non-zero page of `mem` while the page digests are computed alongside (the helper thread
 * hashes the windows this thread is not encrypting); returns the digests.
 */
/** Seals every non-zero page of a full image without computing digests (no delta will follow). */
export function sealAllPagesUnhashed(mem: Uint8Array, sealer: ChunkSealer): Buffer {
  const view = asBuffer(mem);
  const total = mem.length / PAGE;
  for (let p = 0; p < total; p++) if (!isZeroContent(view, p)) sealer.add(p);
  sealer.flush();
  return Buffer.alloc(0);
}

export function sealAllPages(mem: Uint8Array, sealer: ChunkSealer): Buffer {
  const job = new PageHashJob(mem);
  const view = asBuffer(mem);
  const total = mem.length / PAGE;
  try {
    for (let w = 0; w < total; w += CHUNK_PAGES) {
      job.pump();
      const end = Math.min(total, w + CHUNK_PAGES);
      for (let p = w; p < end; p++) if (!isZeroContent(view, p)) sealer.add(p);
    }
    sealer.flush();
    return job.finish();
  } catch (e) {
    job.cancel();
    throw e;
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
      const s = alive(h) ? freeSlot(h, own) : -1;
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

function freeSlot(h: Helper, own: Int32Array): number {
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
  aux.set(nonce, 0);
  aux.set(aad, NONCE);
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
