/**
 * TRUSTED (enclave side). The sealed page store: SQLite's database file, sealed block by block,
 * with atomic, durable, rollback-protected commits. Format: runtime/storage/FORMAT.md (version 1).
 *
 * Invariants:
 *  1. Only ciphertext reaches the FileLayer: every block is AES-256-GCM under the data key with
 *     (dbId, block, version) as AAD; every table record likewise with (dbId, seq).
 *  2. A commit never overwrites a slot the committed table refers to; the table changes only by an
 *     fsynced log record. A crash at any instant leaves the last committed table valid.
 *  3. A commit is acknowledged (commit() returns) only after slots, log record and the platform
 *     counter are durable; `seq` in memory always equals the last acknowledged record's seq.
 *  4. Opening checks the log's last seq against the platform counter (FORMAT.md "Open").
 *  5. Bytes that fail authentication are never returned: reads throw StorageError.
 *
 * Commit state machine (per store):
 *   CLEAN --write/truncate--> DIRTY --commit()--> CLEAN
 *   DIRTY --rollback()--> CLEAN;  any --I/O failure the store cannot undo--> BROKEN (reopen)
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { dirname } from "node:path";
import type { FileHandle, FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";

export const BLOCK = 4096;
const IV = 12;
const TAG = 16;
export const SLOT = IV + BLOCK + TAG;
const NONE = 0xffffffff;
const MAGIC = Buffer.from("SELKIELOG", "ascii");
export const FORMAT_VERSION = 1;
const KIND_SNAPSHOT = 1;
const KIND_DELTA = 2;
const AAD_SLOT = Buffer.from("selkie/slot/v1", "ascii");
const AAD_RECORD = Buffer.from("selkie/record/v1", "ascii");
export const AAD_DATAKEY = Buffer.from("selkie/datakey/v1", "ascii");
const MAX_RECORD = 64 * 1024 * 1024;

/** What the store needs from the platform: sealing of its data key and one monotonic counter. */
export interface StoreTrust {
  sealDataKey(key: Buffer, aad: Buffer): Buffer;
  /** Throws the platform's typed error when the blob is not ours (other platform, enclave, tampered). */
  unsealDataKey(blob: Buffer, aad: Buffer): Buffer;
  createCounter(): string;
  readCounter(id: string): number;
  incrementCounter(id: string): number;
}

interface Header {
  dbId: Buffer;
  counterId: string;
  sealedKey: Buffer;
  bytes: number;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
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
  #slotCount = 0;
  #liveBlocks = 0;
  #size = 0;
  #seq = 0;
  #logEnd = 0;
  #snapshotBytes = 0;
  readonly #pending = new Map<number, Buffer>();
  #pendingSize: number | undefined;
  /** Blocks from here on read as zeros unless pending: the file was truncated in this transaction. */
  #zeroFrom = Infinity;
  #broken: string | undefined;
  readonly #scratch = Buffer.alloc(SLOT);
  /**
   * Plaintext of recently read committed blocks (trusted memory; bounded). SQLite re-reads its file
   * header at the start of every transaction, so without this each read would decrypt block 0.
   */
  readonly #cache = new Map<number, Buffer>();
  static readonly CACHE_BLOCKS = 256;
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

  /** Creates a new, empty store. Refuses to overwrite existing files. */
  static create(files: FileLayer, path: string, trust: StoreTrust): PageStore {
    if (files.exists(path) || files.exists(`${path}.log`)) {
      throw new StorageError("STORAGE_EXISTS", `${path}: a file is in the way of a new sealed database; move it away, or import a plain SQLite file with: selkie db import`, path);
    }
    const key = randomBytes(32);
    const dbId = randomBytes(16);
    const counterId = trust.createCounter();
    const sealedKey = trust.sealDataKey(key, Buffer.concat([AAD_DATAKEY, headerPrefix(dbId, counterId)]));
    const slotFile = files.open(path, { create: true, readonly: false, exclusive: true });
    const logFile = files.open(`${path}.log`, { create: true, readonly: false, exclusive: true });
    const header = encodeHeader(dbId, counterId, sealedKey);
    const store = new PageStore(files, slotFile, logFile, key, { dbId, counterId, sealedKey, bytes: header.length }, trust, false);
    files.write(logFile, header, 0);
    store.#logEnd = header.length;
    store.#writeSnapshot(logFile, header.length, trust.readCounter(counterId));
    files.sync(slotFile);
    files.sync(logFile);
    files.syncDir(dirname(path)); // the new files' names are durable too
    return store;
  }

