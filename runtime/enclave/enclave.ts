/**
 * The enclave lifecycle: one checked module, one manifest, one runtime-owned memory at a time.
 *
 *   CREATED --start()--> RUNNING --fault()--> FAULTED --restart()--> RUNNING
 *      \__________________ any --close()--> CLOSED ____________________/
 *
 * Invariants:
 *  1. Ecalls run only in RUNNING (callers check `exports` through `requireRunning`).
 *  2. A trapped instance is never used again: fault() drops it and its memory; restart() builds a
 *     fresh instance and memory from the same checked module. Nothing of the old memory is trusted.
 *  3. Every growth asks the EPC meter first: growth through the selkie:sys.epc_grow ocall, and every
 *     memory.grow of a module loaded with loadEnclaveModule, whose instrumentation wraps each one in
 *     the selkie:sys.memory_grow_pre/_post hooks (a refused pre-hook makes the grow return -1).
 *     Each ocall first reconciles the meter with the memory's actual size: a charge whose grow
 *     failed is refunded when the meter takes refunds (else it stays charged until release), so
 *     the meter never counts less than is committed, and a guest calling the hooks on its own can
 *     at most use up its own cap. The memory's maximum is the manifest's EPC size, so even an
 *     uninstrumented module (checkModule alone) that runs memory.grow itself cannot pass the cap;
 *     its unhooked growth is charged (after the fact) at its next ocall.
 *  4. A permission the enclave lacks is answered with an error code inside the enclave, and the
 *     denial (naming the grant that would allow it) is recorded for the caller to surface.
 */
import { randomFillSync } from "node:crypto";
import { EnclaveStateError } from "../errors.js";
import { NS_FS, NS_SYS, WASM_PAGE, type Permission } from "./abi.js";
import { checkManifestFits, measure, type CheckedModule } from "./loader.js";
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

export type EnclaveState = "created" | "running" | "faulted" | "closed";

export interface EnclaveOptions {
  module: CheckedModule;
  manifest: Manifest;
  /** Ocall namespaces served by trusted runtime code besides selkie:sys (e.g. selkie:fs). */
  services?: Record<string, Record<string, (...args: number[]) => number>>;
  /** MRSIGNER from a verified SIGSTRUCT (sigstruct.ts); absent for unsigned enclaves. */
  mrsigner?: Buffer;
  /** Operator grants; the effective set is the manifest's permissions that are also granted. */
  grants?: ReadonlySet<Permission>;
  epc?: EpcAdmit;
  /** Called with each new instance's memory (first start and every restart). */
  onInstance?: (memory: GuestMemory) => void;
  /** Diagnostic log lines from the guest (rate-limited by the enclave). */
  onLog?: (code: number, message: string) => void;
}

export class Enclave {
  readonly manifest: Manifest;
  readonly module: CheckedModule;
  readonly mrenclave: Buffer;
  readonly permissions: ReadonlySet<Permission>;
  #state: EnclaveState = "created";
  #exports: WebAssembly.Exports | undefined;
  #memory: GuestMemory | undefined;
  #meter: EpcMeter | undefined;
  #denied: string | undefined;
  #logBudget = 100;
  faults = 0;
  peakBytes = 0;

  constructor(readonly opts: EnclaveOptions) {
    this.module = opts.module;
    this.manifest = opts.manifest;
    checkManifestFits(this.module, this.manifest);
    this.mrenclave = measure(this.module, this.manifest);
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
    if (this.#state !== "created" && this.#state !== "faulted") {
      throw new EnclaveStateError("ENCLAVE_BAD_TRANSITION", `cannot start an enclave that is ${this.#state}`);
    }
    const initial = this.module.minPages * WASM_PAGE;
    const maxPages = Math.min(this.manifest.epc / WASM_PAGE, this.module.maxPages ?? Infinity);
    const meter = (this.opts.epc ?? unmetered)(initial, maxPages * WASM_PAGE, this.manifest.name);
    try {
      const memory = new WebAssembly.Memory({ initial: this.module.minPages, maximum: maxPages });
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
      const init = instance.exports._initialize;
      if (typeof init === "function") init();
      this.peakBytes = Math.max(this.peakBytes, mem.size);
    } catch (e) {
      meter.release();
      this.#exports = undefined;
      this.#memory = undefined;
      this.#meter = undefined;
      this.#state = "faulted";
      throw e;
    }
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
    this.#memory = undefined;
  }

  #sysOcalls(mem: GuestMemory, meter: EpcMeter, maxPages: number): Record<string, (...a: number[]) => number | void> {
    // Bytes the meter has been charged for (admission charged the initial size).
    let accounted = mem.memory.buffer.byteLength;
    /** Brings the meter in line with the memory's real size (invariant 3). */
    const reconcile = (): void => {
      const actual = mem.memory.buffer.byteLength;
      this.peakBytes = Math.max(this.peakBytes, actual);
      if (actual > accounted) {
        // Growth that bypassed the hooks (an uninstrumented module): record it; it cannot be refused now.
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
        if (old + delta > maxPages || !meter.grow(delta * WASM_PAGE)) return -1;
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
        if (cur + pages > maxPages || !meter.grow(pages * WASM_PAGE)) return GROW_REFUSED;
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
      clock_ms: (): number => (this.#allowed("clock") ? Date.now() : -1),
      log: (code: number, ptr: number, len: number): void => {
        if (this.#logBudget <= 0 || !this.opts.onLog) return;
        this.#logBudget--;
        if (mem.inBounds(ptr, len)) this.opts.onLog(code, mem.text(ptr, Math.min(len, 1024)));
      },
    };
  }

  #allowed(p: Permission): boolean {
    if (this.permissions.has(p)) return true;
    this.#denied = this.manifest.permissions.includes(p)
      ? `permission "${p}" was not granted to enclave "${this.manifest.name}" (grant it with --allow-${p})`
      : `enclave "${this.manifest.name}" has no "${p}" permission (its signed manifest must request "${p}", and the operator grant it with --allow-${p})`;
    return false;
  }
}

