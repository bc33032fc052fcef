/**
 * The monotonic counter store: the emulated platform's non-volatile counter memory (FORMATS.md §7).
 *
 * Invariants:
 * 1. Acknowledge after durable: `create`/`set`/`destroy` return only after their record is written
 *    and the log is fdatasync'ed. After kill -9 at any instant a counter reads its last acknowledged
 *    value or the one after (a record written but not yet acknowledged), never less.
 * 2. Replay accepts an invalid or partial record only as the last one (a torn append); anything else
 *    (bad sequence, a valid record after an invalid one, a missing snapshot, a value going down) is
 *    COUNTER_STORE_CORRUPT, never a silent reset.
 * 3. Compaction switches generations by one atomic rename (snapshot g+1) before creating log g+1 and
 *    deleting log g; every crash point leaves one complete generation.
 * 4. Nothing is written in clear: records and snapshots of generation g are AES-256-GCM under a key
 *    derived for g alone (format 2), so no key seals more than one snapshot and `compactEvery`
 *    records with random IVs, far below GCM's 2^32 bound. Format 1 stores are read once under the
 *    store key and compacted into format 2 at open.
 * 5. One WRITER process at a time: a `lock` file holds the owner's pid (a dead pid's lock is taken
 *    over). Within a process the store is shared by every Platform of the folder (`acquireCounterStore`,
 *    refcounted), so two Platform objects of one folder never contend for the lock.
 * 6. READERS (`openReader`) take no lock and never write, rename, truncate or remove a file: they
 *    replay the snapshot and log as they are, and `refresh()` catches up with what the writer
 *    appended since (a record still being written is not read; a compaction, seen as a new snapshot
 *    file, is followed by a full reload). A reader only ever sees acknowledged or about-to-be values,
 *    and values it sees never go down (FORMATS.md §7 "Readers").
 *
 * State of the in-memory mirror: it changes only after the disk write it mirrors is durable; after
 * an I/O error the store refuses further use (COUNTER_STORE_CORRUPT) until reopened.
 *
 * Deferred appends (`deferred()`, used by the server's platform RPC so the main thread never blocks
 * in fdatasync): an update made inside `deferred(fn)` changes the mirror at once and queues its
 * record; records are written and synced one at a time, in order, each fdatasync on libuv's pool,
 * so the log on disk goes through exactly the states it goes through without deferral (a synced
 * prefix plus at most one torn record). The caller acknowledges only when the returned `durable`
 * promise resolves. A synchronous update first writes and syncs every queued record.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { CounterError } from "./errors.js";
import { ensureDir, fsyncDir, writeAll, writeFileAtomic } from "./files.js";
import { policyName, type SealPolicyId } from "./keys.js";

export const COUNTERS_DIR = "counters";
const SNAPSHOT = "snapshot.bin";
const LOCK = "lock";
const SNAP_MAGIC = Buffer.from("SKCS", "latin1");
const LOG_MAGIC = Buffer.from("SKCL", "latin1");
const REC_MAGIC = Buffer.from("SKCR", "latin1");
const VERSION = 2;
/** Format 1 (one key for every generation): read, then compacted into format 2 at open. */
const LEGACY_VERSION = 1;
const SNAP_HEADER = 40;
const LOG_HEADER = 16;
const PAYLOAD = 72;
export const RECORD_LEN = 4 + 12 + PAYLOAD + 16; // 104
const ENTRY = 72;
export const DEFAULT_COMPACT_EVERY = 4096;

const Kind = Object.freeze({ CREATE: 1, SET: 2, DESTROY: 3 } as const);

export interface CounterEntry {
  readonly id: string; // 32 hex
  readonly policy: SealPolicyId;
  readonly isvProdId: number;
  readonly owner: Buffer; // MRENCLAVE or MRSIGNER per policy
  readonly value: number;
}

interface MutableEntry {
  id: string;
  policy: SealPolicyId;
  isvProdId: number;
  owner: Buffer;
  value: number;
}

