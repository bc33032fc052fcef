/**
 * TRUSTED (enclave side). Serves the `selkie:fs` ocalls of one enclave instance (enclaves/ABI.md §2.2).
 *
 * Invariants:
 *  1. The guest names files, never host paths: a name is accepted only if it is one of the files of
 *     the database this enclave was opened for (the database and its rollback journal). Anything
 *     else is SQLITE_CANTOPEN / SQLITE_PERM.
 *  2. Every pointer and length from the guest is bounds-checked before use (SQLITE_MISUSE if not).
 *  3. No exception crosses back into the guest: host errors become SQLite codes (errno map below),
 *     and a StorageError is kept for the SQL layer to raise in place of SQLite's generic I/O error.
 *  4. In sealed mode (the default) the database goes to the sealed page store and journals and temp
 *     files live only in enclave memory: nothing but ciphertext reaches the host.
 *  5. `closeAll()` releases every file and lock of the instance, so a trapped instance leaves
 *     nothing held; the store discards what was not committed only when this instance held the
 *     write lock (the pending writes are then its own): the store is shared by the process's
 *     connections, and another connection's open transaction is not ours to roll back.
 *  6. A snapshot (`describe()`) is taken only when the instance is idle: no lock held and no file
 *     open but the database itself, so the state is just which file ids name the database. SQLite
 *     revalidates its cache against the file when it next locks it, so a restored instance sees
 *     every commit made after the snapshot. `adopt()` reopens exactly those ids in a fresh server.
 *  7. Every value the file layer returns is checked here, once, before the guest sees it: a read
 *     count must be an integer in [0, asked], a size a non-negative safe integer. Anything else is
 *     STORAGE_FILE_LAYER (an I/O error to SQLite), never passed on.
 */
import * as path from "node:path";
import type { FileLayer } from "../host/files.js";
import type { GuestMemory } from "../enclave/memory.js";
import { SelkieError, SnapshotError } from "../errors.js";
import * as C from "../sql/codes.js";
import { HostFile, MemoryFile, SealedFile, type FileBackend } from "./backends.js";
import { StorageError } from "./errors.js";
import { LOCK_NONE, LOCK_RESERVED, LOCK_SHARED, processLocks, type LockTable } from "./lock-table.js";
import type { PageStore } from "./page-store.js";

const MAX_FILES = 64;

/**
 * Whether a plain database's journal exists, by host path, as this process last saw or made it.
 * SQLite asks at the start of every transaction (the hot-journal check); the process lock keeps
 * other processes out, so after one look at the disk the answer is ours to track.
 */
const journalSeen = new Map<string, boolean>();

interface OpenFile {
  name: string;
  backend: FileBackend;
  /** Lock key (host path of the database or journal); undefined for anonymous temp files. */
  lockKey: string | undefined;
  owner: object;
}

