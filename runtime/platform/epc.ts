/**
 * EPC budget manager: admission control and metered growth of enclaves' committed memory.
 *
 * Invariants:
 * 1. Sum of committed bytes over live leases <= budget, always (over every manager sharing the
 *    ledger: its tryAdd is one atomic check-and-add). Every change happens inside one
 *    synchronous call (admit, grow, release), so async interleavings of launches cannot overshoot.
 * 2. A lease's committed bytes <= its max. A growth past the lease max or the budget returns false
 *    (the enclave sees out-of-memory); it never throws and never over-commits.
 * 3. When short, admit/grow first ask the evictor (the plug point for EPC paging) to free memory, then
 *    re-check the actual committed total (the evictor's return value is informational only).
 * 4. An admission refusal (EPC_ADMISSION_REFUSED) says how much is free and who uses the EPC.
 *
 * State of a lease: live --release()--> released (idempotent; frees its bytes; grow then throws).
 */
import { EpcError } from "./errors.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** 93.5 MiB: the usable EPC of SGX1. */
export const DEFAULT_EPC_BYTES = 98_041_856;
export const MIN_EPC_BYTES = 1 * MiB;
/** Upper bound (SGX2-class server EPC sizes). */
export const MAX_EPC_BYTES = 512 * GiB;
export const EPC_PAGE = 4096;

export interface EpcLease {
  readonly id: string;
  readonly label: string;
  readonly committed: number;
  readonly peak: number;
  readonly max: number;
  readonly released: boolean;
  /** Commits `deltaBytes` more. False if over the lease max or the budget (after asking the evictor). */
  grow(deltaBytes: number): boolean;
  /** Returns the lease's bytes to the budget. Idempotent. */
  release(): void;
}

export interface EpcUsage {
  budget: number;
  committed: number;
  peak: number;
  free: number;
  enclaves: Array<{ id: string; label: string; committed: number; peak: number; max: number }>;
}

export interface EpcStats {
  admissions: number;
  admissionRefusals: number;
  grows: number;
  growRefusals: number;
  bytesGrown: number;
  evictionRequests: number;
  bytesEvicted: number;
}

/** Frees at least `needBytes` if it can (e.g. by hibernating idle enclaves); returns bytes freed. */
export type EpcEvictor = (needBytes: number) => number;

const UNITS: Record<string, number> = { "": 1, b: 1, k: KiB, kb: KiB, kib: KiB, m: MiB, mb: MiB, mib: MiB, g: GiB, gb: GiB, gib: GiB };

/** Parses a size: bytes as an integer, or a number with unit KiB/MiB/GiB (K/M/G, KB/MB/GB = binary). */
export function parseSize(v: string | number): number {
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 0) throw new EpcError("EPC_BAD_SIZE", `size must be a non-negative integer number of bytes, got ${v}`);
    return v;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(v));
  const unit = m ? UNITS[(m[2] ?? "").toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new EpcError("EPC_BAD_SIZE", `cannot parse size ${JSON.stringify(v)} (examples: 98041856, 93.5MiB, 256MiB, 8GiB)`);
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new EpcError("EPC_BAD_SIZE", `size ${JSON.stringify(v)} is not a whole number of bytes`);
  return n;
}

/** Validates an EPC budget: 1 MiB..512 GiB, a multiple of 4 KiB. */
export function checkEpcBudget(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < MIN_EPC_BYTES || bytes > MAX_EPC_BYTES || bytes % EPC_PAGE !== 0) {
    throw new EpcError("EPC_BAD_SIZE", `EPC size must be a multiple of 4 KiB between 1 MiB and 512 GiB, got ${String(bytes)} bytes`);
  }
  return bytes;
}

export function formatBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

function checkBytes(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new EpcError("EPC_BAD_REQUEST", `${what} must be a non-negative integer number of bytes, got ${String(v)}`);
}

interface LeaseState {
  committed: number;
  peak: number;
  released: boolean;
}

