/**
 * UNTRUSTED (server). Selkie's HTTP API as a web-standard handler: `(Request) => Promise<Response>`.
 * Mount it in node:http (serve.ts), Hono, or anything that speaks Request/Response.
 *
 * Routes (every one needs a token unless marked open):
 *   GET  /health                                  open; "ok"
 *   GET  [/db/NAME]/v2, /v3, /v3-protobuf         open; Hrana version probes (clients send no token)
 *   POST /db/NAME/v2/pipeline, .../v3/pipeline    Hrana over HTTP (JSON) on database NAME
 *   POST /db/NAME/v3/cursor                       Hrana 3 cursor (JSON lines)
 *   POST /db/NAME/v3-protobuf/pipeline, /cursor   the same in protobuf (hrana/PROTOCOL.md)
 *   POST /v2/pipeline, /v3/..., /v3-protobuf/...  the same, on the database a database token is for
 *   (upgrade) /, /db/NAME                         Hrana over WebSocket (hrana/ws.ts, attached by serve)
 *   GET  /metrics                                 admin (or open with metricsPublic)
 *   /v1/...                                       management API, admin (management.ts), including
 *                                                 custom enclaves and their ecalls
 *
 * Shutdown (shutdown()): new requests get 503 SHUTTING_DOWN, except pipelines continuing a stream
 * that is already open, so a client inside an interactive transaction can still commit it; then,
 * bounded by a timeout, in-flight requests finish, open transactions are rolled back, databases close.
 *
 * With @libsql/client, use `url: "http://HOST:PORT/db/NAME/"` (the trailing slash matters: the
 * client resolves "v2/pipeline" against the URL) with any token allowed on NAME, or
 * `url: "http://HOST:PORT"` with a token limited to one database.
 */
import type { Platform } from "../../platform/platform.js";
import { SelkieError } from "../../errors.js";
import { DatabaseLockedError } from "../process-lock.js";
import { badRequest, clientMessage, forbidden, HttpError, notFound, unauthorized } from "./errors.js";
import { fromWebRequest, json, text, toWebResponse, type CoreRequest, type CoreResponse } from "./http.js";
import { resolveLimits, type Limits } from "./limits.js";
import { ServerMetrics } from "./metrics.js";
import { DatabaseRegistry } from "./registry.js";
import { TokenStore, type Principal } from "./tokens.js";
import { JSON_PIPELINE, shuttingDown, type HranaEndpoint } from "./conn.js";
import { InProcessEngine, pagingStats, WorkerEngine, type Engine } from "./engine.js";
import { StreamTable } from "./hrana/streams.js";
import { management } from "./management.js";
import { EnclaveRegistry } from "./enclave-registry.js";
import type { Permission } from "../../enclave/abi.js";
import * as path from "node:path";
import { ForwardingTable } from "../../migration/forwarding/table.js";
import { forward } from "./forward.js";
import { forwardingRoutes } from "./forwarding-routes.js";
import { ServerMigrations } from "./migrations.js";
import { migrationRoutes } from "./migration-routes.js";
import type { MigrationServeOptions } from "./migration-endpoint.js";

/** The part of pino's interface the server uses (pino loggers fit; so does a no-op). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface HandlerOptions {
  /** The server's data directory: `databases/` and `tokens.json` live here. */
  dir: string;
  /** The platform whose keys seal every database (opened by the caller, closed by the caller). */
  platform: Platform;
  limits?: Partial<Limits>;
  logger?: Logger;
  /** Serve /metrics without a token (default false: admin token). */
  metricsPublic?: boolean;
  /** EPC size of each database's enclave (default: the SQLite manifest's). */
  epc?: number | string;
  /**
   * Permissions the operator grants custom enclaves (deny by default): an enclave gets those its
   * signed manifest requests and that are listed here (`selkie serve --allow-clock` ...).
   */
  grants?: Iterable<Permission>;
  /**
   * Worker threads that run the databases' SQL (engine.ts, WORKERS.md); 0 runs it on the main
   * thread. Default 0 here; `selkie serve` defaults to 2.
   */
  workers?: number;
  /** Live migration (migrations.ts): the fleet CA, the dev-CA flag, channel tuning, or a protocol hook of one's own. */
  migration?: MigrationServeOptions;
}