/** Maps node errno codes and storage errors to SQLite codes (the one place foreign codes are mapped). */
export function errnoToSqlite(e: unknown, fallback: number): number {
  const cause = e instanceof StorageError && e.cause ? e.cause : e;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
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

/** What a snapshot records of an idle VFS server (format in runtime/enclave/snapshot/IMAGES.md). */
export interface VfsState {
  v: 1;
  dbName: string;
  nextId: number;
  /** File ids the guest holds, each naming the database. */
  files: number[];
}

export interface VfsServerOptions {
  /** Folder holding the database. */
  dir: string;
  /** The database file name inside `dir` the enclave may open (with its journal). */
  dbName: string;
  files: FileLayer;
  readonly?: boolean;
  locks?: LockTable;
  /**
   * Sealed mode: hands out the database's page store (shared by the connections of a process) and
   * a function that releases it. Without it the database is a plain host file (unprotected).
   */
  openStore?: () => { store: PageStore; release: () => void };
}

export class VfsServer {
  #mem: GuestMemory | undefined;
  readonly #files = new Map<number, OpenFile>();
  /** Journals of sealed databases, by name: they exist only here, in enclave memory. */
  readonly #memFiles = new Map<string, MemoryFile>();
  #nextId = 1;
  readonly #allowed: Set<string>;
  readonly #locks: LockTable;
  #storageError: SelkieError | undefined;

  constructor(readonly opts: VfsServerOptions) {
    this.#allowed = new Set([opts.dbName, `${opts.dbName}-journal`]);
    this.#locks = opts.locks ?? processLocks;
  }

  get sealed(): boolean {
    return this.opts.openStore !== undefined;
  }

  /** Bind to the guest memory of a (new) instance. */
  attach(mem: GuestMemory): void {
    this.#mem = mem;
  }

  get openCount(): number {
    return this.#files.size;
  }

  /** True while any file of this instance holds a lock above NONE (a statement or transaction is running). */
  get locked(): boolean {
    for (const f of this.#files.values()) if (f.lockKey !== undefined && this.#locks.level(f.owner) !== LOCK_NONE) return true;
    return false;
  }

  /** True while a file of this instance holds a write lock (RESERVED or above). */
  get writing(): boolean {
    for (const f of this.#files.values()) if (f.lockKey !== undefined && this.#locks.level(f.owner) >= LOCK_RESERVED) return true;
    return false;
  }

  /** The snapshot state of an idle instance (invariant 6); SNAPSHOT_BUSY when it is not idle. */
  describe(): VfsState {
    const files: number[] = [];
    for (const [fid, f] of this.#files) {
      if (f.lockKey !== undefined && this.#locks.level(f.owner) !== LOCK_NONE) {
        throw new SnapshotError("SNAPSHOT_BUSY", `a statement or transaction holds a lock on ${f.name}; snapshot when it has finished`);
      }
      if (f.name !== this.opts.dbName) {
        throw new SnapshotError("SNAPSHOT_BUSY", `file ${JSON.stringify(f.name || "(temporary)")} is open; snapshot when the running statement has finished`);
      }
      files.push(fid);
    }
    if (this.#memFiles.size > 0) throw new SnapshotError("SNAPSHOT_BUSY", "a journal exists in enclave memory (a write is in progress); snapshot when it has finished");
    return { v: 1, dbName: this.opts.dbName, nextId: this.#nextId, files };
  }

  /** Reopens the files of a snapshot in this fresh server (invariant 6). Checks every value. */
  adopt(state: unknown): void {
    const st = state as Partial<VfsState> | undefined;
    const bad = (why: string): never => {
      throw new SnapshotError("IMAGE_TAMPERED", `the image's file state is invalid: ${why}`);
    };
    if (typeof st !== "object" || st === null || st.v !== 1) bad("unknown version");
    if (st!.dbName !== this.opts.dbName) {
      throw new SnapshotError("IMAGE_WRONG_ENCLAVE", `the image is of database ${JSON.stringify(st!.dbName)}, not ${JSON.stringify(this.opts.dbName)}; restore it into the database it was taken of`);
    }
    if (this.#files.size > 0) bad("the server already has open files");
    const nextId = st!.nextId;
    const files = st!.files;
    if (!Number.isSafeInteger(nextId) || nextId! < 1 || !Array.isArray(files) || files.length > MAX_FILES) bad("bad file table");
    for (const fid of files!) {
      if (!Number.isSafeInteger(fid) || fid < 1 || fid >= nextId! || this.#files.has(fid)) bad(`bad file id ${String(fid)}`);
      const name = this.opts.dbName;
      this.#files.set(fid, { name, backend: this.#backendFor(name, C.SQLITE_OPEN_READWRITE), lockKey: path.join(this.opts.dir, name), owner: {} });
    }
    this.#nextId = nextId!;
  }

  /** The storage error behind the last failed ocall, if any (cleared on read). */
  takeStorageError(): SelkieError | undefined {
    const e = this.#storageError;
    this.#storageError = undefined;
    return e;
  }

  /**
   * Releases every file and lock, and forgets the uncommitted writes of THIS instance (after close
   * or a trap). The page store is shared by every connection of the process (registry.ts): its
   * pending writes belong to whichever connection holds the write lock (RESERVED or above, which
   * SQLite takes before its first write and only one connection can hold). So only a file whose
   * own lock is at RESERVED or above rolls the store back; a connection that holds no write lock
   * leaves another connection's transaction alone (invariant 5). Never throws.
   */
  closeAll(): void {
    for (const fid of [...this.#files.keys()]) {
      const f = this.#files.get(fid)!;
      const writer = f.lockKey !== undefined && this.#locks.level(f.owner) >= LOCK_RESERVED;
      if (writer && f.backend instanceof SealedFile) f.backend.store.rollback();
      this.close(fid);
    }
    this.#memFiles.clear();
  }

  #fail(e: unknown, fallback: number): number {
    if (e instanceof SelkieError) this.#storageError = e;
    return errnoToSqlite(e, fallback);
  }

  /** A value from the file layer that cannot be true (invariant 7): a typed error, and an I/O code for SQLite. */
  #lie(f: OpenFile, what: string, code: number): number {
    const file = f.lockKey ?? f.name;
    this.#storageError = new StorageError(
      "STORAGE_FILE_LAYER",
      `the file layer under ${file || "a temporary file"} answered a value that cannot be true (it ${what}); the storage below this process is failing or hostile: check the disk and the file system, then reopen the database`,
      file,
    );
    return code;
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
      file_control: (fid, op) => this.fileControl(fid, op),
      device_characteristics: (fid) => this.#files.get(fid)?.backend.caps ?? 0,
      delete: (p, l, s) => this.remove(p, l, s),
      access: (p, l) => this.access(p, l),
    };
  }

  #backendFor(name: string, flags: number): FileBackend {
    const readonly = this.opts.readonly === true || (flags & C.SQLITE_OPEN_READONLY) !== 0;
    if (this.opts.openStore) {
      if (name === this.opts.dbName) {
        const { store, release } = this.opts.openStore();
        return new SealedFile(store, release);
      }
      let m = this.#memFiles.get(name);
      if (!m) {
        if ((flags & C.SQLITE_OPEN_CREATE) === 0) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
        m = new MemoryFile();
        this.#memFiles.set(name, m);
      }
      return m;
    }
    const hostPath = path.join(this.opts.dir, name);
    const existed = this.opts.files.exists(hostPath);
    const handle = this.opts.files.open(hostPath, {
      create: (flags & C.SQLITE_OPEN_CREATE) !== 0 && !readonly,
      readonly,
      exclusive: (flags & C.SQLITE_OPEN_EXCLUSIVE) !== 0,
    });
    if (name !== this.opts.dbName) journalSeen.set(hostPath, true);
    const files = this.opts.files;
    const deleteOnClose = (flags & C.SQLITE_OPEN_DELETEONCLOSE) !== 0;
    return new HostFile(files, handle, deleteOnClose ? () => files.remove(hostPath, false) : undefined, existed ? undefined : this.opts.dir);
  }

  open(pathPtr: number, pathLen: number, flags: number, outPtr: number): number {
    const mem = this.#mem!;
    if (!mem.inBounds(outPtr, 4)) return C.SQLITE_MISUSE;
    if (this.#files.size >= MAX_FILES) return C.SQLITE_CANTOPEN;
    let file: OpenFile;
    if (pathLen === 0) {
      file = { name: "", backend: new MemoryFile(), lockKey: undefined, owner: {} };
    } else {
      const name = this.#guestName(pathPtr, pathLen);
      if (typeof name === "number") return name;
      try {
        file = { name, backend: this.#backendFor(name, flags), lockKey: path.join(this.opts.dir, name), owner: {} };
      } catch (e) {
        return this.#fail(e, C.SQLITE_CANTOPEN);
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
    if (f.lockKey !== undefined) this.#locks.unlock(f.lockKey, f.owner, LOCK_NONE);
    try {
      f.backend.close();
      return C.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_CLOSE);
    }
  }

  read(fid: number, buf: number, amt: number, offset: number): number {
    const f = this.#files.get(fid);
    const mem = this.#mem!;
    if (!f || !mem.inBounds(buf, amt) || !Number.isSafeInteger(offset) || offset < 0) return -C.SQLITE_MISUSE;
    let n: number;
    try {
      n = f.backend.read(mem.u8.subarray(buf, buf + amt), offset);
    } catch (e) {
      return -this.#fail(e, C.SQLITE_IOERR_READ);
    }
    // Invariant 7: a count outside [0, amt] is a lie of the file layer, not data.
    if (!Number.isSafeInteger(n) || n < 0 || n > amt) return -this.#lie(f, `read ${amt} bytes at offset ${offset} and was told ${String(n)} came back`, C.SQLITE_IOERR_READ);
    return n;
  }

  write(fid: number, buf: number, amt: number, offset: number): number {
    const f = this.#files.get(fid);
    const mem = this.#mem!;
    if (!f || !mem.inBounds(buf, amt) || !Number.isSafeInteger(offset) || offset < 0) return C.SQLITE_MISUSE;
    try {
      f.backend.write(mem.u8.subarray(buf, buf + amt), offset);
      return C.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_WRITE);
    }
  }

  truncate(fid: number, size: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isSafeInteger(size) || size < 0) return C.SQLITE_MISUSE;
    try {
      f.backend.truncate(size);
      return C.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_TRUNCATE);
    }
  }

  sync(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return C.SQLITE_MISUSE;
    try {
      f.backend.sync();
      return C.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_FSYNC);
    }
  }

  size(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return -C.SQLITE_MISUSE;
    let n: number;
    try {
      n = f.backend.size();
    } catch (e) {
      return -this.#fail(e, C.SQLITE_IOERR);
    }
    // Invariant 7: the guest reads this f64 as a size when >= 0 and as an error code when < 0.
    if (!Number.isSafeInteger(n) || n < 0) return -this.#lie(f, `asked for its size and was told ${String(n)}`, C.SQLITE_IOERR);
    return n;
  }

  fileControl(fid: number, op: number): number {
    const f = this.#files.get(fid);
    if (!f) return C.SQLITE_MISUSE;
    try {
      return f.backend.control(op) ? C.SQLITE_OK : C.SQLITE_NOTFOUND;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_FSYNC);
    }
  }

  /**
   * Sealed files read through read views (ISOLATION.md): SHARED pins one, RESERVED needs it to be
   * of the last commit (else busy: `staleView` tells the server not to wait for it) and drops it.
   */
  lock(fid: number, level: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isInteger(level) || level < 0 || level > 4) return C.SQLITE_MISUSE;
    if (f.lockKey === undefined) return C.SQLITE_OK;
    const sealed = f.backend instanceof SealedFile ? f.backend : undefined;
    const cur = this.#locks.level(f.owner);
    // A read-only sealed store moves to the newest counted commit of a writer in another process
    // when a read transaction starts and no connection here is inside one (page-store.ts invariant 9).
    if (sealed && sealed.store.readonly && cur === LOCK_NONE && this.#locks.idle(f.lockKey)) {
      try {
        sealed.store.refresh();
      } catch (e) {
        return this.#fail(e, C.SQLITE_IOERR_LOCK);
      }
    }
    if (sealed && cur === LOCK_SHARED && level >= LOCK_RESERVED && sealed.stale) {
      this.staleView = true;
      return C.SQLITE_BUSY;
    }
    if (!this.#locks.lock(f.lockKey, f.owner, level, sealed !== undefined)) return C.SQLITE_BUSY;
    if (sealed && level === LOCK_SHARED && cur === LOCK_NONE) {
      try {
        sealed.beginRead();
      } catch (e) {
        this.#locks.unlock(f.lockKey, f.owner, LOCK_NONE);
        return this.#fail(e, C.SQLITE_IOERR_LOCK);
      }
    } else if (sealed && level >= LOCK_RESERVED && cur < LOCK_RESERVED) sealed.endRead();
    return C.SQLITE_OK;
  }

  /**
   * Set when a write lock was refused because this instance's read view is older than the last
   * commit (sqld's BUSY_SNAPSHOT): waiting cannot help. The server reads and clears it.
   */
  staleView = false;

  unlock(fid: number, level: number): number {
    const f = this.#files.get(fid);
    if (!f || !Number.isInteger(level) || level < 0 || level > 1) return C.SQLITE_MISUSE;
    if (f.lockKey === undefined) return C.SQLITE_OK;
    const wasWriter = this.#locks.level(f.owner) >= LOCK_RESERVED;
    let rc = C.SQLITE_OK;
    if (wasWriter) {
      try {
        f.backend.endWrite();
      } catch (e) {
        rc = this.#fail(e, C.SQLITE_IOERR_UNLOCK);
      }
    }
    this.#locks.unlock(f.lockKey, f.owner, level);
    if (f.backend instanceof SealedFile) {
      if (level === LOCK_NONE) f.backend.endRead();
      else if (wasWriter) {
        try {
          f.backend.beginRead(); // back to SHARED after a commit: read the commit just made
        } catch (e) {
          rc = this.#fail(e, C.SQLITE_IOERR_UNLOCK);
        }
      }
    }
    return rc;
  }

  checkReserved(fid: number): number {
    const f = this.#files.get(fid);
    if (!f) return -C.SQLITE_MISUSE;
    if (f.lockKey === undefined) return 0;
    return this.#locks.reserved(f.lockKey) ? 1 : 0;
  }

  remove(pathPtr: number, pathLen: number, syncDir: number): number {
    const name = this.#guestName(pathPtr, pathLen);
    if (typeof name === "number") return name === C.SQLITE_CANTOPEN ? C.SQLITE_IOERR_DELETE : name;
    if (this.sealed) {
      if (name === this.opts.dbName) return C.SQLITE_IOERR_DELETE; // the store is never deleted by SQLite
      return this.#memFiles.delete(name) ? C.SQLITE_OK : C.SQLITE_IOERR_DELETE_NOENT;
    }
    const hostPath = path.join(this.opts.dir, name);
    journalSeen.delete(hostPath); // look again next time, whatever happens here
    try {
      this.opts.files.remove(hostPath, syncDir !== 0);
      journalSeen.set(hostPath, false);
      return C.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, C.SQLITE_IOERR_DELETE);
    }
  }

  access(pathPtr: number, pathLen: number): number {
    const name = this.#guestName(pathPtr, pathLen);
    if (typeof name === "number") return name === C.SQLITE_CANTOPEN ? 0 : -name;
    if (this.sealed) return name === this.opts.dbName || this.#memFiles.has(name) ? 1 : 0;
    const hostPath = path.join(this.opts.dir, name);
    const seen = name === this.opts.dbName ? undefined : journalSeen.get(hostPath);
    if (seen !== undefined) return seen ? 1 : 0;
    try {
      const exists = this.opts.files.exists(hostPath);
      if (name !== this.opts.dbName) journalSeen.set(hostPath, exists);
      return exists ? 1 : 0;
    } catch (e) {
      return -this.#fail(e, C.SQLITE_IOERR);
    }
  }
}
