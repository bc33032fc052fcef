/**
 * Monotonic counters as an enclave sees them (sgx_create/increment/read/destroy_monotonic_counter).
 *
 * Invariants:
 * - A counter is owned by the identity that created it, under a policy: MRSIGNER (default, as SGX:
 *   any version of the signer's product may use it) or MRENCLAVE (only that exact measurement). Every
 *   operation by any other identity is refused with COUNTER_ACCESS_DENIED.
 * - Each owner holds at most `quota` counters (COUNTER_QUOTA_EXCEEDED).
 * - Values only go up; an increment returns after it is durable (counter-store.ts).
 */
import { CounterError } from "./errors.js";
import type { EnclaveIdentity } from "./identity.js";
import { policyId, policyName, SealPolicy, type SealPolicyName } from "./keys.js";
import type { CounterEntry, CounterStore } from "./counter-store.js";

/**
 * Counters per owner. SGX's PSE allowed 256 per enclave, but every sealed database uses one counter
 * owned by the SQLite enclave, and one host keeps thousands of databases (EPC paging), so the
 * emulated platform allows 65,536 (a fleet counter service, not the CPU, holds them in practice).
 */
export const DEFAULT_COUNTER_QUOTA = 65_536;

export interface CounterInfo {
  readonly id: string;
  readonly value: number;
  readonly policy: SealPolicyName;
}

export interface CreateCounterOptions {
  policy?: SealPolicyName;
  /** Starting value (default 0), e.g. a migrated counter's value. */
  initialValue?: number;
}

export interface CounterService {
  create(opts?: CreateCounterOptions): CounterInfo;
  /** Adds one, durably; returns the new value. */
  increment(id: string): number;
  /** Sets the counter to `value` (never lower than its value) in one durable step; returns it. */
  advance(id: string, value: number): number;
  read(id: string): number;
  destroy(id: string): void;
  /** The counters this identity may use. */
  list(): CounterInfo[];
}

function owns(identity: EnclaveIdentity, e: CounterEntry): boolean {
  if (e.isvProdId !== identity.isvProdId) return false;
  return e.policy === SealPolicy.MRENCLAVE ? e.owner.equals(identity.mrenclave) : e.owner.equals(identity.mrsigner);
}

function info(e: CounterEntry): CounterInfo {
  return { id: e.id, value: e.value, policy: policyName(e.policy) ?? "MRSIGNER" };
}

/** The counters face of an enclave's services. `store()` opens the platform's store lazily. */
export function counterService(identity: EnclaveIdentity, store: () => CounterStore, quota: number, lookup: () => CounterStore = store): CounterService {
  const owned = (id: string, from: () => CounterStore = store): CounterEntry => {
    if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id)) throw new CounterError("COUNTER_BAD_REQUEST", "counter id must be 32 lowercase hex digits");
    const e = from().get(id);
    if (e === undefined) throw new CounterError("COUNTER_NOT_FOUND", `no counter ${id}`);
    if (!owns(identity, e)) throw new CounterError("COUNTER_ACCESS_DENIED", `counter ${id} belongs to another enclave identity`);
    return e;
  };
  return Object.freeze({
    create(opts: CreateCounterOptions = {}): CounterInfo {
      const policy = (() => {
        try {
          return policyId(opts.policy, "MRSIGNER");
        } catch {
          throw new CounterError("COUNTER_BAD_REQUEST", `policy must be "MRENCLAVE" or "MRSIGNER"`);
        }
      })();
      const initial = opts.initialValue ?? 0;
      if (!Number.isSafeInteger(initial) || initial < 0) throw new CounterError("COUNTER_BAD_REQUEST", "initialValue must be a non-negative safe integer");
      const s = store();
      const mine = s.entries().filter((e) => owns(identity, e)).length;
      if (mine >= quota) throw new CounterError("COUNTER_QUOTA_EXCEEDED", `this enclave already owns ${mine} counters (quota ${quota}); destroy one first`);
      const owner = policy === SealPolicy.MRENCLAVE ? identity.mrenclave : identity.mrsigner;
      return info(s.create({ policy, isvProdId: identity.isvProdId, owner }, initial));
    },
    increment(id: string): number {
      const e = owned(id);
      if (e.value >= Number.MAX_SAFE_INTEGER) throw new CounterError("COUNTER_OVERFLOW", `counter ${id} is at its maximum`);
      store().set(id, e.value + 1);
      return e.value + 1;
    },
    advance(id: string, value: number): number {
      const e = owned(id);
      if (!Number.isSafeInteger(value) || value < e.value) throw new CounterError("COUNTER_BAD_REQUEST", `counter ${id} is at ${e.value}: it cannot be set to ${value} (counters never go down)`);
      if (value > e.value) store().set(id, value);
      return value;
    },
    read(id: string): number {
      return owned(id, lookup).value;
    },
    destroy(id: string): void {
      owned(id);
      store().destroy(id);
    },
    list(): CounterInfo[] {
      return lookup()
        .entries()
        .filter((e) => owns(identity, e))
        .map(info);
    },
  });
}