interface LeaseOps {
  grow(lease: Lease, state: LeaseState, delta: number): boolean;
  release(lease: Lease, state: LeaseState): void;
}

/** Its numbers are read-only from outside: state lives in a #private field only the manager updates. */
class Lease implements EpcLease {
  readonly #s: LeaseState;
  readonly #ops: LeaseOps;
  constructor(ops: LeaseOps, state: LeaseState, readonly id: string, readonly label: string, readonly max: number) {
    this.#ops = ops;
    this.#s = state;
  }
  get committed(): number {
    return this.#s.committed;
  }
  get peak(): number {
    return this.#s.peak;
  }
  get released(): boolean {
    return this.#s.released;
  }
  grow(deltaBytes: number): boolean {
    return this.#ops.grow(this, this.#s, deltaBytes);
  }
  release(): void {
    this.#ops.release(this, this.#s);
  }
}

/**
 * Where the committed total of an EPC budget is kept. The managers of several threads sharing one
 * budget (runtime/host/server/shared-epc.ts) keep it in one SharedArrayBuffer, so admission is
 * checked against every thread's enclaves.
 */
export interface EpcLedger {
  /** Bytes committed by every manager on this ledger. */
  readonly committed: number;
  /** Adds `n` bytes if the total stays within `budget`; false (nothing added) otherwise. */
  tryAdd(n: number, budget: number): boolean;
  sub(n: number): void;
}

/**
 * The ledger every EpcManager uses unless given another: the committed total in a
 * SharedArrayBuffer, so worker threads can share the budget (new SharedEpcLedger(epc.ledgerBuffer)).
 */
