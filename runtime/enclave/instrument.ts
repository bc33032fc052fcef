/**
 * Load-time instrumentation of enclave modules (enclaves/ABI.md §1.1), so that any toolchain's
 * module can be snapshotted and metered, not only our SQLite build:
 *
 *  (a) every mutable, non-imported global is exported, under the name it is already exported as,
 *      or else `__selkie_global_<index>` (its index in the global index space): memory plus these
 *      globals is then the enclave's whole wasm state, readable and writable by a snapshot;
 *  (b) every `memory.grow` instruction is wrapped by binaryen's `instrument-memory` pass (pass
 *      argument `memory.grow`) as `memory_grow_post(id, memory.grow(memory_grow_pre(id, delta)))`,
 *      the hooks imported as `selkie:sys.memory_grow_pre` / `memory_grow_post`: the runtime's EPC
 *      meter sees each growth before it happens and can refuse it (the pre-hook then returns an
 *      impossible delta and the instruction yields -1, as for any failed grow).
 *
 * Measure-neutral: MRENCLAVE is computed over the ORIGINAL bytes (ABI §5). The instrumentation is
 * a deterministic function of those bytes and of INSTRUMENT_VERSION, performed by the trusted
 * runtime; the instrumented bytes are never measured, shipped or trusted from elsewhere.
 *
 * Cost: binaryen (12 MB of JS, about 1 s to load) is imported only when a module needs changing.
 * A first pass in plain JS (wasm-sections.ts) finds the mutable globals, their exports and the
 * memory.grow instructions; a module that already exports every mutable global and has no
 * memory.grow (the SQLite build, which grows through selkie:sys.epc_grow) is returned unchanged
 * without loading binaryen. Results are cached by the module's SHA-256: in memory for the process,
 * and on disk under `cacheDir` as `<sha256>.wasm`, written atomically (temp file, fsync, rename).
 * A cache file carries a trailing custom section `selkie.instrument` recording the instrumenter
 * version, the source hash and the SHA-256 of the instrumented bytes; a file whose record does not
 * match is ignored and rebuilt. The cache directory is as trusted as the runtime's own files.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { EnclaveLoadError } from "../errors.js";
import { GROW_HOOKS, NS_SYS } from "./abi.js";
import { countMemoryGrow, listSections, parseGlobals, parseWasm, WasmParseError } from "./wasm-sections.js";

/** Bump when the output for the same input changes (invalidates every disk cache entry). */
export const INSTRUMENT_VERSION = 1;
export const GLOBAL_EXPORT_PREFIX = "__selkie_global_";
const TRAILER = "selkie.instrument";

export interface InstrumentResult {
  /** The module to compile: the original bytes when nothing had to change. */
  readonly bytes: Uint8Array;
  /** The export name of every mutable, non-imported global, in global index order. */
  readonly globals: readonly string[];
  /** SHA-256 of the original bytes (the input to MRENCLAVE). */
  readonly sourceSha256: Buffer;
  /** SHA-256 of `bytes`. */
  readonly sha256: Buffer;
  /** False when `bytes` are the original bytes. */
  readonly changed: boolean;
  /** Globals this instrumentation exported (those the module did not export itself). */
  readonly exportedGlobals: number;
  /** memory.grow instructions now routed through the EPC hooks. */
  readonly growSites: number;
  /** Where this result came from. */
  readonly from: "memory" | "disk" | "scan" | "binaryen";
  /** Time this call took, ms. */
  readonly ms: number;
  /** Set when the disk cache could not be written (the result is still good). */
  readonly cacheError?: string;
}

export interface InstrumentOptions {
  /** Folder for the disk cache (e.g. `<platform dir>/module-cache`); created when missing. */
  cacheDir?: string;
}

/** Features of Node 20's V8 (11.3). binaryen's Features.All produces modules Node 20 rejects. */
type Binaryen = typeof import("binaryen").default;
const node20Features = (b: Binaryen): number =>
  b.Features.MutableGlobals | b.Features.BulkMemory | b.Features.BulkMemoryOpt | b.Features.SignExt |
  b.Features.NontrappingFPToInt | b.Features.ReferenceTypes | b.Features.Multivalue | b.Features.SIMD128 |
  b.Features.ExtendedConst | b.Features.CallIndirectOverlong;

/** Imports the instrument-memory pass always adds; all but the grow hooks are unused with our argument. */
const PASS_IMPORTS = [
  "load_ptr", "load_val_i32", "load_val_i64", "load_val_f32", "load_val_f64",
  "store_ptr", "store_val_i32", "store_val_i64", "store_val_f32", "store_val_f64",
];

const memo = new Map<string, Promise<InstrumentResult>>();
let binaryenPromise: Promise<Binaryen> | undefined;

const sha256 = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

