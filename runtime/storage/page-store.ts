/**
 * TRUSTED (enclave side). The sealed page store: SQLite's database file, sealed block by block,
 * with atomic, durable, rollback-protected commits. Format: runtime/storage/FORMAT.md (version 2).
 *
 * Invariants:
 *  1. Only ciphertext reaches the FileLayer: every block is AES-256-GCM under a key derived from the
 *     data key for its version, with (dbId, block, version) as AAD; every table record under a key
 *     derived for it alone, with (dbId, previous record's seq and tag) as AAD: the records are a chain.
 *  2. SINGLE USE: no seq is ever written with two different contents, and a slot's version is the seq
 *     of the one commit attempt that wrote it. A commit uses seq = last + 1 only while the counter
 *     reads `last`; a writable open, and every failed commit, first appends a counted EPOCH record at
 *     last + 2, skipping the number a crashed or failed attempt may have used (FORMAT.md "Single-use").
 *  3. NAME BINDING: the header names the file the database was created (or renamed) as, under the
 *     sealed key's AAD; opening it under another name is STORAGE_WRONG_NAME. Deleting a database
 *     destroys its counter, so a copy of its files never opens again (STORAGE_DELETED).
 *  4. A commit never overwrites a slot the committed table refers to; the table changes only by an
 *     fsynced log record. A crash at any instant leaves the last committed table valid.
 *  5. A commit is acknowledged (commit() returns) only after slots, log record and the platform
 *     counter are durable; `seq` in memory always equals the last counted record's seq.
 *  6. Opening checks the log's last seq against the platform counter (FORMAT.md "Open"); a log with
 *     no records is refused unless the counter says the database never committed; a read-only open
 *     never applies an uncounted record.
 *  9. READERS: a read-only store writes nothing (no epoch, no truncation, no counter step), so it may
 *     run beside a writer in another process. It reads the counter before the log and serves the
 *     state at that value (#loadCounted), moves to a newer one only between read transactions
 *     (refresh), and when the writer has reused a slot of its state, fails the read with
 *     STORAGE_SNAPSHOT_GONE rather than return other bytes (FORMAT.md "Readers beside a writer").
 *  7. Nothing is a database until its log is renamed into place by create() (atomic creation).
 *  8. Bytes that fail authentication are never returned: reads throw StorageError.
 *
 * Commit state machine (per store):
 *   CLEAN --write/truncate--> DIRTY --commit()--> CLEAN
 *   DIRTY --rollback()--> CLEAN
 *   DIRTY --commit() fails writing--> NEED_EPOCH --epoch durable and counted--> CLEAN
 *     (commit() retries the epoch first; while it fails, commits fail with STORAGE_IO, reads work)
 *   any --I/O failure the store cannot undo, or a counter step that failed--> BROKEN (reopen)
 *
 * Read views (read marks; runtime/host/server/hrana/ISOLATION.md): openView() pins the committed
 * table as it is now. Each later commit records in every open view the (slot, version) that the
 * blocks it replaces had, before applying its table, and those slots stay out of allocation and
 * truncation (#held) until the view is closed. So:
 *  9. A view's reads return exactly the blocks of the commit it was opened at, authenticated with
 *     their own version (invariant 8 holds for them); a view never sees pending writes.
 * 10. A slot a view holds is never rewritten while the view is open (it is neither in #used's free
 *     set nor past the truncated end).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import type { FileHandle, FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";

export const BLOCK = 4096;
const IV = 12;
const TAG = 16;
const KEY_ID = 16;
export const SLOT = IV + BLOCK + TAG;
const NONE = 0xffffffff;
const MAGIC = Buffer.from("SELKIELOG", "ascii");
export const FORMAT_VERSION = 2;
const KIND_SNAPSHOT = 1;
const KIND_DELTA = 2;
const KIND_EPOCH = 3;
const AAD_SLOT = Buffer.from("selkie/slot/v2", "ascii");
const AAD_RECORD = Buffer.from("selkie/record/v2", "ascii");
export const AAD_DATAKEY = Buffer.from("selkie/datakey/v2", "ascii");
const MAX_RECORD = 64 * 1024 * 1024;
const BODY_MIN = 1 + 8 + 8 + 4;
const ZERO_TAG = Buffer.alloc(TAG);
/** Derived slot keys kept per store (32 bytes each). */
const SLOT_KEYS = 4096;

/** What the store needs from the platform: sealing of its data key and one monotonic counter. */
export interface StoreTrust {
  sealDataKey(key: Buffer, aad: Buffer): Buffer;
  /** Throws the platform's typed error when the blob is not ours (other platform, enclave, tampered). */
  unsealDataKey(blob: Buffer, aad: Buffer): Buffer;
  createCounter(): string;
  /** Throws a COUNTER_NOT_FOUND error once the counter was destroyed. */
  readCounter(id: string): number;
  incrementCounter(id: string): number;
  /** Sets the counter to `value` (>= its value) in one durable step; returns the new value. */
  advanceCounter(id: string, value: number): number;
  destroyCounter(id: string): void;
}

/** A read mark (see the file comment). Only the store that opened it reads through it. */
export class ReadView {
  /** Blocks replaced by commits since the view was opened: their slot and version as of it. */
  readonly before = new Map<number, [number, number]>();
  /** True once any commit landed after the view was opened. */
  stale = false;
  closed = false;
  constructor(readonly size: number, readonly seq: number) {}
}

interface Header {
  dbId: Buffer;
  counterId: string;
  name: string;
  sealedKey: Buffer;
  bytes: number;
}

interface Parsed {
  kind: number;
  seq: number;
  size: number;
  entries: Array<[number, number, number]>;
  end: number;
  tag: Buffer;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function derive(key: Buffer, dbId: Buffer, info: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", key, dbId, info, 32));
}

const missingCounter = (e: unknown): boolean => (e as { code?: string }).code === "COUNTER_NOT_FOUND";

function deletedError(path: string, cause: unknown): StorageError {
  return new StorageError(
    "STORAGE_DELETED",
    `${path}: this database was deleted (its platform counter was destroyed); these files are a copy of a deleted database and will not open. Restore a plain export (selkie db import) if you need its data`,
    path,
    { cause },
  );
}

export class PageStore {
  readonly #files: FileLayer;
  readonly #slotFile: FileHandle;
  #logFile: FileHandle;
  readonly #key: Buffer;
  readonly #header: Header;
  readonly #trust: StoreTrust;
  readonly readonly: boolean;
  /** block -> slot (NONE: absent) and version, for the committed table. */
  #slotOf = new Uint32Array(0);
  #versionOf = new Float64Array(0);
  /** slot -> in use by the committed table. */
  #used = new Uint8Array(0);
  /** True during a commit that shrinks the database: recently freed slots are reused too. */
  #shrinking = false;
  /** slot -> seq of the commit that freed it (0: never used or freed before this session knew). */
  #freedBy = new Float64Array(0);
  #slotCount = 0;
  #liveBlocks = 0;
  #size = 0;
  #seq = 0;
  /** The chain: seq and GCM tag of the last record in the log (the next record's AAD). */
  #prevSeq = 0;
  #prevTag: Buffer = ZERO_TAG;
  #logEnd = 0;
  #snapshotBytes = 0;
  /** A commit attempt failed after it may have used seq + 1: an epoch must be counted before the next. */
  #needEpoch = false;
  readonly #pending = new Map<number, Buffer>();
  #pendingSize: number | undefined;
  /** Blocks from here on read as zeros unless pending: the file was truncated in this transaction. */
  #zeroFrom = Infinity;
  #broken: string | undefined;
  readonly #scratch = Buffer.alloc(SLOT);
  readonly #slotKeys = new Map<number, Buffer>();
  /** Open read views, and slot -> how many of them hold it (invariant 10). */
  readonly #views = new Set<ReadView>();
  #held = new Uint32Array(0);
  /**
   * Plaintext of recently read committed blocks (trusted memory; bounded). SQLite re-reads its file
   * header at the start of every transaction, so without this each read would decrypt block 0.
   */
  readonly #cache = new Map<number, Buffer>();
  static readonly CACHE_BLOCKS = 256;
  /** A slot freed by commit f is reused from commit f + REUSE_AFTER + 1 on (readers beside a writer). */
  static readonly REUSE_AFTER = 4;
  commits = 0;

