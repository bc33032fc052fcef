/**
 * UNTRUSTED (server). serve(): the handler on node:http, with graceful shutdown.
 *
 * Hrana over WebSocket is served on the same port (hrana/ws.ts); at shutdown its connections are
 * closed first, once their running requests ended, which rolls back their streams' transactions.
 *
 * Shutdown order (every acknowledged commit is already durable: a COMMIT returns only after the
 * sealed store's commit record is on disk): answer new work with 503 SHUTTING_DOWN and
 * "connection: close" (streams already open may still commit); wait for in-flight requests
 * (bounded); roll back transactions of streams still open; close every database (its enclave
 * destroyed, its lock released); close the listener and the remaining connections.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { createHandler, errorResponse, type HandlerOptions, type SelkieHandler } from "./handler.js";
import { tooLarge, type CoreRequest, type CoreResponse } from "./http.js";
import { UsageError } from "../../errors.js";
import { HttpError } from "./errors.js";
import { attachHranaWebSockets } from "./hrana/ws.js";
import { attachMigrationEndpoint } from "./migration-endpoint.js";

export interface ServeOptions extends HandlerOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * Serve HTTPS (node:tls, TLS 1.2 and 1.3) with this PEM certificate chain and private key, so
   * `https://` and `libsql://` URLs work. Without it the server speaks plain HTTP.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly handler: SelkieHandler;
  readonly server: http.Server | https.Server;
  /** Graceful shutdown; resolves when every database is closed. */
  close(opts?: { timeoutMs?: number }): Promise<void>;
}

function coreRequest(req: http.IncomingMessage): CoreRequest {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return {
    method: req.method ?? "GET",
    pathname: q < 0 ? url : url.slice(0, q),
    header: (n) => {
      const v = req.headers[n.toLowerCase()];
      return Array.isArray(v) ? v.join(", ") : v;
    },
    body: (limit) =>
      new Promise<Buffer>((resolve, reject) => {
        const declared = Number(req.headers["content-length"] ?? "0");
        if (declared > limit) return reject(tooLarge(limit));
        // Past the limit the rest is read and dropped (up to a hard cap), so the client, still
        // sending, can read the 413 instead of failing on a reset connection.
        const cap = limit * 4 + 1024 * 1024;
        const chunks: Buffer[] = [];
        let total = 0;
        let done = false;
        req.on("data", (c: Buffer) => {
          if (done) return;
          total += c.length;
          if (total > cap) {
            done = true;
            req.pause();
            return reject(tooLarge(limit));
          }
          if (total <= limit) chunks.push(c);
        });
        req.on("end", () => {
          if (done) return;
          done = true;
          if (total > limit) reject(tooLarge(limit));
          else resolve(Buffer.concat(chunks, total));
        });
        req.on("error", () => {
          // ECONNRESET "aborted": the client went away mid-body. Not a server fault: no stack trace.
          if (!done) (done = true), reject(new HttpError(400, "ABORTED", "the request body ended early: the client closed the connection"));
        });
        req.on("close", () => {
          // The client went away before the body ended: nothing runs for this request.
          if (!done) (done = true), reject(new HttpError(400, "ABORTED", "the request body ended early: the client closed the connection"));
        });
      }),
  };
}

/**
 * Back-pressure for clients that do not read their responses: the bytes of responses handed to
 * node:http but not yet flushed to the socket are counted; past a bound, new SQL requests get 503
 * RESPONSES_PENDING (nothing runs for them) until clients read or their connections are cut. A
 * response not flushed within the drain time has its connection destroyed, which frees its bytes.
 */
class PendingResponses {
  bytes = 0;
  constructor(
    readonly maxBytes: number,
    readonly drainMs: number,
  ) {}

