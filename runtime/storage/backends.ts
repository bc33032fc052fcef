/**
 * TRUSTED. What an open file of the enclave is backed by:
 *  - SealedFile: the database in the sealed page store (only ciphertext reaches the host);
 *  - MemoryFile: journals and temporary files, which never leave enclave memory;
 *  - HostFile: a plain host file (the explicit, unprotected `plain` mode, for interop).
 */
import type { FileHandle, FileLayer } from "../host/files.js";
import type { PageStore, ReadView } from "./page-store.js";

export const SQLITE_FCNTL_SYNC = 21;
export const SQLITE_FCNTL_COMMIT_PHASETWO = 22;
export const SQLITE_FCNTL_BEGIN_ATOMIC_WRITE = 31;
export const SQLITE_FCNTL_COMMIT_ATOMIC_WRITE = 32;
export const SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE = 33;

const IOCAP_ATOMIC = 0x1;
const IOCAP_SAFE_APPEND = 0x200;
const IOCAP_SEQUENTIAL = 0x400;
const IOCAP_UNDELETABLE_WHEN_OPEN = 0x800;
const IOCAP_POWERSAFE_OVERWRITE = 0x1000;
const IOCAP_BATCH_ATOMIC = 0x4000;

export interface FileBackend {
  /** SQLITE_IOCAP_* bits reported to SQLite. */
  readonly caps: number;
  read(dst: Uint8Array, offset: number): number;
  write(src: Uint8Array, offset: number): void;
  truncate(size: number): void;
  sync(): void;
  size(): number;
  /** Handles a forwarded file-control op; false when it does not apply (SQLITE_NOTFOUND). */
  control(op: number): boolean;
  /** Called when the connection drops from a write lock to SHARED or NONE. */
  endWrite(): void;
  close(): void;
}

export class SealedFile implements FileBackend {
  readonly caps = IOCAP_BATCH_ATOMIC | IOCAP_SAFE_APPEND | IOCAP_SEQUENTIAL | IOCAP_POWERSAFE_OVERWRITE | IOCAP_UNDELETABLE_WHEN_OPEN;
  /**
   * The read view this file reads through while it holds SHARED only (ISOLATION.md): set when the
   * lock rises from NONE (or falls back from a write lock) to SHARED, cleared at RESERVED and NONE.
   */
  #view: ReadView | undefined;
  constructor(readonly store: PageStore, private readonly release: () => void) {}
  /** Pins the last commit for this file's reads (a read transaction starts). */
  beginRead(): void {
    this.endRead();
    this.#view = this.store.openView();
  }
  endRead(): void {
    if (this.#view) this.store.closeView(this.#view);
    this.#view = undefined;
  }
  /** True when a commit landed after this file's view was pinned: it may not start writing. */
  get stale(): boolean {
    return this.#view?.stale === true;
  }
  read(dst: Uint8Array, offset: number): number {
    return this.#view ? this.store.readView(this.#view, dst, offset) : this.store.read(dst, offset);
  }
  write(src: Uint8Array, offset: number): void {
    this.store.write(src, offset);
  }
  truncate(size: number): void {
    this.store.truncate(size);
  }
  sync(): void {
    this.store.commit();
  }
  size(): number {
    return this.#view ? this.#view.size : this.store.size;
  }
  control(op: number): boolean {
    switch (op) {
      case SQLITE_FCNTL_BEGIN_ATOMIC_WRITE:
        return true;
      case SQLITE_FCNTL_SYNC: // sent at every commit point, even with PRAGMA synchronous=OFF
      case SQLITE_FCNTL_COMMIT_PHASETWO: // after phase two, which may still truncate the file
      case SQLITE_FCNTL_COMMIT_ATOMIC_WRITE:
        this.store.commit();
        return true;
      case SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE:
        this.store.rollback();
        return true;
      default:
        return false;
    }
  }
  endWrite(): void {
    // Every commit point passes FCNTL_SYNC, xSync or COMMIT_ATOMIC_WRITE first: writes still pending
    // when the write lock drops belong to a transaction that rolled back or failed. Drop them.
    this.store.rollback();
  }
  close(): void {
    this.endRead();
    this.release();
  }
}

export class MemoryFile implements FileBackend {
  readonly caps = IOCAP_ATOMIC | IOCAP_SAFE_APPEND | IOCAP_SEQUENTIAL | IOCAP_POWERSAFE_OVERWRITE;
  #data = new Uint8Array(0);
  #size = 0;
  read(dst: Uint8Array, offset: number): number {
    const n = Math.max(0, Math.min(dst.length, this.#size - offset));
    if (n > 0) dst.set(this.#data.subarray(offset, offset + n));
    return n;
  }
  write(src: Uint8Array, offset: number): void {
    const end = offset + src.length;
    if (end > this.#data.length) {
      const grown = new Uint8Array(Math.max(end, this.#data.length * 2, 4096));
      grown.set(this.#data.subarray(0, this.#size));
      this.#data = grown;
    }
    this.#data.set(src, offset);
    this.#size = Math.max(this.#size, end);
  }
  truncate(size: number): void {
    if (size < this.#size) this.#data.fill(0, size, this.#size);
    this.#size = Math.min(this.#size, size);
  }
  sync(): void {}
  size(): number {
    return this.#size;
  }
  control(): boolean {
    return false;
  }
  endWrite(): void {}
  close(): void {}
}

/**
 * Sizes of the plain host files open in this process, by path. The process lock (host/process-lock)
 * guarantees no other process changes them, so SQLite's size query at every transaction need not
 * be an fstat; every connection's writes and truncates update the one shared entry.
 */
const hostSizes = new Map<string, { size: number; refs: number }>();

export class HostFile implements FileBackend {
  readonly caps = 0;
  readonly #size: { size: number; refs: number };
  /**
   * @param dirToSync set when this open created the file (a new journal): its first sync also
   *   fsyncs the folder, so the journal's name survives a power loss, as SQLite's unix VFS does.
   */
  constructor(
    private readonly files: FileLayer,
    private readonly handle: FileHandle,
    private readonly onClose: () => void = () => {},
    private dirToSync: string | undefined = undefined,
  ) {
    let entry = hostSizes.get(handle.path);
    if (!entry) {
      entry = { size: files.size(handle), refs: 0 };
      hostSizes.set(handle.path, entry);
    }
    entry.refs++;
    this.#size = entry;
  }
  read(dst: Uint8Array, offset: number): number {
    return this.files.read(this.handle, dst, offset);
  }
  write(src: Uint8Array, offset: number): void {
    try {
      this.files.write(this.handle, src, offset);
    } catch (e) {
      this.#size.size = this.files.size(this.handle); // a failed write may still have extended the file
      throw e;
    }
    if (offset + src.length > this.#size.size) this.#size.size = offset + src.length;
  }
  truncate(size: number): void {
    this.files.truncate(this.handle, size);
    this.#size.size = size;
  }
  sync(): void {
    this.files.sync(this.handle);
    if (this.dirToSync !== undefined) {
      this.files.syncDir(this.dirToSync);
      this.dirToSync = undefined;
    }
  }
  size(): number {
    return this.#size.size;
  }
  control(): boolean {
    return false;
  }
  endWrite(): void {}
  close(): void {
    if (--this.#size.refs === 0) hostSizes.delete(this.handle.path);
    try {
      this.files.close(this.handle);
    } finally {
      this.onClose();
    }
  }
}
