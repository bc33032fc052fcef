/**
 * UNTRUSTED side of the image store: names and bytes in the image folder. Everything passed here is
 * already ciphertext (or the clear header); nothing here decides what is valid (image-store.ts does).
 *
 * Invariants:
 *  1. Only names matching `<seq>.img` / `<seq>.tmp` (seq in decimal, no leading zero, <= 2^53-1) are
 *     ever listed, removed or written; other files in the folder are left alone.
 *  2. A tmp file is created O_EXCL; linkNoReplace() hard-links it to its final name, which fails when that
 *     name exists, so two writers never silently replace each other's image.
 *  3. The epoch record (`epoch`, IMAGES.md "Epoch record") is replaced only whole: written to
 *     `epoch.tmp`, fsynced, renamed over `epoch`, then the folder fsynced.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { syncDirectory } from "../../host/files.js";

const IMAGE_NAME = /^([1-9][0-9]{0,15})\.(img|tmp)$/;

export function imageFile(dir: string, seq: number): string {
  return path.join(dir, `${seq}.img`);
}

export function tmpFile(dir: string, seq: number): string {
  return path.join(dir, `${seq}.tmp`);
}

export const EPOCH_NAME = "epoch";
const EPOCH_TMP = "epoch.tmp";

/** The epoch record's bytes, or undefined when there is none (the caller checks them). */
export function readEpoch(dir: string): Buffer | undefined {
  try {
    const b = fs.readFileSync(path.join(dir, EPOCH_NAME));
    return b;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Replaces the epoch record durably (invariant 3). */
export function writeEpoch(dir: string, bytes: Uint8Array): void {
  const tmp = path.join(dir, EPOCH_TMP);
  removeQuietly(tmp);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, done);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    removeQuietly(tmp);
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, path.join(dir, EPOCH_NAME));
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  }
  syncDirectory(dir);
}

/** Removes the epoch record and a leftover epoch.tmp (destroy; open removes only the tmp). */
export function removeEpoch(dir: string, tmpOnly: boolean): void {
  removeQuietly(path.join(dir, EPOCH_TMP));
  if (!tmpOnly) removeQuietly(path.join(dir, EPOCH_NAME));
}

/** Seqs of the image (or tmp) files in `dir`, largest first. */
export function listSeqs(dir: string, kind: "img" | "tmp"): number[] {
  const seqs: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = IMAGE_NAME.exec(name);
    if (m && m[2] === kind && Number.isSafeInteger(Number(m[1]))) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => b - a);
}

export function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    /* already gone, or removed on a later open */
  }
}

export function syncDir(dir: string): void {
  syncDirectory(dir);
}

/** Opens an image for reading; undefined when it does not exist. */
export function openForRead(file: string): { fd: number; size: number } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    return { fd, size: fs.fstatSync(fd).size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** Reads exactly buf.length bytes at `pos` (the caller checked the file is long enough); false if short. */
export function readAt(fd: number, buf: Uint8Array, pos: number): boolean {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** Appended buffers are written together (one writev) once this many bytes are pending. */
const BATCH_BYTES = 1024 * 1024;

/** Writer of a new tmp file: appends from `start` (batched); writeAt() fills what was skipped (the header). */
export class TmpWriter {
  readonly file: string;
  readonly #fd: number;
  #pos: number;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #closed = false;

  constructor(file: string, start: number) {
    this.file = file;
    this.#fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    this.#pos = start;
  }

  /** Bytes up to the end of the last append. */
  get bytes(): number {
    return this.#pos + this.#pendingBytes;
  }

  /** Appends `buf`, which the caller must not change afterwards (it may be written later). */
  write(buf: Uint8Array): void {
    this.#pending.push(buf);
    this.#pendingBytes += buf.length;
    if (this.#pendingBytes >= BATCH_BYTES) this.#flush();
  }

  /** Appends `buf` now (with what is pending, one writev); the caller may reuse `buf` afterwards. */
  writeNow(buf: Uint8Array): void {
    this.#pending.push(buf);
    this.#pendingBytes += buf.length;
    this.#flush();
  }

  writeAt(buf: Uint8Array, pos: number): void {
    this.#flush();
    let done = 0;
    while (done < buf.length) done += fs.writeSync(this.#fd, buf, done, buf.length - done, pos + done);
  }

  sync(): void {
    this.#flush();
    fs.fsyncSync(this.#fd);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#flush();
    } finally {
      fs.closeSync(this.#fd);
    }
  }

  /** Closes and removes the file (a failed write); pending bytes are dropped. */
  discard(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    try {
      this.close();
    } finally {
      removeQuietly(this.file);
    }
  }

  #flush(): void {
    const bufs = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    while (bufs.length > 0) {
      let n = fs.writevSync(this.#fd, bufs, this.#pos);
      this.#pos += n;
      while (n > 0) {
        const b = bufs[0]!;
        if (n >= b.length) {
          n -= b.length;
          bufs.shift();
        } else {
          bufs[0] = b.subarray(n);
          n = 0;
        }
      }
    }
  }
}

/** Gives a closed tmp file its final name; throws EEXIST when that name is taken (invariant 2). */
export function linkNoReplace(tmp: string, final: string): void {
  fs.linkSync(tmp, final);
  removeQuietly(tmp);
}

/** Removes the folder if it is empty (other files keep it). */
export function removeDirIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    /* not empty, or gone */
  }
}
