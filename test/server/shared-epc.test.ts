/**
 * The EPC budget shared across worker threads (runtime/host/server/shared-epc.ts): real threads
 * admit and grow leases on one ledger at the same time; the budget holds over all of them, and
 * the main thread's manager sees what the workers committed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import * as path from "node:path";
import { EpcManager } from "../../runtime/platform/epc.js";
import { sharedEpcManager } from "../../runtime/host/server/shared-epc.js";
import { ROOT } from "../helpers.js";

const MiB = 1024 * 1024;
const SHARED = pathToFileURL(path.join(ROOT, "dist", "runtime", "host", "server", "shared-epc.js")).href;

/** A worker that grows leases of 64 KiB until the budget refuses, then reports what it took. */
const GROWER = `
const { workerData, parentPort } = require("node:worker_threads");
import(workerData.shared).then(({ sharedEpcManager }) => {
  const epc = sharedEpcManager(workerData.budget, workerData.buffer);
  const lease = epc.admit("w" + workerData.k, "grower", 0, workerData.budget);
  const start = new Int32Array(workerData.start);
  Atomics.wait(start, 0, 0); // every worker starts at once
  let took = 0;
  while (lease.grow(65536)) took += 65536;
  parentPort.postMessage({ took, seen: epc.committed });
});
`;

function grower(k: number, budget: number, buffer: SharedArrayBuffer, start: SharedArrayBuffer): Promise<{ took: number; seen: number }> {
  const w = new Worker(GROWER, { eval: true, workerData: { k, budget, buffer, start, shared: SHARED } });
  return new Promise((resolve, reject) => {
    w.once("message", (m: { took: number; seen: number }) => void w.terminate().then(() => resolve(m)));
    w.once("error", reject);
  });
}

describe("shared EPC accounting", () => {
  it("four threads growing at once never commit more than the budget together", async () => {
    const budget = 16 * MiB;
    const main = new EpcManager(budget);
    const mine = main.admit("main", "main", 4 * MiB, 4 * MiB);
    const start = new SharedArrayBuffer(4);
    const runs = [0, 1, 2, 3].map((k) => grower(k, budget, main.ledgerBuffer!, start));
    await new Promise((r) => setTimeout(r, 300)); // the workers are waiting on the start word
    Atomics.store(new Int32Array(start), 0, 1);
    Atomics.notify(new Int32Array(start), 0);
    const results = await Promise.all(runs);
    const took = results.reduce((a, r) => a + r.took, 0);
    assert.equal(took, budget - 4 * MiB, "the workers took exactly the room the main thread left");
    assert.ok(results.every((r) => r.seen === budget), "every worker saw the full budget committed");
    // Worker leases die with their threads here; the ledger is what the main thread reads.
    assert.equal(main.committed, budget);
    assert.equal(main.free, 0);
    assert.throws(() => main.admit("late", "late", 65536, 65536), { code: "EPC_ADMISSION_REFUSED" });
    mine.release();
    assert.equal(main.committed, budget - 4 * MiB);
  });

  it("a worker's release gives its bytes back to the main thread's admissions", () => {
    const main = new EpcManager(8 * MiB);
    const other = sharedEpcManager(8 * MiB, main.ledgerBuffer!);
    const l = other.admit("a", "a", 8 * MiB, 8 * MiB);
    assert.throws(() => main.admit("b", "b", MiB, MiB), { code: "EPC_ADMISSION_REFUSED" });
    l.release();
    assert.equal(main.admit("b", "b", MiB, MiB).committed, MiB);
  });
});
