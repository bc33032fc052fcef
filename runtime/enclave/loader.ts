/**
 * Loads enclave modules: checks the bytes against the ABI before anything runs, measures them, and
 * compiles them once per module hash.
 *
 * Refused at load (EnclaveLoadError, code in parentheses):
 *  - bytes that are not a core wasm module (ENCLAVE_NOT_WASM) or fail validation (ENCLAVE_INVALID_MODULE);
 *  - any import outside the ocall table (ENCLAVE_FORBIDDEN_IMPORT, naming it), or with a wrong
 *    signature (ENCLAVE_BAD_IMPORT_TYPE);
 *  - a module that does not import its memory as selkie:sys.memory (ENCLAVE_NO_MEMORY_IMPORT), that
 *    exports a memory (ENCLAVE_EXPORTS_MEMORY), uses shared or 64-bit memory or imports more than
 *    one (ENCLAVE_BAD_MEMORY), defines a memory of its own in a memory section
 *    (ENCLAVE_DEFINES_MEMORY: the runtime could neither cap nor meter it),
 *    or has a start function that does more than initialize memory from constants (ENCLAVE_HAS_START:
 *    code would run before the runtime is ready; wasm-ld's bulk-memory .bss zeroing is allowed);
 *  - missing required ecalls (ENCLAVE_MISSING_EXPORT).
 *
 * Tables (ABI §1.3) are enclave memory the EPC must count: each defined table is charged
 * TABLE_ENTRY_BYTES per entry of its maximum, and a table that declares no maximum is pinned at its
 * minimum (pinTables: its table.grow then fails with -1 inside the enclave). `tableBytes` is that
 * charge; checkManifestFits refuses a module whose tables (with its initial memory) do not fit the
 * manifest's EPC (ENCLAVE_TABLE_TOO_LARGE). A memory.grow not metered by the grow hooks
 * (`unmeteredGrows`) is refused when an Enclave is built from the module (ENCLAVE_UNMETERED_GROW);
 * loadEnclaveModule's instrumentation meters every one.
 *
 * Two entry points: `checkModule` (synchronous) checks and compiles the bytes exactly as given;
 * `loadEnclaveModule` (async) first instruments them (instrument.ts: every mutable global exported,
 * every memory.grow metered), then checks the instrumented bytes with `checkModule`. Both measure
 * the ORIGINAL bytes: `CheckedModule.sha256` is the hash MRENCLAVE takes (ABI §5).
 */
import { EnclaveLoadError, ManifestError } from "../errors.js";
import { GROW_HOOKS, MEMORY_IMPORT, NS_SYS, OCALLS, WASM_PAGE } from "./abi.js";
import { formatBytes, type Manifest } from "./manifest.js";
import { instrumentModule, type InstrumentOptions } from "./instrument.js";
import { measureEnclave, sha256 } from "./measure.js";
import { parseGlobals, parseWasm, pinTables, scanGrows, startOnlyInitializesMemory, WasmParseError, type FuncType, type WasmExport, type WasmSummary } from "./wasm-sections.js";

/**
 * EPC charged per table entry. Measured on Node 20 (V8 11.3): a funcref table holds ~28 bytes per
 * entry once instantiated and ~43 per entry after growing by table.grow (the backing store grows
 * with slack); externref ~8. 48 covers the worst of these.
 */
export const TABLE_ENTRY_BYTES = 48;

export interface CheckedModule {
  readonly module: WebAssembly.Module;
  /** SHA-256 of the module as shipped: the hash MRENCLAVE measures (ABI §5). */
  readonly sha256: Buffer;
  /** Size of the module as shipped. */
  readonly byteLength: number;
  /** Memory the module needs at instantiation, in 64 KiB pages. */
  readonly minPages: number;
  /** The module's own memory maximum, if it declares one (pages). */
  readonly maxPages: number | undefined;
  /** EPC the module's tables take: TABLE_ENTRY_BYTES per entry of each table's maximum (ABI §1.3). */
  readonly tableBytes: number;
  /** memory.grow instructions not metered by the grow hooks (undefined: the code could not be decoded). */
  readonly unmeteredGrows: number | undefined;
  readonly exports: ReadonlySet<string>;
  /** The ocalls this module imports, as "ns.name". */
  readonly ocalls: readonly string[];
  /** Names of every exported global (mutable or not: `stateGlobals` lists exactly the mutable ones). */
  readonly mutableGlobalExports: readonly string[];
  /**
   * The enclave's wasm state besides memory: every mutable global the module defines, by export
   * name and type, in index order. Undefined when some mutable global is not exported (such a
   * module cannot be snapshotted: load it with loadEnclaveModule, which exports them all).
   */
  readonly stateGlobals: readonly StateGlobal[] | undefined;
  /**
   * Set by loadEnclaveModule: the export name of every mutable, non-imported global (what a
   * snapshot must save besides memory) and what instrumentation did to the bytes.
   */
  readonly instrumentation?: {
    readonly globals: readonly string[];
    readonly changed: boolean;
    /** SHA-256 and size of the bytes actually compiled. */
    readonly sha256: Buffer;
    readonly byteLength: number;
    readonly exportedGlobals: number;
    readonly growSites: number;
  };
}

