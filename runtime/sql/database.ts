/**
 * A SQLite database living inside a WebAssembly enclave: the SQL API for Node.
 *
 * Modeled on better-sqlite3 (synchronous, prepared statements, transaction functions) and Durable
 * Objects' `sql.exec` (one call, rows as objects). All SQLite code runs in the enclave; this class
 * only marshals values across the ecall boundary and checks what comes back.
 *
 * Fault handling (invariant: nothing committed is lost, nothing half-done survives):
 *  - an SQLite error (constraint, syntax, SQLITE_NOMEM at the EPC cap...) is thrown as SqliteError;
 *    SQLite has already rolled back what it must, and the connection stays usable;
 *  - any other exception out of an ecall (a wasm trap, an ABI violation) means the instance can no
 *    longer be trusted: it is dropped, its files and locks released, a fresh instance started and
 *    the database reopened. SQLite's rollback journal returns the file to its last commit. The call
 *    fails with EnclaveFault (ENCLAVE_TRAPPED); statements re-prepare themselves on next use.
 *
 * EPC paging (runtime/enclave/snapshot/pager.ts), for databases on a platform:
 *
 *   RESIDENT --hibernate (pager, only when idle: no file lock held)--> HIBERNATED
 *   HIBERNATED --any ecall (the _x/_mem/_scratch getters)--> RESIDENT
 *
 *  - hibernating seals memory and globals into a volatile image (delta against the previous one)
 *    and releases the instance and its EPC; the VFS server, the store and every Statement object
 *    stay as they are, so a woken enclave continues exactly where it was;
 *  - a wake admits the whole memory first: if the EPC cannot hold it even after evicting others,
 *    the call fails with EPC_ADMISSION_REFUSED and the database stays hibernated, intact;
 *  - an image that fails verification (IMAGE_*) is reported to that call and the enclave boots
 *    afresh: it was idle, so its state was only caches, and every commit is in the page store.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { EnclaveFault, EpcError, SelkieError, SnapshotError, UsageError } from "../errors.js";
import { StorageError } from "../storage/errors.js";
import { randomUUID } from "node:crypto";
import { Enclave, type EpcAdmit } from "../enclave/enclave.js";
import type { GuestMemory } from "../enclave/memory.js";
import { NS_FS, type Permission } from "../enclave/abi.js";
import { NodeFileLayer, type FileLayer } from "../host/files.js";
import { acquireProcessLock, releaseProcessLock } from "../host/process-lock.js";
import { VfsServer, type VfsState } from "../storage/vfs-server.js";
import { acquireStore } from "../storage/registry.js";
import { storeTrustFor } from "../storage/trust.js";
import { upgradeStore } from "../storage/upgrade.js";
import { PageStore, type StoreTrust } from "../storage/page-store.js";
import type { Platform } from "../platform/platform.js";
import { measureLegacyV1 } from "../enclave/einit.js";
import type { CheckedModule } from "../enclave/loader.js";
import type { Manifest } from "../enclave/manifest.js";
import { sqliteSignature } from "./sqlite-signer.js";
import * as C from "./codes.js";
import { Scratch, type SqliteExports } from "./ecalls.js";
import { SCOPE_IDS, SqliteError, SqlNotAuthorizedError, StatementInterruptedError, StatementTimeoutError, type SqlScope } from "./errors.js";
import { loadSqliteEnclave } from "./sqlite-module.js";
import { EpcPager, nextUse, type Pageable } from "../enclave/snapshot/pager.js";
import { ImageStore, type ImageInfo } from "../enclave/snapshot/image-store.js";
import { Statement, type BindArgs, type Row, type RunResult } from "./statement.js";

export interface DatabaseOptions {
  /**
   * The platform (emulated SGX CPU) whose sealing keys and counters protect the database. Needed
   * unless `plain` is set; `Database.open()` uses the default platform when it is omitted.
   */
  platform?: Platform;
  /**
   * An UNPROTECTED plain SQLite file instead of a sealed database: readable by any sqlite3, with
   * no integrity or rollback protection. For interop and comparison only.
   */
  plain?: boolean;
  /** Open read-only. */
  readonly?: boolean;
  /** Create the file when missing (default true; ignored when readonly). */
  create?: boolean;
  /** The enclave's EPC size (its memory cap), bytes or "64MiB". Default: the manifest's. */
  epc?: number | string;
  /** Permissions the operator grants (default: all the manifest requests). */
  grants?: Permission[];
  /** The untrusted file layer (tests inject faults here). */
  files?: FileLayer;
  /** EPC admission (the platform's EPC manager); default: metered against the manifest cap only. */
  epcAdmit?: EpcAdmit;
  /** Statement cache size for query()/run() (default 64, 0 disables). */
  statementCache?: number;
  /**
   * EPC paging: let the platform hibernate this database's enclave when idle and the EPC is short
   * (default true with a platform; needs a platform).
   */
  paging?: boolean;
}

export type EnclaveRunState = "running" | "hibernated" | "faulted" | "closed";

export interface PagingInfo {
  state: EnclaveRunState;
  hibernations: number;
  wakes: number;
  lastWakeMs: number;
  /** Bytes of the last paging image written (0 before the first). */
  lastImageBytes: number;
}

export interface EnclaveInfo {
  name: string;
  mrenclave: string;
  epcBytes: number;
  committedBytes: number;
  peakBytes: number;
  faults: number;
  permissions: string[];
  sqliteVersion: string;
  state: EnclaveRunState;
}

/**
 * Another build of the SQLite enclave (module file, ISVSVN): for tests of upgrades and downgrades.
 * Not a public option.
 */
export const SQLITE_BUILD = Symbol("sqliteBuild");
type BuildOptions = DatabaseOptions & { [SQLITE_BUILD]?: { modulePath?: string; version?: number } };

/** Where Database.restore passes the image folder to the constructor (not a public option). */
const RESTORE_FROM = Symbol("restoreFrom");
type RestoreOptions = DatabaseOptions & { [RESTORE_FROM]?: string };

