/**
 * TRUSTED. Which 4 KiB pages of linear memory changed, for delta images (IMAGES.md "Pages and
 * chunks"): by page digest (page-digest.ts, on two threads for large memories) or by comparing with a
 * kept plaintext copy of the parent.
 *
 * Invariants: memory passed here is a whole number of pages. Pages past the end of the previous
 * memory always count as changed.
 */
import { HASH_BYTES, PAGE, ZERO_PAGE_HASH } from "./page-digest.js";
import { hashPages } from "./page-hasher.js";

export { HASH_BYTES, PAGE, ZERO_PAGE_HASH } from "./page-digest.js";

const COMPARE_BLOCK = 64 * 1024;
const ZERO_PAGE = Buffer.alloc(PAGE);

function pagesOf(mem: Uint8Array, what: string): number {
  if (!(mem instanceof Uint8Array) || mem.length % PAGE !== 0) throw new TypeError(`${what} must be a Uint8Array whose length is a multiple of ${PAGE}`);
  return mem.length / PAGE;
}

export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** Per-4 KiB-page SHA-256 digests of `mem`, 32 bytes each, in page order. */
export function pageHashes(mem: Uint8Array): Buffer {
  pagesOf(mem, "memory");
  return hashPages(mem);
}

/** Pages whose digest in `hashes` differs from `prev` (pageHashes of the parent), or that `prev` lacks. */
export function diffHashes(hashes: Buffer, prev: Uint8Array): number[] {
  const n = hashes.length / HASH_BYTES;
  const old = asBuffer(prev);
  const common = Math.min(n, Math.floor(old.length / HASH_BYTES));
  const changed: number[] = [];
  for (let p = 0; p < common; p++) {
    const o = p * HASH_BYTES;
    if (hashes.compare(old, o, o + HASH_BYTES, o, o + HASH_BYTES) !== 0) changed.push(p);
  }
  for (let p = common; p < n; p++) changed.push(p);
  return changed;
}

/** Pages of `mem` that changed since the parent whose pageHashes are `prev` (hashes every page of mem). */
export function changedPagesByHash(mem: Uint8Array, prev: Buffer): number[] {
  return diffHashes(pageHashes(mem), prev);
}

/** Pages of `mem` that differ from a kept plaintext copy `prev` of the parent's memory (or lie past its end). */
export function changedPagesByCompare(mem: Uint8Array, prev: Uint8Array): number[] {
  const n = pagesOf(mem, "memory");
  const a = asBuffer(mem);
  const b = asBuffer(prev);
  const common = Math.min(n * PAGE, b.length - (b.length % PAGE));
  const changed: number[] = [];
  // Compare 64 KiB blocks first (one native call each); look at pages only inside a differing block.
  for (let start = 0; start < common; start += COMPARE_BLOCK) {
    const end = Math.min(start + COMPARE_BLOCK, common);
    if (a.compare(b, start, end, start, end) === 0) continue;
    for (let o = start; o < end; o += PAGE) if (a.compare(b, o, o + PAGE, o, o + PAGE) !== 0) changed.push(o / PAGE);
  }
  for (let p = common / PAGE; p < n; p++) changed.push(p);
  return changed;
}

/** True when page p's digest in `hashes` is the zero page's. */
export function isZeroPage(hashes: Buffer, p: number): boolean {
  return hashes.compare(ZERO_PAGE_HASH, 0, HASH_BYTES, p * HASH_BYTES, (p + 1) * HASH_BYTES) === 0;
}

/** True when page p of `mem` (a Buffer view) is all zeros. */
export function isZeroContent(mem: Buffer, p: number): boolean {
  return mem.compare(ZERO_PAGE, 0, PAGE, p * PAGE, (p + 1) * PAGE) === 0;
}