interface Queued {
  rec: Buffer;
  pos: number;
  /** The log it was written to (once written). */
  fd?: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface CounterStoreOptions {
  /** Records per log before compaction (default 4096). */
  compactEvery?: number;
}

function corrupt(msg: string): never {
  throw new CounterError("COUNTER_STORE_CORRUPT", msg);
}

function logName(gen: bigint): string {
  return `log-${gen}.bin`;
}

/** The key of generation g (format 2): HKDF-SHA256(store key, info = "selkie/counters/v2" || u64be(g)). */
function generationKey(storeKey: Buffer, gen: bigint): KeyObject {
  const info = Buffer.alloc(26);
  info.write("selkie/counters/v2", 0, "latin1");
  info.writeBigUInt64BE(gen, 18);
  return createSecretKey(Buffer.from(hkdfSync("sha256", storeKey, Buffer.alloc(0), info, 32)));
}

function gcmSeal(key: KeyObject, aad: Buffer, pt: Buffer): { iv: Buffer; ct: Buffer; tag: Buffer } {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return { iv, ct, tag: c.getAuthTag() };
}

function gcmOpen(key: KeyObject, aad: Buffer, iv: Buffer, ct: Buffer, tag: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv("aes-256-gcm", key, iv);
    d.setAAD(aad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ct), d.final()]);
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes the store's lock file (atomic link of a complete temp file), taking over a dead owner's. */
function acquireLock(dir: string): string {
  const lock = path.join(dir, LOCK);
  for (let attempt = 0; attempt < 5; attempt++) {
    const tmp = `${lock}.tmp-${randomBytes(6).toString("hex")}`;
    fs.writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
    try {
      fs.linkSync(tmp, lock);
      return lock;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(fs.readFileSync(lock, "utf8"), 10);
    } catch {
      continue; // removed meanwhile: retry
    }
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
      throw new CounterError("COUNTER_STORE_LOCKED", `the counter store in ${dir} is in use by process ${pid}${pid === process.pid ? " (this process: close the other Platform first)" : ""}`);
    }
    fs.rmSync(lock, { force: true }); // stale: its owner died
  }
  throw new CounterError("COUNTER_STORE_LOCKED", `could not take the counter store lock in ${dir}`);
}

function encodeEntry(e: MutableEntry, b: Buffer, o: number): void {
  Buffer.from(e.id, "hex").copy(b, o);
  b[o + 16] = e.policy;
  b[o + 17] = 0;
  b.writeUInt16BE(e.isvProdId, o + 18);
  b.writeUInt32BE(0, o + 20);
  e.owner.copy(b, o + 24);
  b.writeBigUInt64BE(BigInt(e.value), o + 56);
  b.writeBigUInt64BE(0n, o + 64);
}

function checkValue(v: bigint, where: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) corrupt(`${where}: counter value out of range`);
  return Number(v);
}

export class CounterStore {
  readonly dir: string;
  /** The store key (section 4 of FORMATS.md); records and snapshots use generation keys derived from it. */
  readonly #storeKey: Buffer;
  /** Key of the open generation, and the format it was written in. */
  #key: KeyObject;
  #version = VERSION;
  readonly #compactEvery: number;
  readonly #entries = new Map<string, MutableEntry>();
  #gen = 0n;
  #seq = 0n;
  #fd = -1;
  #pos = 0;
  #records = 0;
  #lock: string | undefined;
  #broken: string | undefined;
  /** Inside deferred(): appends queue instead of syncing. */
  #deferring = 0;
  /** Deferred records not yet written, oldest first, each at the position its sequence gave it. */
  #queue: Queued[] = [];
  /** The deferred record whose fdatasync runs on libuv's pool. */
  #inflight: Queued | undefined;
  /** Log fds to close once the sync in flight on them ends (compaction or close happened meanwhile). */
  readonly #retired = new Set<number>();
  /** The last record queued by the current deferred() call. */
  #lastQueued: Queued | undefined;
  /** A reader (invariant 6): no lock, no writes; refreshed before each lookup. */
  #reader = false;
  #readerClosed = false;
  /** The snapshot file the reader last loaded (inode and change time): a new one means a compaction. */
  #snapId = "";

  private constructor(dir: string, key: Buffer, opts: CounterStoreOptions) {
    this.dir = dir;
    this.#storeKey = Buffer.from(key);
    this.#key = generationKey(this.#storeKey, 0n); // replaced by the open generation's key
    const every = opts.compactEvery ?? DEFAULT_COMPACT_EVERY;
    if (!Number.isInteger(every) || every < 1) throw new CounterError("COUNTER_BAD_REQUEST", "compactEvery must be a positive integer");
    this.#compactEvery = every;
  }