/** What an image records of the connection's host side (IMAGES.md, "SQLite runtime state"). */
interface SqlState {
  db: number;
  infoPtr: number;
  scratchPtr: number;
  scratchCap: number;
  /** Statement handles alive at the snapshot: a restored connection has no objects for them, so it finalizes them. */
  stmts: number[];
  inTransaction: boolean;
}

/** Numbers enclave instances, so each EPC lease has its own id. */
let instanceSeq = 0;

const NAME_RE = /^[^/\\\0]{1,200}$/;
/** A deadline that never comes (the largest Date), set so the progress handler runs for an interrupt check. */
const FAR_FUTURE_MS = 8.64e15;

/** Progress of a long copy: bytes done of total (called synchronously, between chunks). */
export type Progress = (done: number, total: number) => void;
const PROGRESS_CHUNK = 1 << 20;

export class Database {
  readonly path: string;
  readonly readonly: boolean;
  readonly #enclave: Enclave;
  readonly #vfs: VfsServer;
  readonly sealed: boolean;
  #store: { store: PageStore; release: () => void } | undefined;
  /** How this connection reaches its sealed store (for destroy and rename). */
  #storeAccess: { files: FileLayer; trust: StoreTrust } | undefined;
  readonly #name: string;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, Statement>();
  readonly #live = new Set<Statement>();
  #db = 0;
  #open = false;
  #sqliteVersion = "";
  /** 24 bytes in the enclave for sk_run_info (allocated at each boot). */
  #infoPtr = 0;
  #x: SqliteExports | undefined;
  #mem: GuestMemory | undefined;
  #scratch: Scratch | undefined;
  /** EPC paging (undefined without a platform or with paging: false). */
  readonly #pager: EpcPager | undefined;
  #images: ImageStore | undefined;
  #lastUse = 0;
  #hibernated = false;
  #sleptInTransaction = false;
  #paging = { hibernations: 0, wakes: 0, lastWakeMs: 0, lastImageBytes: 0 };
  readonly #pageable: Pageable;
  readonly #platform: Platform | undefined;
  /** The durable image lineage of snapshot()/restore(), once used. */
  #durable: { dir: string; store: ImageStore } | undefined;
  /** @internal — bumps on every enclave restart; statements compare it to know their handle died. */
  _generation = 0;
  /** Limits set inside the enclave (setScope/setDeadline), kept here to be set again after a restart. */
  #scope: SqlScope = "all";
  #deadline = 0;
  /** Asked every few thousand SQLite instructions while set; true interrupts the statement (setInterruptCheck). */
  #interruptCheck: (() => boolean) | undefined;
  #interruptHit = false;
  /** True for a sealed read-only open, which holds no process lock. */
  #lockless = false;

