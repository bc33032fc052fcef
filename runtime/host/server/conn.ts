/**
 * UNTRUSTED (server). What is done to the databases of one thread: a DatabaseRegistry and a
 * StreamTable that live in the thread that runs their SQL. The in-process engine (engine.ts,
 * `--workers 0`) calls these on the main thread; with workers, worker-main.ts calls them in the
 * worker that hosts the database, and the main thread only forwards requests (worker-pool.ts).
 */
import * as fs from "node:fs";
import { SelkieError } from "../../errors.js";
import type { EpcManager, EpcUsage } from "../../platform/epc.js";
import { EpcPager, type PagingStats } from "../../enclave/snapshot/pager.js";
import type { DatabaseRegistry } from "./registry.js";
import type { StreamTable } from "./hrana/streams.js";
import type { Limits } from "./limits.js";
import { parsePipeline } from "./hrana/protocol.js";
import { runPipeline } from "./hrana/pipeline.js";
import { parseCursor, runCursor } from "./hrana/cursor.js";
import { cursorBodyIn, cursorResponseOut, pipelineBodyIn, pipelineResponseOut } from "./hrana/protobuf.js";
import { withEpcRoom } from "./epc-room.js";
import { badRequest, HttpError, notFound } from "./errors.js";
import { json } from "./http.js";
import { gateRequest, type FreezeGate } from "./freeze.js";

export interface Conn {
  readonly registry: DatabaseRegistry;
  readonly streams: StreamTable;
  readonly limits: Limits;
  /** Databases of this thread frozen for a migration (freeze.ts). */
  readonly frozen: Map<string, FreezeGate>;
}

export interface PipelineAnswer {
  /** The encoded response (JSON, JSON lines for a JSON cursor, or protobuf). */
  body: Buffer;
  /** Its content type. */
  contentType: string;
  /** The error codes of its results (for metrics). */
  codes: string[];
}

export interface EngineStats {
  enclavesOpen: number;
  streamsOpen: number;
  waiting: Array<{ db: string; n: number }>;
  groups: number;
  jobs: number;
  recycles: number;
  holdingLease: number;
  /** The EPC leases of this thread's enclaves (a worker's; the main thread's are the platform's own). */
  epc: EpcUsage["enclaves"];
  /** This thread's pager stats (a worker's; null in-process, where the platform's pager is asked). */
  paging: PagingStats | null;
}

export function shuttingDown(): HttpError {
  return new HttpError(503, "SHUTTING_DOWN", "the server is shutting down; retry on another server or later", { connection: "close", "retry-after": "1" });
}

/** Which Hrana HTTP endpoint a body came to (hrana/PROTOCOL.md): its encoding, and pipeline or cursor. */
export interface HranaEndpoint {
  protobuf: boolean;
  cursor: boolean;
}

export const JSON_PIPELINE: HranaEndpoint = { protobuf: false, cursor: false };

/**
 * One Hrana pipeline or cursor request on database `name`, parsed here (so typed values keep their
 * class: this runs where the database lives, a worker thread or the main one) and answered encoded.
 */
export async function pipelineOn(c: Conn, name: string, who: { tokenId: string; readOnly: boolean }, body: Buffer, started: number, draining: boolean, ep: HranaEndpoint = JSON_PIPELINE): Promise<PipelineAnswer> {
  let parsed: unknown;
  if (ep.protobuf) {
    parsed = ep.cursor ? cursorBodyIn(body) : pipelineBodyIn(body);
  } else {
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch (e) {
      throw badRequest("BAD_JSON", `the request body is not valid JSON: ${(e as Error).message}`);
    }
  }
  const pl = ep.cursor ? parseCursor(parsed, c.limits.maxSqlBytes) : parsePipeline(parsed, c.limits.maxSqlBytes);
  // Draining: streams already open may finish (commit their transactions); new ones may not.
  if (draining && pl.baton === null) throw shuttingDown();
  await gateRequest(c, name, pl.baton, started + c.limits.requestTimeoutMs);
  const host = await withEpcRoom(started + c.limits.requestTimeoutMs, () => c.registry.get(name));
  const pctx = { host, streams: c.streams, tokenId: who.tokenId, readOnly: who.readOnly, limits: c.limits, started };
  const codes: string[] = [];
  if (ep.cursor) {
    const cur = await runCursor(pctx, pl);
    for (const e of cur.entries) if (e.type === "error" || e.type === "step_error") codes.push(e.error.code);
    const head = { baton: cur.baton, base_url: cur.base_url };
    if (ep.protobuf) return { body: Buffer.from(cursorResponseOut(head, cur.entries)), contentType: "application/x-protobuf", codes };
    return { body: Buffer.from([head, ...cur.entries].map((x) => `${json(200, x).body as string}\n`).join(""), "utf8"), contentType: "application/json", codes };
  }
  const resp = await runPipeline(pctx, pl);
  for (const r of resp.results) {
    if (r.type === "error") codes.push(r.error.code);
    else if (r.response.type === "batch") {
      for (const e of (r.response.result as { step_errors: Array<{ code: string } | null> }).step_errors) if (e) codes.push(e.code);
    }
  }
  if (ep.protobuf) return { body: Buffer.from(pipelineResponseOut(resp)), contentType: "application/x-protobuf", codes };
  return { body: Buffer.from(json(200, resp).body as string, "utf8"), contentType: "application/json", codes };
}

