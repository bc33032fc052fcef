/**
 * The enclave lifecycle: one checked module, one manifest, one runtime-owned memory at a time.
 *
 *   CREATED --start()--> RUNNING --fault()--> FAULTED --restart()--> RUNNING
 *                         |   ^
 *            suspend()    |   |  resume(image)        (EPC paging, snapshots: runtime/enclave/snapshot)
 *                         v   |
 *                       SUSPENDED --start()--> RUNNING (a fresh boot: the image is discarded)
 *      \__________________ any --close()--> CLOSED ____________________/
 *
 * Invariants:
 *  1. Ecalls run only in RUNNING (callers check `exports` through `requireRunning`).
 *  2. A trapped instance is never used again: fault() drops it and its memory; restart() builds a
 *     fresh instance and memory from the same checked module. Nothing of the old memory is trusted.
 *  3. Every growth asks the EPC meter first: growth through the selkie:sys.epc_grow ocall, and every
 *     memory.grow of a module loaded with loadEnclaveModule, whose instrumentation wraps each one in
 *     the selkie:sys.memory_grow_pre/_post hooks (a refused pre-hook makes the grow return -1 inside
 *     the enclave, and nothing is charged). A module with a memory.grow the hooks do not meter is
 *     refused here (ENCLAVE_UNMETERED_GROW): such a grow could take memory the meter refused.
 *     Each ocall first reconciles the meter with the memory's actual size: a charge whose grow
 *     failed is refunded when the meter takes refunds (else it stays charged until release), so
 *     the meter never counts less than is committed, and a guest calling the hooks on its own can
 *     at most use up its own cap. The memory's maximum is the manifest's EPC size less the tables.
 *  3b. Tables are charged at admission (CheckedModule.tableBytes: their maximum size, ABI §1.3) for
 *     the life of the instance, and count against the manifest's EPC: memory may grow only to
 *     floor((epc - tableBytes) / 64 KiB) pages.
 *  5. capture() reads memory and every mutable global only at a quiescent point: never while one of
 *     this enclave's ocalls is on the stack (SNAPSHOT_BUSY), and only for modules whose every mutable
 *     global is exported (stateGlobals; SNAPSHOT_UNSUPPORTED otherwise). suspend() then releases the
 *     instance, its memory and its EPC lease; resume() admits the image's whole memory size against
 *     the EPC first, instantiates the same module, writes memory and globals, and never runs
 *     _initialize again: the enclave continues exactly where it was captured.
 *  4. A permission the enclave lacks is answered with an error code inside the enclave, and the
 *     denial (naming the grant that would allow it) is recorded for the caller to surface.
 */
import { randomFillSync } from "node:crypto";
import { EnclaveLoadError, EnclaveStateError, SnapshotError } from "../errors.js";
import { NS_FS, NS_SYS, WASM_PAGE, type Permission } from "./abi.js";
import { checkManifestFits, type CheckedModule } from "./loader.js";
import { measureEnclaveModule } from "./einit.js";
import type { MeasuredEnclave } from "../platform/einit.js";
import type { Manifest } from "./manifest.js";
import { GuestMemory } from "./memory.js";

const SQLITE_OK = 0;
const SQLITE_PERM = 3;
const SQLITE_MISUSE = 21;
/** What memory_grow_pre returns to refuse: an impossible delta, so memory.grow yields -1. */
const GROW_REFUSED = -1;

/** What the EPC manager hands an admitted enclave (compatible with the platform's EpcLease). */
export interface EpcMeter {
  grow(deltaBytes: number): boolean;
  release(): void;
}

/** Admission: called with the committed size at start and the cap; throws EpcError to refuse. */
export type EpcAdmit = (initialBytes: number, maxBytes: number, label: string) => EpcMeter;

/** Without a platform, each enclave is metered only against its own manifest cap. */
const unmetered: EpcAdmit = () => ({ grow: () => true, release: () => {} });

/**
 * Released memories, wiped, by size and maximum, for the next instance of that shape. Allocating a
 * wasm memory costs a large address-space reservation, first-touch page faults and, in bulk, V8
 * garbage collections driven by external memory; EPC paging drops and creates one per
 * hibernate/wake. A memory is pooled only after its instance is unreachable from runtime code (the
 * enclave dropped its exports), and it is zeroed first, so nothing of one enclave reaches another.
 * Pooled memories are resident host memory that no EPC lease counts, so the pool is bounded in
 * total (POOL_TOTAL_BYTES), not only per shape: enclaves of ever new shapes cannot fill the host.
 */