  track(res: http.ServerResponse, n: number): void {
    if (res.writableFinished) return;
    this.bytes += n;
    let done = false;
    const settle = (): void => {
      if (done) return;
      done = true;
      this.bytes -= n;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      settle();
      res.destroy(); // the client stopped reading: its connection goes, and its buffered response
    }, this.drainMs);
    timer.unref();
    res.once("finish", settle);
    res.once("close", settle);
  }

  get full(): boolean {
    return this.bytes > this.maxBytes;
  }
}

function send(res: http.ServerResponse, r: CoreResponse, closing: boolean, pending: PendingResponses): void {
  const body = typeof r.body === "string" ? Buffer.from(r.body, "utf8") : r.body;
  res.writeHead(r.status, { ...r.headers, "content-length": String(body.length), ...(closing ? { connection: "close" } : {}) });
  res.end(body);
  pending.track(res, body.length);
}

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const handler = createHandler(opts);
  const logger = handler.context.logger;
  const limits = handler.context.limits;
  const pending = new PendingResponses(4 * limits.maxResponseBytes, limits.requestTimeoutMs);
  // Idle keep-alive connections stay open 65 s (Node's default is 5 s): a client (undici, hence
  // @libsql/client) reuses an idle connection up to 1 s before the advertised timeout, and with 5 s a
  // pause of ~4 s raced the server's close and failed the client's next request with "other side closed".
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const core = coreRequest(req);
    if (pending.full && core.pathname.endsWith("/pipeline")) {
      req.resume();
      const busy = new HttpError(503, "RESPONSES_PENDING", `the server holds ${pending.bytes} bytes of responses that clients have not read yet; retry shortly`, { "retry-after": "1" });
      send(res, errorResponse(busy, core, logger), handler.draining, pending);
      return;
    }
    handler.handle(core).then(
      (r) => send(res, r, handler.draining, pending),
      (e) => send(res, errorResponse(e, core, logger), handler.draining, pending),
    );
  };
  const serverOpts = { requestTimeout: limits.requestTimeoutMs + 5_000, keepAliveTimeout: 65_000 };
  const server = opts.tls
    ? https.createServer({ ...serverOpts, cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2" }, listener)
    : http.createServer(serverOpts, listener);
  // Hrana over WebSocket on the same port (ws://, or wss:// with TLS): hrana/ws.ts.
  const sockets = attachHranaWebSockets(server, handler);
  const migration = attachMigrationEndpoint(server, handler.context, opts.migration, () => handler.draining);
  const host = opts.host ?? "127.0.0.1";
  const listening = new Promise<void>((resolve, reject) => {
    const failed = (e: NodeJS.ErrnoException): void => {
      if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") {
        const what = e.code === "EADDRINUSE" ? "is in use by another process" : e.code === "EACCES" ? "needs privileges this process lacks" : "is not an address of this machine";
        reject(new UsageError("SERVE_LISTEN", `cannot listen on ${host}:${opts.port}: the address ${what} (${e.code}); choose another --port or --host`, { cause: e }));
      } else reject(e);
    };
    server.once("error", failed);
    server.listen(opts.port, host, () => {
      server.off("error", failed);
      resolve();
    });
  });
  try {
    await listening;
    // Unfinished migrations settle before anything is served (a source's COMMITTING completes first).
    await handler.context.migrations.start();
  } catch (e) {
    // Nothing was served: stop what started (worker threads would keep the process alive).
    migration.closeAll("the server could not start");
    await handler.shutdown({ timeoutMs: 0 }).catch(() => undefined);
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  handler.context.migrations.sourceAddress = opts.migration?.advertise ?? url;
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    host,
    handler,
    server,
    close: (o = {}) =>
      (closing ??= (async () => {
        // The listener stays open while draining: closing it would also cut idle keep-alive
        // connections that a client may be sending on this very moment. New work gets 503 and
        // every response says "connection: close"; then the listener and connections close.
        try {
          await sockets.close(o.timeoutMs);
          await handler.shutdown(o);
        } finally {
          migration.closeAll("the server is shutting down");
          // Even when closing a database failed: the listener must not keep the process alive.
          const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
          server.closeAllConnections();
          await stopped;
        }
      })()),
  };
}
