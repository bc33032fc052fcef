/**
 * `npm run bench:snapshot` (issue 5): sealed snapshot images (runtime/enclave/snapshot) against
 * baselines measured in the same run. Four sections, one table each:
 *
 *  1. Full image write and restore throughput (durable: fsync + counter; volatile: EPC paging) at
 *     several memory sizes, vs raw file I/O of the same bytes and raw AES-256-GCM in memory.
 *  2. Delta detection (page hashes vs compare against a kept copy) with 1% of pages changed, and
 *     delta image writes and reads vs full ones.
 *  3. Delta sizes after typical SQLite transactions (a sealed Database's durable snapshots).
 *  4. Wake latency of hibernated SQLite enclaves under EPC pressure: many sealed databases on a
 *     small EPC, random point SELECTs, vs the same access on a resident database and a cold open.
 *
 * Throughput is in MB/s of enclave memory (MB = 10^6 bytes; the target 1 GB/s = 1,000 MB/s), from
 * wall time, with the process's CPU time beside it (the machine is shared: CPU time is what the
 * code cost, wall time is what a caller waits, fsync included). Each figure is a median over
 * repetitions that run the image operation and its baselines in turn, so they share conditions.
 *
 * Not a test: exit 0 whether or not targets are met; 1 when a run crashed or a check failed (a
 * restore returned other bytes, a delta method found other pages, a query returned a wrong row,
 * resident EPC passed the budget); 2 on bad options. Prints markdown tables; writes
 * bench-results/snapshot.json. The temp folder (images, databases) is removed at the end.
 *
 * Env (all optional):
 *   SELKIE_BENCH_SIZES=5,50,500     section 1 memory sizes, MiB
 *   SELKIE_BENCH_DELTA_SIZES=50,500 section 2 memory sizes, MiB
 *   SELKIE_BENCH_REPS=n             repetitions per size in sections 1-2 (default: 7 / 3 / 2 by size)
 *   SELKIE_BENCH_SQL_ROWS=10000     section 3 table rows
 *   SELKIE_BENCH_DBS=1000           section 4 databases
 *   SELKIE_BENCH_ACCESSES=3000      section 4 random accesses
 *   SELKIE_BENCH_COLD=50            section 4 cold opens (interleaved with the accesses)
 *   SELKIE_BENCH_EPC=32MiB          section 4 platform EPC budget
 *   SELKIE_BENCH_SECTIONS=1,2,3,4   which sections to run
 *   SELKIE_BENCH_QUICK=1            small sizes for a smoke run (5,50 / 50 / 100 dbs / 300 accesses)
 *   SELKIE_BENCH_TMP=dir            where the temp folder goes (default: the OS temp dir)
 *   SELKIE_BENCH_OUT=file           JSON results (default: bench-results/snapshot.json)
 */
import { createCipheriv, createDecipheriv, createHash, createSecretKey, hash as oneShotHash, randomBytes, randomFillSync, type KeyObject } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Database, Platform } from "../../runtime/index.js";
import { changedPagesByCompare, changedPagesByHash, ImageStore, pageHashes, type ImageBinding, type ImageInfo, type SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import { EpcPager } from "../../runtime/enclave/snapshot/pager.js";
import type { EnclaveServices } from "../../runtime/platform/services.js";
import { rng } from "../rng.js";
import { measuredIdentity } from "../../test/platform/helpers.js";
import { markdownTable } from "../table.js";

const MiB = 1024 * 1024;
const PAGE = 4096;
/** Share of pages left zero in the synthetic memory (a grown but untouched heap); the rest is random. */
const ZERO_FRACTION = 0.1;
/** Share of pages changed between a parent and its delta (section 2). */
const CHANGED_FRACTION = 0.01;
const TARGET_MBS = 1000;
const WAKE_P50_MS = 5;
const WAKE_P99_MS = 20;
const SEED = 5;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..", "..");

// ---- options -------------------------------------------------------------------------------------

function bad(msg: string): never {
  process.stderr.write(`bench:snapshot: ${msg} (see the header of tools/bench/snapshot.ts)\n`);
  process.exit(2);
}

function envList(name: string, def: string): number[] {
  const raw = process.env[`SELKIE_BENCH_${name}`] ?? def;
  const xs = raw.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  for (const x of xs) if (!Number.isInteger(x) || x < 1 || x > 4095) bad(`SELKIE_BENCH_${name} takes integers 1..4095 separated by commas, not ${JSON.stringify(raw)}`);
  return xs;
}

function envInt(name: string, def: number, min: number, max: number): number {
  const raw = process.env[`SELKIE_BENCH_${name}`];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) bad(`SELKIE_BENCH_${name} takes an integer ${min}..${max}, not ${JSON.stringify(raw)}`);
  return n;
}

const QUICK = process.env["SELKIE_BENCH_QUICK"] === "1";
const OPTS = {
  quick: QUICK,
  sizesMiB: envList("SIZES", QUICK ? "5,50" : "5,50,500"),
  deltaSizesMiB: envList("DELTA_SIZES", QUICK ? "50" : "50,500"),
  reps: envInt("REPS", 0, 0, 99),
  sqlRows: envInt("SQL_ROWS", QUICK ? 2000 : 10000, 1000, 1_000_000),
  dbs: envInt("DBS", QUICK ? 100 : 1000, 2, 100_000),
  accesses: envInt("ACCESSES", QUICK ? 300 : 3000, 1, 10_000_000),
  cold: envInt("COLD", QUICK ? 10 : 50, 0, 10_000),
  epc: process.env["SELKIE_BENCH_EPC"] || "32MiB",
  sections: envList("SECTIONS", "1,2,3,4"),
  tmp: path.resolve(process.env["SELKIE_BENCH_TMP"] || os.tmpdir()),
  out: path.resolve(process.env["SELKIE_BENCH_OUT"] || path.join(REPO, "bench-results", "snapshot.json")),
};

/** Repetitions at a size: more for small sizes (short, noisier), at least 2. */
function repsFor(bytes: number): number {
  if (OPTS.reps > 0) return OPTS.reps;
  return bytes <= 16 * MiB ? 7 : bytes <= 128 * MiB ? 3 : 2;
}

// ---- measuring and formatting --------------------------------------------------------------------

interface Timed<T> {
  value: T;
  wallMs: number;
  cpuMs: number;
}

/** Wall and process CPU time (user + system, all threads) of fn. */
function timed<T>(fn: () => T): Timed<T> {
  const c = process.cpuUsage();
  const t = performance.now();
  const value = fn();
  const wallMs = performance.now() - t;
  const u = process.cpuUsage(c);
  return { value, wallMs, cpuMs: (u.user + u.system) / 1000 };
}

