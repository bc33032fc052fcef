/**
 * UNTRUSTED (server). The engine: where the handler's database work runs (WORKERS.md). The HTTP
 * front (handler.ts, management.ts) calls it asynchronously and never touches a Database itself.
 *
 *  - InProcessEngine (`selkie serve --workers 0`): on the main thread, as before workers.
 *  - WorkerEngine (`--workers N`, N >= 1): each database on one worker thread (worker-pool.ts);
 *    the main thread keeps authentication, routing, tokens, metrics and the platform.
 */
import * as fs from "node:fs";
import type { Platform } from "../../platform/platform.js";
import type { EpcUsage } from "../../platform/epc.js";
import { EpcPager, type PagingStats } from "../../enclave/snapshot/pager.js";
import type { DatabaseRegistry } from "./registry.js";
import type { StreamTable } from "./hrana/streams.js";
import type { Limits } from "./limits.js";
import type { Logger } from "./handler.js";
import { createOn, imageOn, infoOf, JSON_PIPELINE, pipelineOn, statsOf, type Conn, type EngineStats, type HranaEndpoint, type PipelineAnswer } from "./conn.js";
import { WorkerPool } from "./worker-pool.js";
import { freezeOn, thawOn } from "./freeze.js";

export interface Engine {
  /** Worker threads (0: in-process). */
  readonly workers: number;
  /** One Hrana pipeline: `body` as received (parsed where it runs). */
  pipeline(db: string, who: { tokenId: string; readOnly: boolean }, body: Buffer, started: number, draining: boolean, ep?: HranaEndpoint): Promise<PipelineAnswer>;
  create(db: string): Promise<Record<string, unknown>>;
  info(db: string): Promise<Record<string, unknown>>;
  /** Closes `db` where it is open and removes its files (registry.remove). */
  remove(db: string): Promise<void>;
  image(db: string, what: "snapshot" | "hibernate", full: boolean): Promise<Record<string, unknown>>;
  /** Freezes `db` for a migration (freeze.ts): its files are quiescent when this resolves. */
  freeze(db: string, opts: { waitMs: number; rollback: boolean }): Promise<void>;
  /** Ends a freeze: serve again, or answer DB_MOVED to the requests it held. */
  thaw(db: string, movedTo?: string): Promise<void>;
  /** Streams holding a database's lease (inside a transaction), everywhere. */
  holdingLease(): Promise<number>;
  /** Ends every parked stream, rolling back their transactions. */
  closeStreams(): Promise<void>;
  /** Closes every database (and stops the workers). */
  closeAll(): Promise<void>;
  /** Summed stats (metrics; from each worker's last answer). */
  stats(): EngineStats;
}

/**
 * Paging stats of the platform's pager and every worker's: counts summed; latency percentiles
 * are the worst worker's (each pager keeps its own window), means weighted by samples.
 */
export function pagingStats(platform: Platform, engine: Engine): PagingStats | null {
  const all = [EpcPager.of(platform.epc)?.stats() ?? null, ...(engine instanceof WorkerEngine ? engine.pool.stats().map((s) => s.paging) : [])].filter((p): p is PagingStats => p !== null);
  if (all.length === 0) return null;
  const sum = (f: (p: PagingStats) => number): number => all.reduce((a, p) => a + f(p), 0);
  const max = (f: (p: PagingStats) => number): number => Math.max(...all.map(f));
  const samples = sum((p) => p.wakeMs.samples);
  return {
    resident: sum((p) => p.resident),
    hibernated: sum((p) => p.hibernated),
    residentBytes: sum((p) => p.residentBytes),
    evictions: sum((p) => p.evictions),
    evictionFailures: sum((p) => p.evictionFailures),
    wakes: sum((p) => p.wakes),
    wakeFailures: sum((p) => p.wakeFailures),
    wakeMs: { p50: max((p) => p.wakeMs.p50), p99: max((p) => p.wakeMs.p99), max: max((p) => p.wakeMs.max), mean: samples ? sum((p) => p.wakeMs.mean * p.wakeMs.samples) / samples : 0, samples },
    hibernateMs: { p50: max((p) => p.hibernateMs.p50), p99: max((p) => p.hibernateMs.p99), samples: sum((p) => p.hibernateMs.samples) },
  };
}

/** The platform's EPC usage with the enclaves of every worker listed too. */
export function epcUsage(platform: Platform, engine: Engine): EpcUsage {
  const u = platform.epc.usage();
  return { ...u, enclaves: [...u.enclaves, ...engine.stats().epc] };
}

