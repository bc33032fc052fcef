/**
 * UNTRUSTED (server). The database workers (WORKERS.md): N worker threads (worker-main.ts), each
 * hosting the databases placed on it. Placement is sticky: a database stays on the worker it was
 * first placed on (the least loaded then: fewest databases) for as long as that worker lives.
 *
 * The main thread answers each worker's platform calls (platform-rpc.ts) from the one Platform,
 * with the services of the SQLite enclave it measured itself; nothing else of the platform is
 * given to workers.
 *
 * A worker that dies (a crash, an OOM, terminate()) is replaced: its in-flight requests are
 * answered 503 DB_RESTARTING, its databases lose their placement, and their next request reopens
 * them on a live worker from their sealed stores (as after kill -9: acknowledged commits are
 * durable, open transactions are rolled back).
 */
import { Worker } from "node:worker_threads";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Platform } from "../../platform/platform.js";
import type { EnclaveServices } from "../../platform/services.js";
import { Enclave } from "../../enclave/enclave.js";
import { measureLegacyV1 } from "../../enclave/einit.js";
import { loadSqliteEnclave } from "../../sql/sqlite-module.js";
import { sqliteSignature } from "../../sql/sqlite-signer.js";
import { HttpError } from "./errors.js";
import { answerService, errorAnswer, newMailbox, readRpc, writeAnswer } from "./platform-rpc.js";
import { reviveError, WORKER_PROTOCOL, type FromWorker, type WorkerInit, type WorkerOp } from "./worker-protocol.js";
import type { EngineStats } from "./conn.js";
import type { Limits } from "./limits.js";
import type { Logger } from "./handler.js";

export interface PoolOptions {
  size: number;
  /** The databases folder. */
  dir: string;
  platform: Platform;
  limits: Limits;
  epc?: number | string;
  logger: Logger;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  db: string | undefined;
}

interface Slot {
  k: number;
  worker: Worker;
  mailbox: SharedArrayBuffer;
  pending: Map<number, Pending>;
  dbs: Set<string>;
  stats: EngineStats;
  alive: boolean;
}

/** How long the main thread waits for other workers to free EPC room for one that is short. */
const RECLAIM_WAIT_MS = 250;

const NO_STATS: EngineStats = { enclavesOpen: 0, streamsOpen: 0, waiting: [], groups: 0, jobs: 0, recycles: 0, holdingLease: 0, epc: [], paging: null };