const memoryPool = new Map<string, WebAssembly.Memory[]>();
const POOL_PER_SHAPE = 32;
const POOL_MAX_BYTES = 16 * 1024 * 1024;
const POOL_TOTAL_BYTES = 64 * 1024 * 1024;
let pooledBytes = 0;

function takeMemory(pages: number, maxPages: number): WebAssembly.Memory {
  const key = `${pages}/${maxPages}`;
  const list = memoryPool.get(key);
  const m = list?.pop();
  if (m) {
    pooledBytes -= m.buffer.byteLength;
    if (list!.length === 0) memoryPool.delete(key);
    return m;
  }
  return new WebAssembly.Memory({ initial: pages, maximum: maxPages });
}

function giveMemory(m: WebAssembly.Memory, maxPages: number): void {
  const bytes = m.buffer.byteLength;
  if (bytes > POOL_MAX_BYTES || pooledBytes + bytes > POOL_TOTAL_BYTES) return;
  const key = `${bytes / WASM_PAGE}/${maxPages}`;
  let list = memoryPool.get(key);
  if (!list) memoryPool.set(key, (list = []));
  if (list.length >= POOL_PER_SHAPE) return;
  new Uint8Array(m.buffer).fill(0);
  list.push(m);
  pooledBytes += bytes;
}

export type EnclaveState = "created" | "running" | "suspended" | "faulted" | "closed";

/** One mutable global's value in a snapshot (i64 as bigint). */
export interface GlobalValue {
  name: string;
  type: "i32" | "i64" | "f32" | "f64";
  value: number | bigint;
}

/** The wasm state of an enclave at a quiescent point. `memory` is a live view: seal or copy it before the next ecall. */
export interface CapturedState {
  memory: Uint8Array;
  globals: GlobalValue[];
}

export interface EnclaveOptions {
  module: CheckedModule;
  manifest: Manifest;
  /** Ocall namespaces served by trusted runtime code besides selkie:sys (e.g. selkie:fs). */
  services?: Record<string, Record<string, (...args: number[]) => number>>;
  /**
   * The module's SIGSTRUCT (sigstruct.ts, as parsed from JSON): verified here over the measurement,
   * it gives MRSIGNER and ISVPRODID (SIG_* errors if it does not verify). Absent: unsigned.
   */
  signature?: unknown;
  /** Operator grants; the effective set is the manifest's permissions that are also granted. */
  grants?: ReadonlySet<Permission>;
  epc?: EpcAdmit;
  /** Called with each new instance's memory (first start and every restart). */
  onInstance?: (memory: GuestMemory) => void;
  /** Diagnostic log lines from the guest (rate-limited by the enclave). */
  onLog?: (code: number, message: string) => void;
  /** The clock the guest reads (ms since the epoch; default Date.now), e.g. to end a statement early. */
  clock?: () => number;
}

export class Enclave {
  readonly manifest: Manifest;
  readonly module: CheckedModule;
  readonly mrenclave: Buffer;
  /** EINIT's proof (einit.ts): what Platform.servicesFor takes for this enclave. */
  readonly measured: MeasuredEnclave;
  readonly permissions: ReadonlySet<Permission>;
  #state: EnclaveState = "created";
  #exports: WebAssembly.Exports | undefined;
  #memory: GuestMemory | undefined;
  #meter: EpcMeter | undefined;
  #denied: string | undefined;
  #logBudget = 100;
  /** Ocalls of this enclave on the stack (invariant 5: no capture while > 0). */
  #depth = 0;
  faults = 0;
  peakBytes = 0;

  constructor(readonly opts: EnclaveOptions) {
    this.module = opts.module;
    this.manifest = opts.manifest;
    checkManifestFits(this.module, this.manifest);
    if (this.module.unmeteredGrows !== 0) {
      throw new EnclaveLoadError(
        "ENCLAVE_UNMETERED_GROW",
        this.module.unmeteredGrows === undefined
          ? `enclave "${this.manifest.name}" holds code this loader cannot decode, so its memory.grow instructions cannot be shown metered; load it with loadEnclaveModule`
          : `enclave "${this.manifest.name}" has ${this.module.unmeteredGrows} memory.grow instruction(s) the EPC meter does not see; load it with loadEnclaveModule, which routes every one through the meter (ABI §1.1)`,
      );
    }
    this.measured = measureEnclaveModule(this.module, this.manifest, opts.signature);
    this.mrenclave = this.measured.mrenclave;
    const granted = opts.grants ?? new Set(this.manifest.permissions);
    this.permissions = new Set(this.manifest.permissions.filter((p) => granted.has(p)));
  }