export interface StateGlobal {
  readonly name: string;
  readonly type: "i32" | "i64" | "f32" | "f64";
}

const cache = new Map<string, CheckedModule>();

const sameSig = (a: FuncType, b: { params: readonly string[]; results: readonly string[] }): boolean =>
  a.params.length === b.params.length &&
  a.results.length === b.results.length &&
  a.params.every((p, i) => p === b.params[i]) &&
  a.results.every((r, i) => r === b.results[i]);

const sigText = (t: { params: readonly string[]; results: readonly string[] }): string =>
  `(${t.params.join(", ")}) -> (${t.results.join(", ")})`;

/** Checks module bytes against the enclave ABI and compiles them (cached by SHA-256). */
export function checkModule(bytes: Uint8Array, requiredExports: readonly string[] = []): CheckedModule {
  const hash = sha256(bytes);
  const key = hash.toString("hex");
  const hit = cache.get(key);
  if (hit) {
    requireExports(hit, requiredExports);
    return hit;
  }
  let summary;
  let startOk: boolean;
  let grows: { grows: number; unmetered: number } | undefined;
  let compiled: Uint8Array;
  try {
    summary = parseWasm(bytes);
    checkMemoryRules(summary);
    startOk = !summary.hasStart || startOnlyInitializesMemory(bytes, summary);
    // Any import of the pre-hook is the runtime's hook (a module may import it twice: its own
    // import, and the one instrumentation adds).
    const preHooks = new Set<number>();
    summary.imports.filter((i) => i.desc.kind === "function").forEach((i, index) => {
      if (i.module === NS_SYS && i.name === GROW_HOOKS.pre) preHooks.add(index);
    });
    grows = scanGrows(bytes, preHooks);
    compiled = pinTables(bytes);
  } catch (e) {
    if (e instanceof WasmParseError) {
      throw new EnclaveLoadError("ENCLAVE_NOT_WASM", `not a loadable enclave module: ${e.message}`);
    }
    throw e;
  }
  let memory: { min: number; max: number | undefined } | undefined;
  const ocalls: string[] = [];
  for (const imp of summary.imports) {
    const where = `${imp.module}.${imp.name}`;
    if (imp.desc.kind === "memory") {
      if (memory) throw new EnclaveLoadError("ENCLAVE_BAD_MEMORY", `the module imports a second memory ("${where}"); an enclave has exactly one memory, imported as ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}`);
      if (imp.module !== MEMORY_IMPORT.module || imp.name !== MEMORY_IMPORT.name) {
        throw new EnclaveLoadError("ENCLAVE_FORBIDDEN_IMPORT", `the module imports memory "${where}"; an enclave must import its memory as ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}`);
      }
      if (imp.desc.limits.shared || imp.desc.limits.memory64) {
        throw new EnclaveLoadError("ENCLAVE_BAD_MEMORY", "shared or 64-bit memories are not supported in enclaves");
      }
      memory = imp.desc.limits;
      continue;
    }
    const allowed = OCALLS[imp.module]?.[imp.name];
    if (!allowed || imp.desc.kind !== "function") {
      throw new EnclaveLoadError(
        "ENCLAVE_FORBIDDEN_IMPORT",
        `the module imports "${where}" (${imp.desc.kind}), which is not a Selkie ocall; enclaves may import only the functions listed in enclaves/ABI.md §2 (namespaces ${Object.keys(OCALLS).join(", ")})`,
      );
    }
    if (!sameSig(imp.desc.type, allowed)) {
      throw new EnclaveLoadError("ENCLAVE_BAD_IMPORT_TYPE", `the module imports "${where}" as ${sigText(imp.desc.type)}, but the ABI defines it as ${sigText(allowed)}`);
    }
    ocalls.push(where);
  }
  if (!memory) {
    throw new EnclaveLoadError("ENCLAVE_NO_MEMORY_IMPORT", `the module does not import ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}; enclave memory must be owned by the runtime (link with --import-memory)`);
  }
  if (summary.exports.some((e) => e.kind === "memory")) {
    throw new EnclaveLoadError("ENCLAVE_EXPORTS_MEMORY", "the module exports a memory; enclave memory must be imported, not exported");
  }
  if (!startOk) {
    throw new EnclaveLoadError(
      "ENCLAVE_HAS_START",
      "the module has a start function that does more than initialize memory (only i32.const, memory.fill, memory.init and data.drop may run at instantiation); enclaves are reactors: move that code to _initialize",
    );
  }
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(compiled as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new EnclaveLoadError("ENCLAVE_INVALID_MODULE", `the module is not valid WebAssembly: ${(e as Error).message}`);
  }
  const globals = WebAssembly.Module.exports(module).filter((e) => e.kind === "global").map((e) => e.name);
  const stateGlobals = findStateGlobals(bytes, summary.exports);
  const checked: CheckedModule = {
    module,
    sha256: hash,
    byteLength: bytes.byteLength,
    minPages: memory.min,
    maxPages: memory.max,
    tableBytes: summary.tables.reduce((n, t) => n + (t.limits.max ?? t.limits.min) * TABLE_ENTRY_BYTES, 0),
    unmeteredGrows: grows?.unmetered,
    exports: new Set(summary.exports.map((e) => e.name)),
    ocalls,
    mutableGlobalExports: globals,
    stateGlobals,
  };
  requireExports(checked, requiredExports);
  cache.set(key, checked);
  return checked;
}