  constructor(file: string, opts: DatabaseOptions = {}) {
    if (typeof file !== "string" || file.length === 0) throw new UsageError("BAD_PATH", "Database needs a file path");
    this.path = path.resolve(file);
    this.#name = path.basename(this.path);
    if (!NAME_RE.test(this.#name)) throw new UsageError("BAD_PATH", `unusable database file name: ${JSON.stringify(this.#name)}`);
    this.readonly = opts.readonly === true;
    this.#cacheSize = opts.statementCache ?? 64;
    this.sealed = opts.plain !== true;
    if (this.sealed && !opts.platform) {
      throw new UsageError("NO_PLATFORM", "a sealed database needs a platform: pass { platform } (see Platform.open), use `await Database.open(file)` for the default platform, or { plain: true } for an unprotected plain file");
    }
    const build = (opts as BuildOptions)[SQLITE_BUILD];
    const image = loadSqliteEnclave({ ...(opts.epc === undefined ? {} : { epc: opts.epc }), ...build });
    const files = opts.files ?? new NodeFileLayer();
    const platform = opts.platform;
    this.#platform = platform;
    this.#vfs = new VfsServer({
      dir: path.dirname(this.path),
      dbName: this.#name,
      files,
      readonly: this.readonly,
      ...(this.sealed ? { openStore: () => this.#shareStore() } : {}),
    });
    const epcAdmit: EpcAdmit | undefined =
      opts.epcAdmit ?? (platform ? (initial, max, label) => platform.epc.admit(`${label}#${++instanceSeq}:${this.path}`, label, initial, max) : undefined);
    this.#enclave = new Enclave({
      module: image.module,
      manifest: image.manifest,
      // Sealed databases run the SQLite enclave signed by the platform's SQLite signer (MRSIGNER
      // policy, sqlite-signer.ts); the loader verifies the signature at EINIT like any other.
      ...(platform ? { signature: sqliteSignature(platform.dir, image) } : {}),
      services: { [NS_FS]: this.#vfs.imports() },
      ...(opts.grants ? { grants: new Set(opts.grants) } : {}),
      ...(epcAdmit ? { epc: epcAdmit } : {}),
      onInstance: (mem) => this.#vfs.attach(mem),
      // The deadline's progress handler reads this clock: an interrupt request reads as time's end.
      clock: () => {
        if (this.#interruptCheck?.() === true) {
          this.#interruptHit = true;
          return Infinity;
        }
        return Date.now();
      },
    });
    // A sealed read-only open takes no process lock: it writes nothing and reads counted commits
    // beside a writer in another process (runtime/storage/FORMAT.md "Readers beside a writer").
    this.#lockless = this.sealed && this.readonly;
    if (!this.#lockless) acquireProcessLock(this.path);
    try {
      if (this.sealed) {
        const trust = sqliteStoreTrust(platform!, this.#enclave, image, this.path);
        this.#store = acquireStore(this.path, { files, trust, readonly: this.readonly, create: opts.create !== false });
        this.#storeAccess = { files, trust };
      }
      const from = (opts as RestoreOptions)[RESTORE_FROM];
      if (from !== undefined) this.#restore(platform!, from);
      else this.#bootRetrying(opts.create !== false && !this.readonly);
    } catch (e) {
      this.#vfs.closeAll();
      this.#enclave.close();
      this.#store?.release();
      if (!this.#lockless) releaseProcessLock(this.path);
      throw e;
    }
    const self = this;
    this.#pageable = {
      get pagingLabel() {
        return self.path;
      },
      get lastUse() {
        return self.#lastUse;
      },
      get resident() {
        return !self.#hibernated && self.#enclave.state === "running";
      },
      get residentBytes() {
        return self.#enclave.committedBytes;
      },
      canHibernate: () => this.#open && !this.#hibernated && this.#enclave.state === "running" && !this.#enclave.busy && !this.#vfs.locked,
      hibernate: () => this.#hibernate(),
    };
    this.#pager = platform && opts.paging !== false ? EpcPager.for(platform.epc, path.join(platform.dir, "paging")) : undefined;
    this.#pager?.register(this.#pageable);
  }

  /**
   * Writes a durable, sealed image of the running enclave to `dir` (default `<file>.snapshot`):
   * full the first time, then deltas of the changed 4 KiB pages (runtime/enclave/snapshot/IMAGES.md).
   * The image is bound to this enclave's identity, this platform and a monotonic counter, so only
   * the newest image restores (Database.restore). Needs an idle connection (no statement running,
   * no lock held: SNAPSHOT_BUSY otherwise); commits live in the sealed store, not in the image.
   */
  snapshot(dir?: string, opts: { full?: boolean } = {}): ImageInfo {
    this.#requireOpen();
    if (!this.#platform) throw new UsageError("NO_PLATFORM", "snapshots are sealed by a platform: open the database with { platform }");
    const target = path.resolve(dir ?? `${this.path}.snapshot`);
    if (this.#hibernated) this.#wake();
    if (this.#enclave.state !== "running") throw new SnapshotError("SNAPSHOT_BUSY", `the enclave is ${this.#enclave.state}`);
    const runtime = this.#runtimeState(this.#vfs.describe()); // SNAPSHOT_BUSY unless idle
    const cap = this.#enclave.capture();
    if (this.#durable?.dir !== target) this.#durable = { dir: target, store: ImageStore.openDurable(target, { services: this.#services(), binding: this.#binding() }) };
    return this.#durable.store.write({ memory: cap.memory, globals: cap.globals, runtime }, opts);
  }

  /**
   * Opens `file` by restoring its enclave from the newest image in `dir` (written by snapshot())
   * instead of booting it: the connection continues exactly where the image left it (its SQLite
   * caches are revalidated against the file, so every later commit is seen). Same platform and
   * enclave only: IMAGE_WRONG_PLATFORM / IMAGE_WRONG_ENCLAVE, IMAGE_ROLLBACK for an older image.
   */
  static restore(file: string, dir: string, opts: DatabaseOptions & { platform: Platform }): Database {
    if (!opts.platform) throw new UsageError("NO_PLATFORM", "restoring needs the platform the image was sealed on");
    return new Database(file, { ...opts, create: false, [RESTORE_FROM]: path.resolve(dir) } as RestoreOptions);
  }

  #services() {
    return this.#platform!.servicesFor(this.#enclave.measured);
  }

  #binding() {
    const id = this.#enclave.measured;
    // instance: the images of one database are never restored into another (IMAGES.md "Manifest").
    return { mrenclave: id.mrenclave, mrsigner: id.mrsigner, isvProdId: id.isvProdId, isvSvn: id.isvSvn, platformId: this.#platform?.platformId ?? "", instance: `database:${this.path}` };
  }

  #runtimeState(vfs?: VfsState): Record<string, unknown> {
    const x = this.#x!;
    const sql: SqlState = {
      db: this.#db,
      infoPtr: this.#infoPtr,
      scratchPtr: this.#scratch!.ptr,
      scratchCap: this.#scratch!.cap,
      stmts: [...this.#live].map((st) => st._handle).filter((h) => h !== 0),
      inTransaction: x.sk_get_autocommit(this.#db) === 0,
    };
    return {
      sql,
      ...(vfs ? { vfs } : {}),
      enclave: { peakBytes: this.#enclave.peakBytes, faults: this.#enclave.faults, permissions: [...this.#enclave.permissions].sort() },
    };
  }

  /** Builds the connection from an image instead of booting (Database.restore). */
  #restore(platform: Platform, dir: string): void {
    const images = ImageStore.openDurable(dir, { services: this.#services(), binding: this.#binding() });
    let runtime: Record<string, unknown> = {};
    this.#enclave.resume((alloc) => {
      const r = images.read(alloc);
      runtime = r.runtime;
      return r;
    });
    const mem = this.#enclave.memory;
    const sql = runtime.sql as Partial<SqlState> | undefined;
    const ptr = (v: unknown, len: number): number => {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0 || !mem.inBounds(v, len)) throw new SnapshotError("IMAGE_TAMPERED", `the image's connection state holds a bad pointer (${String(v)})`);
      return v;
    };
    if (typeof sql !== "object" || sql === null || !Array.isArray(sql.stmts)) throw new SnapshotError("IMAGE_TAMPERED", "the image has no SQLite connection state");
    this.#vfs.adopt(runtime.vfs);
    this.#bindInstance();
    this.#db = ptr(sql.db, 1);
    this.#infoPtr = ptr(sql.infoPtr, 24);
    if (sql.scratchCap !== 0) {
      this.#scratch!.ptr = ptr(sql.scratchPtr, Number(sql.scratchCap));
      this.#scratch!.cap = Number(sql.scratchCap);
    }
    const e = runtime.enclave as { peakBytes?: unknown; faults?: unknown } | undefined;
    if (typeof e?.peakBytes === "number") this.#enclave.peakBytes = Math.max(this.#enclave.peakBytes, e.peakBytes);
    if (typeof e?.faults === "number") this.#enclave.faults = e.faults;
    const x = this.#x!;
    for (const h of sql.stmts) x.sk_finalize(ptr(h, 1)); // no Statement object refers to them any more
    this.#open = true;
    this.#sqliteVersion = this.#mem!.cstring(x.sk_libversion(), 64);
    this.#durable = { dir, store: images };
    void platform;
  }

  /** @internal — the enclave's exports; wakes a hibernated enclave and marks the use (LRU). */
  get _x(): SqliteExports {
    if (this.#hibernated) this.#wake();
    this.#lastUse = nextUse();
    return this.#x!;
  }

  /** @internal */
  get _mem(): GuestMemory {
    if (this.#hibernated) this.#wake();
    return this.#mem!;
  }

  /** @internal */
  get _scratch(): Scratch {
    if (this.#hibernated) this.#wake();
    return this.#scratch!;
  }

  /** Paging state and counts of this database's enclave. */
  get paging(): PagingInfo {
    return { state: this.#runState(), ...this.#paging };
  }

  #runState(): EnclaveRunState {
    if (!this.#open) return "closed";
    if (this.#hibernated) return "hibernated";
    return this.#enclave.state === "running" ? "running" : "faulted";
  }

  /**
   * Wakes a hibernated enclave now, as its next statement would (marking the use); false when it
   * was resident. Throws EPC_ADMISSION_REFUSED, the database still hibernated and intact, when the
   * EPC cannot hold it even after evicting every idle enclave: a host may wait and call again
   * (`retrying`: such a refusal is not counted as a failed wake; the host's last try is).
   */
  wake(opts: { retrying?: boolean } = {}): boolean {
    this.#requireOpen();
    this.#lastUse = nextUse();
    if (!this.#hibernated) return false;
    this.#wake(opts.retrying === true);
    return true;
  }

  /**
   * Hibernates the enclave now, as the pager does under EPC pressure (tests, operators). False when
   * it is not idle (a statement or transaction holds a lock) or paging is off.
   */
  hibernate(): boolean {
    this.#requireOpen();
    if (!this.#pager || !this.#pageable.canHibernate()) return false;
    this.#hibernate();
    return true;
  }

  #hibernate(): void {
    const pager = this.#pager!;
    const runtime = this.#runtimeState(); // its ecalls run before the capture
    this.#sleptInTransaction = (runtime.sql as SqlState).inTransaction;
    const cap = this.#enclave.capture();
    if (!this.#images) {
      // Full images only (maxChain 1): hashing pages for deltas costs more than sealing a small enclave.
      this.#images = ImageStore.volatile(pager.folderFor(randomUUID()), { binding: this.#binding(), maxChain: 1 });
    }
    const info = this.#images.write({ memory: cap.memory, globals: cap.globals, runtime });
    this.#enclave.suspend();
    this.#x = undefined;
    this.#mem = undefined;
    this.#hibernated = true;
    this.#paging.hibernations++;
    this.#paging.lastImageBytes = info.fileBytes;
  }

  #wake(retrying = false): void {
    const images = this.#images!;
    const t0 = performance.now();
    const scratch = this.#scratch!;
    try {
      this.#enclave.resume((alloc) => images.read(alloc));
    } catch (e) {
      const refused = e instanceof EpcError && this.#enclave.state === "suspended"; // still hibernated, image intact
      if (!(refused && retrying)) this.#pager?.recordWake(performance.now() - t0, false, this.#pageable);
      if (refused) throw e;
      // The image failed verification (or the instance could not be built): boot afresh. The
      // enclave was idle, so nothing but caches is lost; statements re-prepare themselves.
      this.#hibernated = false;
      images.destroy();
      this.#images = undefined;
      const fresh = this.#recover(e);
      throw this.#open && e instanceof SelkieError ? e : fresh;
    }
    this.#hibernated = false;
    this.#bindInstance();
    this.#scratch!.ptr = scratch.ptr;
    this.#scratch!.cap = scratch.cap;
    const ms = performance.now() - t0;
    this.#paging.wakes++;
    this.#paging.lastWakeMs = ms;
    this.#pager?.recordWake(ms, true, this.#pageable);
  }

  #bindInstance(): void {
    this.#x = this.#enclave.exports as unknown as SqliteExports;
    this.#mem = this.#enclave.memory;
    this.#scratch = new Scratch(this.#x, this.#mem);
  }

  /**
   * Opens a database with the default platform ($SELKIE_HOME or ~/.selkie, created with a
   * development CA on first use) unless `opts.platform` or `opts.plain` is given.
   */
  static async open(file: string, opts: DatabaseOptions = {}): Promise<Database> {
    if (opts.platform || opts.plain) return new Database(file, opts);
    const { openDefaultPlatform } = await import("../host/default-platform.js");
    return new Database(file, { ...opts, platform: await openDefaultPlatform(undefined, { forDatabase: file }) });
  }

  /** The store for the VFS: the connection's own reference (opened at construction). */
  #shareStore(): { store: PageStore; release: () => void } {
    if (!this.#store) throw new UsageError("DB_CLOSED", "the database is closed");
    return { store: this.#store.store, release: () => {} };
  }

  /**
   * Writes the database as a plain SQLite file at `dest` (which must not exist): the plaintext
   * leaves the enclave, so callers should say so (the CLI logs it). Checked with integrity_check.
   */
  exportPlain(dest: string, onProgress?: Progress): { bytes: number } {
    if (fs.existsSync(dest)) throw new UsageError("DEST_EXISTS", `${dest} exists; choose a new file name`);
    const bytes = this.retryingReads(() => this.#readAll(onProgress));
    const tmp = `${dest}.selkie-tmp`;
    fs.writeFileSync(tmp, bytes, { mode: 0o600, flag: "wx" });
    const fd = fs.openSync(tmp, "r");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, dest);
    checkPlain(dest);
    return { bytes: bytes.length };
  }

  /**
   * Seals the plain SQLite file `src` into a new database `dest` (checked with integrity_check
   * before and after). `opts.platform` is required.
   */
  static importPlain(src: string, dest: string, opts: DatabaseOptions, onProgress?: Progress): Database {
    if (!opts.platform) throw new UsageError("NO_PLATFORM", "importing needs the platform that will seal the new database");
    checkPlain(src);
    return Database.#sealInto(fs.readFileSync(src), src, dest, opts, onProgress);
  }

  /**
   * Writes a sealed copy of this database to the new database `dest` on `platform` (a consistent
   * image, read under BEGIN IMMEDIATE); the plaintext never leaves the process. Returns its size.
   */
  backupTo(dest: string, platform: Platform, onProgress?: Progress): number {
    const bytes = this.#readAll((done, total) => onProgress?.(done / 2, total));
    Database.#sealInto(bytes, this.path, dest, { platform }, (done, total) => onProgress?.(total / 2 + done / 2, total)).close();
    return bytes.length;
  }

  /**
   * The whole database image, read in chunks under BEGIN IMMEDIATE (no writer in this process can
   * change it meanwhile), or, read-only, inside one read transaction (the store stays at one commit).
   */
  #readAll(onProgress?: Progress): Buffer {
    this.#requireOpen();
    const store = this.#store?.store;
    if (!store) throw new UsageError("NOT_SEALED", `${this.path} is already a plain file; copy it instead`);
    // Read-only: a read transaction (SHARED held, so the store stays at one commit); else IMMEDIATE.
    if (this.readonly) this.exec("BEGIN; SELECT count(*) FROM sqlite_schema");
    else this.exec("BEGIN IMMEDIATE");
    try {
      const bytes = Buffer.alloc(store.size);
      for (let off = 0; off < bytes.length; off += PROGRESS_CHUNK) {
        store.read(bytes.subarray(off, Math.min(bytes.length, off + PROGRESS_CHUNK)), off);
        onProgress?.(Math.min(bytes.length, off + PROGRESS_CHUNK), bytes.length);
      }
      return bytes;
    } finally {
      this.exec("ROLLBACK");
    }
  }

  static #sealInto(plain: Buffer, src: string, dest: string, opts: DatabaseOptions, onProgress?: Progress): Database {
    if (fs.existsSync(dest) || fs.existsSync(`${dest}.log`)) throw new UsageError("DEST_EXISTS", `${dest} exists; choose a new file name`);
    const db = new Database(dest, { ...opts, plain: false, create: true, readonly: false });
    try {
      // Straight into the new, empty store, before SQLite has read anything (so it caches nothing).
      const store = db.#store!.store;
      for (let off = 0; off < plain.length; off += PROGRESS_CHUNK) {
        store.write(plain.subarray(off, Math.min(plain.length, off + PROGRESS_CHUNK)), off);
        onProgress?.(Math.min(plain.length, off + PROGRESS_CHUNK), plain.length);
      }
      store.commit();
      const ok = db.query<{ integrity_check: string }>("PRAGMA integrity_check");
      if (ok.length !== 1 || ok[0]!.integrity_check !== "ok") {
        throw new SqliteError(C.SQLITE_CORRUPT, `the sealed copy of ${src} failed integrity_check: ${JSON.stringify(ok.slice(0, 5))}`);
      }
      return db;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Bytes on disk and live bytes of the sealed store (undefined for plain files). */
  get storage(): { diskBytes: number; liveBytes: number; commits: number; cachedBlocks: number } | undefined {
    const s = this.#store?.store;
    return s ? { diskBytes: s.diskBytes, liveBytes: s.liveBytes, commits: s.commits, cachedBlocks: s.cachedBlocks } : undefined;
  }

  /** #boot, run again (after the store moves to the newest commit) when a writer reused the space of the one it read. */
  #bootRetrying(create: boolean): void {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.#boot(create);
      } catch (e) {
        if (!this.#lockless || attempt >= 8 || !(e instanceof StorageError) || e.code !== "STORAGE_SNAPSHOT_GONE") throw e;
        this.#vfs.closeAll();
        this.#enclave.suspend();
        this.#store?.store.refresh(); // no connection holds a lock now: move to the newest commit
      }
    }
  }

  /** Starts the enclave instance and opens the database in it. */
  #boot(create: boolean): void {
    this.#enclave.start();
    this.#bindInstance();
    const x = this.#x!;
    if (!this._scratch.reserve(this.#name.length * 3 + 16)) throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory while opening");
    const n = this._scratch.putText(this.#name);
    const outPtr = x.sk_malloc(4);
    if (outPtr === 0) throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory while opening");
    const flags = this.readonly ? C.SQLITE_OPEN_READONLY : C.SQLITE_OPEN_READWRITE | (create ? C.SQLITE_OPEN_CREATE : 0);
    const rc = x.sk_open(this._scratch.ptr, n, flags, outPtr);
    const db = this._mem.readI32(outPtr);
    x.sk_free(outPtr);
    if (rc !== C.SQLITE_OK) {
      const stored = this.#vfs.takeStorageError();
      if (stored) {
        if (db !== 0) x.sk_close(db);
        throw stored;
      }
      const msg = db !== 0 ? this._mem.cstring(x.sk_errmsg(db)) : "out of memory";
      if (db !== 0) x.sk_close(db);
      const hint = rc === C.SQLITE_CANTOPEN && !create ? " (the file does not exist or cannot be read; check the path)" : "";
      throw new SqliteError(rc, `cannot open ${this.path}: ${msg}${hint}`);
    }
    this.#infoPtr = x.sk_malloc(24);
    if (this.#infoPtr === 0 || !this._mem.inBounds(this.#infoPtr, 24)) {
      x.sk_close(db);
      throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory while opening");
    }
    this.#db = db;
    this.#open = true;
    this.#sqliteVersion = this._mem.cstring(x.sk_libversion(), 64);
    // A restarted enclave starts without limits: set the connection's again.
    if (this.#scope !== "all") x.sk_set_scope(db, SCOPE_IDS[this.#scope]);
    if (this.#effectiveDeadline() > 0) x.sk_set_deadline(db, this.#effectiveDeadline());
  }

  /** The deadline set inside SQLite: the caller's, or, for an interrupt check alone, the end of time. */
  #effectiveDeadline(): number {
    return this.#deadline > 0 ? this.#deadline : this.#interruptCheck ? FAR_FUTURE_MS : 0;
  }

  /**
   * Lets `check` interrupt statements: while set, SQLite's progress handler (the one deadlines use)
   * asks it every few thousand instructions, and a statement running when it answers true fails with
   * STATEMENT_INTERRUPTED ("Interrupted"), rolled back as an interrupt is, the connection usable.
   * `check` must be cheap and synchronous (the shell reads a flag its SIGINT watcher sets).
   * undefined removes it.
   */
  setInterruptCheck(check: (() => boolean) | undefined): void {
    this.#requireOpen();
    this.#interruptCheck = check;
    this.#interruptHit = false;
    this._guard(() => this._x.sk_set_deadline(this.#db, this.#effectiveDeadline()));
  }

  /**
   * Restarts the enclave with fresh memory, the database reopened: wasm memory never shrinks, so
   * an enclave that one statement grew (a huge sort, a group_concat ending in NOMEM) keeps that EPC
   * until it is recycled. Only between transactions (false otherwise, or when hibernated);
   * statements re-prepare themselves, nothing committed is touched. Scope and deadline carry over.
   */
  recycle(): boolean {
    this.#requireOpen();
    if (this.#hibernated || this.#enclave.state !== "running" || this.#enclave.busy || this.#vfs.locked) return false;
    if (this.inTransaction) return false;
    this._guard(() => {
      for (const st of this.#live) st._drop(true);
      this.#live.clear();
      this.#cache.clear();
      this.#x!.sk_close(this.#db);
    });
    this.#vfs.closeAll();
    this.#enclave.suspend();
    this._generation++;
    this.#open = false;
    try {
      this.#boot(false);
    } catch (e) {
      throw this.#recover(e);
    }
    return true;
  }

  /**
   * What the connection may do from now on, enforced by an authorizer inside the enclave at
   * prepare time (see SqlScope): a refused statement fails with SQL_NOT_AUTHORIZED naming what was
   * refused. Statements prepared earlier keep the scope they were prepared under until re-prepared.
   */
  setScope(scope: SqlScope): void {
    this.#requireOpen();
    if (!(scope in SCOPE_IDS)) throw new UsageError("BAD_ARGUMENT", `unknown scope ${JSON.stringify(scope)}; use "all", "read-write" or "read-only"`);
    if (scope === this.#scope) return;
    this._guard(() => this._x.sk_set_scope(this.#db, SCOPE_IDS[scope]));
    this.#scope = scope;
  }

  get scope(): SqlScope {
    return this.#scope;
  }

  /**
   * A deadline (ms since the epoch, as Date.now()) for every statement from now on, checked inside
   * SQLite every few thousand instructions: a statement still running at it is interrupted and
   * fails with STATEMENT_TIMEOUT, rolled back, the connection usable. 0 or undefined removes it.
   */
  setDeadline(epochMs: number | undefined): void {
    const ms = epochMs !== undefined && Number.isFinite(epochMs) && epochMs > 0 ? epochMs : 0;
    if (ms === this.#deadline || !this.#open) {
      this.#deadline = this.#open ? ms : 0;
      return;
    }
    this.#deadline = ms;
    this._guard(() => this._x.sk_set_deadline(this.#db, this.#effectiveDeadline()));
  }

  get open(): boolean {
    return this.#open;
  }

  /** True while this connection holds the database's write lock (it is writing in a transaction). */
  get writing(): boolean {
    return this.#open && this.#vfs.writing;
  }

  /**
   * Whether a write lock was refused since the last call because this connection's read view is
   * older than another connection's last commit (it read in a transaction that must be retried,
   * not waited on: ISOLATION.md in runtime/host/server/hrana). Clears the flag.
   */
  takeStaleView(): boolean {
    const stale = this.#vfs.staleView;
    this.#vfs.staleView = false;
    return stale;
  }

  /** True inside BEGIN ... COMMIT. */
  get inTransaction(): boolean {
    this.#requireOpen();
    if (this.#hibernated) return this.#sleptInTransaction; // nothing changes while it sleeps: no need to wake it
    return this._guard(() => this._x.sk_get_autocommit(this.#db) === 0);
  }

  get enclave(): EnclaveInfo {
    return {
      name: this.#enclave.manifest.name,
      mrenclave: this.#enclave.mrenclave.toString("hex"),
      epcBytes: this.#enclave.manifest.epc,
      committedBytes: this.#enclave.committedBytes,
      peakBytes: this.#enclave.peakBytes,
      faults: this.#enclave.faults,
      permissions: [...this.#enclave.permissions],
      sqliteVersion: this.#sqliteVersion,
      state: this.#runState(),
    };
  }

  /** Runs every statement in `sql` (no parameters, rows discarded). */
  exec(sql: string): this {
    this.#requireOpen();
    if (typeof sql !== "string") throw new UsageError("BAD_SQL", "exec() takes a string of SQL");
    this.retryingReads(() =>
      this._guard(() => {
        const n = this._scratch.putText(sql);
        if (n < 0) throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory for the SQL text");
        const rc = this._x.sk_exec(this.#db, this._scratch.ptr, n);
        if (rc !== C.SQLITE_OK) throw this._error(rc);
      }),
    );
    return this;
  }

  /** Prepares one statement. */
  prepare(sql: string): Statement {
    this.#requireOpen();
    if (typeof sql !== "string") throw new UsageError("BAD_SQL", "prepare() takes a string of SQL");
    return this._guard(() => new Statement(this, sql));
  }

  /**
   * The statements of a text, one at a time, each prepared only when the previous one has been
   * consumed (so `CREATE TABLE t ...; INSERT INTO t ...` works: t exists when the INSERT is prepared).
   */
  *statements(sql: string): Generator<Statement> {
    let rest = sql;
    for (;;) {
      this.#requireOpen();
      const { handle, tail } = this._guard(() => this._prepareRaw(rest, 0));
      if (handle === 0) return;
      this._x.sk_finalize(handle);
      const st = this.prepare(rest.slice(0, tail));
      rest = rest.slice(tail);
      try {
        yield st;
      } finally {
        st.finalize();
      }
    }
  }

  /** Runs one statement and returns its rows (`sql.exec` style); statements are cached by text. */
  query<T = Row>(sql: string, ...args: BindArgs): T[] {
    return this.retryingReads(() => this.#cached(sql).all(...args) as T[]);
  }

  /**
   * A sealed read-only connection beside a writer process: a statement outside a transaction whose
   * commit's space the writer reused (STORAGE_SNAPSHOT_GONE, nothing wrong returned) runs again on
   * the newest commit, a few times. Inside BEGIN ... COMMIT the error goes to the caller. `fn` must
   * have no effect outside the database before it returns (query, exec and the shell's statements).
   */
  retryingReads<T>(fn: () => T): T {
    for (let attempt = 0; ; attempt++) {
      try {
        return fn();
      } catch (e) {
        if (!this.#lockless || attempt >= 8 || !(e instanceof StorageError) || e.code !== "STORAGE_SNAPSHOT_GONE" || this.inTransaction) throw e;
      }
    }
  }

  /** Runs one statement for its effect. */
  run(sql: string, ...args: BindArgs): RunResult {
    return this.#cached(sql).run(...args);
  }

  #cached(sql: string): Statement {
    this.#requireOpen();
    let st = this.#cache.get(sql);
    if (st && !st.finalized) {
      this.#cache.delete(sql); // re-insert: most recently used last
      this.#cache.set(sql, st);
      return st;
    }
    st = this.prepare(sql);
    if (this.#cacheSize > 0) {
      this.#cache.set(sql, st);
      if (this.#cache.size > this.#cacheSize) {
        const [oldest, old] = this.#cache.entries().next().value as [string, Statement];
        this.#cache.delete(oldest);
        old.finalize();
      }
    }
    return st;
  }

  /**
   * Wraps `fn` in a transaction: COMMIT when it returns, ROLLBACK when it throws. Nested calls use
   * savepoints. `fn` must be synchronous (an async function would commit before its awaits ran).
   */
  transaction<A extends unknown[], R>(fn: (...args: A) => R, mode: "deferred" | "immediate" | "exclusive" = "deferred"): (...args: A) => R {
    if (typeof fn !== "function") throw new UsageError("BAD_ARGUMENT", "transaction() takes a function");
    return (...args: A): R => {
      const nested = this.inTransaction;
      const gen = this._generation;
      const sp = `selkie_sp_${gen}_${Math.random().toString(36).slice(2, 8)}`;
      this.exec(nested ? `SAVEPOINT ${sp}` : `BEGIN ${mode.toUpperCase()}`);
      try {
        const result = fn(...args);
        if (result instanceof Promise) {
          throw new UsageError("ASYNC_TRANSACTION", "transaction() functions must be synchronous; the transaction was rolled back");
        }
        this.exec(nested ? `RELEASE ${sp}` : "COMMIT");
        return result;
      } catch (e) {
        try {
          if (this._generation === gen && this.#open && !this._guard(() => this._x.sk_get_autocommit(this.#db))) {
            this.exec(nested ? `ROLLBACK TO ${sp}; RELEASE ${sp}` : "ROLLBACK");
          }
        } catch {
          // The original error is what the caller needs; SQLite has rolled back whatever it could.
        }
        throw e;
      }
    };
  }

  /** Closes the database and destroys the enclave instance. Safe to call twice. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#pager?.unregister(this.#pageable);
    try {
      // A hibernated enclave is idle (no transaction, no lock): dropping it loses nothing, so it is
      // not woken just to be closed.
      for (const st of this.#live) st._drop(!this.#hibernated);
      if (!this.#hibernated) {
        const rc = this.#x!.sk_close(this.#db);
        if (rc !== C.SQLITE_OK) throw new SqliteError(rc, `closing ${this.path} failed`);
      }
      this.#live.clear();
      this.#cache.clear();
    } finally {
      this.#hibernated = false;
      this.#images?.destroy();
      this.#images = undefined;
      this.#vfs.closeAll();
      this.#enclave.close();
      this.#store?.release();
      this.#store = undefined;
      if (!this.#lockless) releaseProcessLock(this.path);
    }
  }

  /**
   * Upgrades the sealed database `file` from store format 1 to format 2 in place (runtime/storage/
   * upgrade.ts): the page contents are copied under the new format, the v1 counter is destroyed.
   * Returns the bytes copied. Run it again after an interruption.
   */
  static upgradeStore(file: string, opts: { platform: Platform; epc?: number | string; files?: FileLayer }): number {
    const p = path.resolve(file);
    const image = loadSqliteEnclave(opts.epc === undefined ? {} : { epc: opts.epc });
    const enclave = new Enclave({ module: image.module, manifest: image.manifest, signature: sqliteSignature(opts.platform.dir, image) });
    acquireProcessLock(p);
    try {
      // v1 stores were sealed to the pre-revision-6 identity (read through `legacy`); the new store is
      // sealed under the signed enclave's MRSIGNER policy, with a trust of its own.
      const from = sqliteStoreTrust(opts.platform, enclave, image, p);
      const into = storeTrustFor(opts.platform.servicesFor(enclave.measured), { file: p });
      return upgradeStore(opts.files ?? new NodeFileLayer(), p, from, into);
    } finally {
      releaseProcessLock(p);
      enclave.close();
    }
  }

  /**
   * Closes the database and deletes it (runtime/storage/FORMAT.md "Creation and deletion"): a sealed
   * database's counter is destroyed before its files are removed, so a copy of them never opens again.
   * No other connection to it may be open.
   */
  destroy(): void {
    this.#requireOpen();
    const access = this.#storeAccess;
    this.close();
    if (access) PageStore.destroy(access.files, this.path, access.trust);
    else fs.rmSync(this.path, { force: true });
  }

  /**
   * Closes the sealed database and renames it to `to` (FORMAT.md "Names"): the name is bound into its
   * header, so renaming its files by hand makes it refuse to open (STORAGE_WRONG_NAME). No other
   * connection to it may be open. Running it again after a crash finishes it.
   */
  renameTo(to: string): void {
    this.#requireOpen();
    const access = this.#storeAccess;
    if (!access) throw new UsageError("DB_NOT_SEALED", `${this.path} is a plain SQLite file: rename it with mv`);
    this.close();
    PageStore.rename(access.files, this.path, path.resolve(to), access.trust);
  }

  #requireOpen(): void {
    if (!this.#open) throw new UsageError("DB_CLOSED", "the database is closed; open it again");
  }

  /** @internal */
  _prepareRaw(sql: string, flags: number): { handle: number; tail: number } {
    const x = this._x;
    const n = this._scratch.putText(sql);
    if (n < 0) throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory for the SQL text");
    const out = x.sk_malloc(8);
    if (out === 0) throw new SqliteError(C.SQLITE_NOMEM, "out of enclave memory");
    try {
      const rc = x.sk_prepare(this.#db, this._scratch.ptr, n, flags, out, out + 4);
      if (rc !== C.SQLITE_OK) throw this._error(rc);
      const handle = this._mem.readI32(out);
      const tailBytes = this._mem.readI32(out + 4);
      if (tailBytes < 0 || tailBytes > n) throw new EnclaveFault("ENCLAVE_BAD_VALUE", `enclave returned tail offset ${tailBytes} outside the ${n}-byte SQL text`);
      // The tail offset is in UTF-8 bytes; convert it to a string index.
      const tail = tailBytes === n ? sql.length : Buffer.from(sql, "utf8").subarray(0, tailBytes).toString("utf8").length;
      return { handle, tail };
    } finally {
      x.sk_free(out);
    }
  }

  /** @internal — an SqliteError for rc with the connection's message. */
  _error(rc: number): SelkieError {
    const stored = this.#vfs.takeStorageError();
    if (stored) return stored;
    const x = this._x;
    const ext = x.sk_errcode(this.#db);
    const code = (ext & 0xff) === (rc & 0xff) ? ext : rc;
    if ((code & 0xff) === C.SQLITE_INTERRUPT && x.sk_deadline_hit() !== 0) {
      const asked = this.#interruptHit;
      this.#interruptHit = false;
      if (asked) {
        x.sk_set_deadline(this.#db, this.#effectiveDeadline()); // clears SQLite's "deadline hit"
        return new StatementInterruptedError();
      }
      return new StatementTimeoutError();
    }
    if ((code & 0xff) === C.SQLITE_AUTH && this.#scope !== "all") {
      const denied = this._mem.cstring(x.sk_denied(), 256);
      if (denied !== "") return new SqlNotAuthorizedError(this.#scope, denied);
    }
    return new SqliteError(code, this._mem.cstring(x.sk_errmsg(this.#db), 65536), x.sk_error_offset(this.#db));
  }

  /** @internal */
  _totalChanges(): number {
    return this._x.sk_total_changes(this.#db);
  }

  /**
   * @internal — one ecall for changes, total_changes and the last rowid. `changes` counts rows this
   * statement changed: sqlite3_changes64 keeps reporting the previous INSERT/UPDATE/DELETE after
   * other statements (DDL, BEGIN), so it is 0 unless total_changes moved.
   */
  _runResult(totalBefore: number): RunResult {
    const out = this.#infoPtr;
    this._x.sk_run_info(this.#db, out);
    const dv = this._mem.dv;
    const total = dv.getFloat64(out + 8, true);
    const lo = dv.getUint32(out + 16, true);
    const hi = dv.getInt32(out + 20, true);
    // Rowids within +-2^53 are read without a BigInt; larger ones come back as bigint.
    const lastInsertRowid = hi >= -0x200000 && hi < 0x200000 ? hi * 4294967296 + lo : dv.getBigInt64(out + 16, true);
    return { changes: total === totalBefore ? 0 : dv.getFloat64(out, true), lastInsertRowid };
  }

  /**
   * @internal — what a statement method throws for `e`: our own typed errors as they are; anything
   * else out of an ecall means the instance faulted, so restart it and report (see _guard).
   */
  _fault(e: unknown): Error {
    if (e instanceof SelkieError && !(e instanceof EnclaveFault)) return e;
    return this.#recover(e);
  }

  /** @internal */
  _track(st: Statement): void {
    this.#live.add(st);
  }

  /** @internal */
  _untrack(st: Statement): void {
    this.#live.delete(st);
  }

  /**
   * @internal — runs an ecall sequence; any exception that is not a SelkieError raised by our own
   * checks means the instance faulted (trap, stack overflow, thrown ocall): restart and report.
   */
  _guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw this._fault(e);
    }
  }

  #recover(cause: unknown): EnclaveFault {
    const what = cause instanceof Error ? `${cause.constructor.name}: ${cause.message}` : String(cause);
    this.#enclave.fault();
    this.#vfs.closeAll();
    this._generation++;
    for (const st of this.#live) st._drop(false);
    this.#live.clear();
    this.#cache.clear();
    this.#open = false;
    try {
      this.#boot(false);
    } catch (e) {
      this.#enclave.close();
      this.#store?.release();
      this.#store = undefined;
      if (!this.#lockless) releaseProcessLock(this.path);
      return new EnclaveFault("ENCLAVE_RESTART_FAILED", `the SQLite enclave faulted (${what}) and could not be restarted: ${(e as Error).message}; open the database again`, { cause });
    }
    return new EnclaveFault(
      "ENCLAVE_TRAPPED",
      `the SQLite enclave faulted (${what}); it was restarted and ${path.basename(this.path)} reopened at its last commit: this call and any open transaction were rolled back, retry them`,
      { cause },
    );
  }
}

/** Opens a plain SQLite file read-only in an enclave and requires integrity_check to say ok. */
function checkPlain(file: string): void {
  if (!fs.existsSync(file)) throw new UsageError("NO_SUCH_FILE", `${file} does not exist`);
  const db = new Database(file, { plain: true, readonly: true });
  try {
    const ok = db.query<{ integrity_check: string }>("PRAGMA integrity_check");
    if (ok.length !== 1 || ok[0]!.integrity_check !== "ok") {
      throw new SqliteError(C.SQLITE_CORRUPT, `${file} fails integrity_check: ${JSON.stringify(ok.slice(0, 5))}`);
    }
  } finally {
    db.close();
  }
}

/** The sealed store's trust for the SQLite enclave `enclave` (MRSIGNER policy; databases sealed before ABI revision 6 through their legacy identity). */
function sqliteStoreTrust(platform: Platform, enclave: Enclave, image: { module: CheckedModule; manifest: Manifest }, file: string): StoreTrust {
  return storeTrustFor(platform.servicesFor(enclave.measured), {
    file,
    legacy: (sealedTo) => {
      const old = measureLegacyV1(image.module, image.manifest, sealedTo);
      return old && platform.servicesFor(old);
    },
  });
}