/** Wall and CPU samples of one operation over the repetitions. */
class Series {
  readonly wall: number[] = [];
  readonly cpu: number[] = [];
  add<T>(t: Timed<T>): T {
    this.wall.push(t.wallMs);
    this.cpu.push(t.cpuMs);
    return t.value;
  }
  get wallMs(): number {
    return median(this.wall);
  }
  get cpuMs(): number {
    return median(this.cpu);
  }
  json(bytes?: number): Record<string, unknown> {
    return {
      wallMs: this.wall,
      cpuMs: this.cpu,
      medianWallMs: this.wallMs,
      medianCpuMs: this.cpuMs,
      ...(bytes !== undefined ? { mbPerSecWall: rate(bytes, this.wallMs), mbPerSecCpu: rate(bytes, this.cpuMs) } : {}),
    };
  }
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Dist {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  n: number;
}

/** Nearest-rank percentiles (as the pager's own window). */
function dist(xs: readonly number[]): Dist {
  const n = xs.length;
  if (n === 0) return { p50: NaN, p99: NaN, max: NaN, mean: NaN, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(n - 1, Math.floor(q * n))]!;
  return { p50: at(0.5), p99: at(0.99), max: s[n - 1]!, mean: s.reduce((a, b) => a + b, 0) / n, n };
}

/** MB/s (10^6 bytes per second). */
function rate(bytes: number, ms: number): number {
  return bytes / ms / 1000;
}

const num = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "-");
const mbs = (x: number): string => num(x);
const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}x` : "-");
const share = (x: number): string => (!Number.isFinite(x) ? "-" : x < 0.01 ? `${(x * 100).toFixed(2)}%` : `${(x * 100).toFixed(1)}%`);

function ms(x: number): string {
  if (!Number.isFinite(x)) return "-";
  return x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : x >= 1 ? `${x.toFixed(2)} ms` : `${x.toFixed(3)} ms`;
}

function bytesText(b: number): string {
  if (b >= MiB) return `${(b / MiB).toFixed(1)} MiB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${b} B`;
}

/** A Markdown table whose columns from `left` on are right-aligned (numbers). */
const table = (header: string[], rows: string[][], left: number): string => markdownTable(header, rows, (c) => c >= left);

const lines: string[] = [];
function print(s = ""): void {
  lines.push(s);
  process.stdout.write(`${s}\n`);
}

function progress(s: string): void {
  process.stderr.write(`bench:snapshot: ${s}\n`);
}

/** Failed checks (wrong bytes, wrong pages, wrong rows, EPC over budget): exit code 1. */
const problems: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok && problems.length < 100) problems.push(what);
}

// ---- synthetic memory and raw baselines ---------------------------------------------------------

/** `bytes` of memory: random bytes, ZERO_FRACTION of the pages (seeded choice) zero. */
function makeMemory(bytes: number, seed: number): { mem: Buffer; zeroPages: number } {
  const mem = Buffer.allocUnsafeSlow(bytes);
  for (let o = 0; o < bytes; o += 64 * MiB) randomFillSync(mem, o, Math.min(64 * MiB, bytes - o));
  const r = rng(seed);
  let zeroPages = 0;
  for (let p = 0; p < bytes / PAGE; p++) {
    if (r() < ZERO_FRACTION) {
      mem.fill(0, p * PAGE, (p + 1) * PAGE);
      zeroPages++;
    }
  }
  return { mem, zeroPages };
}

/** Changes `fraction` of the pages (distinct, seeded): 16 bytes XORed with non-zero values each. Returns them sorted. */
function mutate(mem: Buffer, fraction: number, r: () => number): number[] {
  const n = mem.length / PAGE;
  const k = Math.max(1, Math.round(n * fraction));
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (n - i));
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  const pages = Array.from(idx.subarray(0, k)).sort((a, b) => a - b);
  for (const p of pages) {
    const o = p * PAGE + Math.floor(r() * (PAGE - 16));
    for (let i = 0; i < 16; i++) mem[o + i]! ^= 1 + Math.floor(r() * 255);
  }
  return pages;
}

/** Sequential write of `mem` to a new file in 1 MiB writes; `sync`: fsync before close. */
function rawWrite(file: string, mem: Buffer, sync: boolean): void {
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    for (let o = 0; o < mem.length; o += MiB) {
      const end = Math.min(o + MiB, mem.length);
      for (let at = o; at < end; ) at += fs.writeSync(fd, mem, at, end - at);
    }
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Sequential read of a file into `dest` in 1 MiB reads. */
function rawRead(file: string, dest: Buffer): void {
  const fd = fs.openSync(file, "r");
  try {
    for (let at = 0; at < dest.length; ) {
      const n = fs.readSync(fd, dest, at, Math.min(MiB, dest.length - at), at);
      if (n === 0) throw new Error(`${file} is shorter than ${dest.length} bytes`);
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Flushes every file in `target` (a file or a folder) to disk, untimed: unflushed writes of one measurement must not land in the next. */
function settle(target: string): void {
  const files = fs.statSync(target).isDirectory() ? fs.readdirSync(target).map((f) => path.join(target, f)) : [target];
  for (const f of files) {
    if (!fs.statSync(f).isFile()) continue;
    const fd = fs.openSync(f, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

interface RawSealed {
  nonce: Buffer;
  tag: Buffer;
}

/** Bytes per cipher update, as the image's chunks use (small outputs, reused by malloc). */
const SLICE = 64 * 1024;

/**
 * Raw AES-256-GCM of `mem` in 1 MiB messages (as the image's chunks), random nonce each, updates of
 * 64 KiB, ciphertext copied into `ct` (allocated and touched before: a fresh 500 MiB of output would
 * measure the VM's first-touch page faults, not AES).
 */
function rawEncrypt(key: KeyObject, mem: Buffer, ct: Buffer): RawSealed[] {
  const out: RawSealed[] = [];
  for (let o = 0; o < mem.length; o += MiB) {
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", key, nonce);
    const end = Math.min(o + MiB, mem.length);
    for (let a = o; a < end; a += SLICE) ct.set(c.update(mem.subarray(a, Math.min(a + SLICE, end))), a);
    c.final();
    out.push({ nonce, tag: c.getAuthTag() });
  }
  return out;
}

/** Decrypts and authenticates rawEncrypt's messages from `ct` into `dest`. */
function rawDecrypt(key: KeyObject, sealed: readonly RawSealed[], ct: Buffer, dest: Buffer): void {
  sealed.forEach((s, i) => {
    const o = i * MiB;
    const end = Math.min(o + MiB, ct.length);
    const d = createDecipheriv("aes-256-gcm", key, s.nonce);
    d.setAuthTag(s.tag);
    for (let a = o; a < end; a += SLICE) dest.set(d.update(ct.subarray(a, Math.min(a + SLICE, end))), a);
    d.final();
  });
}

const sha256: (b: Uint8Array) => Buffer =
  typeof oneShotHash === "function" ? (b) => oneShotHash("sha256", b, "buffer") : (b) => createHash("sha256").update(b).digest();

/** Raw SHA-256 of every 4 KiB page on this thread (node:crypto), into one buffer: the single-threaded reference for page digests. */
function rawPageSha(mem: Buffer): Buffer {
  const n = mem.length / PAGE;
  const out = Buffer.allocUnsafe(n * 32);
  for (let p = 0; p < n; p++) out.set(sha256(mem.subarray(p * PAGE, (p + 1) * PAGE)), p * 32);
  return out;
}

function stateOf(mem: Buffer): SnapshotState {
  return {
    memory: mem,
    globals: [
      { name: "__stack_pointer", type: "i32", value: 65536 },
      { name: "__heap_base", type: "i32", value: 1 << 20 },
    ],
    runtime: { bench: "snapshot" },
  };
}

/** What ImageInfo says it stores (storedPages is an extra the store reports; absent, "-"). */
function storedPages(info: ImageInfo): number | undefined {
  const v = (info as unknown as Record<string, unknown>)["storedPages"];
  return typeof v === "number" ? v : undefined;
}

interface ImageCtx {
  root: string;
  platform: Platform;
  services: EnclaveServices;
  binding: ImageBinding;
}

// ---- 1. full image write and restore -------------------------------------------------------------

interface FullRow {
  sizeMiB: number;
  op: string;
  imageMbsWall: number;
  imageMbsCpu: number;
  imageMs: number;
  ioName: string;
  ioMbs: number;
  aesMbs: number;
  /** Writes only: SHA-256 of every page. */
  hashMbs: number;
  /** Writes only: hash + AES + I/O one after the other. */
  pipelineMbs: number;
  serialMbs: number;
  vsSerial: number;
  pass: boolean;
}

/** One repetition of every measured operation at one size (also the warm-up). */
function fullRound(ctx: ImageCtx, s: Record<string, Series>, mem: Buffer, dest: Buffer, ct: Buffer, stores: { durable: ImageStore; volatile: ImageStore; paging: ImageStore; durableDir: string; volatileDir: string; pagingDir: string; rawDir: string }, key: KeyObject, rep: number): ImageInfo {
  const state = stateOf(mem);
  const scribble = (): void => void dest.fill(0xa5);
  // Raw AES-256-GCM in memory, both ways.
  const sealed = s.aesEncrypt!.add(timed(() => rawEncrypt(key, mem, ct)));
  scribble();
  s.aesDecrypt!.add(timed(() => rawDecrypt(key, sealed, ct, dest)));
  check(dest.equals(mem), `raw AES-GCM round trip at ${mem.length} bytes`);
  // SHA-256 of every page, one thread: what ImageStore.write computes, full or delta (the manifest carries them).
  s.pageSha!.add(timed(() => rawPageSha(mem)));
  // Durable write: raw write+fsync, then the image (fsync, folder fsync, counter increment).
  const a = path.join(stores.rawDir, `a${rep}.bin`);
  const b = path.join(stores.rawDir, `b${rep}.bin`);
  s.rawWriteSync!.add(timed(() => rawWrite(a, mem, true)));
  const info = s.writeDurable!.add(timed(() => stores.durable.write(state, { full: true })));
  check(info.kind === "full", `durable write at ${mem.length} bytes was ${info.kind}, not full`);
  // Volatile write: raw write without fsync, then the image; both flushed afterwards, untimed.
  s.rawWrite!.add(timed(() => rawWrite(b, mem, false)));
  settle(b);
  s.writeVolatile!.add(timed(() => stores.volatile.write(state, { full: true })));
  settle(stores.volatileDir);
  // A paging lineage (maxChain 1, as EPC paging uses): full images without page digests.
  s.writePaging!.add(timed(() => stores.paging.write(state, { full: true })));
  settle(stores.pagingDir);
  // Restore: raw read (page cache: just written), durable open + read (as Database.restore), volatile read (as a wake).
  scribble();
  s.rawRead!.add(timed(() => rawRead(a, dest)));
  check(dest.equals(mem), `raw read at ${mem.length} bytes`);
  scribble();
  s.restoreDurable!.add(timed(() => ImageStore.openDurable(stores.durableDir, { services: ctx.services, binding: ctx.binding }).read(() => dest)));
  check(dest.equals(mem), `durable restore at ${mem.length} bytes returned other bytes`);
  scribble();
  s.readVolatile!.add(timed(() => stores.volatile.read(() => dest)));
  check(dest.equals(mem), `volatile read at ${mem.length} bytes returned other bytes`);
  fs.rmSync(a, { force: true });
  fs.rmSync(b, { force: true });
  return info;
}

function newSeries(): Record<string, Series> {
  const names = ["aesEncrypt", "aesDecrypt", "pageSha", "rawWriteSync", "rawWrite", "rawRead", "writeDurable", "writeVolatile", "writePaging", "restoreDurable", "readVolatile"];
  return Object.fromEntries(names.map((n) => [n, new Series()]));
}

function sectionFull(ctx: ImageCtx): Record<string, unknown> {
  const key = createSecretKey(randomBytes(32));
  const rows: FullRow[] = [];
  const json: Record<string, unknown>[] = [];
  const run = (bytes: number, reps: number, warm: boolean): void => {
    const dir = fs.mkdtempSync(path.join(ctx.root, `full-${bytes / MiB}MiB-`));
    const durableDir = path.join(dir, "durable");
    const volatileDir = path.join(dir, "volatile");
    const pagingDir = path.join(dir, "paging");
    const rawDir = path.join(dir, "raw");
    fs.mkdirSync(rawDir);
    const stores = {
      durableDir,
      volatileDir,
      rawDir,
      durable: ImageStore.openDurable(durableDir, { services: ctx.services, binding: ctx.binding }),
      volatile: ImageStore.volatile(volatileDir, { binding: ctx.binding }),
      pagingDir,
      paging: ImageStore.volatile(pagingDir, { binding: ctx.binding, maxChain: 1 }),
    };
    try {
      const { mem, zeroPages } = makeMemory(bytes, SEED + bytes / MiB);
      const dest = Buffer.allocUnsafeSlow(bytes);
      const ct = Buffer.allocUnsafeSlow(bytes).fill(0);
      const s = newSeries();
      let info: ImageInfo | undefined;
      for (let rep = 0; rep < reps; rep++) {
        if (!warm) progress(`1. full images, ${bytes / MiB} MiB, repetition ${rep + 1}/${reps}`);
        info = fullRound(ctx, s, mem, dest, ct, stores, key, rep);
      }
      if (warm) return;
      const r = (k: string): number => rate(bytes, s[k]!.wallMs);
      const serial = (io: string, aes: string): number => rate(bytes, s[io]!.wallMs + s[aes]!.wallMs);
      const add = (op: string, img: string, io: string, ioName: string, aes: string): void => {
        const imageMbsWall = r(img);
        const serialMbs = serial(io, aes);
        const writes = img.startsWith("write");
        rows.push({
          sizeMiB: bytes / MiB,
          op,
          imageMbsWall,
          imageMbsCpu: rate(bytes, s[img]!.cpuMs),
          imageMs: s[img]!.wallMs,
          ioName,
          ioMbs: r(io),
          aesMbs: r(aes),
          hashMbs: writes && img !== "writePaging" ? r("pageSha") : NaN,
          pipelineMbs: writes && img !== "writePaging" ? rate(bytes, s[io]!.wallMs + s[aes]!.wallMs + s.pageSha!.wallMs) : NaN,
          serialMbs,
          vsSerial: imageMbsWall / serialMbs,
          pass: imageMbsWall >= TARGET_MBS,
        });
      };
      add("write, durable", "writeDurable", "rawWriteSync", "write+fsync", "aesEncrypt");
      add("write, volatile", "writeVolatile", "rawWrite", "write", "aesEncrypt");
      add("write, paging (maxChain 1: no digests)", "writePaging", "rawWrite", "write", "aesEncrypt");
      add("restore, durable (open + read)", "restoreDurable", "rawRead", "read", "aesDecrypt");
      add("read, volatile (a wake's read)", "readVolatile", "rawRead", "read", "aesDecrypt");
      json.push({
        sizeMiB: bytes / MiB,
        bytes,
        zeroPages,
        totalPages: bytes / PAGE,
        reps,
        imageFileBytes: info?.fileBytes,
        storedPages: info ? storedPages(info) : undefined,
        series: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.json(bytes)])),
      });
    } finally {
      stores.durable.destroy();
      stores.volatile.destroy();
      stores.paging.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  progress("1. warm-up (4 MiB, untimed)");
  run(4 * MiB, 2, true);
  for (const size of OPTS.sizesMiB) run(size * MiB, repsFor(size * MiB), false);

  print(`## 1. Full image write and restore (MB/s of memory, median of ${OPTS.sizesMiB.map((m) => `${repsFor(m * MiB)} at ${m} MiB`).join(", ")}; target >= ${num(TARGET_MBS)} MB/s)`);
  print();
  const header = ["memory", "operation", "image MB/s", "image MB/s CPU", "image time", "raw file I/O MB/s", "raw AES-GCM MB/s", "raw I/O then AES MB/s", "image / raw I/O then AES", "raw page SHA-256 MB/s", "hash, AES, I/O MB/s", "target"];
  const body = rows.map((r) => {
    const why: string[] = [];
    if (!r.pass) {
      if (r.ioMbs < TARGET_MBS) why.push(`raw ${r.ioName} itself ${mbs(r.ioMbs)}`);
      if (r.aesMbs < TARGET_MBS) why.push(`raw AES-GCM itself ${mbs(r.aesMbs)}`);
      if (r.hashMbs < TARGET_MBS) why.push(`raw page SHA-256 itself ${mbs(r.hashMbs)}`);
    }
    return [
      `${r.sizeMiB} MiB`,
      r.op,
      mbs(r.imageMbsWall),
      mbs(r.imageMbsCpu),
      ms(r.imageMs),
      `${mbs(r.ioMbs)} (${r.ioName})`,
      mbs(r.aesMbs),
      mbs(r.serialMbs),
      ratio(r.vsSerial),
      mbs(r.hashMbs),
      mbs(r.pipelineMbs),
      r.pass ? "PASS" : `FAIL${why.length ? ` (${why.join("; ")})` : ""}`,
    ];
  });
  print(table(header, body, 2));
  print();
  print(`Memory: random bytes with ${share(ZERO_FRACTION)} of the 4 KiB pages zero (zero pages are stored in no chunk, so the image is ~${share(1 - ZERO_FRACTION)} of the memory; raw baselines process every byte).`);
  print("Image MB/s: wall time (what a caller waits, fsync included); CPU: process CPU time (user + system, every thread: the store's page-hashing helper thread included) for the same bytes.");
  print("Durable write = hash every page + seal + write + fsync + folder fsync + counter increment; durable restore = ImageStore.openDurable (unseal key, check the counter, decrypt the manifest) + read.");
  print("Baselines, same run, same bytes: raw sequential 1 MiB writes to a new file (with fsync for durable), 1 MiB reads (the file was just written: page cache, as the image's read);");
  print("raw AES-256-GCM in 1 MiB messages in memory; 'raw I/O then AES' = both one after the other (the naive pipeline's time: I/O time + AES time). Reads come from the page cache.");
  print("Writes also hash every page (one SHA-256 per 4 KiB page; 'raw page SHA-256' = node:crypto on one thread); 'hash, AES, I/O' = the three raw steps one after the other on one thread (the store may overlap them: it hashes on a helper thread while it encrypts).");
  print();
  return { rows, sizes: json };
}