export class InProcessEngine implements Engine {
  readonly workers = 0;
  readonly #c: Conn;
  constructor(registry: DatabaseRegistry, streams: StreamTable, limits: Limits) {
    this.#c = { registry, streams, limits, frozen: new Map() };
  }
  pipeline(db: string, who: { tokenId: string; readOnly: boolean }, body: Buffer, started: number, draining: boolean, ep: HranaEndpoint = JSON_PIPELINE): Promise<PipelineAnswer> {
    return pipelineOn(this.#c, db, who, body, started, draining, ep);
  }
  create(db: string): Promise<Record<string, unknown>> {
    return createOn(this.#c, db);
  }
  info(db: string): Promise<Record<string, unknown>> {
    return Promise.resolve(infoOf(this.#c, db));
  }
  remove(db: string): Promise<void> {
    this.#c.registry.remove(db);
    return Promise.resolve();
  }
  image(db: string, what: "snapshot" | "hibernate", full: boolean): Promise<Record<string, unknown>> {
    return imageOn(this.#c, db, what, full);
  }
  freeze(db: string, opts: { waitMs: number; rollback: boolean }): Promise<void> {
    return freezeOn(this.#c, db, opts);
  }
  thaw(db: string, movedTo?: string): Promise<void> {
    thawOn(this.#c, db, movedTo);
    return Promise.resolve();
  }
  holdingLease(): Promise<number> {
    return Promise.resolve(this.#c.streams.holdingLease());
  }
  closeStreams(): Promise<void> {
    this.#c.streams.closeAll();
    return Promise.resolve();
  }
  closeAll(): Promise<void> {
    this.#c.streams.closeAll();
    this.#c.registry.closeAll();
    return Promise.resolve();
  }
  stats(): EngineStats {
    return statsOf(this.#c);
  }
}

export class WorkerEngine implements Engine {
  readonly pool: WorkerPool;
  readonly #registry: DatabaseRegistry;
  constructor(opts: { workers: number; registry: DatabaseRegistry; platform: Platform; limits: Limits; epc?: number | string; logger: Logger }) {
    this.#registry = opts.registry;
    this.pool = new WorkerPool({ size: opts.workers, dir: opts.registry.dir, platform: opts.platform, limits: opts.limits, logger: opts.logger, ...(opts.epc !== undefined ? { epc: opts.epc } : {}) });
  }
  get workers(): number {
    return this.pool.size;
  }
  async pipeline(db: string, who: { tokenId: string; readOnly: boolean }, body: Buffer, started: number, draining: boolean, ep: HranaEndpoint = JSON_PIPELINE): Promise<PipelineAnswer> {
    const a = (await this.pool.call(db, { op: "pipeline", db, tokenId: who.tokenId, readOnly: who.readOnly, started, body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), draining, ep })) as { body: Uint8Array; contentType: string; codes: string[] };
    return { body: Buffer.from(a.body.buffer, a.body.byteOffset, a.body.byteLength), contentType: a.contentType, codes: a.codes };
  }
  async create(db: string): Promise<Record<string, unknown>> {
    return (await this.pool.call(db, { op: "create", db })) as Record<string, unknown>;
  }
  async info(db: string): Promise<Record<string, unknown>> {
    // A database not placed on any worker is not open: what is on disk is all there is to say.
    const placed = this.pool.callIfPlaced(db, { op: "info", db });
    if (placed) return { ...((await placed) as Record<string, unknown>), worker: this.pool.workerOf(db) };
    return { name: db, open: false, diskBytes: diskBytes(this.#registry.fileFor(db)) };
  }
  async remove(db: string): Promise<void> {
    await this.pool.call(db, { op: "remove", db });
    this.pool.unplace(db);
  }
  async image(db: string, what: "snapshot" | "hibernate", full: boolean): Promise<Record<string, unknown>> {
    return (await this.pool.call(db, { op: "image", db, what, full })) as Record<string, unknown>;
  }
  async freeze(db: string, opts: { waitMs: number; rollback: boolean }): Promise<void> {
    await this.pool.call(db, { op: "freeze", db, waitMs: opts.waitMs, rollback: opts.rollback });
  }
  async thaw(db: string, movedTo?: string): Promise<void> {
    const placed = this.pool.callIfPlaced(db, { op: "thaw", db, ...(movedTo !== undefined ? { movedTo } : {}) });
    if (placed) await placed;
  }
  async holdingLease(): Promise<number> {
    // Fresh stats, but a worker busy in a statement must not stall the shutdown loop: after
    // 100 ms its last answer counts.
    await Promise.race([this.pool.all({ op: "stats" }), new Promise((r) => setTimeout(r, 100))]);
    return this.pool.stats().reduce((a, s) => a + s.holdingLease, 0);
  }
  async closeStreams(): Promise<void> {
    await this.pool.all({ op: "closeStreams" });
  }
  async closeAll(): Promise<void> {
    try {
      await this.pool.all({ op: "closeAll" });
    } finally {
      await this.pool.close();
    }
  }
  stats(): EngineStats {
    const all = this.pool.stats();
    return {
      enclavesOpen: all.reduce((a, s) => a + s.enclavesOpen, 0),
      streamsOpen: all.reduce((a, s) => a + s.streamsOpen, 0),
      waiting: all.flatMap((s) => s.waiting),
      groups: all.reduce((a, s) => a + s.groups, 0),
      jobs: all.reduce((a, s) => a + s.jobs, 0),
      recycles: all.reduce((a, s) => a + s.recycles, 0),
      holdingLease: all.reduce((a, s) => a + s.holdingLease, 0),
      epc: all.flatMap((s) => s.epc),
      paging: null,
    };
  }
}

function diskBytes(f: string): number {
  let n = 0;
  for (const p of [f, `${f}.log`]) {
    try {
      n += fs.statSync(p).size;
    } catch {
      // absent
    }
  }
  return n;
}