  private constructor(files: FileLayer, slotFile: FileHandle, logFile: FileHandle, key: Buffer, header: Header, trust: StoreTrust, readonly: boolean) {
    this.#files = files;
    this.#slotFile = slotFile;
    this.#logFile = logFile;
    this.#key = key;
    this.#header = header;
    this.#trust = trust;
    this.readonly = readonly;
  }

  /** True when `path` holds a store (its log exists). */
  static exists(files: FileLayer, path: string): boolean {
    return files.exists(`${path}.log`);
  }

  /** True when `path` is only what a create() killed before its rename leaves: an empty slot file, no log. */
  static isCreateLeftover(files: FileLayer, path: string): boolean {
    if (files.exists(`${path}.log`) || !files.exists(path)) return false;
    const h = files.open(path, { create: false, readonly: true });
    try {
      return files.size(h) === 0;
    } finally {
      files.close(h);
    }
  }

  /**
   * Creates a new, empty store, atomically (FORMAT.md "Creation"): nothing is a database until
   * NAME.log.tmp, holding the header and the first snapshot, is durable and renamed to NAME.log.
   * Refuses to overwrite existing files; removes the leftovers of a create that crashed.
   */
  static create(files: FileLayer, path: string, trust: StoreTrust): PageStore {
    const logPath = `${path}.log`;
    const tmp = `${logPath}.tmp`;
    let reuseSlots = false;
    if (files.exists(logPath)) {
      throw new StorageError("STORAGE_EXISTS", `${path}: a file is in the way of a new sealed database; move it away, or import a plain SQLite file with: selkie db import`, path);
    }
    if (files.exists(path)) {
      const h = files.open(path, { create: false, readonly: true });
      const size = files.size(h);
      files.close(h);
      // An empty slot file without a log is what a create that crashed before its rename leaves.
      if (size !== 0) throw new StorageError("STORAGE_EXISTS", `${path}: a file is in the way of a new sealed database; move it away, or import a plain SQLite file with: selkie db import`, path);
      reuseSlots = true;
    }
    if (files.exists(tmp)) files.remove(tmp, false);
    const key = randomBytes(32);
    const dbId = randomBytes(16);
    const name = basename(path);
    const counterId = trust.createCounter();
    const sealedKey = trust.sealDataKey(key, Buffer.concat([AAD_DATAKEY, headerPrefix(dbId, counterId, name)]));
    const headerBytes = encodeHeader(dbId, counterId, name, sealedKey);
    const header: Header = { dbId, counterId, name, sealedKey, bytes: headerBytes.length };
    const tmpFile = files.open(tmp, { create: true, readonly: false, exclusive: true });
    let slotFile: FileHandle | undefined;
    let store: PageStore;
    try {
      files.write(tmpFile, headerBytes, 0);
      slotFile = files.open(path, { create: true, readonly: false, exclusive: !reuseSlots });
      store = new PageStore(files, slotFile, tmpFile, key, header, trust, false);
      store.#writeSnapshot(tmpFile, headerBytes.length, 0);
      files.sync(tmpFile);
      files.sync(slotFile);
      files.syncDir(dirname(path));
      files.rename(tmp, logPath); // the database exists from here on (rename fsyncs the folder)
    } catch (e) {
      if (slotFile) files.close(slotFile);
      files.close(tmpFile);
      throw e;
    }
    files.close(tmpFile);
    store.#logFile = files.open(logPath, { create: false, readonly: false });
    return store;
  }

  /** Opens an existing store, checking integrity, name and freshness (FORMAT.md "Open"). */
  static open(files: FileLayer, path: string, trust: StoreTrust, opts: { readonly?: boolean } = {}): PageStore {
    const readonly = opts.readonly === true;
    if (!files.exists(`${path}.log`)) {
      throw new StorageError("STORAGE_MISSING_FILE", `${path}.log is missing: the database's table log is gone, so its pages cannot be trusted; restore the database's files from a sealed backup`, `${path}.log`);
    }
    if (!files.exists(path)) {
      throw new StorageError("STORAGE_MISSING_FILE", `${path} is missing (its table log exists): restore the database's files from a sealed backup`, path);
    }
    const logFile = files.open(`${path}.log`, { create: false, readonly });
    let slotFile: FileHandle | undefined;
    try {
      slotFile = files.open(path, { create: false, readonly });
      const logBytes = readAll(files, logFile);
      const header = decodeHeader(logBytes, `${path}.log`, path);
      // The header's clear fields (dbId, counter id, name) are the AAD of the sealed key: changing them fails here.
      const key = unsealKey(trust, header, `${path}.log`);
      if (header.name !== basename(path)) {
        throw new StorageError(
          "STORAGE_WRONG_NAME",
          `${path}: these files belong to the database created as ${header.name}, not ${basename(path)} (they were renamed, swapped or copied). Move them back to ${join(dirname(path), header.name)} and ${join(dirname(path), header.name)}.log; to give that database a new name, run: selkie db rename ${join(dirname(path), header.name)} NEW`,
          path,
        );
      }
      const store = new PageStore(files, slotFile, logFile, key, header, trust, readonly);
      if (readonly) store.#loadCounted(path); // reads the log again, after the counter
      else store.#checkFreshness(path, store.#parse(logBytes, path), logBytes.length);
      store.#slotCount = Math.max(store.#slotCount, Math.floor(files.size(slotFile) / SLOT));
      if (!readonly) store.#writeEpoch(); // every seq this session writes is fresh (invariant 2)
      return store;
    } catch (e) {
      if (slotFile) files.close(slotFile);
      files.close(logFile);
      if (e instanceof StorageError) throw e;
      if (missingCounter(e)) throw deletedError(path, e);
      throw e;
    }
  }

  /**
   * Deletes the database at `path`: authenticates it, destroys its counter (so no copy of its files
   * can ever open again), then removes its files. Files of an already destroyed counter are removed.
   */
  static destroy(files: FileLayer, path: string, trust: StoreTrust): void {
    let counterId: string | undefined;
    try {
      const store = PageStore.open(files, path, trust, { readonly: true });
      counterId = store.#header.counterId;
      store.close();
    } catch (e) {
      if (!(e instanceof StorageError && e.code === "STORAGE_DELETED")) throw e;
    }
    if (counterId !== undefined) trust.destroyCounter(counterId);
    for (const f of [`${path}.log`, path, `${path}.log.tmp`]) if (files.exists(f)) files.remove(f, false);
    files.syncDir(dirname(path));
  }