  get state(): EnclaveState {
    return this.#state;
  }

  get memory(): GuestMemory {
    return this.requireRunning(), this.#memory!;
  }

  get exports(): WebAssembly.Exports {
    this.requireRunning();
    return this.#exports!;
  }

  /** Bytes of linear memory committed now (0 when not running). */
  get committedBytes(): number {
    return this.#memory ? this.#memory.size : 0;
  }

  /** True while one of this enclave's metered ocalls is running (it is inside an ecall). */
  get busy(): boolean {
    return this.#depth > 0;
  }

  requireRunning(): void {
    if (this.#state !== "running") {
      throw new EnclaveStateError("ENCLAVE_NOT_RUNNING", `enclave "${this.manifest.name}" is ${this.#state}; ${this.#state === "closed" ? "open it again" : "restart it"} before calling into it`);
    }
  }

  /** The last permission denial since the previous call, naming the grant that would allow it. */
  takeDenial(): string | undefined {
    const d = this.#denied;
    this.#denied = undefined;
    return d;
  }

  start(): void {
    if (this.#state !== "created" && this.#state !== "faulted" && this.#state !== "suspended") {
      throw new EnclaveStateError("ENCLAVE_BAD_TRANSITION", `cannot start an enclave that is ${this.#state}`);
    }
    const failed = "faulted";
    const instance = this.#instantiate(this.module.minPages, failed);
    try {
      const init = instance.exports._initialize;
      if (typeof init === "function") init();
      this.peakBytes = Math.max(this.peakBytes, this.#memory!.size);
    } catch (e) {
      this.#drop();
      this.#state = failed;
      throw e;
    }
  }

  /** Admits `pages` of memory against the EPC, builds memory and instance; RUNNING on success. */
  #instantiate(pages: number, failed: EnclaveState): WebAssembly.Instance {
    const maxPages = this.#maxPages();
    const tables = this.module.tableBytes;
    if (pages > maxPages) {
      this.#state = failed;
      throw new SnapshotError("SNAPSHOT_UNSUPPORTED", `the image holds ${pages} pages of memory, more than enclave "${this.manifest.name}" may have (${maxPages}); restore it with the manifest it was taken with`);
    }
    let meter: EpcMeter;
    try {
      meter = (this.opts.epc ?? unmetered)(pages * WASM_PAGE + tables, maxPages * WASM_PAGE + tables, this.manifest.name);
    } catch (e) {
      this.#state = failed;
      throw e;
    }
    try {
      const memory = takeMemory(pages, maxPages);
      const mem = new GuestMemory(memory);
      const imports: WebAssembly.Imports = { [NS_SYS]: { memory, ...this.#sysOcalls(mem, meter, maxPages) } };
      for (const [ns, fns] of Object.entries(this.opts.services ?? {})) imports[ns] = fns;
      if (this.module.ocalls.some((o) => o.startsWith(`${NS_FS}.`)) && !imports[NS_FS]) {
        throw new EnclaveStateError("ENCLAVE_NO_STORAGE", `enclave "${this.manifest.name}" imports file ocalls but was launched without storage`);
      }
      this.opts.onInstance?.(mem);
      const instance = new WebAssembly.Instance(this.module.module, imports);
      this.#exports = instance.exports;
      this.#memory = mem;
      this.#meter = meter;
      this.#state = "running";
      return instance;
    } catch (e) {
      meter.release();
      this.#exports = undefined;
      this.#memory = undefined;
      this.#meter = undefined;
      this.#state = failed;
      throw e;
    }
  }

  /** The enclave's memory (a live view) and mutable globals at this quiescent point (invariant 5). */
  capture(): CapturedState {
    this.requireRunning();
    if (this.#depth > 0) throw new SnapshotError("SNAPSHOT_BUSY", `enclave "${this.manifest.name}" is inside an ecall; snapshot it when the call has returned`);
    const specs = this.module.stateGlobals;
    if (specs === undefined) {
      throw new SnapshotError("SNAPSHOT_UNSUPPORTED", `enclave "${this.manifest.name}" keeps state in globals it does not export; load it with loadEnclaveModule (which exports them) to snapshot it`);
    }
    const x = this.#exports!;
    const globals = specs.map(({ name, type }) => ({ name, type, value: (x[name] as WebAssembly.Global).value as number | bigint }));
    return { memory: this.#memory!.u8, globals };
  }

  /** Releases instance, memory and EPC lease after a capture; resume() continues from an image (invariant 5). */
  suspend(): void {
    if (this.#state !== "running") throw new EnclaveStateError("ENCLAVE_BAD_TRANSITION", `cannot suspend an enclave that is ${this.#state}`);
    if (this.#depth > 0) throw new SnapshotError("SNAPSHOT_BUSY", `enclave "${this.manifest.name}" is inside an ecall; suspend it when the call has returned`);
    this.#drop();
    this.#state = "suspended";
  }

  /**
   * Continues from an image: `load(alloc)` must call `alloc(memoryBytes)` once, fill the returned
   * view with the image's memory and return its globals. alloc admits the memory against the EPC
   * and instantiates the module (whose data segments it then overwrites). Works from CREATED (a
   * restore into a fresh enclave) and SUSPENDED. A failure before an instance exists (EPC refusal,
   * an image refused early) leaves the state as it was; a later one leaves it FAULTED (restart()
   * boots it fresh).
   */
  resume(load: (alloc: (memoryBytes: number) => Uint8Array) => { globals: readonly GlobalValue[] }): void {
    const prior = this.#state;
    if (prior !== "suspended" && prior !== "created") {
      throw new EnclaveStateError("ENCLAVE_BAD_TRANSITION", `cannot resume an enclave that is ${prior}`);
    }
    let instantiated = false;
    try {
      const { globals } = load((bytes) => {
        if (instantiated) throw new SnapshotError("SNAPSHOT_UNSUPPORTED", "an image loader asked for memory twice");
        if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % WASM_PAGE !== 0) {
          throw new SnapshotError("IMAGE_TAMPERED", `an image declares ${bytes} bytes of memory, not a whole number of 64 KiB pages`);
        }
        this.#instantiate(bytes / WASM_PAGE, prior); // an EPC refusal leaves the enclave as it was
        instantiated = true;
        return this.#memory!.u8;
      });
      if (!instantiated) throw new SnapshotError("IMAGE_TAMPERED", "the image holds no memory");
      this.#setGlobals(globals);
      this.peakBytes = Math.max(this.peakBytes, this.#memory!.size);
    } catch (e) {
      this.#drop();
      // Not admitted (or the image refused before any instance existed): nothing changed, the
      // image can be tried again. Once an instance was built from it, it is FAULTED.
      this.#state = instantiated ? "faulted" : prior;
      throw e;
    }
  }

  #setGlobals(values: readonly GlobalValue[]): void {
    const specs = this.module.stateGlobals;
    if (specs === undefined) throw new SnapshotError("SNAPSHOT_UNSUPPORTED", `enclave "${this.manifest.name}" cannot be restored: it does not export its mutable globals`);
    if (values.length !== specs.length) {
      throw new SnapshotError("IMAGE_WRONG_ENCLAVE", `the image holds ${values.length} globals, enclave "${this.manifest.name}" has ${specs.length}: it was taken of another module`);
    }
    const x = this.#exports!;
    specs.forEach((spec, i) => {
      const v = values[i]!;
      const ok = v.name === spec.name && v.type === spec.type && (spec.type === "i64" ? typeof v.value === "bigint" : typeof v.value === "number");
      if (!ok) throw new SnapshotError("IMAGE_WRONG_ENCLAVE", `global ${i} of the image (${v.name}: ${v.type}) does not match the module's (${spec.name}: ${spec.type})`);
      (x[spec.name] as WebAssembly.Global).value = v.value;
    });
  }

  /** Drops a trapped instance and its memory (invariant 2). */
  fault(): void {
    if (this.#state !== "running") return;
    this.faults++;
    this.#drop();
    this.#state = "faulted";
  }

  restart(): void {
    if (this.#state === "running") this.fault();
    this.start();
  }

  close(): void {
    if (this.#state === "closed") return;
    this.#drop();
    this.#state = "closed";
  }

  #drop(): void {
    this.#meter?.release();
    this.#meter = undefined;
    this.#exports = undefined;
    if (this.#memory) giveMemory(this.#memory.memory, this.#maxPages());
    this.#memory = undefined;
  }

  /** The memory's cap in pages: the manifest's EPC less what the tables take (invariant 3b), and the module's own maximum. */
  #maxPages(): number {
    return Math.min(Math.floor((this.manifest.epc - this.module.tableBytes) / WASM_PAGE), this.module.maxPages ?? Infinity);
  }

  #sysOcalls(mem: GuestMemory, meter: EpcMeter, maxPages: number): Record<string, (...a: number[]) => number | void> {
    // Bytes the meter has been charged for (admission charged the initial size).
    let accounted = mem.memory.buffer.byteLength;
    /** Brings the meter in line with the memory's real size (invariant 3). */
    const reconcile = (): void => {
      const actual = mem.memory.buffer.byteLength;
      this.peakBytes = Math.max(this.peakBytes, actual);
      if (actual > accounted) {
        // Growth that bypassed the hooks. Unreachable: the constructor refuses a module with a
        // memory.grow the hooks do not meter (invariant 3). Kept so that the meter never counts
        // less than is committed, whatever happens.
        meter.grow(actual - accounted);
        accounted = actual;
      } else if (actual < accounted) {
        // Charged but not grown (a failed grow, or a pre-hook called without a grow): give it back
        // when the meter takes refunds (a negative delta); otherwise it stays charged until release,
        // which over-counts but never lets the enclave pass its cap.
        try {
          if (meter.grow(actual - accounted)) accounted = actual;
        } catch {
          // this meter does not take refunds
        }
      }
    };
    return {
      epc_grow: (delta: number): number => {
        if (!Number.isInteger(delta) || delta < 0) return -1;
        reconcile();
        const old = mem.memory.buffer.byteLength / WASM_PAGE;
        if (delta === 0) return old;
        if (old + delta > maxPages || !this.#meterGrow(meter, delta * WASM_PAGE)) return -1;
        accounted += delta * WASM_PAGE;
        try {
          const prev = mem.memory.grow(delta);
          this.peakBytes = Math.max(this.peakBytes, (prev + delta) * WASM_PAGE);
          return prev;
        } catch {
          reconcile(); // give back what the meter granted
          return -1;
        }
      },
      // memory_grow_post(id, memory.grow(memory_grow_pre(id, delta))), ABI §2.1. The pre-hook returns
      // the delta to grow by, or GROW_REFUSED (-1 as i32 = 2^32-1 pages: the grow fails with -1).
      memory_grow_pre: (_site: number, delta: number): number => {
        reconcile();
        const pages = delta >>> 0;
        if (pages === 0) return 0;
        const cur = mem.memory.buffer.byteLength / WASM_PAGE;
        if (cur + pages > maxPages || !this.#meterGrow(meter, pages * WASM_PAGE)) return GROW_REFUSED;
        accounted += pages * WASM_PAGE;
        return pages;
      },
      memory_grow_post: (_site: number, result: number): number => {
        reconcile(); // settles a failed grow (refund) and records the new peak
        return result;
      },
      random: (ptr: number, len: number): number => {
        if (!this.#allowed("random")) return SQLITE_PERM;
        if (!mem.inBounds(ptr, len)) return SQLITE_MISUSE;
        randomFillSync(mem.u8, ptr, len);
        return SQLITE_OK;
      },
      clock_ms: (): number => (this.#allowed("clock") ? (this.opts.clock ?? Date.now)() : -1),
      log: (code: number, ptr: number, len: number): void => {
        if (this.#logBudget <= 0 || !this.opts.onLog) return;
        this.#logBudget--;
        if (mem.inBounds(ptr, len)) this.opts.onLog(code, mem.text(ptr, Math.min(len, 1024)));
      },
    };
  }

  /** The meter may evict other enclaves to make room (EPC paging); this one is busy meanwhile. */
  #meterGrow(meter: EpcMeter, bytes: number): boolean {
    this.#depth++;
    try {
      return meter.grow(bytes);
    } finally {
      this.#depth--;
    }
  }

  #allowed(p: Permission): boolean {
    if (this.permissions.has(p)) return true;
    this.#denied = this.manifest.permissions.includes(p)
      ? `permission "${p}" was not granted to enclave "${this.manifest.name}" (grant it with --allow-${p})`
      : `enclave "${this.manifest.name}" has no "${p}" permission (its signed manifest must request "${p}", and the operator grant it with --allow-${p})`;
    return false;
  }
}

