/**
 * UNTRUSTED (server). A database worker (WORKERS.md): hosts the databases the pool placed on it,
 * with their enclaves, VFS servers and sealed stores, and runs their requests (conn.ts) off the
 * main thread. Platform services come from the main thread (worker-platform.ts). Requests run
 * concurrently as their awaits allow, exactly as on the main thread: each database's lease and
 * group commit (db-host.ts) order them.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EpcPager } from "../../enclave/snapshot/pager.js";
import { DatabaseRegistry } from "./registry.js";
import { StreamTable } from "./hrana/streams.js";
import { createOn, imageOn, infoOf, pipelineOn, statsOf, type Conn } from "./conn.js";
import { WorkerPlatform } from "./worker-platform.js";
import { freezeOn, thawOn } from "./freeze.js";
import { loadSqliteEnclave } from "../../sql/sqlite-module.js";
import { toWire, WORKER_PROTOCOL, type FromWorker, type ToWorker, type WorkerInit, type WorkerOp } from "./worker-protocol.js";

/** How much lower a worker's CPU priority is than the main thread's. */
const WORKER_NICE = 2;

const port = parentPort!;
const init = workerData as WorkerInit;
if (init.protocol !== WORKER_PROTOCOL) throw new Error(`worker protocol ${String(init.protocol)}; this worker speaks ${WORKER_PROTOCOL}`);
lowerOwnPriority();
const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

const platform = new WorkerPlatform(init.platform, () => post({ t: "rpc" }));
// This worker's paging images in a folder of its own: a pager empties its folder when it starts,
// and the main thread's (platform/paging) or another worker's must not be touched.
EpcPager.for(platform.epc, path.join(init.platform.dir, `paging-worker-${init.index}`));
const registry = new DatabaseRegistry({ dir: init.dir, platform: platform.asPlatform(), ...(init.epc !== undefined ? { epc: init.epc } : {}) });
const streams = new StreamTable(init.limits.streamIdleMs, init.limits.maxStreams, (s, rolledBack) =>
  post({ t: "log", level: "info", obj: { event: "stream_expired", db: s.host.name, rolledBack }, msg: rolledBack ? "an idle stream expired; its open transaction was rolled back" : "an idle stream expired" }),
);
const conn: Conn = { registry, streams, limits: init.limits, frozen: new Map() };

async function run(m: WorkerOp): Promise<{ value: unknown; transfer: ArrayBuffer[] }> {
  switch (m.op) {
    case "pipeline": {
      const a = await pipelineOn(conn, m.db, { tokenId: m.tokenId, readOnly: m.readOnly }, Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength), m.started, m.draining, m.ep);
      // The bytes move to the main thread without a copy.
      const body = new Uint8Array(a.body.length);
      body.set(a.body);
      return { value: { body, contentType: a.contentType, codes: a.codes }, transfer: [body.buffer] };
    }
    case "create":
      return { value: await createOn(conn, m.db), transfer: [] };
    case "info":
      return { value: infoOf(conn, m.db), transfer: [] };
    case "remove":
      registry.remove(m.db);
      return { value: null, transfer: [] };
    case "close":
      registry.close(m.db);
      return { value: null, transfer: [] };
    case "image":
      return { value: await imageOn(conn, m.db, m.what, m.full), transfer: [] };
    case "freeze":
      await freezeOn(conn, m.db, { waitMs: m.waitMs, rollback: m.rollback });
      return { value: null, transfer: [] };
    case "thaw":
      thawOn(conn, m.db, m.movedTo);
      return { value: null, transfer: [] };
    case "closeStreams":
      streams.closeAll();
      return { value: null, transfer: [] };
    case "closeAll":
      streams.closeAll();
      registry.closeAll();
      return { value: null, transfer: [] };
    case "reclaim":
      return { value: platform.epc.reclaimLocal(m.bytes), transfer: [] };
    case "stats":
      return { value: null, transfer: [] };
  }
}

// Compile the SQLite enclave's module now, not in the first request of the first database placed
// here (a migrated database's first request would wait for it: ~0.1-0.5 s).
setImmediate(() => {
  try {
    loadSqliteEnclave(init.epc !== undefined ? { epc: init.epc } : {}); // the key the registry's opens use
  } catch {
    // reported by the first open, with its typed error
  }
});

port.on("message", (m: ToWorker) => {
  run(m).then(
    ({ value, transfer }) => post({ t: "answer", id: m.id, ok: true, value, stats: statsOf(conn, platform.epc) }, transfer),
    (e: unknown) => post({ t: "answer", id: m.id, ok: false, error: toWire(e), stats: statsOf(conn, platform.epc) }),
  );
});

/**
 * Runs this thread at a lower CPU priority (nice +WORKER_NICE) than the main thread: the front
 * (HTTP, /health, routing, every tenant's request and response) is short work that must not wait
 * behind a tenant's long statement when cores are scarce. Linux applies setpriority to one thread
 * given its thread id (/proc/thread-self); elsewhere this does nothing.
 */
function lowerOwnPriority(): void {
  try {
    const tid = Number(path.basename(fs.readlinkSync("/proc/thread-self")));
    if (Number.isSafeInteger(tid) && tid > 0) os.setPriority(tid, Math.min(19, os.getPriority(tid) + WORKER_NICE));
  } catch {
    // no /proc, or not allowed: same priority as the main thread
  }
}
