/**
 * TRUSTED (enclave side). Serves the `selkie:fs` ocalls of one enclave instance (enclaves/ABI.md §2.2).
 *
 * Invariants:
 *  1. The guest names files, never host paths: a name is accepted only if it is one of the files of
 *     the database this enclave was opened for (the database and its rollback journal). Anything
 *     else is SQLITE_CANTOPEN / SQLITE_PERM.
 *  2. Every pointer and length from the guest is bounds-checked before use (SQLITE_MISUSE if not).
 *  3. No exception crosses back into the guest: host errors become SQLite codes (errno map below).
 *  4. Anonymous temp files (path_len 0) live only in enclave memory and never reach the host.
 *  5. `closeAll()` releases every file and lock of the instance, so a trapped instance leaves
 *     nothing held; SQLite's hot-journal rollback then restores the last commit on reopen.
 *
 * Until sealed storage lands, the bytes passed down are the plaintext database (issue 2's plain mode).
 */
import * as path from "node:path";
import type { FileHandle, FileLayer } from "../host/files.js";
import type { GuestMemory } from "../enclave/memory.js";
import * as C from "../sql/codes.js";
import { LOCK_NONE, processLocks, type LockTable } from "./lock-table.js";

const MAX_FILES = 64;

interface OpenFile {
  name: string;
  hostPath: string | undefined; // undefined: anonymous in-memory temp file
  handle: FileHandle | undefined;
  mem: Uint8Array | undefined; // contents of a memory file
  memSize: number;
  deleteOnClose: boolean;
  owner: object; // lock owner token
}

/** Maps node errno codes to SQLite codes for an operation (the one place foreign codes are mapped). */
export function errnoToSqlite(e: unknown, fallback: number): number {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return C.SQLITE_FULL;
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return fallback === C.SQLITE_CANTOPEN ? C.SQLITE_CANTOPEN : C.SQLITE_PERM;
    case "ENOENT":
      return fallback === C.SQLITE_IOERR_DELETE ? C.SQLITE_IOERR_DELETE_NOENT : fallback;
    default:
      return fallback;
  }
}

export interface VfsServerOptions {
  /** Folder holding the database. */
  dir: string;
  /** The database file name inside `dir` the enclave may open (with its journal). */
  dbName: string;
  files: FileLayer;
  readonly?: boolean;
  locks?: LockTable;
}

export class VfsServer {
  #mem: GuestMemory | undefined;
  readonly #files = new Map<number, OpenFile>();
  #nextId = 1;
  readonly #allowed: Set<string>;
  readonly #locks: LockTable;

  constructor(readonly opts: VfsServerOptions) {
    this.#allowed = new Set([opts.dbName, `${opts.dbName}-journal`]);
    this.#locks = opts.locks ?? processLocks;
  }

  /** Bind to the guest memory of a (new) instance. */
  attach(mem: GuestMemory): void {
    this.#mem = mem;
  }

  get openCount(): number {
    return this.#files.size;
  }