export interface ServerContext {
  readonly platform: Platform;
  readonly registry: DatabaseRegistry;
  /** Custom enclaves (uploaded modules with signed manifests), under `<dir>/enclaves/`. */
  readonly enclaves: EnclaveRegistry;
  readonly tokens: TokenStore;
  readonly streams: StreamTable;
  readonly limits: Limits;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  /** Databases that moved to another peer (runtime/migration/forwarding/FORWARDING.md). */
  readonly forwarding: ForwardingTable;
  /** Where database work runs: in-process, or on worker threads. */
  readonly engine: Engine;
  /** Live migrations in and out of this server. */
  readonly migrations: ServerMigrations;
}

export interface SelkieHandler {
  (req: Request): Promise<Response>;
  /** The same handler on the plain request shape (used by serve() for node:http). */
  handle(req: CoreRequest): Promise<CoreResponse>;
  /** Refuses new requests (503), waits for in-flight ones (bounded), rolls back open streams, closes databases. */
  shutdown(opts?: { timeoutMs?: number }): Promise<void>;
  readonly context: ServerContext;
  readonly inFlight: number;
  /** True once shutdown() began. */
  readonly draining: boolean;
}

const HRANA_DB_RE = /^\/db\/([^/]+)\/(v2|v3|v3-protobuf)(\/pipeline|\/cursor)?$/;
const HRANA_ROOT_RE = /^\/(v2|v3|v3-protobuf)(\/pipeline|\/cursor)?$/;

