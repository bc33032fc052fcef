/**
 * TRUSTED. Shared-memory layout between helper.ts (main thread) and helper-worker.ts: one table,
 * both sides. A slot holds one task: a window of pages to hash, a sealed chunk to open, or a chunk's
 * pages to seal (and, when the image records digests, to hash first).
 */
import { HASH_BYTES, PAGE } from "./page-digest.js";

export const SLOTS = 4;
/** Pages per hash window, and at most per chunk (1 MiB). */
export const SLOT_PAGES = 256;
export const TAG_BYTES = 16;
/** A slot's data area: a window of pages, or a chunk's plaintext pages, or its ciphertext and tag. */
export const SLOT_DATA = SLOT_PAGES * PAGE + TAG_BYTES;
/** Where a slot's aux area holds a chunk's nonce (12 bytes) then its AAD; before it, the digests. */
export const AUX_CIPHER = SLOT_PAGES * HASH_BYTES;
/** A slot's aux area: digests of the window's (or chunk's) pages, then the cipher inputs (AAD <= 2,117 bytes). */
export const SLOT_AUX = AUX_CIPHER + 4096;

/** Int32 fields per slot in the control array, then the doorbell. */
export const STATE = 0;
export const KIND = 1;
/** Pages in the window or the chunk. */
export const COUNT = 2;
/** Open and seal: bytes of nonce + AAD in aux from AUX_CIPHER. */
export const AUX_LEN = 3;
/** Open: 1 when the tag verified, 0 when it failed. Seal: 1 once data holds ciphertext and tag. */
export const RESULT = 4;
export const FIELDS = 5;
export const BELL = SLOTS * FIELDS;
export const CONTROL_INTS = BELL + 1;

export const KIND_HASH = 1;
export const KIND_OPEN = 2;
/** Seal the chunk's pages in place (ciphertext, then the tag after them). */
export const KIND_SEAL = 3;
/** Hash the chunk's pages into aux [0, 32 x count), then seal them as KIND_SEAL. */
export const KIND_SEAL_HASH = 4;

/** Slot states. */
export const FREE = 0;
export const READY = 1;
export const BUSY = 2;
export const DONE = 3;

export function at(s: number, field: number): number {
  return s * FIELDS + field;
}