  /** Releases every file and lock (after close or a trap). Never throws. */
  closeAll(): void {
    for (const fid of [...this.#files.keys()]) this.close(fid);
  }

  #guestName(ptr: number, len: number): string | number {
    const mem = this.#mem!;
    if (!mem.inBounds(ptr, len) || len > 512) return C.SQLITE_MISUSE;
    const name = mem.text(ptr, len);
    return this.#allowed.has(name) ? name : C.SQLITE_CANTOPEN;
  }

  /** The import object for namespace selkie:fs. */
  imports(): Record<string, (...a: number[]) => number> {
    return {
      open: (p, l, f, o) => this.open(p, l, f, o),
      close: (fid) => this.close(fid),
      read: (fid, b, n, off) => this.read(fid, b, n, off),
      write: (fid, b, n, off) => this.write(fid, b, n, off),
      truncate: (fid, size) => this.truncate(fid, size),
      sync: (fid) => this.sync(fid),
      size: (fid) => this.size(fid),
      lock: (fid, lvl) => this.lock(fid, lvl),
      unlock: (fid, lvl) => this.unlock(fid, lvl),
      check_reserved: (fid) => this.checkReserved(fid),
      file_control: () => C.SQLITE_NOTFOUND,
      device_characteristics: () => 0,
      delete: (p, l, s) => this.remove(p, l, s),
      access: (p, l) => this.access(p, l),
    };
  }

  open(pathPtr: number, pathLen: number, flags: number, outPtr: number): number {
    const mem = this.#mem!;
    if (!mem.inBounds(outPtr, 4)) return C.SQLITE_MISUSE;
    if (this.#files.size >= MAX_FILES) return C.SQLITE_CANTOPEN;
    let file: OpenFile;
    if (pathLen === 0) {
      file = { name: "", hostPath: undefined, handle: undefined, mem: new Uint8Array(0), memSize: 0, deleteOnClose: true, owner: {} };
    } else {
      const name = this.#guestName(pathPtr, pathLen);
      if (typeof name === "number") return name;
      const hostPath = path.join(this.opts.dir, name);
      const readonly = this.opts.readonly === true || (flags & C.SQLITE_OPEN_READONLY) !== 0;
      try {
        const handle = this.opts.files.open(hostPath, {
          create: (flags & C.SQLITE_OPEN_CREATE) !== 0 && !readonly,
          readonly,
          exclusive: (flags & C.SQLITE_OPEN_EXCLUSIVE) !== 0,
        });
        file = { name, hostPath, handle, mem: undefined, memSize: 0, deleteOnClose: (flags & C.SQLITE_OPEN_DELETEONCLOSE) !== 0, owner: {} };
      } catch (e) {
        return errnoToSqlite(e, C.SQLITE_CANTOPEN);
      }
    }
    const fid = this.#nextId++;
    this.#files.set(fid, file);
    mem.writeI32(outPtr, fid);
    return C.SQLITE_OK;
  }

  close(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return C.SQLITE_IOERR_CLOSE;
    this.#files.delete(fid);
    if (f.hostPath !== undefined) this.#locks.unlock(f.hostPath, f.owner, LOCK_NONE);
    try {
      if (f.handle) this.opts.files.close(f.handle);
      if (f.deleteOnClose && f.hostPath) this.opts.files.remove(f.hostPath, false);
      return C.SQLITE_OK;
    } catch (e) {
      return errnoToSqlite(e, C.SQLITE_IOERR_CLOSE);
    }
  }

  read(fid: number, buf: number, amt: number, offset: number): number {
    const f = this.#files.get(fid);
    const mem = this.#mem!;
    if (!f || !mem.inBounds(buf, amt) || !Number.isSafeInteger(offset) || offset < 0) return -C.SQLITE_MISUSE;
    if (f.mem) {
      const avail = Math.max(0, Math.min(amt, f.memSize - offset));
      if (avail > 0) mem.u8.set(f.mem.subarray(offset, offset + avail), buf);
      return avail;
    }
    try {
      return this.opts.files.read(f.handle!, mem.u8.subarray(buf, buf + amt), offset);
    } catch (e) {
      return -errnoToSqlite(e, C.SQLITE_IOERR_READ);
    }
  }

  write(fid: number, buf: number, amt: number, offset: number): number {
    const f = this.#files.get(fid);
    const mem = this.#mem!;
    if (!f || !mem.inBounds(buf, amt) || !Number.isSafeInteger(offset) || offset < 0) return C.SQLITE_MISUSE;
    if (f.mem) {
      const end = offset + amt;
      if (end > f.mem.length) {
        const grown = new Uint8Array(Math.max(end, f.mem.length * 2));
        grown.set(f.mem.subarray(0, f.memSize));
        f.mem = grown;
      }
      f.mem.set(mem.u8.subarray(buf, buf + amt), offset);
      f.memSize = Math.max(f.memSize, end);
      return C.SQLITE_OK;
    }
    try {
      this.opts.files.write(f.handle!, mem.u8.subarray(buf, buf + amt), offset);
      return C.SQLITE_OK;
    } catch (e) {
      return errnoToSqlite(e, C.SQLITE_IOERR_WRITE);
    }
  }

  truncate(fid: number, size: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isSafeInteger(size) || size < 0) return C.SQLITE_MISUSE;
    if (f.mem) {
      if (size < f.memSize) f.mem.fill(0, size, f.memSize);
      f.memSize = Math.min(f.memSize, size);
      return C.SQLITE_OK;
    }
    try {
      this.opts.files.truncate(f.handle!, size);
      return C.SQLITE_OK;
    } catch (e) {
      return errnoToSqlite(e, C.SQLITE_IOERR_TRUNCATE);
    }
  }

  sync(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return C.SQLITE_MISUSE;
    if (f.mem) return C.SQLITE_OK;
    try {
      this.opts.files.sync(f.handle!);
      return C.SQLITE_OK;
    } catch (e) {
      return errnoToSqlite(e, C.SQLITE_IOERR_FSYNC);
    }
  }

  size(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return -C.SQLITE_MISUSE;
    if (f.mem) return f.memSize;
    try {
      return this.opts.files.size(f.handle!);
    } catch (e) {
      return -errnoToSqlite(e, C.SQLITE_IOERR);
    }
  }

  lock(fid: number, level: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isInteger(level) || level < 0 || level > 4) return C.SQLITE_MISUSE;
    if (f.hostPath === undefined) return C.SQLITE_OK;
    return this.#locks.lock(f.hostPath, f.owner, level) ? C.SQLITE_OK : C.SQLITE_BUSY;
  }

  unlock(fid: number, level: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isInteger(level) || level < 0 || level > 1) return C.SQLITE_MISUSE;
    if (f.hostPath !== undefined) this.#locks.unlock(f.hostPath, f.owner, level);
    return C.SQLITE_OK;
  }

  checkReserved(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return -C.SQLITE_MISUSE;
    if (f.hostPath === undefined) return 0;
    return this.#locks.reserved(f.hostPath) ? 1 : 0;
  }

  remove(pathPtr: number, pathLen: number, syncDir: number): number {
    const name = this.#guestName(pathPtr, pathLen);
    if (typeof name === "number") return name === C.SQLITE_CANTOPEN ? C.SQLITE_IOERR_DELETE : name;
    try {
      this.opts.files.remove(path.join(this.opts.dir, name), syncDir !== 0);
      return C.SQLITE_OK;
    } catch (e) {
      return errnoToSqlite(e, C.SQLITE_IOERR_DELETE);
    }
  }

  access(pathPtr: number, pathLen: number): number {
    const name = this.#guestName(pathPtr, pathLen);
    if (typeof name === "number") return name === C.SQLITE_CANTOPEN ? 0 : -name;
    try {
      return this.opts.files.exists(path.join(this.opts.dir, name)) ? 1 : 0;
    } catch (e) {
      return -errnoToSqlite(e, C.SQLITE_IOERR);
    }
  }
}