// ---- 2. delta detection and delta images ----------------------------------------------------------

function sectionDelta(ctx: ImageCtx): Record<string, unknown> {
  const detect: Record<string, unknown>[] = [];
  const writes: Record<string, unknown>[] = [];
  const detRows: string[][] = [];
  const wRows: string[][] = [];
  for (const sizeMiB of OPTS.deltaSizesMiB) {
    const bytes = sizeMiB * MiB;
    const reps = repsFor(bytes);
    const r = rng(SEED * 31 + sizeMiB);
    const { mem } = makeMemory(bytes, SEED * 7 + sizeMiB);
    // Detection. The parent's page hashes come with the parent image (the store keeps them); the
    // compare method keeps a plaintext copy of the parent's memory and must refresh it after each image.
    {
      progress(`2. delta detection, ${sizeMiB} MiB`);
      const prevHashes = pageHashes(mem);
      const prev = Buffer.from(mem);
      const scratch = Buffer.allocUnsafeSlow(bytes).fill(0);
      const truth = mutate(mem, CHANGED_FRACTION, r);
      const hash = new Series();
      const compare = new Series();
      const copy = new Series();
      const raw = new Series();
      const same = (got: number[]): boolean => got.length === truth.length && got.every((p, i) => p === truth[i]);
      changedPagesByHash(mem.subarray(0, MiB), prevHashes.subarray(0, (MiB / PAGE) * 32)); // warm the code paths
      changedPagesByCompare(mem.subarray(0, MiB), prev.subarray(0, MiB));
      for (let rep = 0; rep < Math.max(reps, 3); rep++) {
        check(same(hash.add(timed(() => changedPagesByHash(mem, prevHashes)))), `changedPagesByHash at ${sizeMiB} MiB found other pages`);
        check(same(compare.add(timed(() => changedPagesByCompare(mem, prev)))), `changedPagesByCompare at ${sizeMiB} MiB found other pages`);
        copy.add(timed(() => void scratch.set(mem)));
        raw.add(timed(() => void rawPageSha(mem)));
      }
      const both = { wall: compare.wallMs + copy.wallMs, cpu: compare.cpuMs + copy.cpuMs };
      const kept = `${bytesText((bytes / PAGE) * 32)} (hashes)`;
      detRows.push(
        [`${sizeMiB} MiB`, `${truth.length} (${share(CHANGED_FRACTION)})`, "page hashes: changedPagesByHash", ms(hash.wallMs), mbs(rate(bytes, hash.wallMs)), mbs(rate(bytes, hash.cpuMs)), "1.00x", kept],
        [`${sizeMiB} MiB`, "", "compare with kept copy: changedPagesByCompare", ms(compare.wallMs), mbs(rate(bytes, compare.wallMs)), mbs(rate(bytes, compare.cpuMs)), ratio(hash.wallMs / compare.wallMs), `${bytesText(bytes)} (copy)`],
        [`${sizeMiB} MiB`, "", "compare + refresh the copy (memcpy)", ms(both.wall), mbs(rate(bytes, both.wall)), mbs(rate(bytes, both.cpu)), ratio(hash.wallMs / both.wall), `${bytesText(bytes)} (copy)`],
        [`${sizeMiB} MiB`, "", "reference: raw SHA-256 per page, one thread", ms(raw.wallMs), mbs(rate(bytes, raw.wallMs)), mbs(rate(bytes, raw.cpuMs)), ratio(hash.wallMs / raw.wallMs), ""],
      );
      detect.push({ sizeMiB, changedPages: truth.length, totalPages: bytes / PAGE, hash: hash.json(bytes), compare: compare.json(bytes), refreshCopy: copy.json(bytes), rawSha256OneThread: raw.json(bytes) });
    }
    // Delta images vs full ones, same store: full write, read; change 1%; delta write, read of the chain.
    for (const mode of ["durable", "volatile"] as const) {
      progress(`2. delta images, ${sizeMiB} MiB, ${mode}`);
      const dir = path.join(ctx.root, `delta-${sizeMiB}-${mode}`);
      const store = mode === "durable" ? ImageStore.openDurable(dir, { services: ctx.services, binding: ctx.binding }) : ImageStore.volatile(dir, { binding: ctx.binding });
      const dest = Buffer.allocUnsafeSlow(bytes);
      const s = { full: new Series(), readFull: new Series(), delta: new Series(), readChain: new Series() };
      let full: ImageInfo | undefined;
      let delta: ImageInfo | undefined;
      let changed = 0;
      try {
        for (let rep = 0; rep < reps; rep++) {
          full = s.full.add(timed(() => store.write(stateOf(mem), { full: true })));
          if (mode === "volatile") settle(dir);
          dest.fill(0xa5);
          s.readFull.add(timed(() => store.read(() => dest)));
          check(dest.equals(mem), `${mode} full read at ${sizeMiB} MiB returned other bytes`);
          const truth = mutate(mem, CHANGED_FRACTION, r);
          changed = truth.length;
          delta = s.delta.add(timed(() => store.write(stateOf(mem))));
          if (mode === "volatile") settle(dir);
          check(delta.kind === "delta" && delta.changedPages === truth.length, `${mode} delta at ${sizeMiB} MiB: ${delta.kind} with ${delta.changedPages} changed pages, ${truth.length} changed`);
          dest.fill(0xa5);
          s.readChain.add(timed(() => store.read(() => dest)));
          check(dest.equals(mem), `${mode} delta chain read at ${sizeMiB} MiB returned other bytes`);
        }
      } finally {
        store.destroy();
        fs.rmSync(dir, { recursive: true, force: true });
      }
      wRows.push(
        [`${sizeMiB} MiB`, mode, "full", num(full!.changedPages), num(storedPages(full!) ?? NaN), bytesText(full!.fileBytes), "100%", ms(s.full.wallMs), ms(s.full.cpuMs), "1.00x", ms(s.readFull.wallMs), "1.00x"],
        [
          `${sizeMiB} MiB`,
          mode,
          `delta (${share(CHANGED_FRACTION)} changed)`,
          num(delta!.changedPages),
          num(storedPages(delta!) ?? NaN),
          bytesText(delta!.fileBytes),
          share(delta!.fileBytes / full!.fileBytes),
          ms(s.delta.wallMs),
          ms(s.delta.cpuMs),
          ratio(s.delta.wallMs / s.full.wallMs),
          ms(s.readChain.wallMs),
          ratio(s.readChain.wallMs / s.readFull.wallMs),
        ],
      );
      writes.push({
        sizeMiB,
        mode,
        reps,
        changedPages: changed,
        full: { fileBytes: full!.fileBytes, storedPages: storedPages(full!), write: s.full.json(bytes), read: s.readFull.json(bytes) },
        delta: { fileBytes: delta!.fileBytes, storedPages: storedPages(delta!), changedPages: delta!.changedPages, write: s.delta.json(bytes), readChain: s.readChain.json(bytes) },
      });
    }
  }
  print(`## 2. Delta detection (${share(CHANGED_FRACTION)} of pages changed; median of ${OPTS.deltaSizesMiB.map((m) => `${Math.max(repsFor(m * MiB), 3)} at ${m} MiB`).join(", ")})`);
  print();
  print(table(["memory", "changed pages", "method", "time", "MB/s", "MB/s CPU", "speed vs hashes", "kept per enclave"], detRows, 3));
  print();
  print("Page hashes: SHA-256 of every 4 KiB page of the current memory (the store's pageHashes: this thread plus a helper thread), compared with the parent's (which the store keeps from the previous image). CPU MB/s below wall MB/s = more than one thread at work.");
  print(`The compare method needs a plaintext copy of the memory kept between images (the same size again, in EPC on real SGX) and a refresh (memcpy) after each image. Reference: the write target ${num(TARGET_MBS)} MB/s; ImageStore.write hashes every page (full or delta) because the manifest carries the page hashes.`);
  print();
  print(table(["memory", "mode", "image", "changed pages", "stored pages", "file", "vs full", "write", "write CPU", "vs full", "read", "vs full"], wRows, 3));
  print();
  print("Same store, each repetition: a full image (forced), its read; then 1% of pages changed and a delta written; 'read' of a delta restores the whole chain (full + delta). Durable: fsync + counter included.");
  print();
  return { detection: detect, images: writes };
}