/**
 * Instruments an enclave module (see the file comment). Throws EnclaveLoadError for bytes that
 * are not a module, or a module that claims a reserved export name for something else.
 */
export async function instrumentModule(bytes: Uint8Array, opts: InstrumentOptions = {}): Promise<InstrumentResult> {
  const t0 = performance.now();
  const source = sha256(bytes);
  const key = source.toString("hex");
  const hit = memo.get(key);
  if (hit) {
    const r = await hit;
    return { ...r, from: "memory", ms: performance.now() - t0 };
  }
  const p = instrumentUncached(bytes, source, opts, t0);
  memo.set(key, p);
  try {
    return await p;
  } catch (e) {
    memo.delete(key);
    throw e;
  }
}

/** Forgets the in-memory cache (tests measure the cold and disk paths with it). */
export function clearInstrumentCache(): void {
  memo.clear();
}

interface Plan {
  /** Per mutable defined global: its index and existing export name, if any. */
  globals: { index: number; exported: string | undefined }[];
  /** memory.grow count, or undefined when the decoder met an instruction it does not know. */
  grows: number | undefined;
}

function plan(bytes: Uint8Array): Plan {
  try {
    const summary = parseWasm(bytes);
    const names = new Map<number, string>();
    const taken = new Map<string, string>();
    for (const e of summary.exports) {
      taken.set(e.name, `${e.kind} ${e.index}`);
      if (e.kind === "global" && !names.has(e.index)) names.set(e.index, e.name);
    }
    const globals = parseGlobals(bytes)
      .filter((g) => g.mutable && !g.imported)
      .map((g) => ({ index: g.index, exported: names.get(g.index) }));
    for (const g of globals) {
      const name = GLOBAL_EXPORT_PREFIX + g.index;
      const owner = taken.get(name);
      if (g.exported === undefined && owner !== undefined) {
        throw new EnclaveLoadError("ENCLAVE_RESERVED_EXPORT", `the module exports "${name}" (${owner}); names starting with ${GLOBAL_EXPORT_PREFIX} are reserved for the runtime's global exports`);
      }
    }
    return { globals, grows: countMemoryGrow(bytes) };
  } catch (e) {
    if (e instanceof WasmParseError) throw new EnclaveLoadError("ENCLAVE_NOT_WASM", `not a loadable enclave module: ${e.message}`);
    throw e;
  }
}

const globalNames = (p: Plan): string[] => p.globals.map((g) => g.exported ?? GLOBAL_EXPORT_PREFIX + g.index);

async function instrumentUncached(bytes: Uint8Array, source: Buffer, opts: InstrumentOptions, t0: number): Promise<InstrumentResult> {
  const pl = plan(bytes);
  const toExport = pl.globals.filter((g) => g.exported === undefined);
  if (toExport.length === 0 && pl.grows === 0) {
    return { bytes, globals: globalNames(pl), sourceSha256: source, sha256: source, changed: false, exportedGlobals: 0, growSites: 0, from: "scan", ms: performance.now() - t0 };
  }
  const file = opts.cacheDir ? path.join(opts.cacheDir, `${source.toString("hex")}.wasm`) : undefined;
  if (file) {
    const cached = readCache(file, source);
    if (cached) return { ...cached, globals: globalNames(pl), sourceSha256: source, changed: true, from: "disk", ms: performance.now() - t0 };
  }
  // Only valid modules go to binaryen (an invalid one would be refused at compile anyway, and
  // binaryen's own reader is not a validator).
  if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
    let why = "";
    try {
      new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      why = `: ${(e as Error).message}`;
    }
    throw new EnclaveLoadError("ENCLAVE_INVALID_MODULE", `the module is not valid WebAssembly${why}`);
  }
  const out = await runBinaryen(bytes, pl, toExport);
  const sha = sha256(out.bytes);
  const base = {
    bytes: out.bytes,
    globals: globalNames(pl),
    sourceSha256: source,
    sha256: sha,
    changed: true,
    exportedGlobals: toExport.length,
    growSites: out.growSites,
  };
  let cacheError: string | undefined;
  if (file) {
    try {
      writeCache(file, out.bytes, { v: INSTRUMENT_VERSION, source: source.toString("hex"), sha256: sha.toString("hex"), exportedGlobals: toExport.length, growSites: out.growSites });
    } catch (e) {
      cacheError = `cannot write ${file}: ${(e as Error).message}`;
    }
  }
  return { ...base, from: "binaryen", ms: performance.now() - t0, ...(cacheError ? { cacheError } : {}) };
}