  /** Opens an existing store, checking integrity and freshness (FORMAT.md "Open"). */
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
      const header = decodeHeader(logBytes, `${path}.log`);
      // The header's clear fields (dbId, counter id) are the AAD of the sealed key: changing them fails here.
      const key = unsealKey(trust, header, `${path}.log`);
      const store = new PageStore(files, slotFile, logFile, key, header, trust, readonly);
      store.#replay(logBytes, path);
      store.#slotCount = Math.max(store.#slotCount, Math.floor(files.size(slotFile) / SLOT));
      store.#checkFreshness(path);
      return store;
    } catch (e) {
      if (slotFile) files.close(slotFile);
      files.close(logFile);
      throw e;
    }
  }

  get size(): number {
    return this.#pendingSize ?? this.#size;
  }

  get dirty(): boolean {
    return this.#pending.size > 0 || this.#pendingSize !== undefined;
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

  // ---- reading ----------------------------------------------------------------------------------

  /** The plaintext of committed block b (zeros when absent). */
  #committedBlock(b: number): Buffer {
    const hit = this.#cache.get(b);
    if (hit) return hit;
    const slot = b < this.#slotOf.length ? this.#slotOf[b]! : NONE;
    if (slot === NONE) return Buffer.alloc(BLOCK);
    const buf = this.#scratch;
    const n = this.#files.read(this.#slotFile, buf, slot * SLOT);
    if (n !== SLOT) {
      throw new StorageError("STORAGE_TAMPERED", `${this.#slotFile.path}: block ${b} is cut short on disk (the file was truncated); restore the database from a sealed backup`, this.#slotFile.path);
    }
    const d = createDecipheriv("aes-256-gcm", this.#key, buf.subarray(0, IV));
    d.setAAD(Buffer.concat([AAD_SLOT, this.#header.dbId, u32(b), u64(this.#versionOf[b]!)]));
    d.setAuthTag(buf.subarray(IV + BLOCK));
    try {
      const out = d.update(buf.subarray(IV, IV + BLOCK));
      d.final();
      this.#remember(b, out);
      return out;
    } catch {
      throw new StorageError("STORAGE_TAMPERED", `${this.#slotFile.path}: block ${b} failed authentication (changed, swapped or replaced by an older copy); nothing was returned. Restore the database from a sealed backup`, this.#slotFile.path);
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

  #allocSlot(from: { next: number }, taken: Set<number>): number {
    let s = from.next;
    while (this.#used[s] || taken.has(s)) s++;
    from.next = s + 1;
    return s;
  }

  #seal(b: number, version: number, plain: Uint8Array): Buffer {
    const iv = randomBytes(IV);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.concat([AAD_SLOT, this.#header.dbId, u32(b), u64(version)]));
    return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
  }

  /** Makes everything written since the last commit durable, atomically (FORMAT.md "Commit"). */
  commit(): void {
    this.#check();
    if (!this.dirty) return;
    if (this.readonly) throw new StorageError("STORAGE_READONLY", "the database is open read-only", this.#slotFile.path);
    const seq = this.#seq + 1;
    const size = this.size;
    const keep = Math.ceil(size / BLOCK);
    const shrank = size < this.#size;
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
    try {
      writes.sort((x, y) => x[0] - y[0]);
      for (const [slot, bytes] of writes) this.#files.write(this.#slotFile, bytes, slot * SLOT);
      if (writes.length) this.#files.sync(this.#slotFile);
      const record = this.#record(KIND_DELTA, seq, size, entries, seq);
      this.#files.write(this.#logFile, record, prevLogEnd);
      this.#files.sync(this.#logFile);
    } catch (e) {
      this.#undoLog(prevLogEnd);
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
    this.#logEnd = prevLogEnd + this.#recordLength(entries.length);
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
    if (this.#logEnd - this.#header.bytes > 4 * this.#snapshotBytes + 65536) this.#rewriteLog();
  }

  #recordLength(n: number): number {
    return 4 + IV + 1 + 8 + 8 + 4 + n * 16 + TAG;
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
  }

  #shrinkSlotFile(): void {
    let end = this.#slotCount;
    while (end > 0 && !this.#used[end - 1]) end--;
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

  #record(kind: number, seq: number, size: number, entries: Array<[number, number, number]>, aadSeq: number): Buffer {
    const body = Buffer.alloc(1 + 8 + 8 + 4 + entries.length * 16);
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
    const iv = randomBytes(IV);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.concat([AAD_RECORD, this.#header.dbId, u64(aadSeq)]));
    const ct = Buffer.concat([c.update(body), c.final()]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(IV + ct.length + TAG);
    return Buffer.concat([len, iv, ct, c.getAuthTag()]);
  }

  #writeSnapshot(file: FileHandle, at: number, seq: number): number {
    const entries: Array<[number, number, number]> = [];
    for (let b = 0; b < this.#slotOf.length; b++) if (this.#slotOf[b] !== NONE) entries.push([b, this.#slotOf[b]!, this.#versionOf[b]!]);
    const rec = this.#record(KIND_SNAPSHOT, seq, this.#size, entries, 0);
    this.#files.write(file, rec, at);
    this.#snapshotBytes = rec.length;
    this.#seq = seq;
    this.#logEnd = at + rec.length;
    return rec.length;
  }

  /** Rewrites the log as header + one snapshot (new file, fsync, rename, fsync folder). */
  #rewriteLog(): void {
    const path = this.#logFile.path;
    const tmp = `${path}.tmp`;
    try {
      const f = this.#files.open(tmp, { create: true, readonly: false });
      try {
        const header = encodeHeader(this.#header.dbId, this.#header.counterId, this.#header.sealedKey);
        this.#files.write(f, header, 0);
        const end = this.#logEnd;
        const snap = this.#snapshotBytes;
        this.#writeSnapshot(f, header.length, this.#seq);
        try {
          this.#files.sync(f);
          this.#files.rename(tmp, path);
          this.#files.close(this.#logFile);
          this.#logFile = this.#files.open(path, { create: false, readonly: false });
        } catch (e) {
          this.#logEnd = end;
          this.#snapshotBytes = snap;
          throw e;
        }
      } finally {
        this.#files.close(f);
      }
    } catch {
      /* the old log stays valid; try again at a later commit */
    }
  }

  #replay(bytes: Buffer, path: string): void {
    let at = this.#header.bytes;
    let expect: number | undefined; // AAD seq of the next record
    let first = true;
    while (at < bytes.length) {
      const rest = bytes.length - at;
      const len = rest >= 4 ? bytes.readUInt32BE(at) : -1;
      const torn = len < IV + TAG + 21 || len > MAX_RECORD || 4 + len > rest;
      const body = torn ? undefined : this.#openRecord(bytes.subarray(at + 4, at + 4 + len), first ? 0 : expect!);
      if (!body) {
        // Unreadable: a torn tail is a crash mid-append; anything followed by more bytes is tampering.
        if (first) throw new StorageError("STORAGE_TAMPERED", `${path}.log: its first table record failed authentication; restore the database from a sealed backup`, `${path}.log`);
        if (!torn && 4 + len < rest) throw new StorageError("STORAGE_TAMPERED", `${path}.log: a table record in the middle of the log failed authentication; restore the database from a sealed backup`, `${path}.log`);
        break;
      }
      const kind = body.readUInt8(0);
      const seq = Number(body.readBigUInt64BE(1));
      if ((first && kind !== KIND_SNAPSHOT) || (!first && (kind !== KIND_DELTA || seq !== expect))) {
        throw new StorageError("STORAGE_TAMPERED", `${path}.log: table records are out of order; restore the database from a sealed backup`, `${path}.log`);
      }
      const size = Number(body.readBigUInt64BE(9));
      const n = body.readUInt32BE(17);
      if (21 + n * 16 !== body.length) throw new StorageError("STORAGE_TAMPERED", `${path}.log: a table record has a bad length`, `${path}.log`);
      const entries: Array<[number, number, number]> = [];
      for (let i = 0, o = 21; i < n; i++, o += 16) entries.push([body.readUInt32BE(o), body.readUInt32BE(o + 4), Number(body.readBigUInt64BE(o + 8))]);
      this.#apply(entries, size, seq);
      if (first) this.#snapshotBytes = 4 + len;
      first = false;
      expect = seq + 1;
      at += 4 + len;
    }
    this.#logEnd = at;
    if (first && !this.readonly) this.#writeSnapshot(this.#logFile, this.#header.bytes, this.#trust.readCounter(this.#header.counterId)); // crashed inside create()
    if (at < bytes.length && !this.readonly) {
      this.#files.truncate(this.#logFile, at); // drop the torn tail before appending after it
      this.#files.sync(this.#logFile);
    }
  }

  #openRecord(rec: Buffer, aadSeq: number): Buffer | undefined {
    const d = createDecipheriv("aes-256-gcm", this.#key, rec.subarray(0, IV));
    d.setAAD(Buffer.concat([AAD_RECORD, this.#header.dbId, u64(aadSeq)]));
    d.setAuthTag(rec.subarray(rec.length - TAG));
    try {
      const body = d.update(rec.subarray(IV, rec.length - TAG));
      d.final();
      return body;
    } catch {
      return undefined;
    }
  }

  #checkFreshness(path: string): void {
    const c = this.#trust.readCounter(this.#header.counterId);
    const last = this.#seq;
    if (last === c) return;
    if (last === c + 1 && !this.readonly) {
      this.#trust.incrementCounter(this.#header.counterId);
      return;
    }
    if (last === c + 1) return;
    if (last < c) {
      throw new StorageError(
        "STORAGE_ROLLBACK",
        `${path}: this is an older copy of the database (commit ${last}, but the platform counter says ${c}): it was rolled back or restored from an old copy. Refusing to open it; restore the current files, or re-import a plain export if this copy is what you want`,
        path,
      );
    }
    throw new StorageError("STORAGE_TAMPERED", `${path}: the table log is ahead of the platform counter (${last} > ${c} + 1); it was not written by this platform`, path);
  }

  close(): void {
    this.#pending.clear();
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

/** The header up to the sealed key: magic, format, dbId, counter id (authenticated as the key's AAD). */
function headerPrefix(dbId: Buffer, counterId: string): Buffer {
  const cid = Buffer.from(counterId, "utf8");
  const b = Buffer.alloc(MAGIC.length + 1 + 16 + 2 + cid.length);
  let o = MAGIC.copy(b, 0);
  b.writeUInt8(FORMAT_VERSION, o++);
  o += dbId.copy(b, o);
  b.writeUInt16BE(cid.length, o);
  cid.copy(b, o + 2);
  return b;
}

function encodeHeader(dbId: Buffer, counterId: string, sealedKey: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(sealedKey.length);
  return Buffer.concat([headerPrefix(dbId, counterId), len, sealedKey]);
}

function decodeHeader(b: Buffer, file: string): Header {
  const bad = (what: string): never => {
    throw new StorageError("STORAGE_TAMPERED", `${file}: ${what}; it is not a Selkie table log or it was damaged. Restore the database from a sealed backup`, file);
  };
  if (b.length < MAGIC.length + 1 + 16 + 2 + 4 || !b.subarray(0, MAGIC.length).equals(MAGIC)) bad("bad magic");
  let o = MAGIC.length;
  const version = b.readUInt8(o++);
  if (version !== FORMAT_VERSION) {
    throw new StorageError("STORAGE_UNSUPPORTED_FORMAT", `${file}: format version ${version} is not supported by this Selkie (it reads version ${FORMAT_VERSION}); use a matching Selkie release`, file);
  }
  const dbId = Buffer.from(b.subarray(o, o + 16));
  o += 16;
  const cidLen = b.readUInt16BE(o);
  o += 2;
  if (o + cidLen + 4 > b.length) bad("truncated header");
  const counterId = b.subarray(o, o + cidLen).toString("utf8");
  o += cidLen;
  const keyLen = b.readUInt32BE(o);
  o += 4;
  if (keyLen > 4096 || o + keyLen > b.length) bad("truncated header");
  const sealedKey = Buffer.from(b.subarray(o, o + keyLen));
  return { dbId, counterId, sealedKey, bytes: o + keyLen };
}

/** Unseals the data key, turning the platform's refusal into what it means for this database. */
function unsealKey(trust: StoreTrust, header: Header, file: string): Buffer {
  try {
    return trust.unsealDataKey(header.sealedKey, Buffer.concat([AAD_DATAKEY, headerPrefix(header.dbId, header.counterId)]));
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    if (code === "SEAL_OTHER_PLATFORM") {
      throw new StorageError(
        "STORAGE_WRONG_PLATFORM",
        `${file}: the database was sealed on another platform, whose keys this one does not have (or the sealed key's header was changed). Open it with the platform that created it (--platform DIR or $SELKIE_HOME), or move it with a migration`,
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