// ---- 3. delta sizes after SQLite transactions -------------------------------------------------------

function sectionSql(root: string, platform: Platform): Record<string, unknown> {
  progress("3. SQLite transactions and their deltas");
  const dir = path.join(root, "sql");
  fs.mkdirSync(dir);
  const snapDir = path.join(dir, "snapshots");
  const db = new Database(path.join(dir, "bench.db"), { platform });
  const rows = OPTS.sqlRows;
  const r = rng(SEED * 101);
  const perm = Array.from({ length: rows }, (_, i) => i);
  for (let i = rows - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const out: Record<string, unknown>[] = [];
  const body: string[][] = [];
  try {
    // Warm-up: the table, its rows, and the statements the steps use (so the page cache and the
    // statement cache are warm, as in a running service).
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, score REAL, k INTEGER)");
    db.transaction(() => {
      const ins = db.prepare("INSERT INTO t(id, name, grp, score, k) VALUES (?, ?, ?, ?, ?)");
      for (let i = 1; i <= rows; i++) ins.run(i, `name-${i}-${perm[i - 1]}`, i % 100, r() * 1000, perm[i - 1]!);
    })();
    for (let i = 0; i < 200; i++) db.query("SELECT * FROM t WHERE id = ?", 1 + Math.floor(r() * rows));
    db.query("SELECT grp, count(*), sum(score) FROM t GROUP BY grp");
    let next = rows + 1;
    const insert = (): void => void db.run("INSERT INTO t(id, name, grp, score, k) VALUES (?, ?, ?, ?, ?)", next, `name-${next}`, next % 100, r() * 1000, next++);
    const steps: { label: string; run: () => void; full?: boolean }[] = [
      { label: "nothing (snapshot again)", run: () => {} },
      { label: "one point SELECT", run: () => void db.query("SELECT * FROM t WHERE id = ?", 1 + Math.floor(r() * rows)) },
      { label: "one INSERT", run: insert },
      { label: "100-row INSERT transaction", run: () => db.transaction(() => { for (let i = 0; i < 100; i++) insert(); })() },
      { label: "UPDATE of 1,000 rows", run: () => void db.run("UPDATE t SET score = score + 1, name = name || '+' WHERE id BETWEEN ? AND ?", 2001, 3000) },
      { label: "CREATE INDEX on k", run: () => void db.exec("CREATE INDEX t_k ON t(k)") },
      { label: "full image (forced), for reference", run: () => {}, full: true },
    ];
    const first = db.snapshot(snapDir, { full: true });
    const row = (label: string, i: ImageInfo): string[] => [
      label,
      i.kind,
      String(i.chainLength),
      num(i.changedPages),
      num(i.totalPages),
      share(i.changedPages / i.totalPages),
      num(storedPages(i) ?? NaN),
      num(i.fileBytes),
      share(i.fileBytes / first.fileBytes),
      ms(i.writeMs),
    ];
    body.push(row(`after warm-up (${num(rows)} rows): full image = baseline`, first));
    out.push({ step: "warm-up", ...first });
    for (const st of steps) {
      st.run();
      const info = db.snapshot(snapDir, st.full ? { full: true } : {});
      body.push(row(st.label, info));
      out.push({ step: st.label, ...info });
    }
    check(db.query<{ n: number }>("SELECT count(*) AS n FROM t")[0]?.n === rows + 101, "section 3: row count after the steps");
  } finally {
    db.close();
  }
  print(`## 3. Delta sizes after typical SQLite transactions (a sealed Database, durable snapshots: full after warm-up, then one after each step)`);
  print();
  print(table(["after", "image", "chain", "changed pages", "total pages", "changed", "stored pages", "file bytes", "vs full image", "write"], body, 2));
  print();
  print("Changed pages: 4 KiB pages of the enclave's linear memory that differ from the previous image (SQLite's page cache, heap, stack); commits themselves live in the sealed page store, not in the image.");
  print("'vs full image' compares file bytes with the full image written after the warm-up (same run). Write time includes hashing every page, fsync, folder fsync and the counter increment.");
  print();
  return { rows, steps: out };
}