export class SharedEpcLedger implements EpcLedger {
  readonly #a: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.#a = new BigInt64Array(buffer, 0, 1);
  }

  get committed(): number {
    return Number(Atomics.load(this.#a, 0));
  }

  tryAdd(n: number, budget: number): boolean {
    const add = BigInt(n);
    const cap = BigInt(budget);
    for (;;) {
      const cur = Atomics.load(this.#a, 0);
      if (cur + add > cap) return false;
      if (Atomics.compareExchange(this.#a, 0, cur, cur + add) === cur) return true;
    }
  }

  sub(n: number): void {
    Atomics.sub(this.#a, 0, BigInt(n));
  }
}

export class EpcManager {
  readonly budget: number;
  readonly #ledger: EpcLedger;
  #peak = 0;
  readonly #leases = new Map<string, Lease>();
  readonly #ops: LeaseOps = { grow: (l, s, d) => this.#grow(l, s, d), release: (l, s) => this.#release(l, s) };
  #evictor: EpcEvictor | undefined;
  readonly #stats: EpcStats = { admissions: 0, admissionRefusals: 0, grows: 0, growRefusals: 0, bytesGrown: 0, evictionRequests: 0, bytesEvicted: 0 };

  constructor(budgetBytes: number = DEFAULT_EPC_BYTES, ledger?: EpcLedger) {
    this.budget = checkEpcBudget(budgetBytes);
    this.#ledger = ledger ?? new SharedEpcLedger();
  }

  /** The SharedArrayBuffer of the ledger, for managers in other threads that share this budget. */
  get ledgerBuffer(): SharedArrayBuffer | undefined {
    return this.#ledger instanceof SharedEpcLedger ? this.#ledger.buffer : undefined;
  }

  /** Bytes committed against the budget (by every manager sharing its ledger). */
  get committed(): number {
    return this.#ledger.committed;
  }

  get free(): number {
    return this.budget - this.committed;
  }

  setEvictor(evictor: EpcEvictor | undefined): void {
    if (evictor !== undefined && typeof evictor !== "function") throw new EpcError("EPC_BAD_REQUEST", "evictor must be a function");
    this.#evictor = evictor;
  }

  /** Asks the evictor to make `need` bytes free; true if they are free afterwards. */
  #makeRoom(need: number): boolean {
    if (need <= this.free) return true;
    if (this.#evictor === undefined) return false;
    const before = this.committed;
    this.#stats.evictionRequests++;
    this.#evictor(need - this.free);
    this.#stats.bytesEvicted += Math.max(0, before - this.committed);
    return need <= this.free;
  }

  admit(id: string, label: string, initialBytes: number, maxBytes: number): EpcLease {
    if (typeof id !== "string" || id === "") throw new EpcError("EPC_BAD_REQUEST", "enclave id must be a non-empty string");
    if (typeof label !== "string") throw new EpcError("EPC_BAD_REQUEST", "label must be a string");
    checkBytes(initialBytes, "initialBytes");
    checkBytes(maxBytes, "maxBytes");
    if (initialBytes > maxBytes) throw new EpcError("EPC_BAD_REQUEST", `initialBytes (${initialBytes}) exceeds maxBytes (${maxBytes})`);
    if (this.#leases.has(id)) throw new EpcError("EPC_DUPLICATE_ID", `enclave id ${JSON.stringify(id)} already holds an EPC lease`);
    if (!this.#makeRoom(initialBytes) || this.#leases.has(id) || !this.#ledger.tryAdd(initialBytes, this.budget)) {
      this.#stats.admissionRefusals++;
      throw new EpcError("EPC_ADMISSION_REFUSED", this.#refusal(id, label, initialBytes));
    }
    const lease = new Lease(this.#ops, { committed: initialBytes, peak: initialBytes, released: false }, id, label, maxBytes);
    this.#leases.set(id, lease);
    this.#commit();
    this.#stats.admissions++;
    return lease;
  }

  /** After the ledger took bytes (tryAdd, which never passes the budget): the peak. */
  #commit(): void {
    const c = this.committed;
    if (c > this.#peak) this.#peak = c;
  }

  #refusal(id: string, label: string, need: number): string {
    const top = [...this.#leases.values()]
      .sort((a, b) => b.committed - a.committed)
      .slice(0, 5)
      .map((l) => `${JSON.stringify(l.label)} (${l.id}) ${formatBytes(l.committed)}`);
    const users = top.length === 0 ? "no enclaves hold EPC" : `top users: ${top.join(", ")}${this.#leases.size > top.length ? `, and ${this.#leases.size - top.length} more` : ""}`;
    return `EPC admission refused for ${JSON.stringify(label)} (${id}): needs ${formatBytes(need)} (${need} bytes), ` +
      `${formatBytes(this.free)} (${this.free} bytes) free of ${formatBytes(this.budget)}; ${users}`;
  }

  #grow(lease: Lease, st: LeaseState, delta: number): boolean {
    if (st.released || this.#leases.get(lease.id) !== lease) throw new EpcError("EPC_LEASE_RELEASED", `EPC lease ${lease.id} was released`);
    checkBytes(delta, "deltaBytes");
    this.#stats.grows++;
    if (delta === 0) return true;
    if (st.committed + delta > lease.max || !this.#makeRoom(delta) || st.released || !this.#ledger.tryAdd(delta, this.budget)) {
      this.#stats.growRefusals++;
      return false;
    }
    st.committed += delta;
    if (st.committed > st.peak) st.peak = st.committed;
    this.#commit();
    this.#stats.bytesGrown += delta;
    return true;
  }

  #release(lease: Lease, st: LeaseState): void {
    if (st.released) return;
    st.released = true;
    if (this.#leases.get(lease.id) === lease) this.#leases.delete(lease.id);
    this.#ledger.sub(st.committed);
    st.committed = 0;
  }

  usage(): EpcUsage {
    return {
      budget: this.budget,
      committed: this.committed,
      peak: this.#peak,
      free: this.free,
      enclaves: [...this.#leases.values()].map((l) => ({ id: l.id, label: l.label, committed: l.committed, peak: l.peak, max: l.max })),
    };
  }

  stats(): EpcStats {
    return { ...this.#stats };
  }
}
