/**
 * UNTRUSTED (server). One EPC budget shared by the main thread and every worker (WORKERS.md,
 * "Platform services shared with workers"): the committed total lives in the SharedArrayBuffer of
 * the platform's EpcManager ledger (platform/epc.ts, SharedEpcLedger), and each worker's EpcManager
 * admits and grows against it with one atomic check-and-add. No thread waits on another for a
 * metered grow (SQLite's malloc path), and the budget holds over every thread's enclaves.
 */
import { EpcManager, SharedEpcLedger, type EpcEvictor } from "../../platform/epc.js";

/** An EpcManager of `budget` bytes on the ledger in `buffer` (from the main platform's `epc.ledgerBuffer`). */
export function sharedEpcManager(budget: number, buffer: SharedArrayBuffer): EpcManager {
  return new EpcManager(budget, new SharedEpcLedger(buffer));
}

/**
 * A worker's EpcManager: on the shared ledger, and when its own pager (the evictor EpcPager sets)
 * cannot free enough, it asks the other workers through the main thread (`remote`, a blocking
 * platform RPC) to hibernate their idle databases: the budget is one, so is the eviction.
 */
export class WorkerEpcManager extends EpcManager {
  #local: EpcEvictor | undefined;
  readonly #remote: (bytes: number) => number;

  constructor(budget: number, buffer: SharedArrayBuffer, remote: (bytes: number) => number) {
    super(budget, new SharedEpcLedger(buffer));
    this.#remote = remote;
    super.setEvictor((need) => this.#evict(need));
  }

  override setEvictor(evictor: EpcEvictor | undefined): void {
    this.#local = evictor;
  }

  #evict(need: number): number {
    const before = this.free;
    this.#local?.(need);
    const got = this.free - before;
    if (got < need) this.#remote(need - got);
    return this.free - before;
  }

  /** Frees up to `bytes` by hibernating this worker's idle databases (asked by another worker). */
  reclaimLocal(bytes: number): number {
    const before = this.free;
    this.#local?.(bytes);
    return Math.max(0, this.free - before);
  }
}