export interface LoadOptions extends InstrumentOptions {
  /** Ecalls the module must export (ENCLAVE_MISSING_EXPORT otherwise). */
  requiredExports?: readonly string[];
}

const loaded = new WeakMap<CheckedModule, CheckedModule>();

/**
 * Instruments a module (instrument.ts), then checks and compiles the result with checkModule.
 * The returned module is measured over the original bytes; its `instrumentation` names the
 * globals a snapshot must save. Cached by module hash (memory, and `cacheDir` on disk).
 */
export async function loadEnclaveModule(bytes: Uint8Array, opts: LoadOptions = {}): Promise<CheckedModule> {
  const { requiredExports = [], ...instrumentOpts } = opts;
  // The memory rules first: the instrumenter must not be the one to refuse a second memory.
  try {
    checkMemoryRules(parseWasm(bytes));
  } catch (e) {
    if (e instanceof WasmParseError) throw new EnclaveLoadError("ENCLAVE_NOT_WASM", `not a loadable enclave module: ${e.message}`);
    throw e;
  }
  const inst = await instrumentModule(bytes, instrumentOpts);
  const checked = checkModule(inst.bytes, requiredExports);
  const hit = loaded.get(checked);
  if (hit && hit.sha256.equals(inst.sourceSha256)) return hit;
  const out: CheckedModule = {
    ...checked,
    sha256: inst.sourceSha256,
    byteLength: bytes.byteLength,
    instrumentation: {
      globals: inst.globals,
      changed: inst.changed,
      sha256: inst.sha256,
      byteLength: inst.bytes.byteLength,
      exportedGlobals: inst.exportedGlobals,
      growSites: inst.growSites,
    },
  };
  loaded.set(checked, out);
  return out;
}

/** Every defined mutable global with the name it is exported under; undefined if one is not exported. */
function findStateGlobals(bytes: Uint8Array, exports: readonly WasmExport[]): StateGlobal[] | undefined {
  const names = new Map<number, string>();
  for (const e of exports) if (e.kind === "global" && !names.has(e.index)) names.set(e.index, e.name);
  const out: StateGlobal[] = [];
  for (const g of parseGlobals(bytes)) {
    if (g.imported || !g.mutable) continue;
    const name = names.get(g.index);
    if (name === undefined) return undefined;
    if (g.type !== "i32" && g.type !== "i64" && g.type !== "f32" && g.type !== "f64") return undefined;
    out.push({ name, type: g.type });
  }
  return out;
}

function requireExports(m: CheckedModule, names: readonly string[]): void {
  const missing = names.filter((n) => !m.exports.has(n));
  if (missing.length > 0) {
    throw new EnclaveLoadError("ENCLAVE_MISSING_EXPORT", `the module lacks required ecall export(s): ${missing.join(", ")}`);
  }
}

/**
 * The memory rules of the ABI that need no compilation: no memory section (a module-defined memory
 * is one the runtime neither owns, caps nor meters; Node versions with multi-memory would run it).
 */
function checkMemoryRules(summary: WasmSummary): void {
  if (summary.memories.length > 0) {
    throw new EnclaveLoadError(
      "ENCLAVE_DEFINES_MEMORY",
      `the module defines ${summary.memories.length} memor${summary.memories.length === 1 ? "y" : "ies"} of its own (a memory section); an enclave's only memory is the one it imports as ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}, which the runtime caps and meters (link with --import-memory)`,
    );
  }
}

/** Checks that a manifest fits its module: EPC at least what the module declares it needs (memory and tables). */
export function checkManifestFits(m: CheckedModule, manifest: Manifest): void {
  const need = m.minPages * WASM_PAGE;
  if (manifest.epc < need) {
    throw new ManifestError(
      "MANIFEST_EPC_TOO_SMALL",
      `manifest "${manifest.name}" declares epc ${formatBytes(manifest.epc)}, but its module needs ${formatBytes(need)} at start; raise epc to at least ${formatBytes(need)}`,
    );
  }
  if (m.tableBytes > 0 && m.tableBytes + m.minPages * WASM_PAGE > manifest.epc) {
    throw new EnclaveLoadError(
      "ENCLAVE_TABLE_TOO_LARGE",
      `the module's tables take ${formatBytes(m.tableBytes)} of EPC (${TABLE_ENTRY_BYTES} bytes per entry of each table's maximum, or of its minimum when it declares none), which with its ${formatBytes(m.minPages * WASM_PAGE)} of initial memory exceeds manifest "${manifest.name}"'s epc ${formatBytes(manifest.epc)}; declare smaller tables, or raise epc`,
    );
  }
}

export function measure(m: CheckedModule, manifest: Manifest): Buffer {
  return measureEnclave(m.sha256, manifest);
}