async function runBinaryen(bytes: Uint8Array, pl: Plan, toExport: Plan["globals"]): Promise<{ bytes: Uint8Array; growSites: number }> {
  binaryenPromise ??= import("binaryen").then((m) => m.default);
  const b = await binaryenPromise;
  let m: ReturnType<Binaryen["readBinary"]>;
  try {
    m = b.readBinary(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String((e as { message?: unknown })?.message ?? e);
    throw new EnclaveLoadError("ENCLAVE_INSTRUMENT_FAILED", `binaryen cannot read the module: ${why}`);
  }
  try {
    m.setFeatures(node20Features(b));
    // (a) exports. binaryen keeps the binary's global order (imported first), so its index i is
    // the module's global index i; checked against the plain-JS parse rather than assumed.
    const want = new Set(toExport.map((g) => g.index));
    const mutableDefined = new Set(pl.globals.map((g) => g.index));
    for (let i = 0; i < m.getNumGlobals(); i++) {
      const info = b.getGlobalInfo(m.getGlobalByIndex(i));
      const defined = !info.module;
      if ((info.mutable && defined) !== mutableDefined.has(i)) {
        throw new EnclaveLoadError("ENCLAVE_INSTRUMENT_FAILED", `binaryen and the loader disagree about global ${i} (${info.name}); refusing to instrument`);
      }
      if (want.has(i)) m.addGlobalExport(info.name, GLOBAL_EXPORT_PREFIX + i);
    }
    // (b) growth hooks: only when there is (or may be) a memory.grow to wrap.
    let growSites = 0;
    if (pl.grows !== 0) {
      b.setPassArgument("instrument-memory", "memory.grow");
      try {
        m.runPasses(["instrument-memory"]);
      } finally {
        b.setPassArgument("instrument-memory", null);
      }
      for (const name of PASS_IMPORTS) {
        const f = m.getFunction(name);
        if (f && b.getFunctionInfo(f).module === "env") m.removeFunction(name);
      }
      for (const hook of [GROW_HOOKS.pre, GROW_HOOKS.post]) {
        const f = m.getFunction(hook);
        const info = f ? b.getFunctionInfo(f) : undefined;
        if (!info || info.module !== "env") {
          throw new EnclaveLoadError("ENCLAVE_INSTRUMENT_FAILED", `binaryen's instrument-memory pass did not import env.${hook}; refusing to load an unmetered module`);
        }
        // On an existing function, addFunctionImport only renames its import.
        m.addFunctionImport(hook, NS_SYS, hook, info.params, info.results);
      }
    }
    if (!m.validate()) throw new EnclaveLoadError("ENCLAVE_INSTRUMENT_FAILED", "the instrumented module does not validate");
    const out = m.emitBinary();
    if (pl.grows !== 0) growSites = countMemoryGrow(out) ?? pl.grows ?? 0;
    return { bytes: out, growSites };
  } finally {
    m.dispose();
  }
}

// ---- disk cache ------------------------------------------------------------------------------

interface Record_ {
  v: number;
  source: string;
  sha256: string;
  exportedGlobals: number;
  growSites: number;
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

/** Appends a custom section (name + JSON payload) to a module. */
function withTrailer(bytes: Uint8Array, rec: Record_): Buffer {
  const name = Buffer.from(TRAILER, "utf8");
  const payload = Buffer.from(JSON.stringify(rec), "utf8");
  const contents = Buffer.concat([Buffer.from(leb(name.length)), name, payload]);
  return Buffer.concat([bytes, Buffer.from([0, ...leb(contents.length)]), contents]);
}

function readCache(file: string, source: Buffer): { bytes: Uint8Array; sha256: Buffer; exportedGlobals: number; growSites: number } | undefined {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  try {
    const last = listSections(data).at(-1);
    if (!last || last.id !== 0 || last.name !== TRAILER) return undefined;
    const rec = JSON.parse(data.subarray(last.contentStart, last.end).toString("utf8")) as Partial<Record_>;
    const body = data.subarray(0, last.start);
    const sha = sha256(body);
    if (rec.v !== INSTRUMENT_VERSION || rec.source !== source.toString("hex") || rec.sha256 !== sha.toString("hex")) return undefined;
    if (!Number.isInteger(rec.exportedGlobals) || !Number.isInteger(rec.growSites)) return undefined;
    return { bytes: new Uint8Array(body), sha256: sha, exportedGlobals: rec.exportedGlobals!, growSites: rec.growSites! };
  } catch {
    return undefined; // unreadable entry: rebuilt and overwritten
  }
}

function writeCache(file: string, bytes: Uint8Array, rec: Record_): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      fs.writeFileSync(fd, withTrailer(bytes, rec));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dir = fs.openSync(path.dirname(file), "r");
    try {
      fs.fsyncSync(dir); // make the rename durable
    } finally {
      fs.closeSync(dir);
    }
  } catch {
    // a directory that cannot be fsynced: the entry is still complete or absent, never partial
  }
}