  /**
   * Renames the database `from` to `to` (same folder or another), crash-safely (FORMAT.md "Names"):
   * TO.log.tmp with the new name, fsync; rename to TO.log; rename the slot file; remove FROM.log.
   * Running it again after a crash finishes or redoes it.
   */
  static rename(files: FileLayer, from: string, to: string, trust: StoreTrust): void {
    if (basename(from) === basename(to) && dirname(from) === dirname(to)) return;
    const toLog = `${to}.log`;
    // Resume: a crash after the slot file moved leaves FROM.log behind a complete TO.
    if (!files.exists(from) && files.exists(`${from}.log`) && files.exists(to) && files.exists(toLog)) {
      PageStore.open(files, to, trust, { readonly: true }).close();
      files.remove(`${from}.log`, true);
      return;
    }
    // Resume: a crash after TO.log was renamed into place, before the slot file moved.
    if (files.exists(toLog) && !files.exists(to) && files.exists(from)) files.remove(toLog, true);
    if (files.exists(to) || files.exists(toLog)) {
      throw new StorageError("STORAGE_EXISTS", `${to}: a file is in the way of the renamed database; move it away first`, to);
    }
    const store = PageStore.open(files, from, trust);
    try {
      if (store.dirty) throw new Error("internal: rename of a store with pending writes");
      const name = basename(to);
      const h = store.#header;
      const sealedKey = trust.sealDataKey(store.#key, Buffer.concat([AAD_DATAKEY, headerPrefix(h.dbId, h.counterId, name)]));
      const headerBytes = encodeHeader(h.dbId, h.counterId, name, sealedKey);
      const tmp = `${toLog}.tmp`;
      if (files.exists(tmp)) files.remove(tmp, false);
      const f = files.open(tmp, { create: true, readonly: false, exclusive: true });
      try {
        files.write(f, headerBytes, 0);
        store.#writeSnapshot(f, headerBytes.length, store.#seq);
        files.sync(f);
      } finally {
        files.close(f);
      }
      files.rename(tmp, toLog);
    } finally {
      store.close();
    }
    files.rename(from, to);
    files.remove(`${from}.log`, true);
  }

  get size(): number {
    return this.#pendingSize ?? this.#size;
  }

  get dirty(): boolean {
    return this.#pending.size > 0 || this.#pendingSize !== undefined;
  }

  /** The last counted commit number (tests and tools). */
  get seq(): number {
    return this.#seq;
  }

  /** Bytes the store occupies on disk (slot file + log). */
  get diskBytes(): number {
    return this.#files.size(this.#slotFile) + this.#logEnd;
  }

  /** Decrypted committed blocks held in memory (at most CACHE_BLOCKS). */
  get cachedBlocks(): number {
    return this.#cache.size;
  }

  get liveBytes(): number {
    return this.#liveBlocks * BLOCK;
  }

  #check(): void {
    if (this.#broken) throw new StorageError("STORAGE_BROKEN", `${this.#broken}; close and reopen the database (its last commit is intact on disk)`, this.#slotFile.path);
  }

  /** The key that seals slots of `version` (one commit attempt's; FORMAT.md "Derived keys"). */
  #slotKey(version: number): Buffer {
    let k = this.#slotKeys.get(version);
    if (k) return k;
    k = derive(this.#key, this.#header.dbId, Buffer.concat([AAD_SLOT, u64(version)]));
    if (this.#slotKeys.size >= SLOT_KEYS) this.#slotKeys.delete(this.#slotKeys.keys().next().value as number);
    this.#slotKeys.set(version, k);
    return k;
  }

  // ---- reading ----------------------------------------------------------------------------------

  /** The plaintext of committed block b (zeros when absent). */
  #committedBlock(b: number): Buffer {
    const hit = this.#cache.get(b);
    if (hit) return hit;
    const slot = b < this.#slotOf.length ? this.#slotOf[b]! : NONE;
    if (slot === NONE) return Buffer.alloc(BLOCK);
    const out = this.#openSlot(b, slot, this.#versionOf[b]!);
    this.#remember(b, out);
    return out;
  }

  /** Reads and authenticates block b from `slot`, sealed at `version`. */
  #openSlot(b: number, slot: number, version: number): Buffer {
    const buf = this.#scratch;
    const n = this.#files.read(this.#slotFile, buf, slot * SLOT);
    if (n !== SLOT) {
      throw this.#unreadable(b, new StorageError("STORAGE_TAMPERED", `${this.#slotFile.path}: block ${b} is cut short on disk (the file was truncated); restore the database from a sealed backup`, this.#slotFile.path));
    }
    const d = createDecipheriv("aes-256-gcm", this.#slotKey(version), buf.subarray(0, IV));
    d.setAAD(Buffer.concat([AAD_SLOT, this.#header.dbId, u32(b), u64(version)]));
    d.setAuthTag(buf.subarray(IV + BLOCK));
    try {
      const out = d.update(buf.subarray(IV, IV + BLOCK));
      d.final();
      return out;
    } catch {
      throw this.#unreadable(b, new StorageError("STORAGE_TAMPERED", `${this.#slotFile.path}: block ${b} failed authentication (changed, swapped or replaced by an older copy); nothing was returned. Restore the database from a sealed backup`, this.#slotFile.path));
    }
  }

  #block(b: number): Buffer {
    return this.#pending.get(b) ?? (b >= this.#zeroFrom ? Buffer.alloc(BLOCK) : this.#committedBlock(b));
  }

  /** Reads into dst from logical offset; returns bytes read (short only at the end of the file). */
  read(dst: Uint8Array, offset: number): number {
    this.#check();
    const end = Math.min(offset + dst.length, this.size);
    let done = 0;
    for (let pos = offset; pos < end; ) {
      const b = Math.floor(pos / BLOCK);
      const within = pos - b * BLOCK;
      const n = Math.min(BLOCK - within, end - pos);
      const block = this.#block(b);
      dst.set(block.subarray(within, within + n), done);
      done += n;
      pos += n;
    }
    return done;
  }

  // ---- read views (invariants 9 and 10) ---------------------------------------------------------

  /** Pins the committed state as it is now; read it with readView(), end it with closeView(). */
  openView(): ReadView {
    this.#check();
    const v = new ReadView(this.#size, this.#seq);
    this.#views.add(v);
    return v;
  }

  /** Open read views (tests and metrics). */
  get views(): number {
    return this.#views.size;
  }

  /** Like read(), of the committed state the view was opened at. */
  readView(v: ReadView, dst: Uint8Array, offset: number): number {
    this.#check();
    if (v.closed) throw new StorageError("STORAGE_VIEW_CLOSED", "read through a closed read view (a bug in the VFS); reopen the database", this.#slotFile.path);
    const end = Math.min(offset + dst.length, v.size);
    let done = 0;
    for (let pos = offset; pos < end; ) {
      const b = Math.floor(pos / BLOCK);
      const within = pos - b * BLOCK;
      const n = Math.min(BLOCK - within, end - pos);
      const old = v.before.get(b);
      const block = old === undefined ? this.#committedBlock(b) : old[0] === NONE ? Buffer.alloc(BLOCK) : this.#openSlot(b, old[0], old[1]);
      dst.set(block.subarray(within, within + n), done);
      done += n;
      pos += n;
    }
    return done;
  }

  /** Ends a view: its slots may be reused by the next commit. */
  closeView(v: ReadView): void {
    if (v.closed) return;
    v.closed = true;
    this.#views.delete(v);
    for (const [slot] of v.before.values()) if (slot !== NONE) this.#held[slot]!--;
    v.before.clear();
  }

  /** Before a commit's table is applied: every open view keeps what the replaced blocks were. */
  #keepForViews(entries: Array<[number, number, number]>): void {
    for (const v of this.#views) {
      v.stale = true;
      for (const [b] of entries) {
        if (v.before.has(b)) continue;
        const slot = b < this.#slotOf.length ? this.#slotOf[b]! : NONE;
        v.before.set(b, [slot, slot === NONE ? 0 : this.#versionOf[b]!]);
        if (slot !== NONE) {
          if (slot >= this.#held.length) {
            const h = new Uint32Array(Math.max(slot + 1, this.#held.length * 2, 64));
            h.set(this.#held);
            this.#held = h;
          }
          this.#held[slot]!++;
        }
      }
    }
  }

  // ---- writing (pending until commit) -----------------------------------------------------------

  write(src: Uint8Array, offset: number): void {
    this.#check();
    if (this.readonly) throw new StorageError("STORAGE_READONLY", "the database is open read-only", this.#slotFile.path);
    let done = 0;
    while (done < src.length) {
      const pos = offset + done;
      const b = Math.floor(pos / BLOCK);
      const within = pos - b * BLOCK;
      const n = Math.min(BLOCK - within, src.length - done);
      let block = this.#pending.get(b);
      if (!block) {
        block = n === BLOCK || b * BLOCK >= this.size ? Buffer.alloc(BLOCK) : Buffer.from(this.#block(b));
        this.#pending.set(b, block);
      }
      block.set(src.subarray(done, done + n), within);
      done += n;
    }
    if (offset + src.length > this.size) this.#pendingSize = offset + src.length;
  }

  truncate(size: number): void {
    this.#check();
    if (size >= this.size) return;
    this.#pendingSize = size;
    const keep = Math.ceil(size / BLOCK);
    this.#zeroFrom = Math.min(this.#zeroFrom, keep);
    for (const b of this.#pending.keys()) if (b >= keep) this.#pending.delete(b);
    if (size % BLOCK !== 0) {
      const b = keep - 1;
      const block = Buffer.from(this.#block(b));
      block.fill(0, size % BLOCK);
      this.#pending.set(b, block);
    }
  }

  /** Discards everything written since the last commit. */
  rollback(): void {
    this.#pending.clear();
    this.#pendingSize = undefined;
    this.#zeroFrom = Infinity;
  }

  // ---- commit -----------------------------------------------------------------------------------

  /**
   * A free slot for commit `this.#seq + 1`. Slots freed by the last REUSE_AFTER commits are skipped:
   * they still hold blocks of those states, which a reader in another process may be reading
   * (invariant 9); the space this costs is REUSE_AFTER commits' worth of blocks.
   */
  #allocSlot(from: { next: number }, taken: Set<number>): number {
    let s = from.next;
    const after = this.#seq + 1 - PageStore.REUSE_AFTER;
    while (this.#used[s] || this.#held[s] || taken.has(s) || this.#recentlyFreed(s, after)) s++;
    from.next = s + 1;
    return s;
  }

  /** True when slot `s` was freed by a commit with seq >= `after` (0 in #freedBy: never freed here). */
  #recentlyFreed(s: number, after: number): boolean {
    if (this.#shrinking) return false;
    const f = this.#freedBy[s] ?? 0;
    return f > 0 && f >= after;
  }

  #seal(b: number, version: number, plain: Uint8Array): Buffer {
    const iv = randomBytes(IV);
    const c = createCipheriv("aes-256-gcm", this.#slotKey(version), iv);
    c.setAAD(Buffer.concat([AAD_SLOT, this.#header.dbId, u32(b), u64(version)]));
    return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
  }

  /** Makes everything written since the last commit durable, atomically (FORMAT.md "Commit"). */
  commit(): void {
    this.#check();
    if (!this.dirty) return;
    if (this.readonly) throw new StorageError("STORAGE_READONLY", "the database is open read-only", this.#slotFile.path);
    if (this.#needEpoch) {
      try {
        this.#writeEpoch();
      } catch (e) {
        this.#check();
        throw new StorageError("STORAGE_IO", `commit refused: ${this.#slotFile.path} could not record that an earlier commit failed (${(e as Error).message}); the transaction was not committed`, this.#slotFile.path, { cause: e });
      }
    }
    const seq = this.#seq + 1;
    const size = this.size;
    const keep = Math.ceil(size / BLOCK);
    const shrank = size < this.#size;
    // A commit that shrinks the database (VACUUM) compacts fully and gives the space back now, reusing
    // even recently freed slots: a reader still on an older state then gets STORAGE_SNAPSHOT_GONE.
    this.#shrinking = shrank;
    const entries: Array<[number, number, number]> = [];
    const taken = new Set<number>();
    const cursor = { next: 0 };
    const writes: Array<[number, Buffer]> = [];
    for (const b of [...this.#pending.keys()].sort((x, y) => x - y)) {
      if (b >= keep) continue;
      const slot = this.#allocSlot(cursor, taken);
      taken.add(slot);
      writes.push([slot, this.#seal(b, seq, this.#pending.get(b)!)]);
      entries.push([b, slot, seq]);
    }
    // Blocks past the end, or cut by a truncate and not rewritten, leave the table (absent reads as zeros).
    for (let b = Math.min(keep, this.#zeroFrom); b < this.#slotOf.length; b++) {
      if (this.#slotOf[b] !== NONE && (b >= keep || !this.#pending.has(b))) entries.push([b, NONE, 0]);
    }
    this.#planCompaction(entries, writes, taken, cursor, seq, shrank);
    const prevLogEnd = this.#logEnd;
    let record: { bytes: Buffer; tag: Buffer };
    try {
      writes.sort((x, y) => x[0] - y[0]);
      for (const [slot, bytes] of writes) this.#files.write(this.#slotFile, bytes, slot * SLOT);
      if (writes.length) this.#files.sync(this.#slotFile);
      record = this.#record(KIND_DELTA, seq, size, entries);
      this.#files.write(this.#logFile, record.bytes, prevLogEnd);
      this.#files.sync(this.#logFile);
    } catch (e) {
      // seq may now exist on disk (slots of version seq, perhaps the record): it must never be
      // reused, so an epoch at seq + 1 is counted before the next commit (invariant 2).
      this.#needEpoch = true;
      this.#undoLog(prevLogEnd);
      if (!this.#broken) {
        try {
          this.#writeEpoch();
        } catch {
          /* retried by the next commit */
        }
      }
      throw new StorageError("STORAGE_IO", `commit failed writing ${this.#slotFile.path}: ${(e as Error).message}; the transaction was not committed`, this.#slotFile.path, { cause: e });
    }
    let counted: number;
    try {
      counted = this.#trust.incrementCounter(this.#header.counterId);
    } catch (e) {
      // The record is durable but not counted: reopening accepts it (last == counter + 1).
      this.#broken = `the commit's counter increment failed (${(e as Error).message})`;
      throw new StorageError("STORAGE_IO", `${this.#broken}; the transaction may or may not be present after reopening`, this.#slotFile.path, { cause: e });
    }
    this.#logEnd = prevLogEnd + record.bytes.length;
    this.#prevSeq = seq;
    this.#prevTag = record.tag;
    this.#keepForViews(entries);
    this.#apply(entries, size, seq);
    for (const [b, slot] of entries) {
      const plain = slot === NONE ? undefined : this.#pending.get(b);
      this.#cache.delete(b);
      if (plain) this.#remember(b, plain); // bounded: a big commit must not keep all its blocks
    }
    this.#pending.clear();
    this.#pendingSize = undefined;
    this.#zeroFrom = Infinity;
    this.commits++;
    if (counted !== seq) {
      this.#broken = `the platform counter reads ${counted} after commit ${seq}`;
      throw new StorageError("STORAGE_ROLLBACK", `${this.#slotFile.path}: ${this.#broken}; another copy of this database was used`, this.#slotFile.path);
    }
    this.#shrinkSlotFile();
    this.#shrinking = false;
    if (this.#logEnd - this.#header.bytes > 4 * this.#snapshotBytes + 65536) this.#rewriteLog();
  }

  /**
   * Appends an EPOCH record at seq + 2 (skipping seq + 1, which a crashed or failed attempt may have
   * written), fsyncs it, and advances the counter to it in one step. Throws when it cannot; a counter
   * step that fails after the record is durable leaves the store BROKEN (reopening accepts the epoch).
   */
  #writeEpoch(): void {
    const seq = this.#seq + 2;
    const at = this.#logEnd;
    const rec = this.#record(KIND_EPOCH, seq, this.#size, []);
    try {
      this.#files.write(this.#logFile, rec.bytes, at);
      this.#files.sync(this.#logFile);
    } catch (e) {
      this.#undoLog(at);
      throw e;
    }
    let counted: number;
    try {
      counted = this.#trust.advanceCounter(this.#header.counterId, seq);
    } catch (e) {
      this.#broken = `the counter step of an epoch record failed (${(e as Error).message})`;
      throw new StorageError("STORAGE_IO", `${this.#broken}; close and reopen the database`, this.#slotFile.path, { cause: e });
    }
    this.#logEnd = at + rec.bytes.length;
    this.#prevSeq = seq;
    this.#prevTag = rec.tag;
    this.#seq = seq;
    this.#needEpoch = false;
    if (counted !== seq) {
      this.#broken = `the platform counter reads ${counted} after epoch ${seq}`;
      throw new StorageError("STORAGE_ROLLBACK", `${this.#slotFile.path}: ${this.#broken}; another copy of this database was used`, this.#slotFile.path);
    }
  }

  #recordLength(n: number): number {
    return 4 + KEY_ID + IV + BODY_MIN + n * 16 + TAG;
  }

  /** Moves live blocks from the tail of the slot file into free slots at the front. */
  #planCompaction(entries: Array<[number, number, number]>, writes: Array<[number, Buffer]>, taken: Set<number>, cursor: { next: number }, seq: number, full: boolean): void {
    const live = this.#liveBlocks + writes.length;
    if (!full && this.#slotCount <= live * 1.25 + 16) return;
    const moved = new Set(entries.map((e) => e[0]));
    const owners = this.#slotOwners();
    let budget = full ? Infinity : Math.max(64, writes.length);
    for (let s = this.#slotCount - 1; s >= 0 && budget > 0; s--) {
      if (!this.#used[s]) continue;
      const b = owners[s]!;
      if (b < 0 || moved.has(b) || b >= this.#slotOf.length) continue;
      const target = this.#allocSlot(cursor, taken);
      if (target >= s) break;
      taken.add(target);
      writes.push([target, this.#seal(b, seq, this.#committedBlock(b))]);
      entries.push([b, target, seq]);
      moved.add(b);
      budget--;
    }
  }

  /** slot -> block of the committed table (-1: free); built when compaction needs it. */
  #slotOwners(): Int32Array {
    const owners = new Int32Array(this.#slotCount).fill(-1);
    for (let b = 0; b < this.#slotOf.length; b++) {
      const slot = this.#slotOf[b]!;
      if (slot !== NONE && slot < this.#slotCount) owners[slot] = b;
    }
    return owners;
  }

  #remember(b: number, plain: Buffer): void {
    if (this.#cache.size >= PageStore.CACHE_BLOCKS) this.#cache.delete(this.#cache.keys().next().value as number);
    this.#cache.set(b, plain);
  }

  #apply(entries: Array<[number, number, number]>, size: number, seq: number): void {
    for (const [b, slot, version] of entries) {
      this.#ensureBlocks(b + 1);
      const old = this.#slotOf[b]!;
      if (old !== NONE) {
        this.#used[old] = 0;
        this.#freedBy[old] = seq;
        this.#liveBlocks--;
      }
      this.#slotOf[b] = slot;
      this.#versionOf[b] = version;
      if (slot !== NONE) {
        this.#ensureSlots(slot + 1);
        this.#used[slot] = 1;
        this.#liveBlocks++;
      }
    }
    this.#size = size;
    this.#seq = seq;
  }

  #ensureBlocks(n: number): void {
    if (n <= this.#slotOf.length) return;
    const cap = Math.max(n, this.#slotOf.length * 2, 64);
    const s = new Uint32Array(cap).fill(NONE);
    s.set(this.#slotOf);
    const v = new Float64Array(cap);
    v.set(this.#versionOf);
    this.#slotOf = s;
    this.#versionOf = v;
  }

  #ensureSlots(n: number): void {
    if (n > this.#slotCount) this.#slotCount = n;
    if (n <= this.#used.length) return;
    const u = new Uint8Array(Math.max(n, this.#used.length * 2, 64));
    u.set(this.#used);
    this.#used = u;
    const f = new Float64Array(u.length);
    f.set(this.#freedBy);
    this.#freedBy = f;
  }

  #shrinkSlotFile(): void {
    let end = this.#slotCount;
    const after = this.#seq + 1 - PageStore.REUSE_AFTER;
    while (end > 0 && !this.#used[end - 1] && !this.#held[end - 1] && !this.#recentlyFreed(end - 1, after)) end--;
    if (end < this.#slotCount) {
      try {
        this.#files.truncate(this.#slotFile, end * SLOT);
        this.#slotCount = end;
      } catch {
        /* space is reclaimed at a later commit */
      }
    }
  }

  #undoLog(prevLogEnd: number): void {
    try {
      this.#files.truncate(this.#logFile, prevLogEnd);
      this.#files.sync(this.#logFile);
    } catch (e) {
      this.#broken = `the table log could not be restored after a failed commit (${(e as Error).message})`;
    }
  }

  // ---- the table log ----------------------------------------------------------------------------

  /** Seals a record chained to the log's last record (FORMAT.md "Table log"); changes no state. */
  #record(kind: number, seq: number, size: number, entries: Array<[number, number, number]>, chain: { seq: number; tag: Buffer } = { seq: this.#prevSeq, tag: this.#prevTag }): { bytes: Buffer; tag: Buffer } {
    const body = Buffer.alloc(BODY_MIN + entries.length * 16);
    body.writeUInt8(kind, 0);
    body.writeBigUInt64BE(BigInt(seq), 1);
    body.writeBigUInt64BE(BigInt(size), 9);
    body.writeUInt32BE(entries.length, 17);
    let o = 21;
    for (const [b, slot, version] of entries) {
      body.writeUInt32BE(b, o);
      body.writeUInt32BE(slot, o + 4);
      body.writeBigUInt64BE(BigInt(version), o + 8);
      o += 16;
    }
    const keyId = randomBytes(KEY_ID);
    const iv = randomBytes(IV);
    const c = createCipheriv("aes-256-gcm", this.#recordKey(keyId), iv);
    c.setAAD(this.#recordAad(chain.seq, chain.tag));
    const ct = Buffer.concat([c.update(body), c.final()]);
    const tag = c.getAuthTag();
    const len = Buffer.alloc(4);
    len.writeUInt32BE(KEY_ID + IV + ct.length + TAG);
    return { bytes: Buffer.concat([len, keyId, iv, ct, tag]), tag };
  }

  #recordKey(keyId: Buffer): Buffer {
    return derive(this.#key, this.#header.dbId, Buffer.concat([AAD_RECORD, keyId]));
  }

  #recordAad(prevSeq: number, prevTag: Buffer): Buffer {
    return Buffer.concat([AAD_RECORD, this.#header.dbId, u64(prevSeq), prevTag]);
  }

  /** Writes a snapshot of the committed table at `seq` as the first record of a log at `at`. */
  #writeSnapshot(file: FileHandle, at: number, seq: number): number {
    const entries: Array<[number, number, number]> = [];
    for (let b = 0; b < this.#slotOf.length; b++) if (this.#slotOf[b] !== NONE) entries.push([b, this.#slotOf[b]!, this.#versionOf[b]!]);
    const rec = this.#record(KIND_SNAPSHOT, seq, this.#size, entries, { seq: 0, tag: ZERO_TAG });
    this.#files.write(file, rec.bytes, at);
    this.#snapshotBytes = rec.bytes.length;
    this.#seq = seq;
    this.#prevSeq = seq;
    this.#prevTag = rec.tag;
    this.#logEnd = at + rec.bytes.length;
    return rec.bytes.length;
  }

  /** Rewrites the log as header + one snapshot (new file, fsync, rename, fsync folder). */
  #rewriteLog(): void {
    const path = this.#logFile.path;
    const tmp = `${path}.tmp`;
    try {
      if (this.#files.exists(tmp)) this.#files.remove(tmp, false);
      const f = this.#files.open(tmp, { create: true, readonly: false });
      try {
        const h = this.#header;
        const header = encodeHeader(h.dbId, h.counterId, h.name, h.sealedKey);
        this.#files.write(f, header, 0);
        const saved = { end: this.#logEnd, snap: this.#snapshotBytes, prevSeq: this.#prevSeq, prevTag: this.#prevTag };
        this.#writeSnapshot(f, header.length, this.#seq);
        try {
          this.#files.sync(f);
          this.#files.rename(tmp, path);
          this.#files.close(this.#logFile);
          this.#logFile = this.#files.open(path, { create: false, readonly: false });
        } catch (e) {
          this.#logEnd = saved.end;
          this.#snapshotBytes = saved.snap;
          this.#prevSeq = saved.prevSeq;
          this.#prevTag = saved.prevTag;
          throw e;
        }
      } finally {
        this.#files.close(f);
      }
    } catch {
      /* the old log stays valid; try again at a later commit */
    }
  }

  /** Reads the chain of records (without applying them); a torn tail ends it. */
  #parse(bytes: Buffer, path: string, from?: { at: number; prevSeq: number; prevTag: Buffer }): Parsed[] {
    const out: Parsed[] = [];
    const tampered = (what: string): never => {
      throw new StorageError("STORAGE_TAMPERED", `${path}.log: ${what}; restore the database from a sealed backup`, `${path}.log`);
    };
    // `from`: continue the chain after a record already read (a reader catching up), not from the header.
    let at = from?.at ?? this.#header.bytes;
    let prevSeq = from?.prevSeq ?? 0;
    let prevTag: Buffer = from?.prevTag ?? ZERO_TAG;
    const chained = from !== undefined;
    while (at < bytes.length) {
      const rest = bytes.length - at;
      const len = rest >= 4 ? bytes.readUInt32BE(at) : -1;
      const torn = len < KEY_ID + IV + TAG + BODY_MIN || len > MAX_RECORD || 4 + len > rest;
      const rec = torn ? undefined : bytes.subarray(at + 4, at + 4 + len);
      const body = rec ? this.#openRecord(rec, prevSeq, prevTag) : undefined;
      if (!body) {
        // Unreadable: a torn tail is a crash mid-append; anything followed by more bytes is tampering.
        if (out.length === 0 && !torn && !chained) tampered("its first table record failed authentication");
        if (!torn && 4 + len < rest) tampered("a table record in the middle of the log failed authentication (changed, or spliced from another copy)");
        break;
      }
      const kind = body.readUInt8(0);
      const seq = Number(body.readBigUInt64BE(1));
      const ok = out.length === 0 && !chained ? kind === KIND_SNAPSHOT : (kind === KIND_DELTA && seq === prevSeq + 1) || (kind === KIND_EPOCH && seq === prevSeq + 2);
      if (!ok) tampered("table records are out of order");
      const size = Number(body.readBigUInt64BE(9));
      const n = body.readUInt32BE(17);
      if (BODY_MIN + n * 16 !== body.length || (kind === KIND_EPOCH && n !== 0)) tampered("a table record has a bad length");
      const entries: Array<[number, number, number]> = [];
      for (let i = 0, o = BODY_MIN; i < n; i++, o += 16) entries.push([body.readUInt32BE(o), body.readUInt32BE(o + 4), Number(body.readBigUInt64BE(o + 8))]);
      const tag = Buffer.from(rec!.subarray(rec!.length - TAG));
      at += 4 + len;
      out.push({ kind, seq, size, entries, end: at, tag });
      prevSeq = seq;
      prevTag = tag;
    }
    return out;
  }

  #openRecord(rec: Buffer, prevSeq: number, prevTag: Buffer): Buffer | undefined {
    const d = createDecipheriv("aes-256-gcm", this.#recordKey(rec.subarray(0, KEY_ID)), rec.subarray(KEY_ID, KEY_ID + IV));
    d.setAAD(this.#recordAad(prevSeq, prevTag));
    d.setAuthTag(rec.subarray(rec.length - TAG));
    try {
      const body = d.update(rec.subarray(KEY_ID + IV, rec.length - TAG));
      d.final();
      return body;
    } catch {
      return undefined;
    }
  }

  /** Decides what the log's records mean against the platform counter, and applies them (FORMAT.md "Open"). */
  #checkFreshness(path: string, records: Parsed[], fileBytes: number): void {
    let c: number;
    try {
      c = this.#trust.readCounter(this.#header.counterId);
    } catch (e) {
      if (missingCounter(e)) throw deletedError(path, e);
      throw e;
    }
    const last = records[records.length - 1];
    if (!last) {
      if (c !== 0) {
        throw new StorageError(
          "STORAGE_TAMPERED",
          `${path}.log was cut back to its header: it holds no table record, but the platform counter says the database committed ${c} times. Refusing to serve it as empty; restore the database's files from a sealed backup`,
          `${path}.log`,
        );
      }
      // Never committed: the state at counter 0 is the empty database.
      if (!this.readonly) {
        this.#files.truncate(this.#logFile, this.#header.bytes);
        this.#writeSnapshot(this.#logFile, this.#header.bytes, 0);
        this.#files.sync(this.#logFile);
      }
      return;
    }
    let use = records;
    let advance = false;
    if (last.seq === c) {
      // current
    } else if (records.length > 1 && ((last.kind === KIND_DELTA && last.seq === c + 1) || (last.kind === KIND_EPOCH && last.seq === c + 2))) {
      // A crash between this record's fsync and its counter step. A writable open counts it; a
      // read-only open serves the counted state, which is all a later writable open is sure to see.
      if (this.readonly) use = records.slice(0, -1);
      else advance = true;
    } else if (last.seq < c) {
      throw new StorageError(
        "STORAGE_ROLLBACK",
        `${path}: this is an older copy of the database (commit ${last.seq}, but the platform counter says ${c}): it was rolled back, restored from an old copy, or its log was cut. Refusing to open it; restore the current files, or re-import a plain export if this copy is what you want`,
        path,
      );
    } else {
      throw new StorageError("STORAGE_TAMPERED", `${path}: the table log is ahead of the platform counter (${last.seq} > ${c}); it was not written by this platform`, path);
    }
    for (const r of use) {
      if (r.kind === KIND_SNAPSHOT) this.#snapshotBytes = r.end - this.#header.bytes;
      this.#apply(r.entries, r.size, r.seq);
    }
    const end = use[use.length - 1]!;
    this.#seq = end.seq;
    this.#prevSeq = end.seq;
    this.#prevTag = end.tag;
    this.#logEnd = end.end;
    if (this.readonly) return;
    if (fileBytes > end.end) {
      this.#files.truncate(this.#logFile, end.end); // drop the torn tail before appending after it
      this.#files.sync(this.#logFile);
    }
    if (advance) this.#trust.advanceCounter(this.#header.counterId, last.seq);
  }

  /**
   * READ-ONLY stores: the last counted state, read counter first (FORMAT.md "Readers beside a
   * writer"). With `C` read before the log, the log holds record `C` (the writer appends and fsyncs
   * a record before counting it, and a log rewrite snapshots a counted seq >= C), so the state is the
   * records up to seq `C`; records after it are uncounted or counted since, and are not applied.
   * A log whose first snapshot is past `C` was rewritten after the counter read: read both again.
   * A log that ends before `C` is a rollback; a tail of more than the one uncounted record a crash
   * leaves, with the counter not moving, is tampering.
   */
  #loadCounted(path: string): void {
    for (let attempt = 0; ; attempt++) {
      const c = this.#readCounter(path);
      const bytes = readAll(this.#files, this.#logFile);
      let records: Parsed[];
      try {
        records = this.#parse(bytes, path);
      } catch (e) {
        // A read racing an append can see a record half written with the next one after it.
        if (attempt < 5 && this.#readCounter(path) !== c) continue;
        throw e;
      }
      const first = records[0];
      if (first !== undefined && first.seq > c && attempt < 5) {
        this.#reopenLog(path);
        continue; // rewritten after our counter read
      }
      const at = records.findIndex((r) => r.seq === c);
      if (records.length === 0 || at < 0) {
        // No record C: never committed (C == 0, no records), a rollback, or tampering.
        if (records.length === 0 && c === 0) return this.#resetTo([], 0);
        if (attempt < 5 && this.#readCounter(path) !== c) {
          this.#reopenLog(path);
          continue;
        }
        const last = records[records.length - 1];
        if (!last) this.#checkFreshness(path, records, bytes.length); // throws: cut to its header
        if (last!.seq < c) this.#checkFreshness(path, records, bytes.length); // throws: rollback
        throw new StorageError("STORAGE_TAMPERED", `${path}: the table log has no record for the platform counter's value ${c}; it was not written by this platform`, path);
      }
      const tail = records.slice(at + 1);
      if (tail.length > 0 && this.#readCounter(path) === c) {
        const t = tail[0]!;
        const oneCrash = tail.length === 1 && ((t.kind === KIND_DELTA && t.seq === c + 1) || (t.kind === KIND_EPOCH && t.seq === c + 2));
        if (!oneCrash) throw new StorageError("STORAGE_TAMPERED", `${path}: the table log is ahead of the platform counter (${records[records.length - 1]!.seq} > ${c}); it was not written by this platform`, path);
      }
      return this.#resetTo(records.slice(0, at + 1), c);
    }
  }

  #readCounter(path: string): number {
    try {
      return this.#trust.readCounter(this.#header.counterId);
    } catch (e) {
      if (missingCounter(e)) throw deletedError(path, e);
      throw e;
    }
  }

  /** A reader follows a log rewrite (a rename): it opens the file now at the log's path. */
  #reopenLog(path: string): void {
    const f = this.#files.open(`${path}.log`, { create: false, readonly: true });
    this.#files.close(this.#logFile);
    this.#logFile = f;
  }

  /** Replaces the committed table by the one `records` build (read-only stores). */
  #resetTo(records: Parsed[], seq: number): void {
    this.#slotOf = new Uint32Array(0);
    this.#versionOf = new Float64Array(0);
    this.#used = new Uint8Array(0);
    this.#freedBy = new Float64Array(0);
    this.#slotCount = 0;
    this.#liveBlocks = 0;
    this.#size = 0;
    this.#cache.clear();
    for (const r of records) this.#apply(r.entries, r.size, r.seq);
    this.#seq = seq;
    const end = records[records.length - 1];
    this.#prevSeq = end?.seq ?? 0;
    this.#prevTag = end?.tag ?? ZERO_TAG;
    this.#logEnd = end?.end ?? this.#header.bytes;
  }

  /**
   * READ-ONLY stores: moves to the last counted state when the counter has moved (another process
   * committed). Called by the VFS when a read transaction starts and no connection of this process
   * holds a lock on the file, so a transaction reads one state from its start to its end.
   */
  refresh(): void {
    if (!this.readonly) return;
    this.#check();
    const path = this.#slotFile.path;
    const c = this.#readCounter(path);
    if (c === this.#seq) return;
    if (this.#catchUp(path, c)) return;
    this.#reopenLog(path);
    this.#loadCounted(path);
  }

  /**
   * A reader's cheap path to counter value `c`: the records appended after the last one it applied,
   * read from the log it has open and chained to that record, applied up to seq `c`. False when they
   * do not reach `c` (the log was rewritten under a new file, or an append is half visible): the
   * caller then reads the whole log again (#loadCounted), which decides what it means.
   */
  #catchUp(path: string, c: number): boolean {
    let records: Parsed[];
    try {
      const bytes = readAll(this.#files, this.#logFile);
      records = this.#parse(bytes, path, { at: this.#logEnd, prevSeq: this.#prevSeq, prevTag: this.#prevTag });
    } catch {
      return false;
    }
    const at = records.findIndex((r) => r.seq === c);
    if (at < 0) return false;
    this.#cache.clear();
    for (const r of records.slice(0, at + 1)) this.#apply(r.entries, r.size, r.seq);
    const end = records[at]!;
    this.#seq = c;
    this.#prevSeq = end.seq;
    this.#prevTag = end.tag;
    this.#logEnd = end.end;
    return true;
  }

  /**
   * A read-only store's block failed to read as the table says: if a writer in another process
   * committed since this store's state, it may have reused that slot (the state is no longer on
   * disk); otherwise the bytes were damaged.
   */
  #unreadable(b: number, tampered: StorageError): StorageError {
    if (!this.readonly) return tampered;
    let now: number;
    try {
      now = this.#readCounter(this.#slotFile.path);
    } catch {
      return tampered;
    }
    if (now === this.#seq) return tampered;
    return new StorageError(
      "STORAGE_SNAPSHOT_GONE",
      `${this.#slotFile.path}: another process committed while this read-only connection was reading commit ${this.#seq}, and reused the space of block ${b}; nothing wrong was returned. Run the statement again (it reads the newest commit)`,
      this.#slotFile.path,
    );
  }

  close(): void {
    this.#pending.clear();
    for (const v of [...this.#views]) this.closeView(v);
    try {
      this.#files.close(this.#slotFile);
    } finally {
      this.#files.close(this.#logFile);
    }
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The header up to the sealed key: magic, format, dbId, counter id, name (the sealed key's AAD). */
function headerPrefix(dbId: Buffer, counterId: string, name: string): Buffer {
  const cid = Buffer.from(counterId, "utf8");
  const nm = Buffer.from(name, "utf8");
  const b = Buffer.alloc(MAGIC.length + 1 + 16 + 2 + cid.length + 2 + nm.length);
  let o = MAGIC.copy(b, 0);
  b.writeUInt8(FORMAT_VERSION, o++);
  o += dbId.copy(b, o);
  b.writeUInt16BE(cid.length, o);
  o += 2 + cid.copy(b, o + 2);
  b.writeUInt16BE(nm.length, o);
  nm.copy(b, o + 2);
  return b;
}

function encodeHeader(dbId: Buffer, counterId: string, name: string, sealedKey: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(sealedKey.length);
  return Buffer.concat([headerPrefix(dbId, counterId, name), len, sealedKey]);
}

/** The format version byte of a log's header, or undefined when it has no Selkie magic. */
export function logFormatVersion(b: Buffer): number | undefined {
  if (b.length < MAGIC.length + 1 || !b.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  return b.readUInt8(MAGIC.length);
}

function decodeHeader(b: Buffer, file: string, dbPath: string): Header {
  const bad = (what: string): never => {
    throw new StorageError("STORAGE_TAMPERED", `${file}: ${what}; it is not a Selkie table log or it was damaged. Restore the database from a sealed backup`, file);
  };
  const version = logFormatVersion(b);
  if (version === undefined || b.length < MAGIC.length + 1 + 16 + 2 + 2 + 4) bad("bad magic");
  if (version === 1) {
    throw new StorageError(
      "STORAGE_UPGRADE_REQUIRED",
      `${file}: this database is in sealed store format 1, which this Selkie opens only to upgrade it (format 2 closes rollback and renaming holes). Upgrade it in place with: selkie db upgrade ${dbPath}`,
      file,
    );
  }
  if (version !== FORMAT_VERSION) {
    throw new StorageError("STORAGE_UNSUPPORTED_FORMAT", `${file}: format version ${version} is not supported by this Selkie (it reads version ${FORMAT_VERSION}); use a matching Selkie release`, file);
  }
  let o = MAGIC.length + 1;
  const dbId = Buffer.from(b.subarray(o, o + 16));
  o += 16;
  const cidLen = b.readUInt16BE(o);
  o += 2;
  if (o + cidLen + 2 > b.length) bad("truncated header");
  const counterId = b.subarray(o, o + cidLen).toString("utf8");
  o += cidLen;
  const nameLen = b.readUInt16BE(o);
  o += 2;
  if (o + nameLen + 4 > b.length) bad("truncated header");
  const name = b.subarray(o, o + nameLen).toString("utf8");
  o += nameLen;
  const keyLen = b.readUInt32BE(o);
  o += 4;
  if (keyLen > 4096 || o + keyLen > b.length) bad("truncated header");
  const sealedKey = Buffer.from(b.subarray(o, o + keyLen));
  return { dbId, counterId, name, sealedKey, bytes: o + keyLen };
}

/** Unseals the data key, turning the platform's refusal into what it means for this database. */
function unsealKey(trust: StoreTrust, header: Header, file: string): Buffer {
  try {
    return trust.unsealDataKey(header.sealedKey, Buffer.concat([AAD_DATAKEY, headerPrefix(header.dbId, header.counterId, header.name)]));
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    if (code === "SEAL_OTHER_PLATFORM") {
      throw new StorageError(
        "STORAGE_WRONG_PLATFORM",
        `${file}: the database was sealed on another platform, whose keys this one does not have (or the sealed key's header was changed). Open it with the platform that created it (--platform DIR or $SELKIE_HOME), or export it there (selkie db export) and import the plain file here`,
        file,
        { cause: e },
      );
    }
    if (code === "SEAL_WRONG_ENCLAVE" || code === "SEAL_WRONG_SIGNER" || code === "SEAL_ENCLAVE_TOO_OLD" || code === "SEAL_DEBUG_MISMATCH" || code === "SEAL_WRONG_PRODUCT") {
      throw new StorageError(
        "STORAGE_WRONG_ENCLAVE",
        `${file}: the database's key is sealed to another SQLite enclave build (${code}), or the sealed key's header was changed; only the enclave that created it can open it. Export it with the Selkie version that created it (selkie db export) and import it here, or restore it from a sealed backup`,
        file,
        { cause: e },
      );
    }
    if (code.startsWith("SEAL_")) {
      throw new StorageError("STORAGE_TAMPERED", `${file}: the database's sealed key or header was changed (${code}); restore the database from a sealed backup`, file, { cause: e });
    }
    throw e;
  }
}

function readAll(files: FileLayer, h: FileHandle): Buffer {
  const size = files.size(h);
  const buf = Buffer.alloc(size);
  const n = files.read(h, buf, 0);
  return buf.subarray(0, n);
}

// ---- for moving a store to another platform (runtime/storage/transfer.ts) -------------------------

/** The clear fields of a log's header and its length in bytes (the records start there). */
export function parseLogHeader(b: Buffer, file: string): { dbId: Buffer; counterId: string; name: string; sealedKey: Buffer; bytes: number } {
  return decodeHeader(b, file, file);
}

/** The data key of a store, unsealed through `trust` from its header (trusted code only). */
export function unsealLogKey(trust: StoreTrust, b: Buffer, file: string): Buffer {
  return unsealKey(trust, decodeHeader(b, file, file), file);
}

/** A header for `key` sealed through `trust`, naming `counterId` and `name` (FORMAT.md "Table log"). */
export function sealLogHeader(trust: StoreTrust, key: Buffer, dbId: Buffer, counterId: string, name: string): Buffer {
  const sealedKey = trust.sealDataKey(key, Buffer.concat([AAD_DATAKEY, headerPrefix(dbId, counterId, name)]));
  return encodeHeader(dbId, counterId, name, sealedKey);
}