export class WorkerPool {
  readonly #opts: PoolOptions;
  readonly #slots: Slot[] = [];
  readonly #placement = new Map<string, Slot>();
  readonly #services = new Map<string, EnclaveServices>();
  readonly #image: ReturnType<typeof loadSqliteEnclave>;
  #seq = 0;
  #closing = false;
  /** Workers replaced after dying (metrics, tests). */
  restarts = 0;

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    // The SQLite enclave, measured here: the only identity whose services workers may use. This
    // also creates the platform's SQLite signer key (first use) before any worker reads it.
    this.#image = loadSqliteEnclave(opts.epc !== undefined ? { epc: opts.epc } : {});
    const enclave = new Enclave({ module: this.#image.module, manifest: this.#image.manifest, signature: sqliteSignature(opts.platform.dir, this.#image) });
    this.#services.set(enclave.measured.mrenclave.toString("hex"), opts.platform.servicesFor(enclave.measured));
    for (let k = 0; k < opts.size; k++) this.#slots.push(this.#spawn(k));
  }

  get size(): number {
    return this.#slots.length;
  }

  /** The worker a database is placed on (undefined before its first request). */
  workerOf(db: string): number | undefined {
    return this.#placement.get(db)?.k;
  }

  /** Ends worker `k` abruptly, as a crash would (tests, and an operator's last resort). */
  async kill(k: number): Promise<void> {
    await this.#slots[k]!.worker.terminate();
  }

  /** Services of an identity the main thread measured: the SQLite enclave, or its legacy identity. */
  #resolve = (mrenclave: string): EnclaveServices | undefined => {
    let s = this.#services.get(mrenclave);
    if (s === undefined && /^[0-9a-f]{64}$/.test(mrenclave)) {
      const legacy = measureLegacyV1(this.#image.module, this.#image.manifest, Buffer.from(mrenclave, "hex"));
      if (legacy && legacy.mrenclave.toString("hex") === mrenclave) {
        s = this.#opts.platform.servicesFor(legacy);
        this.#services.set(mrenclave, s);
      }
    }
    return s;
  };

  /** A worker's counter update: its fdatasync runs on libuv's pool, not on this (the front's) thread. */
  #defer = (fn: () => unknown): Promise<unknown> => this.#opts.platform.withDeferredCounterSync(fn);

  #spawn(k: number): Slot {
    const p = this.#opts.platform;
    const ledger = p.epc.ledgerBuffer;
    if (!ledger) throw new Error("internal: the platform's EPC ledger is not shareable");
    const mailbox = newMailbox();
    const init: WorkerInit = {
      protocol: WORKER_PROTOCOL,
      index: k,
      dir: this.#opts.dir,
      limits: this.#opts.limits,
      ...(this.#opts.epc !== undefined ? { epc: this.#opts.epc } : {}),
      platform: { dir: p.dir, platformId: p.platformId, epcBytes: p.epcBytes, epcLedger: ledger, mailbox },
    };
    const worker = new Worker(new URL("./worker-main.js", import.meta.url), { workerData: init, name: `selkie-db-${k}` });
    const slot: Slot = { k, worker, mailbox, pending: new Map(), dbs: new Set(), stats: NO_STATS, alive: true };
    worker.on("message", (m: FromWorker) => this.#onMessage(slot, m));
    worker.on("error", (e) => this.#opts.logger.error({ event: "worker_error", worker: k, err: e.stack ?? String(e) }, "a database worker failed"));
    worker.on("exit", (code) => this.#onExit(slot, code));
    return slot;
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    if (m.t === "rpc") return this.#answerRpc(slot);
    if (m.t === "log") return this.#opts.logger[m.level](m.obj, m.msg);
    slot.stats = m.stats;
    const p = slot.pending.get(m.id);
    if (!p) return;
    slot.pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(reviveError(m.error));
  }

  /** A worker waits (blocked) on its mailbox: answer it; never block the main thread. */
  #answerRpc(slot: Slot): void {
    let req;
    try {
      req = readRpc(slot.mailbox);
    } catch (e) {
      return writeAnswer(slot.mailbox, errorAnswer(e));
    }
    if (!req) return;
    if (req.op !== "epc.reclaim") return answerService(slot.mailbox, req, this.#resolve, this.#defer);
    // EPC room: the other workers hibernate idle databases. A worker busy (or itself waiting on
    // us) does not answer within RECLAIM_WAIT_MS and counts as freeing nothing.
    const bytes = Number(req.args[0]) || 0;
    const others = this.#slots.filter((s) => s !== slot && s.alive);
    const asks = others.map((s) =>
      Promise.race([this.#send(s, { op: "reclaim", bytes }, undefined).then((n) => Number(n) || 0, () => 0), new Promise<number>((r) => setTimeout(() => r(0), RECLAIM_WAIT_MS))]),
    );
    void Promise.all(asks).then((freed) => writeAnswer(slot.mailbox, { ok: true, value: freed.reduce((a, b) => a + b, 0) }));
  }

  #onExit(slot: Slot, code: number): void {
    slot.alive = false;
    const lost = [...slot.dbs];
    for (const db of lost) {
      this.#placement.delete(db);
      // The dead thread held the databases' process locks (this process's pid): free them so a
      // live worker can open them again.
      fs.rmSync(path.join(this.#opts.dir, `${db}.db.lock`), { force: true });
    }
    for (const p of slot.pending.values()) {
      p.reject(new HttpError(503, "DB_RESTARTING", `the worker hosting ${p.db ?? "this database"} stopped and is being replaced; nothing unacknowledged was kept, retry`, { "retry-after": "1" }));
    }
    slot.pending.clear();
    if (this.#closing) return;
    this.restarts++;
    this.#opts.logger.error({ event: "worker_exit", worker: slot.k, code, databases: lost }, "a database worker stopped; replacing it, its databases reopen on their next request");
    this.#slots[slot.k] = this.#spawn(slot.k);
  }

  /** The live worker for `db`: where it is placed, or the least loaded. */
  #place(db: string): Slot {
    const placed = this.#placement.get(db);
    if (placed?.alive) return placed;
    let best = this.#slots[0]!;
    for (const s of this.#slots) if (s.dbs.size < best.dbs.size) best = s;
    best.dbs.add(db);
    this.#placement.set(db, best);
    return best;
  }

  #send(slot: Slot, op: WorkerOp, db: string | undefined): Promise<unknown> {
    if (!slot.alive) return Promise.reject(new HttpError(503, "DB_RESTARTING", "the database's worker is being replaced; retry", { "retry-after": "1" }));
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, db });
      slot.worker.postMessage({ ...op, id });
    });
  }

  /** Runs `op` on the worker hosting `db` (placing it there first). */
  call(db: string, op: WorkerOp): Promise<unknown> {
    return this.#send(this.#place(db), op, db);
  }

  /** Runs `op` on `db`'s worker only if it is placed (open); undefined otherwise. */
  callIfPlaced(db: string, op: WorkerOp): Promise<unknown> | undefined {
    const s = this.#placement.get(db);
    return s?.alive ? this.#send(s, op, db) : undefined;
  }

  /** Forgets `db`'s placement (after it was deleted). */
  unplace(db: string): void {
    const s = this.#placement.get(db);
    s?.dbs.delete(db);
    this.#placement.delete(db);
  }

  /** Runs `op` on every live worker. */
  all(op: WorkerOp): Promise<unknown[]> {
    return Promise.all(this.#slots.filter((s) => s.alive).map((s) => this.#send(s, op, undefined)));
  }

  /** Stats of every worker (as of its last answer). */
  stats(): EngineStats[] {
    return this.#slots.map((s) => s.stats);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}
