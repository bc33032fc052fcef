/**
 * TRUSTED. One chunk's AES-256-GCM, shared by the main thread and the helper worker.
 *
 * Invariants: openInPlace() overwrites the ciphertext with plaintext slice by slice and reports
 * whether the tag verified; a caller uses the plaintext only when it did. sealInPlace() overwrites
 * plaintext with ciphertext and appends the tag; it returns only once every byte is ciphertext.
 */
import { createCipheriv, createDecipheriv, type KeyObject } from "node:crypto";
import { PAGE } from "./page-digest.js";

/** Bytes per cipher update: large enough to amortise the call, small enough for malloc to reuse the output. */
export const SLICE = 64 * 1024;
export const TAG_BYTES = 16;

export interface Sink {
  /** Appends `buf`, which the caller must not change afterwards (it may be written later). */
  write(buf: Uint8Array): void;
}

/** A sink that can also write a buffer the caller reuses afterwards (a helper slot): the image file. */
export interface FileSink extends Sink {
  /** Appends `buf` (after what write() queued) before returning; the caller may reuse it then. */
  writeNow(buf: Uint8Array): void;
}

/** Seals pages `runs` of `mem` as one chunk, writing ciphertext slice by slice, then the tag. */
export function sealRuns(out: Sink, key: KeyObject, nonce: Uint8Array, aad: Uint8Array, runs: ReadonlyArray<{ first: number; count: number }>, mem: Uint8Array): void {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  for (const r of runs) {
    const end = (r.first + r.count) * PAGE;
    for (let o = r.first * PAGE; o < end; o += SLICE) out.write(c.update(mem.subarray(o, Math.min(o + SLICE, end))));
  }
  c.final();
  out.write(c.getAuthTag());
}

/** Encrypts buf[0, len) in place and writes the tag to buf[len, len + 16). */
export function sealInPlace(buf: Uint8Array, len: number, key: KeyObject | Uint8Array, nonce: Uint8Array, aad: Uint8Array): void {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  for (let o = 0; o < len; o += SLICE) buf.set(c.update(buf.subarray(o, Math.min(o + SLICE, len))), o);
  c.final();
  buf.set(c.getAuthTag(), len);
}

/** Decrypts buf[0, len) in place; the tag is buf[len, len + 16). True when it verified. */
export function openInPlace(buf: Uint8Array, len: number, key: KeyObject | Uint8Array, nonce: Uint8Array, aad: Uint8Array): boolean {
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(aad);
  d.setAuthTag(buf.subarray(len, len + TAG_BYTES));
  for (let o = 0; o < len; o += SLICE) buf.set(d.update(buf.subarray(o, Math.min(o + SLICE, len))), o);
  try {
    d.final();
    return true;
  } catch {
    return false;
  }
}