function fileSize(f: string): number {
  try {
    return fs.statSync(f).size;
  } catch {
    return 0;
  }
}

/** GET /v1/databases/NAME: what is on disk, and the open connection's state. */
export function infoOf(c: Conn, name: string): Record<string, unknown> {
  const file = c.registry.fileFor(name);
  const info: Record<string, unknown> = { name, open: c.registry.isOpen(name), diskBytes: fileSize(file) + fileSize(`${file}.log`) };
  if (c.registry.isOpen(name)) {
    const host = c.registry.get(name);
    // Plain copies: the answer may cross threads (structured clone) before it is encoded.
    info.enclave = JSON.parse(JSON.stringify(host.db.enclave)) as unknown;
    info.paging = JSON.parse(JSON.stringify(host.db.paging)) as unknown;
    info.storage = JSON.parse(JSON.stringify(host.db.storage)) as unknown;
    info.inTransaction = host.db.inTransaction;
    info.connections = host.connections;
    info.waiting = host.waiting;
  }
  return info;
}

export async function createOn(c: Conn, name: string): Promise<Record<string, unknown>> {
  await withEpcRoom(Date.now() + c.limits.requestTimeoutMs, () => c.registry.create(name));
  return infoOf(c, name);
}

/** POST /v1/databases/NAME/hibernate or /snapshot, holding the database's lease. */
export async function imageOn(c: Conn, name: string, what: "snapshot" | "hibernate", full: boolean): Promise<Record<string, unknown>> {
  if (!c.registry.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them, POST /v1/databases creates one`);
  if (c.frozen.has(name)) throw new HttpError(409, "MIGRATION_IN_PROGRESS", `database ${name} is being migrated; retry when the migration ended`);
  const deadline = Date.now() + c.limits.requestTimeoutMs;
  const host = await withEpcRoom(deadline, () => c.registry.get(name));
  const owner = {};
  // The lease: in-flight requests finish first, new ones wait until the image is written.
  await host.acquire(owner, deadline, Infinity);
  try {
    if (what === "hibernate") return { hibernated: host.db.hibernate(), paging: JSON.parse(JSON.stringify(host.db.paging)) as unknown };
    await host.wake(deadline); // a snapshot is of a running enclave: wait for EPC room like a request
    try {
      return { image: JSON.parse(JSON.stringify(host.db.snapshot(undefined, { full }))) as unknown };
    } catch (e) {
      if (e instanceof SelkieError && e.code === "SNAPSHOT_BUSY") throw new HttpError(409, e.code, e.message);
      throw e;
    }
  } finally {
    host.release(owner);
  }
}

export function statsOf(c: Conn, epc?: EpcManager): EngineStats {
  const hosts = c.registry.openHosts();
  return {
    enclavesOpen: c.registry.openCount,
    streamsOpen: c.streams.size,
    waiting: hosts.map((h) => ({ db: h.name, n: h.waiting })),
    groups: hosts.reduce((a, h) => a + h.groupStats.groups, 0),
    jobs: hosts.reduce((a, h) => a + h.groupStats.jobs, 0),
    recycles: hosts.reduce((a, h) => a + h.recycles, 0),
    holdingLease: c.streams.holdingLease(),
    epc: epc ? epc.usage().enclaves : [],
    paging: epc ? (EpcPager.of(epc)?.stats() ?? null) : null,
  };
}
