/**
 * UNTRUSTED reading of the source's store files for pre-copy (PROTOCOL.md §4). They are ciphertext
 * already (sealed slots, sealed log records); this module only decides which bytes changed since
 * the last round: per-slot SHA-256 for the slot file, prefix SHA-256 for the log.
 *
 * Cost (measured by `npm run bench:migrate`): the frozen round re-reads the whole slot file, so its
 * work is kept to one SHA-256 pass over unchanged data: each read unit (254 slots, ~1 MiB) is hashed
 * whole first and its slots are hashed one by one only when that digest changed. Files are read in
 * 1 MiB pieces into one reused buffer, never whole (a whole-file Buffer costs page faults and cache
 * misses: ~6x slower than streaming for a 64 MiB file).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { SLOT } from "../../storage/page-store.js";
import { CHUNK_BYTES } from "./messages.js";

export interface Chunk {
  readonly file: "slots" | "log";
  readonly offset: number;
  readonly bytes: Buffer;
  readonly reset: boolean;
}

const sha = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

/** What was sent so far, to compute the next round's delta. */
export class SentState {
  #slotDigests: Buffer[] = [];
  /** Digest of each read unit (CHUNK_BYTES of the slot file) as last read: unchanged units skip per-slot hashing. */
  #unitDigests: Buffer[] = [];
  #logLength = 0;
  #logPrefix: Buffer = sha(Buffer.alloc(0));
  slotsResent = 0;

  /** The chunks of the next round, and the files' lengths it brings the destination to. */
  delta(slotsPath: string, logPath: string, first: boolean): { chunks: Chunk[]; slotsLength: number; logLength: number; bytes: number } {
    const chunks: Chunk[] = [];
    let bytes = 0;
    const fd = fs.openSync(slotsPath, "r");
    let slotsLength: number;
    try {
      slotsLength = fs.fstatSync(fd).size;
      slotsLength -= slotsLength % SLOT; // a slot being appended now is caught by a later round
      // A run of changed slots lies within one read unit (flushed at its end), so it is copied out
      // of the read buffer once, as one chunk.
      const buf = Buffer.alloc(CHUNK_BYTES);
      let run: { offset: number; from: number; to: number } | undefined;
      const flush = (): void => {
        if (!run) return;
        const b = Buffer.from(buf.subarray(run.from, run.to));
        chunks.push({ file: "slots", offset: run.offset, bytes: b, reset: false });
        bytes += b.length;
        run = undefined;
      };
      for (let off = 0; off < slotsLength; off += CHUNK_BYTES) {
        const n = fs.readSync(fd, buf, 0, Math.min(CHUNK_BYTES, slotsLength - off), off);
        const unit = off / CHUNK_BYTES;
        const ud = sha(buf.subarray(0, n));
        const same = !first && n === CHUNK_BYTES && this.#unitDigests[unit]?.equals(ud) === true;
        this.#unitDigests[unit] = ud;
        if (same) continue; // every slot of this unit is as sent (their digests still hold)
        for (let o = 0; o + SLOT <= n; o += SLOT) {
          const s = (off + o) / SLOT;
          const slot = buf.subarray(o, o + SLOT);
          const d = sha(slot);
          const old = this.#slotDigests[s];
          if (old && old.equals(d)) {
            flush();
            continue;
          }
          if (old && !first) this.slotsResent++;
          this.#slotDigests[s] = d;
          if (run && run.to !== o) flush();
          if (!run) run = { offset: off + o, from: o, to: o };
          run.to = o + SLOT;
        }
        flush();
      }
      this.#slotDigests.length = slotsLength / SLOT;
      this.#unitDigests.length = Math.ceil(slotsLength / CHUNK_BYTES);
    } finally {
      fs.closeSync(fd);
    }
    const log = fs.readFileSync(logPath);
    const keepsPrefix = !first && log.length >= this.#logLength && sha(log.subarray(0, this.#logLength)).equals(this.#logPrefix);
    const from = keepsPrefix ? this.#logLength : 0;
    for (let o = from; o < log.length || (o === 0 && !keepsPrefix); o += CHUNK_BYTES) {
      const part = log.subarray(o, Math.min(log.length, o + CHUNK_BYTES));
      chunks.push({ file: "log", offset: o, bytes: Buffer.from(part), reset: o === 0 });
      bytes += part.length;
      if (log.length === 0) break;
    }
    this.#logLength = log.length;
    this.#logPrefix = sha(log);
    return { chunks, slotsLength, logLength: log.length, bytes };
  }
}

/** SHA-256 of a whole file, read in 1 MiB pieces. */
export function fileSha256(file: string): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    return fdSha256(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** SHA-256 of the whole file open as `fd`, read in 1 MiB pieces. */
export function fdSha256(fd: number): Buffer {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let off = 0; ; ) {
    const n = fs.readSync(fd, buf, 0, buf.length, off);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
    off += n;
  }
  return h.digest();
}