// ---- 4. wake latency under EPC pressure ---------------------------------------------------------------

const ROWS_PER_DB = 20;
const POINT = "SELECT v, s FROM t WHERE id = ?";
const expectedV = (dbIndex: number, id: number): number => (dbIndex * 7919 + id * 31) % 100_003;

function seedSql(dbIndex: number): string {
  const values = Array.from({ length: ROWS_PER_DB }, (_, k) => `(${k + 1}, ${expectedV(dbIndex, k + 1)}, 'row ${k + 1} of db ${dbIndex}')`).join(", ");
  return `BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, s TEXT); INSERT INTO t(id, v, s) VALUES ${values}; COMMIT;`;
}

async function sectionWake(root: string): Promise<Record<string, unknown>> {
  const platform = await Platform.create(path.join(root, "platform-epc"), { epc: OPTS.epc });
  const budget = platform.epc.budget;
  const dir = path.join(root, "dbs");
  fs.mkdirSync(dir);
  const N = OPTS.dbs;
  const dbs: Database[] = [];
  let hot: Database | undefined;
  let maxCommitted = 0;
  let overBudget = 0;
  let epcChecks = 0;
  const epcCheck = (): void => {
    const c = platform.epc.committed;
    epcChecks++;
    if (c > maxCommitted) maxCommitted = c;
    if (c > budget) overBudget++;
  };
  const sum = (): { resident: number; bytes: number } =>
    [...dbs, ...(hot ? [hot] : [])].reduce((a, d) => {
      const b = d.enclave.committedBytes;
      return { resident: a.resident + (b > 0 ? 1 : 0), bytes: a.bytes + b };
    }, { resident: 0, bytes: 0 });
  let sumChecks = 0;
  let sumOver = 0;
  const sumCheck = (): void => {
    sumChecks++;
    if (sum().bytes > budget) sumOver++;
  };
  try {
    // Setup: N sealed databases, each a table of ROWS_PER_DB rows (one commit); the EPC fills up and
    // the pager hibernates the least recently used as they are created.
    const openMs: number[] = [];
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      const db = new Database(path.join(dir, `db${i}.db`), { platform });
      db.exec(seedSql(i));
      openMs.push(performance.now() - t);
      dbs.push(db);
      epcCheck();
      if ((i + 1) % 100 === 0 || i + 1 === N) progress(`4. opened ${i + 1}/${N} sealed databases (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
    // Databases for cold opens (created, then closed) and the hot one (stays resident: used every step).
    const coldFiles: string[] = [];
    for (let j = 0; j < OPTS.cold; j++) {
      const f = path.join(dir, `cold${j}.db`);
      const db = new Database(f, { platform });
      db.exec(seedSql(N + 1 + j));
      db.close();
      coldFiles.push(f);
    }
    hot = new Database(path.join(dir, "hot.db"), { platform });
    hot.exec(seedSql(N));
    const setupS = (performance.now() - t0) / 1000;
    const setupCpu = process.cpuUsage(c0);
    const pager = EpcPager.of(platform.epc);
    const setupStats = pager?.stats();
    sumCheck();
    const enclaveBytes = hot.enclave.committedBytes;

    // Access phase: uniformly random databases (mostly hibernated), a point SELECT each; after each,
    // the same SELECT on the hot (resident) database; every accesses/cold steps a cold open.
    const r = rng(SEED * 977);
    const accHib: number[] = [];
    const accRes: number[] = [];
    const accHibCpu: number[] = [];
    const accResCpu: number[] = [];
    const hotMs: number[] = [];
    const hotCpu: number[] = [];
    const coldMs: number[] = [];
    const coldCpu: number[] = [];
    const ownWake: number[] = [];
    const imageBytes: number[] = [];
    const every = OPTS.cold > 0 ? Math.max(1, Math.floor(OPTS.accesses / OPTS.cold)) : Infinity;
    let coldDone = 0;
    const tA = performance.now();
    const query = (db: Database, id: number): Timed<{ v: number; s: string } | undefined> => timed(() => db.query<{ v: number; s: string }>(POINT, id)[0]);
    for (let k = 0; k < OPTS.accesses; k++) {
      const i = Math.floor(r() * N);
      const id = 1 + Math.floor(r() * ROWS_PER_DB);
      const db = dbs[i]!;
      const before = db.paging;
      const q = query(db, id);
      check(q.value?.v === expectedV(i, id), `db ${i} id ${id}: got ${JSON.stringify(q.value)}`);
      if (before.state === "hibernated") {
        accHib.push(q.wallMs);
        accHibCpu.push(q.cpuMs);
      } else {
        accRes.push(q.wallMs);
        accResCpu.push(q.cpuMs);
      }
      const after = db.paging;
      if (after.wakes > before.wakes) ownWake.push(after.lastWakeMs);
      if (after.lastImageBytes > 0) imageBytes.push(after.lastImageBytes);
      epcCheck();
      const h = query(hot, id);
      check(h.value?.v === expectedV(N, id), `hot db id ${id}: got ${JSON.stringify(h.value)}`);
      hotMs.push(h.wallMs);
      hotCpu.push(h.cpuMs);
      epcCheck();
      if (coldDone < OPTS.cold && k % every === Math.floor(every / 2)) {
        const j = coldDone++;
        const c = timed(() => {
          const db2 = new Database(coldFiles[j]!, { platform });
          const row = db2.query<{ v: number }>(POINT, id)[0];
          return { db2, row };
        });
        epcCheck();
        check(c.value.row?.v === expectedV(N + 1 + j, id), `cold db ${j} id ${id}: got ${JSON.stringify(c.value.row)}`);
        c.value.db2.close();
        coldMs.push(c.wallMs);
        coldCpu.push(c.cpuMs);
      }
      if (k % 100 === 99) sumCheck();
      if ((k + 1) % 1000 === 0 || k + 1 === OPTS.accesses) progress(`4. ${k + 1}/${OPTS.accesses} accesses (${((performance.now() - tA) / 1000).toFixed(1)} s)`);
    }
    sumCheck();
    const accessS = (performance.now() - tA) / 1000;
    const stats = pager?.stats();
    const end = sum();
    check(overBudget === 0 && sumOver === 0, `EPC: committed passed the budget ${overBudget} times (sum of enclaves ${sumOver} times)`);

    const o = dist(openMs);
    const hib = dist(accHib);
    const res = dist(accRes);
    const hotD = dist(hotMs);
    const cold = dist(coldMs);
    const own = dist(ownWake);
    const w = stats?.wakeMs;
    const hb = stats?.hibernateMs;
    const sh = setupStats?.hibernateMs;
    const cpuP = (xs: number[]): string => {
      const d = dist(xs);
      return `${ms(d.p50)} / ${ms(d.p99)}`;
    };
    const line = (label: string, d: { p50: number; p99: number; max?: number; mean?: number; n?: number; samples?: number }, cpu: string, vs: string, target: string): string[] => [
      label,
      ms(d.p50),
      ms(d.p99),
      ms(d.max ?? NaN),
      ms(d.mean ?? NaN),
      cpu,
      num(d.n ?? d.samples ?? NaN),
      vs,
      target,
    ];
    const wakePass = w !== undefined && w.samples > 0 && w.p50 <= WAKE_P50_MS && w.p99 <= WAKE_P99_MS;
    const body = [
      line("wake (pager: admit, evicting an idle enclave if need be + verify + decrypt + instantiate)", w ?? dist([]), "-", `${ratio((w?.p50 ?? NaN) / hotD.p50)} of a resident access`, `${wakePass ? "PASS" : "FAIL"} (p50 <= ${WAKE_P50_MS} ms, p99 <= ${WAKE_P99_MS} ms)`),
      line("wake (each database's lastWakeMs, access phase)", own, "-", "", ""),
      line(`hibernate (pager, last ${num(hb?.samples ?? 0)}: setup + access phase)`, { ...(hb ?? { p50: NaN, p99: NaN }), max: NaN, mean: NaN }, "-", "", ""),
      line("hibernate (pager, setup phase only: first images)", { ...(sh ?? { p50: NaN, p99: NaN }), max: NaN, mean: NaN }, "-", "", ""),
      line("access to a hibernated database (point SELECT, incl. wake)", hib, cpuP(accHibCpu), `${ratio(hib.p50 / hotD.p50)} resident, ${ratio(hib.p50 / cold.p50)} cold open`, ""),
      line("access to a resident database (random pick that was resident)", res, cpuP(accResCpu), ratio(res.p50 / hotD.p50), ""),
      line("baseline: the same SELECT on the hot, resident database", hotD, cpuP(hotCpu), "1.00x", ""),
      line("baseline: cold open (new Database + first query)", cold, cpuP(coldCpu), `${ratio(cold.p50 / hotD.p50)} of a resident access`, ""),
      line("setup: open sealed database + table + 20-row commit", o, "-", "", ""),
    ];
    print(`## 4. Wake latency under EPC pressure (${num(N)} sealed databases, EPC budget ${bytesText(budget)}, ${num(OPTS.accesses)} random point SELECTs)`);
    print();
    print(table(["measure", "p50", "p99", "max", "mean", "CPU p50 / p99", "n", "vs baseline", "target"], body, 1));
    print();
    print(
      `Setup: ${num(N)} databases + ${OPTS.cold} for cold opens + 1 hot in ${setupS.toFixed(1)} s (CPU ${((setupCpu.user + setupCpu.system) / 1e6).toFixed(1)} s); ` +
        `one SQLite enclave holds ${bytesText(enclaveBytes)} resident, so ~${Math.floor(budget / Math.max(1, enclaveBytes))} fit; its paging image is ~${bytesText(median(imageBytes))} (median).`,
    );
    print(
      `Access phase: ${num(OPTS.accesses)} random accesses in ${accessS.toFixed(1)} s, ${num(accHib.length)} (${share(accHib.length / OPTS.accesses)}) to hibernated databases; ` +
        `pager: ${num(stats?.wakes ?? 0)} wakes (${stats?.wakeFailures ?? "?"} failed), ${num(stats?.evictions ?? 0)} evictions (${stats?.evictionFailures ?? "?"} failed) in the whole run; ` +
        `at the end ${stats?.resident ?? end.resident} resident, ${stats?.hibernated ?? "?"} hibernated.`,
    );
    print(
      `EPC: committed <= budget after every access (${num(epcChecks)} checks) and the sum of enclaves' committed bytes <= budget (${num(sumChecks)} checks): ` +
        `${overBudget === 0 && sumOver === 0 ? "PASS" : "FAIL"}; peak committed ${bytesText(maxCommitted)} of ${bytesText(budget)}.`,
    );
    print("A wake's time includes hibernating the victim it evicts to make room (a full EPC: nearly every wake evicts one). The pager keeps its last 4,096 samples of each.");
    print("CPU: process CPU time of the access (every thread); CPU close to wall means the time was spent computing, not waiting for the disk or the scheduler.");
    print();
    return {
      dbs: N,
      epcBudget: budget,
      enclaveBytes,
      setupSeconds: setupS,
      setupCpuSeconds: (setupCpu.user + setupCpu.system) / 1e6,
      openMs: o,
      accessSeconds: accessS,
      accesses: OPTS.accesses,
      hibernatedAccesses: hib,
      residentAccesses: res,
      hotAccesses: hotD,
      coldOpens: cold,
      cpuMs: { hibernated: dist(accHibCpu), resident: dist(accResCpu), hot: dist(hotCpu), cold: dist(coldCpu) },
      ownWakeMs: own,
      imageBytesMedian: median(imageBytes),
      pagerAfterSetup: setupStats,
      pager: stats,
      wakeTarget: { p50: WAKE_P50_MS, p99: WAKE_P99_MS, pass: wakePass },
      epc: { checks: epcChecks, overBudget, sumChecks, sumOver, maxCommitted, residentAtEnd: end },
    };
  } finally {
    for (const db of dbs) db.close();
    hot?.close();
    platform.close();
  }
}

// ---- main ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  fs.mkdirSync(OPTS.tmp, { recursive: true });
  const root = fs.mkdtempSync(path.join(OPTS.tmp, "selkie-bench-snapshot-"));
  const t0 = performance.now();
  const results: Record<string, unknown> = {};
  const cpu = os.cpus();
  print(
    `Selkie snapshot benchmark (Node ${process.version}, ${cpu.length} CPUs ${cpu[0]?.model ?? "?"}, load average ${os.loadavg()[0]?.toFixed(1)}, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM; temp ${OPTS.tmp}${QUICK ? "; QUICK sizes" : ""})`,
  );
  print();
  let failed: unknown;
  try {
    const platform = await Platform.create(path.join(root, "platform"));
    try {
      const identity = measuredIdentity({ mrenclave: randomBytes(32), mrsigner: randomBytes(32), isvProdId: 0, isvSvn: 1, debug: false }); // EINIT of a tiny module
      const ctx: ImageCtx = {
        root,
        platform,
        services: platform.servicesFor(identity),
        binding: { mrenclave: identity.mrenclave, mrsigner: identity.mrsigner, isvProdId: 0, isvSvn: 1, platformId: platform.platformId },
      };
      if (OPTS.sections.includes(1)) results["full"] = sectionFull(ctx);
      if (OPTS.sections.includes(2)) results["delta"] = sectionDelta(ctx);
      if (OPTS.sections.includes(3)) results["sql"] = sectionSql(root, platform);
    } finally {
      platform.close();
    }
    if (OPTS.sections.includes(4)) results["wake"] = await sectionWake(root);
  } catch (e) {
    failed = e;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  if (failed !== undefined) {
    process.stderr.write(`bench:snapshot: the run failed: ${(failed as Error)?.stack ?? String(failed)}\n`);
  }
  print(problems.length === 0 ? `Checks: every restore returned the bytes written, both delta methods found exactly the changed pages, every query its row, and the EPC stayed within budget.` : `CHECKS FAILED:\n  ${problems.slice(0, 20).join("\n  ")}`);
  print(`Total ${seconds.toFixed(0)} s.`);
  const json = {
    benchmark: "snapshot",
    date: new Date().toISOString(),
    node: process.version,
    machine: { platform: `${os.platform()} ${os.release()}`, arch: os.arch(), cpus: cpu.length, cpuModel: cpu[0]?.model ?? "?", memGiB: +(os.totalmem() / 2 ** 30).toFixed(1), loadavg: os.loadavg(), tmp: OPTS.tmp },
    opts: OPTS,
    constants: { zeroFraction: ZERO_FRACTION, changedFraction: CHANGED_FRACTION, targetMBs: TARGET_MBS, wakeP50Ms: WAKE_P50_MS, wakeP99Ms: WAKE_P99_MS, seed: SEED },
    seconds,
    ...results,
    failed: failed === undefined ? undefined : String((failed as Error)?.message ?? failed),
    problems,
    output: lines.join("\n"),
  };
  fs.mkdirSync(path.dirname(OPTS.out), { recursive: true });
  fs.writeFileSync(OPTS.out, `${JSON.stringify(json, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`);
  process.stdout.write(`JSON: ${path.relative(process.cwd(), OPTS.out) || OPTS.out}\n`);
  if (failed !== undefined || problems.length > 0) process.exit(1);
}

await main();