export function createHandler(opts: HandlerOptions): SelkieHandler {
  const limits = resolveLimits(opts.limits);
  const logger = opts.logger ?? quiet;
  const registry = new DatabaseRegistry({ dir: path.join(opts.dir, "databases"), platform: opts.platform, ...(opts.epc !== undefined ? { epc: opts.epc } : {}) });
  const tokens = new TokenStore(opts.dir);
  const forwarding = ForwardingTable.open(opts.dir);
  const enclaves = new EnclaveRegistry({ dir: path.join(opts.dir, "enclaves"), platform: opts.platform, grants: new Set(opts.grants ?? []), logger });
  const streams = new StreamTable(limits.streamIdleMs, limits.maxStreams, (s, rolledBack) =>
    logger.info({ event: "stream_expired", db: s.host.name, rolledBack }, rolledBack ? "an idle stream expired; its open transaction was rolled back" : "an idle stream expired"),
  );
  const engine: Engine = opts.workers
    ? new WorkerEngine({ workers: opts.workers, registry, platform: opts.platform, limits, logger, ...(opts.epc !== undefined ? { epc: opts.epc } : {}) })
    : new InProcessEngine(registry, streams, limits);
  const metrics = new ServerMetrics({
    epc: opts.platform.epc,
    enclavesOpen: () => engine.stats().enclavesOpen,
    streamsOpen: () => engine.stats().streamsOpen,
    waiting: () => engine.stats().waiting,
    groupCommits: () => engine.stats(),
    recycles: () => engine.stats().recycles,
    paging: () => pagingStats(opts.platform, engine),
    forwardedDatabases: () => forwarding.size,
    migrationsRunning: () => {
      const r = { source: 0, destination: 0 };
      for (const m of migrations.list().running) r[m.role]++;
      return r;
    },
  });
  const ctx: ServerContext = { platform: opts.platform, registry, enclaves, tokens, streams, limits, metrics, logger, engine, forwarding, migrations: undefined as unknown as ServerMigrations };
  const migrations = new ServerMigrations(ctx, opts.migration);
  Object.assign(ctx, { migrations });
  let inFlight = 0;
  let draining = false;

  const authenticate = (req: CoreRequest): Principal => {
    const h = req.header("authorization");
    const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    const p = m ? tokens.authenticate(m[1]!) : undefined;
    if (!p) throw unauthorized();
    return p;
  };
  const requireAdmin = (req: CoreRequest): Principal => {
    const p = authenticate(req);
    if (!p.admin) throw forbidden("ADMIN_REQUIRED", "this needs an admin token");
    return p;
  };

  /** Sends the request on to the new owner of a database that moved (forward.ts). */
  function forwarded(req: CoreRequest, name: string, to: string, started: number): Promise<CoreResponse> {
    forwarding.counted(name);
    metrics.forwarded.inc({ db: name });
    return forward(req, { to, path: req.pathname, deadline: started + limits.requestTimeoutMs, maxBodyBytes: limits.maxBodyBytes, maxResponseBytes: 4 * limits.maxResponseBytes });
  }

  async function pipeline(req: CoreRequest, dbName: string | undefined, started: number, ep: HranaEndpoint = JSON_PIPELINE): Promise<CoreResponse> {
    const deadline = started + limits.requestTimeoutMs;
    // A database on its way in (or frozen here) holds its requests, before the token is checked:
    // the tokens limited to it arrive with it (migrations.ts).
    // DB_MOVED from a hold: the forwarding entry is in place, checked below.
    const held = (n: string): Promise<void> =>
      migrations.hold(n, deadline).catch((e: unknown) => {
        if (!(e instanceof HttpError && e.code === "DB_MOVED")) throw e;
      });
    if (dbName !== undefined) await held(dbName);
    let p: Principal;
    try {
      p = authenticate(req);
    } catch (e) {
      if (migrations.incoming === 0) throw e;
      await migrations.settledIncoming(deadline);
      p = authenticate(req);
    }
    let name = dbName;
    if (name === undefined) {
      if (p.db === null) throw badRequest("NO_DATABASE", "an admin token must name the database in the URL: http://HOST:PORT/db/NAME/ (with the trailing slash)");
      name = p.db;
      await held(name);
    } else if (!p.admin && p.db !== name) {
      throw forbidden("TOKEN_SCOPE", "this token is not valid for this database");
    }
    const body = await req.body(limits.maxBodyBytes);
    const again: CoreRequest = { ...req, body: async () => body };
    // Moved while this request waited: its new owner answers it.
    const moved = forwarding.get(name);
    if (moved !== undefined) return forwarded(again, name, moved.to, started);
    try {
      // Parsed where it runs (engine.ts): on the database's worker, or here with --workers 0.
      const a = await engine.pipeline(name, p, body, started, draining, ep);
      for (const code of a.codes) metrics.error(code);
      return { status: 200, headers: { "content-type": a.contentType }, body: a.body };
    } catch (e) {
      const to = e instanceof HttpError && e.code === "DB_MOVED" ? forwarding.get(name) : undefined;
      if (to !== undefined) return forwarded(again, name, to.to, started);
      throw e;
    }
  }

  /** Dispatch; returns the metrics route label with the response. */
  async function route(req: CoreRequest, started: number): Promise<[string, CoreResponse]> {
    const { method, pathname } = req;
    const only = (allowed: string, label: string, fn: () => Promise<CoreResponse> | CoreResponse): Promise<[string, CoreResponse]> | [string, CoreResponse] => {
      if (method !== allowed) throw new HttpError(405, "METHOD_NOT_ALLOWED", `${pathname} takes ${allowed}, not ${method}`, { allow: allowed });
      const r = fn();
      return r instanceof Promise ? r.then((x) => [label, x]) : [label, r];
    };
    let m: RegExpExecArray | null;
    if (draining && !pathname.endsWith("/pipeline") && !pathname.endsWith("/cursor")) throw shuttingDown();
    const hrana = (name: string | undefined, version: string, action: string | undefined): Promise<[string, CoreResponse]> | [string, CoreResponse] => {
      if (action === "/cursor" && version === "v2") throw notFound("NOT_FOUND", "cursors are Hrana 3: use v3/cursor or v3-protobuf/cursor");
      const ep = { protobuf: version === "v3-protobuf", cursor: action === "/cursor" };
      if (action) return only("POST", ep.cursor ? "hrana_cursor" : "hrana_pipeline", () => pipeline(req, name, started, ep));
      return only("GET", "hrana_version", () => text(200, `Hrana over HTTP (${ep.protobuf ? "protobuf" : "JSON"}) is supported\n`));
    };
    if ((m = HRANA_DB_RE.exec(pathname))) {
      const name = decodeSegment(m[1]!);
      // A database that moved is answered by its new owner, whatever this server still has.
      const moved = forwarding.get(name);
      if (moved !== undefined) return ["forwarded", await forwarded(req, name, moved.to, started)];
      return hrana(name, m[2]!, m[3]);
    }
    if ((m = HRANA_ROOT_RE.exec(pathname))) return hrana(undefined, m[1]!, m[2]);
    if (pathname === "/health") return only("GET", "health", () => text(200, "ok\n"));
    if (pathname === "/metrics") {
      return only("GET", "metrics", async () => {
        if (!opts.metricsPublic) requireAdmin(req);
        const t = await metrics.text();
        return { status: 200, headers: { "content-type": t.contentType }, body: t.body };
      });
    }
    if (pathname === "/v1" || pathname.startsWith("/v1/")) {
      requireAdmin(req);
      const parts = pathname.slice(3).split("/").filter((s) => s !== "").map(decodeSegment);
      return (await forwardingRoutes(ctx, req, parts)) ?? (await migrationRoutes(ctx, req, parts)) ?? management(ctx, req, parts);
    }
    if (/^\/db\/(v2|v3)(\/pipeline)?$/.test(pathname) || /^\/db\/[^/]+$/.test(pathname)) {
      throw notFound("NOT_FOUND", "no such route; a database's Hrana URL is http://HOST:PORT/db/NAME/ (with the trailing slash)");
    }
    throw notFound("NOT_FOUND", `no route for ${method} ${pathname}`);
  }

  async function handle(req: CoreRequest): Promise<CoreResponse> {
    const started = Date.now();
    const t0 = process.hrtime.bigint();
    let label = "unknown";
    let res: CoreResponse;
    inFlight++;
    try {
      [label, res] = await route(req, started);
    } catch (e) {
      res = errorResponse(e, req, logger);
      metrics.error(JSON.parse(res.body as string).code as string);
    } finally {
      inFlight--;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    metrics.observe(label, req.method, res.status, seconds);
    logger.debug({ method: req.method, path: req.pathname, route: label, status: res.status, ms: Math.round(seconds * 1e4) / 10 }, "request");
    return res;
  }

  const web = (async (req: Request) => toWebResponse(await handle(fromWebRequest(req)))) as SelkieHandler;
  Object.defineProperties(web, {
    handle: { value: handle },
    context: { value: ctx },
    inFlight: { get: () => inFlight },
    draining: { get: () => draining },
    shutdown: {
      value: async (o: { timeoutMs?: number } = {}): Promise<void> => {
        draining = true;
        // Wait (bounded) for in-flight requests, and briefly for streams inside a transaction to
        // come back and end it; after that grace their transactions are rolled back, so requests
        // queued behind a client that went away can finish.
        const start = Date.now();
        const timeout = o.timeoutMs ?? 10_000;
        const grace = Math.min(timeout, 2_000);
        for (;;) {
          const elapsed = Date.now() - start;
          if (elapsed >= timeout) break;
          const holding = await engine.holdingLease();
          if (elapsed >= grace && holding > 0) await engine.closeStreams();
          if (inFlight === 0 && holding === 0) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        migrations.close();
        enclaves.closeAll();
        await engine.closeAll();
      },
    },
  });
  return web;
}


function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw badRequest("BAD_PATH", "the URL path has bad percent-encoding");
  }
}