  /** Creates an empty store (generation 1) in `<platformDir>/counters`. */
  static initialize(platformDir: string, key: Buffer): void {
    const dir = path.join(platformDir, COUNTERS_DIR);
    ensureDir(dir);
    const s = new CounterStore(dir, key, {});
    s.#key = generationKey(s.#storeKey, 1n);
    s.#writeSnapshot(1n);
    s.#createLog(1n);
    fsyncDir(platformDir);
  }

  /** Opens the store, replays its log and takes its lock. */
  static open(platformDir: string, key: Buffer, opts: CounterStoreOptions = {}): CounterStore {
    const dir = path.join(platformDir, COUNTERS_DIR);
    if (!fs.existsSync(path.join(dir, SNAPSHOT))) corrupt(`the counter store in ${dir} has no snapshot; refusing to restart counters from zero`);
    const s = new CounterStore(dir, key, opts);
    s.#lock = acquireLock(dir);
    try {
      s.#load();
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /**
   * Opens the store for reading only, beside a writer in another process (invariant 6): no lock is
   * taken and no file is changed. Call `refresh()` (or `get`, which refreshes) to see later values.
   */
  static openReader(platformDir: string, key: Buffer): CounterStore {
    const dir = path.join(platformDir, COUNTERS_DIR);
    if (!fs.existsSync(path.join(dir, SNAPSHOT))) corrupt(`the counter store in ${dir} has no snapshot; refusing to restart counters from zero`);
    const s = new CounterStore(dir, key, {});
    s.#reader = true;
    s.#reload();
    return s;
  }

  /** True for a store opened with openReader. */
  get reader(): boolean {
    return this.#reader;
  }

  /** Reader: loads snapshot and log again, retrying while a compaction moves them under it. */
  #reload(): void {
    for (let attempt = 0; ; attempt++) {
      if (this.#fd >= 0) fs.closeSync(this.#fd);
      this.#fd = -1;
      this.#entries.clear();
      this.#gen = 0n;
      this.#seq = 0n;
      try {
        this.#load();
        return;
      } catch (e) {
        // ENOENT: the log of the snapshot we read was removed by a compaction; corrupt: a read that
        // raced a rename. Either way the next attempt sees the new generation; real damage persists.
        if (attempt >= 20) throw e;
        const code = (e as { code?: string }).code;
        if (code !== "ENOENT" && code !== "COUNTER_STORE_CORRUPT") throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
  }

  /** Reader: catches up with the writer (new records, or a new generation). A no-op for the writer. */
  refresh(): void {
    if (!this.#reader) return;
    if (this.#fd < 0 || this.#snapshotId() !== this.#snapId) return this.#reload();
    const size = fs.fstatSync(this.#fd).size;
    if (size <= this.#pos) return;
    const buf = Buffer.alloc(size - this.#pos);
    const n = fs.readSync(this.#fd, buf, 0, buf.length, this.#pos);
    const aad = this.#recordAad();
    for (let o = 0; o + RECORD_LEN <= n; o += RECORD_LEN) {
      const r = buf.subarray(o, o + RECORD_LEN);
      const pt = r.subarray(0, 4).equals(REC_MAGIC) ? gcmOpen(this.#key, aad, r.subarray(4, 16), r.subarray(16, 16 + PAYLOAD), r.subarray(16 + PAYLOAD)) : undefined;
      if (pt === undefined) return; // still being written: read it at the next refresh
      this.#apply(pt, this.#records);
      this.#records++;
      this.#pos += RECORD_LEN;
    }
  }

  #snapshotId(): string {
    try {
      const st = fs.statSync(path.join(this.dir, SNAPSHOT), { bigint: true });
      return `${st.ino}:${st.ctimeNs}:${st.size}`;
    } catch {
      return "";
    }
  }

  #load(): void {
    if (this.#reader) this.#snapId = this.#snapshotId();
    const snap = fs.readFileSync(path.join(this.dir, SNAPSHOT));
    if (snap.length < 5 || !snap.subarray(0, 4).equals(SNAP_MAGIC)) corrupt("counter snapshot: bad magic");
    if (snap[4] !== VERSION && snap[4] !== LEGACY_VERSION) throw new CounterError("COUNTER_VERSION_UNSUPPORTED", `counter snapshot format version ${snap[4]} is not supported`);
    if (snap.length < SNAP_HEADER + 16) corrupt("counter snapshot: truncated");
    this.#version = snap[4]!;
    this.#key = this.#version === LEGACY_VERSION ? createSecretKey(this.#storeKey) : generationKey(this.#storeKey, snap.readBigUInt64BE(8));
    const len = snap.readUInt32BE(36);
    if (snap.length !== SNAP_HEADER + len + 16) corrupt("counter snapshot: wrong length");
    const pt = gcmOpen(this.#key, snap.subarray(0, SNAP_HEADER), snap.subarray(24, 36), snap.subarray(SNAP_HEADER, SNAP_HEADER + len), snap.subarray(SNAP_HEADER + len));
    if (pt === undefined) corrupt("counter snapshot: authentication failed");
    this.#gen = snap.readBigUInt64BE(8);
    this.#seq = snap.readBigUInt64BE(16);
    const count = pt.readUInt32BE(0);
    if (pt.length !== 4 + count * ENTRY) corrupt("counter snapshot: bad entry count");
    for (let i = 0; i < count; i++) {
      const o = 4 + i * ENTRY;
      const policy = pt[o + 16] ?? 0;
      if (policyName(policy) === undefined) corrupt("counter snapshot: bad policy");
      const id = pt.toString("hex", o, o + 16);
      this.#entries.set(id, { id, policy: policy as SealPolicyId, isvProdId: pt.readUInt16BE(o + 18), owner: Buffer.from(pt.subarray(o + 24, o + 56)), value: checkValue(pt.readBigUInt64BE(o + 56), "snapshot") });
    }
    // Logs of other generations are leftovers of a compaction (a reader leaves them to the writer).
    for (const f of this.#reader ? [] : fs.readdirSync(this.dir)) {
      if (/^log-\d+\.bin$/.test(f) && f !== logName(this.#gen)) fs.rmSync(path.join(this.dir, f), { force: true });
      if (f.includes(".tmp-")) fs.rmSync(path.join(this.dir, f), { force: true });
    }
    const logPath = path.join(this.dir, logName(this.#gen));
    if (this.#reader) {
      // A compaction creates the log just after the snapshot. Missing, it is either about to be
      // created or lost to a crash in between (the writer creates it empty): the snapshot is all.
      if (!fs.existsSync(logPath)) {
        this.#pos = LOG_HEADER;
        this.#records = 0;
        return;
      }
      this.#fd = fs.openSync(logPath, "r");
      this.#replay();
      return;
    }
    if (!fs.existsSync(logPath)) this.#createLog(this.#gen); // crash between snapshot and log creation
    this.#fd = fs.openSync(logPath, "r+");
    this.#replay();
    if (this.#version === LEGACY_VERSION) this.compact(); // into format 2: generation keys from now on
  }

  #replay(): void {
    const size = fs.fstatSync(this.#fd).size;
    const buf = Buffer.alloc(size);
    if (fs.readSync(this.#fd, buf, 0, size, 0) !== size) corrupt("counter log: short read");
    if (size < LOG_HEADER || !buf.subarray(0, 4).equals(LOG_MAGIC)) corrupt("counter log: bad header");
    if (buf[4] !== this.#version) throw new CounterError("COUNTER_VERSION_UNSUPPORTED", `counter log format version ${buf[4]} does not match its snapshot's (${this.#version})`);
    if (buf.readBigUInt64BE(8) !== this.#gen) corrupt("counter log: generation does not match the snapshot");
    const aad = this.#recordAad();
    const full = Math.floor((size - LOG_HEADER) / RECORD_LEN);
    const partial = (size - LOG_HEADER) % RECORD_LEN !== 0;
    let valid = 0;
    for (let i = 0; i < full; i++) {
      const o = LOG_HEADER + i * RECORD_LEN;
      const r = buf.subarray(o, o + RECORD_LEN);
      const pt = r.subarray(0, 4).equals(REC_MAGIC) ? gcmOpen(this.#key, aad, r.subarray(4, 16), r.subarray(16, 16 + PAYLOAD), r.subarray(16 + PAYLOAD)) : undefined;
      if (pt === undefined) {
        if (i === full - 1 && !partial) break; // torn last append
        corrupt(`counter log: record ${i} is damaged and is not the last one`);
      }
      this.#apply(pt, i);
      valid++;
    }
    this.#records = valid;
    this.#pos = LOG_HEADER + valid * RECORD_LEN;
    if (this.#pos !== size && !this.#reader) {
      fs.ftruncateSync(this.#fd, this.#pos);
      fs.fsyncSync(this.#fd);
    }
  }

  #apply(pt: Buffer, i: number): void {
    const kind = pt[0];
    const policy = pt[1] ?? 0;
    const seq = pt.readBigUInt64BE(8);
    if (seq !== this.#seq + 1n) corrupt(`counter log: record ${i} has sequence ${seq}, expected ${this.#seq + 1n}`);
    const id = pt.toString("hex", 16, 32);
    const value = checkValue(pt.readBigUInt64BE(64), `record ${i}`);
    const e = this.#entries.get(id);
    if (kind === Kind.CREATE) {
      if (e !== undefined || policyName(policy) === undefined) corrupt(`counter log: record ${i} creates an existing counter or has a bad policy`);
      this.#entries.set(id, { id, policy: policy as SealPolicyId, isvProdId: pt.readUInt16BE(2), owner: Buffer.from(pt.subarray(32, 64)), value });
    } else if (kind === Kind.SET) {
      if (e === undefined || value < e.value) corrupt(`counter log: record ${i} sets a missing counter or lowers a value`);
      e.value = value;
    } else if (kind === Kind.DESTROY) {
      if (e === undefined) corrupt(`counter log: record ${i} destroys a missing counter`);
      this.#entries.delete(id);
    } else {
      corrupt(`counter log: record ${i} has unknown kind ${kind}`);
    }
    this.#seq = seq;
  }

  #recordAad(): Buffer {
    const aad = Buffer.alloc(12);
    REC_MAGIC.copy(aad, 0);
    aad.writeBigUInt64BE(this.#gen, 4);
    return aad;
  }

  #writeSnapshot(gen: bigint): void {
    const entries = [...this.#entries.values()];
    const pt = Buffer.alloc(4 + entries.length * ENTRY);
    pt.writeUInt32BE(entries.length, 0);
    entries.forEach((e, i) => encodeEntry(e, pt, 4 + i * ENTRY));
    const header = Buffer.alloc(SNAP_HEADER);
    SNAP_MAGIC.copy(header, 0);
    header[4] = VERSION;
    header.writeBigUInt64BE(gen, 8);
    header.writeBigUInt64BE(this.#seq, 16);
    const iv = randomBytes(12);
    iv.copy(header, 24);
    header.writeUInt32BE(pt.length, 36);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(header);
    const ct = Buffer.concat([c.update(pt), c.final()]);
    pt.fill(0);
    writeFileAtomic(path.join(this.dir, SNAPSHOT), Buffer.concat([header, ct, c.getAuthTag()]));
  }

  #createLog(gen: bigint): void {
    const h = Buffer.alloc(LOG_HEADER);
    LOG_MAGIC.copy(h, 0);
    h[4] = VERSION;
    h.writeBigUInt64BE(gen, 8);
    writeFileAtomic(path.join(this.dir, logName(gen)), h);
  }

  #checkUsable(): void {
    if (this.#reader ? this.#readerClosed : this.#fd < 0) throw new CounterError("COUNTER_STORE_CLOSED", "the counter store is closed");
    if (this.#reader) this.refresh();
    if (this.#broken !== undefined) corrupt(`the counter store failed earlier (${this.#broken}); reopen the platform`);
  }

  /**
   * Runs `fn` (create/set/destroy calls) with its records queued instead of synced: returns its
   * value and a promise that resolves once every record it made is durable (or rejects with
   * COUNTER_STORE_CORRUPT). Acknowledge nothing before it resolves.
   */
  deferred<T>(fn: () => T): { value: T; durable: Promise<void> } {
    this.#deferring++;
    this.#lastQueued = undefined;
    let value: T;
    try {
      value = fn();
    } finally {
      this.#deferring--;
    }
    const last = this.#lastQueued as Queued | undefined;
    this.#lastQueued = undefined;
    return { value, durable: last ? last.done : Promise.resolve() };
  }

  /** Writes the next queued record and syncs it on libuv's pool; the next one follows its sync. */
  #pump(): void {
    if (this.#inflight !== undefined || this.#fd < 0) return;
    const q = this.#queue.shift();
    if (q === undefined) return;
    const fd = this.#fd;
    try {
      writeAll(fd, q.rec, q.pos);
    } catch (err) {
      return this.#fail(err, q);
    }
    q.fd = fd;
    this.#inflight = q;
    fs.fdatasync(fd, (err) => {
      this.#inflight = undefined;
      if (this.#retired.delete(fd)) {
        // Compaction (its snapshot is durable and holds this value) or close (which synced) came
        // in between: the record is durable either way.
        fs.closeSync(fd);
        q.resolve();
        return this.#pump();
      }
      if (err) return this.#fail(err, q);
      q.resolve();
      this.#pump();
    });
  }

  #fail(err: unknown, q: Queued): void {
    this.#broken = (err as NodeJS.ErrnoException).code ?? "I/O error";
    const e = new CounterError("COUNTER_STORE_CORRUPT", `counter store write failed (${this.#broken}); the update was not acknowledged`, { cause: err });
    for (const x of [q, ...this.#queue.splice(0)]) x.reject(e);
  }

  /** Closes the open log, or leaves that to the end of the sync in flight on it. */
  #closeLog(): void {
    if (this.#inflight !== undefined && this.#inflight.fd === this.#fd) this.#retired.add(this.#fd);
    else fs.closeSync(this.#fd);
  }

  /** Writes and syncs every queued record now (before a synchronous update, compaction or close). */
  #drain(): void {
    if (this.#inflight !== undefined) fs.fdatasyncSync(this.#fd); // covers the record in flight too
    for (const q of this.#queue.splice(0)) {
      try {
        writeAll(this.#fd, q.rec, q.pos);
        fs.fdatasyncSync(this.#fd);
      } catch (err) {
        this.#fail(err, q);
        throw new CounterError("COUNTER_STORE_CORRUPT", `counter store write failed (${this.#broken}); the update was not made`, { cause: err });
      }
      q.resolve();
    }
  }

  /** Appends one record durably (write + fdatasync), compacting first if the log is full. */
  #append(kind: number, e: { id: string; policy: number; isvProdId: number; owner: Buffer; value: number }): void {
    if (this.#reader) throw new CounterError("COUNTER_STORE_LOCKED", `the counter store in ${this.dir} is open for reading only (another process holds it); close that process to change counters here`);
    this.#maybeCompact();
    const pt = Buffer.alloc(PAYLOAD);
    pt[0] = kind;
    pt[1] = e.policy;
    pt.writeUInt16BE(e.isvProdId, 2);
    pt.writeBigUInt64BE(this.#seq + 1n, 8);
    Buffer.from(e.id, "hex").copy(pt, 16);
    e.owner.copy(pt, 32);
    pt.writeBigUInt64BE(BigInt(e.value), 64);
    const { iv, ct, tag } = gcmSeal(this.#key, this.#recordAad(), pt);
    const rec = Buffer.concat([REC_MAGIC, iv, ct, tag]);
    if (this.#deferring > 0) {
      let resolve!: () => void;
      let reject!: (e: Error) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      done.catch(() => {}); // the deferred() caller handles it; no unhandled rejection otherwise
      const q: Queued = { rec, pos: this.#pos, done, resolve, reject };
      this.#queue.push(q);
      this.#lastQueued = q;
      this.#pos += RECORD_LEN;
      this.#records++;
      this.#seq++;
      this.#pump();
      return;
    }
    try {
      if (this.#queue.length > 0 || this.#inflight !== undefined) this.#drain();
      writeAll(this.#fd, rec, this.#pos);
      fs.fdatasyncSync(this.#fd);
    } catch (err) {
      this.#broken = (err as NodeJS.ErrnoException).code ?? "I/O error";
      throw new CounterError("COUNTER_STORE_CORRUPT", `counter store write failed (${this.#broken}); the update was not acknowledged`, { cause: err });
    }
    this.#pos += RECORD_LEN;
    this.#records++;
    this.#seq++;
  }

  /** Compacts before an append when the log is full, so a failed compaction precedes the update. */
  #maybeCompact(): void {
    if (this.#records < this.#compactEvery) return;
    try {
      this.compact();
    } catch (err) {
      this.#broken = (err as NodeJS.ErrnoException).code ?? "compaction failed";
      throw new CounterError("COUNTER_STORE_CORRUPT", `counter store compaction failed (${this.#broken}); the update was not made`, { cause: err });
    }
  }

  /** Writes a snapshot of generation g+1 and starts an empty log (FORMATS.md §7). */
  compact(): void {
    this.#checkUsable();
    if (this.#reader) throw new CounterError("COUNTER_STORE_LOCKED", `the counter store in ${this.dir} is open for reading only`);
    const next = this.#gen + 1n;
    const oldKey = this.#key;
    this.#key = generationKey(this.#storeKey, next);
    try {
      this.#writeSnapshot(next); // the commit point
    } catch (e) {
      this.#key = oldKey;
      throw e;
    }
    this.#version = VERSION;
    const old = this.#gen;
    // Queued records are in the snapshot now (their values and sequence): durable.
    for (const q of this.#queue.splice(0)) q.resolve();
    this.#closeLog();
    this.#fd = -1;
    this.#gen = next;
    this.#createLog(next);
    this.#fd = fs.openSync(path.join(this.dir, logName(next)), "r+");
    this.#pos = LOG_HEADER;
    this.#records = 0;
    fs.rmSync(path.join(this.dir, logName(old)), { force: true });
  }

  get(id: string): CounterEntry | undefined {
    this.#checkUsable();
    const e = this.#entries.get(id);
    return e === undefined ? undefined : { ...e };
  }

  entries(): CounterEntry[] {
    this.#checkUsable();
    return [...this.#entries.values()].map((e) => ({ ...e }));
  }

  create(owner: { policy: SealPolicyId; isvProdId: number; owner: Buffer }, value: number): CounterEntry {
    this.#checkUsable();
    let id: string;
    do id = randomBytes(16).toString("hex");
    while (this.#entries.has(id));
    const e: MutableEntry = { id, policy: owner.policy, isvProdId: owner.isvProdId, owner: Buffer.from(owner.owner), value };
    this.#append(Kind.CREATE, e);
    this.#entries.set(id, e);
    return { ...e };
  }

  set(id: string, value: number): void {
    this.#checkUsable();
    const e = this.#entries.get(id);
    if (e === undefined) throw new CounterError("COUNTER_NOT_FOUND", `no counter ${id}`);
    if (value < e.value) throw new Error("internal: counter value must not decrease");
    this.#append(Kind.SET, { ...e, value });
    e.value = value;
  }

  destroy(id: string): void {
    this.#checkUsable();
    const e = this.#entries.get(id);
    if (e === undefined) throw new CounterError("COUNTER_NOT_FOUND", `no counter ${id}`);
    this.#append(Kind.DESTROY, e);
    this.#entries.delete(id);
  }

  close(): void {
    this.#readerClosed = true;
    if (this.#fd >= 0) {
      if (this.#broken === undefined && (this.#queue.length > 0 || this.#inflight !== undefined)) {
        try {
          this.#drain();
        } catch {
          // #fail rejected the queued updates: none was acknowledged
        }
      }
      this.#closeLog();
      this.#fd = -1;
    }
    if (this.#lock !== undefined) {
      fs.rmSync(this.#lock, { force: true });
      this.#lock = undefined;
    }
  }
}

interface Shared {
  store: CounterStore;
  refs: number;
}

/** The writer stores open in this process, by folder (invariant 5). */
const shared = new Map<string, Shared>();

/**
 * The writer store of `platformDir` for one user (a Platform): opened (taking the lock) by the first,
 * shared by the others of this process, closed (releasing the lock) when the last one releases it.
 */
export function acquireCounterStore(platformDir: string, key: Buffer, opts: CounterStoreOptions = {}): { store: CounterStore; release: () => void } {
  const dir = path.resolve(platformDir);
  let e = shared.get(dir);
  if (e === undefined) {
    e = { store: CounterStore.open(dir, key, opts), refs: 0 };
    shared.set(dir, e);
  }
  e.refs++;
  const entry = e;
  let released = false;
  return {
    store: entry.store,
    release: () => {
      if (released) return;
      released = true;
      if (--entry.refs === 0) {
        shared.delete(dir);
        entry.store.close();
      }
    },
  };
}

/** The writer store of `platformDir` if this process holds it (for lookups; no reference taken). */
export function sharedCounterStore(platformDir: string): CounterStore | undefined {
  return shared.get(path.resolve(platformDir))?.store;
}

