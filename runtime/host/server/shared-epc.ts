/**
 * UNTRUSTED (server). One EPC budget shared by the main thread and every worker (WORKERS.md,
 * "Platform services shared with workers"): the committed total lives in the SharedArrayBuffer of
 * the platform's EpcManager ledger (platform/epc.ts, SharedEpcLedger), and each worker's EpcManager
 * admits and grows against it with one atomic check-and-add. No thread waits on another for a
 * metered grow (SQLite's malloc path), and the budget holds over every thread's enclaves.
 */
import { EpcManager, SharedEpcLedger } from "../../platform/epc.js";

/** An EpcManager of `budget` bytes on the ledger in `buffer` (from the main platform's `epc.ledgerBuffer`). */
export function sharedEpcManager(budget: number, buffer: SharedArrayBuffer): EpcManager {
  return new EpcManager(budget, new SharedEpcLedger(buffer));
}