/** The JSON error body for anything thrown; unexpected errors are logged and answered with 500. */
export function errorResponse(e: unknown, req: CoreRequest, logger: Logger): CoreResponse {
  if (e instanceof HttpError) {
    if (e.status >= 500) logger.warn({ method: req.method, path: req.pathname, status: e.status, code: e.code }, e.message);
    return json(e.status, { message: e.message, code: e.code }, e.headers);
  }
  if (e instanceof SelkieError && e.code === "EPC_ADMISSION_REFUSED") {
    // The platform's EPC budget is full: opening another database's enclave must wait.
    logger.warn({ method: req.method, path: req.pathname, code: e.code }, e.message);
    return json(503, { message: e.message, code: e.code }, { "retry-after": "5" });
  }
  if (e instanceof DatabaseLockedError) {
    logger.warn({ method: req.method, path: req.pathname, code: e.code, err: e.message }, "database locked by another process");
    return json(409, { message: clientMessage(e.message), code: e.code });
  }
  if (e instanceof SelkieError) {
    // Storage refusals (tampered, rolled back), enclave faults, platform errors: the server's state.
    // The log has the full message; the client gets it without the server's paths.
    logger.error({ method: req.method, path: req.pathname, code: e.code, err: e.message }, "request failed");
    return json(500, { message: clientMessage(e.message), code: e.code });
  }
  logger.error({ method: req.method, path: req.pathname, err: e instanceof Error ? e.stack : String(e) }, "internal error");
  return json(500, { message: "internal server error (logged on the server)", code: "INTERNAL" });
}
