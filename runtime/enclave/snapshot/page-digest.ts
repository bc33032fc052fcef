/**
 * TRUSTED. The page digest of snapshot images (IMAGES.md "Pages and chunks"): SHA-256 of each 4 KiB
 * page, computed on one thread. page-hasher.ts spreads the same computation over two threads.
 *
 * Invariant: the digest is SHA-256 (32 bytes). The enclave influences its own memory, so it must be
 * collision-resistant: a crafted page colliding with its old content would hide a change from a delta.
 */
import { createHash, hash as oneShotHash } from "node:crypto";

export const PAGE = 4096;
export const HASH_BYTES = 32;

/** crypto.hash (Node >= 20.12) skips creating a Hash object per page: ~15% faster at 4 KiB. */
const sha256: (b: Uint8Array) => Buffer =
  typeof oneShotHash === "function" ? (b) => oneShotHash("sha256", b, "buffer") : (b) => createHash("sha256").update(b).digest();

/** SHA-256 of a page of zeros: such pages are stored in no chunk. */
export const ZERO_PAGE_HASH: Buffer = sha256(new Uint8Array(PAGE));

/** Writes the digests of pages first..first+count of `mem` into `out` at the same page positions. */
export function hashPagesInto(mem: Uint8Array, out: Uint8Array, first: number, count: number, outFirst = first): void {
  const ab = mem.buffer;
  const base = mem.byteOffset;
  // A plain Uint8Array view per page is cheaper to make than a Buffer subarray.
  for (let i = 0; i < count; i++) out.set(sha256(new Uint8Array(ab, base + (first + i) * PAGE, PAGE)), (outFirst + i) * HASH_BYTES);
}
