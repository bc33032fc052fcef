/**
 * TRUSTED. Shared-memory layout between helper.ts (main thread) and helper-worker.ts: one table,
 * both sides. A slot holds one task: a window of pages to hash, or a sealed chunk to open.
 */
import { HASH_BYTES, PAGE } from "./page-digest.js";

export const SLOTS = 4;
/** Pages per hash window, and at most per chunk (1 MiB). */
export const SLOT_PAGES = 256;
export const TAG_BYTES = 16;
/** A slot's data area: a window of pages, or a chunk's ciphertext and tag. */
export const SLOT_DATA = SLOT_PAGES * PAGE + TAG_BYTES;
/** A slot's aux area: the window's digests, or the chunk's nonce (12) then its AAD. */
export const SLOT_AUX = SLOT_PAGES * HASH_BYTES;

/** Int32 fields per slot in the control array, then the doorbell. */
export const STATE = 0;
export const KIND = 1;
/** Pages in the window or the chunk. */
export const COUNT = 2;
/** Open: bytes of nonce + AAD in aux. */
export const AUX_LEN = 3;
/** Open: 1 when the tag verified, 0 when it failed. */
export const RESULT = 4;
export const FIELDS = 5;
export const BELL = SLOTS * FIELDS;
export const CONTROL_INTS = BELL + 1;

export const KIND_HASH = 1;
export const KIND_OPEN = 2;

/** Slot states. */
export const FREE = 0;
export const READY = 1;
export const BUSY = 2;
export const DONE = 3;

export function at(s: number, field: number): number {
  return s * FIELDS + field;
}
