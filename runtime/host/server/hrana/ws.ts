/**
 * UNTRUSTED (server). Hrana over WebSocket (PROTOCOL.md §4) on the port of `selkie serve`:
 * subprotocols hrana3-protobuf, hrana3, hrana2 and hrana1, with the `ws` package.
 *
 * Each WebSocket stream is one stream of the server's stream table, held through its baton exactly
 * as an HTTP client holds it: every request of the stream runs as a one-request pipeline
 * (pipeline.ts) plus a `get_autocommit` that tells whether the stream is inside a transaction. So
 * leases, transaction lives, idle expiry, the authorizer and every limit are HTTP's.
 *
 * State of a connection:  AWAITING_HELLO --hello ok--> READY --close--> CLOSED
 *                         AWAITING_HELLO --hello bad / request--> CLOSED (3000)
 * State of a stream:      OPEN (baton null or parked) --close_stream / socket closed--> gone
 *                         OPEN --expired or rolled back inside a transaction--> DEAD (its requests
 *                         answer STREAM_EXPIRED until close_stream)
 */
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket, type RawData } from "ws";
import { errorResponse, type SelkieHandler } from "../handler.js";
import { json, type CoreRequest } from "../http.js";
import { HttpError } from "../errors.js";
import type { Principal } from "../tokens.js";
import { parsePipeline, type StreamRequest } from "./protocol.js";
import { MAX_STORED_SQL } from "./streams.js";
import { resultEntries, type CursorEntry } from "./cursor.js";
import type { HranaError } from "./execute.js";
import { clientMsgIn, serverMsgOut } from "./protobuf.js";

/** Subprotocols in the server's order of preference. */
const SUBPROTOCOLS = ["hrana3-protobuf", "hrana3", "hrana2", "hrana1"] as const;
import { CHANNEL_PATH as MIGRATION_CHANNEL_PATH } from "../../../migration/channel/connect.js";
import { forwardUpgrade } from "./ws-forward.js";
import { movedError } from "../freeze.js";
const WS_PATH_RE = /^\/(?:db\/([^/]+)\/?)?$/;
export const MAX_WS_STREAMS = 256;
export const MAX_WS_CURSORS = 64;
export const MAX_WS_PENDING = 128;
const MAX_FETCH = 1024;

type Json = Record<string, unknown>;
type Response = Json & { type: string };

class WsStream {
  baton: string | null = null;
  inTxn = false;
  dead: HttpError | undefined;
  queue: Promise<unknown> = Promise.resolve();
  cursor: number | undefined;
}

interface WsCursor {
  streamId: number;
  ready: Promise<void>;
  entries: CursorEntry[];
  pos: number;
}

const protoError = (message: string): HttpError => new HttpError(400, "HRANA_PROTO_ERROR", message);
const reqError = (code: string, message: string): HttpError => new HttpError(400, code, message);

/** JSON for a pipeline body; ±Infinity (a protobuf double) travels as ±1e999, as Hrana JSON has it. */
function hranaJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x === Infinity ? "\u0000+inf" : x === -Infinity ? "\u0000-inf" : x))
    .replaceAll('"\\u0000+inf"', "1e999")
    .replaceAll('"\\u0000-inf"', "-1e999");
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function int32(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw protoError(`${where} must be a 32-bit integer`);
  return v;
}

export interface HranaWebSockets {
  /** Open connections. */
  readonly size: number;
  /** Refuses new connections, closes open ones (1001) once their running requests end (bounded). */
  close(timeoutMs?: number): Promise<void>;
}

/** Serves Hrana over WebSocket on `server`'s upgrade requests. */
export function attachHranaWebSockets(server: Server, handler: SelkieHandler): HranaWebSockets {
  const { tokens, limits, logger, engine } = handler.context;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxBodyBytes,
    perMessageDeflate: false,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const conns = new Set<Connection>();
  let closing = false;
  /** Bytes of responses a connection may leave unread before it is cut (as HTTP's pending bound). */
  const maxBuffered = 4 * limits.maxResponseBytes;

  const refuse = (socket: Duplex, status: number, code: string, message: string): void => {
    const body = JSON.stringify({ message, code });
    socket.end(`HTTP/1.1 ${status} ${status === 404 ? "Not Found" : status === 503 ? "Service Unavailable" : "Bad Request"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  };

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => {});
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path === MIGRATION_CHANNEL_PATH) return; // the migration channel's own upgrade (migration-endpoint.ts)
    const m = WS_PATH_RE.exec(path);
    if (!m) return refuse(socket, 404, "NOT_FOUND", "Hrana over WebSocket is served on / (the token's database) and /db/NAME");
    if (closing || handler.draining) return refuse(socket, 503, "SHUTTING_DOWN", "the server is shutting down; retry on another server or later");
    const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    if (!SUBPROTOCOLS.some((p) => offered.includes(p))) {
      return refuse(socket, 400, "WS_NO_SUBPROTOCOL", `offer one of the subprotocols ${SUBPROTOCOLS.join(", ")} (Sec-WebSocket-Protocol)`);
    }
    let dbName: string | undefined;
    try {
      dbName = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    } catch {
      return refuse(socket, 400, "BAD_PATH", "the URL path has bad percent-encoding");
    }
    // A database that moved: the whole connection is tunnelled to its new owner.
    const moved = dbName === undefined ? undefined : handler.context.forwarding.get(dbName);
    if (moved !== undefined) {
      handler.context.forwarding.counted(dbName!);
      handler.context.metrics.forwarded.inc({ db: dbName! });
      return forwardUpgrade(req, socket, head, moved.to, url, limits.requestTimeoutMs);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c = new Connection(ws, dbName);
      conns.add(c);
      ws.once("close", () => {
        conns.delete(c);
        c.closed();
      });
    });
  });

  class Connection {
    readonly protobuf: boolean;
    principal: Principal | undefined;
    /** The token of the last successful hello: checked again at every request, as HTTP checks its header. */
    #jwt: string | undefined;
    readonly streams = new Map<number, WsStream>();
    readonly sqls = new Map<number, string>();
    readonly cursors = new Map<number, WsCursor>();
    pending = 0;
    #running = new Set<Promise<unknown>>();

    constructor(
      readonly ws: WebSocket,
      readonly dbName: string | undefined,
    ) {
      this.protobuf = ws.protocol === "hrana3-protobuf";
      ws.on("message", (data, isBinary) => this.#message(data, isBinary));
      ws.on("error", (e) => logger.debug({ err: e.message }, "websocket error"));
    }

    get version(): number {
      return this.ws.protocol === "hrana2" ? 2 : this.ws.protocol === "hrana1" ? 1 : 3;
    }

    #send(msg: Json): void {
      if (this.ws.readyState !== this.ws.OPEN) return;
      this.ws.send(this.protobuf ? serverMsgOut(msg) : (json(200, msg).body as string));
      // A client that does not read its responses does not make the server hold them without end.
      if (this.ws.bufferedAmount > maxBuffered) {
        logger.warn({ event: "ws_not_reading", db: this.dbName, bytes: this.ws.bufferedAmount }, "a WebSocket client does not read its responses; its connection is cut");
        this.ws.terminate();
      }
    }

    #fail(code: number, reason: string): void {
      // A close reason is at most 123 bytes.
      this.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    }

    #message(data: RawData, isBinary: boolean): void {
      if (isBinary !== this.protobuf) {
        return this.#fail(3003, this.protobuf ? "hrana3-protobuf takes binary messages only" : "JSON subprotocols take text messages only");
      }
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      let msg: Json;
      try {
        const parsed: unknown = this.protobuf ? clientMsgIn(bytes) : JSON.parse(bytes.toString("utf8"));
        if (!isObject(parsed)) throw protoError("a client message must be an object");
        msg = parsed;
      } catch (e) {
        return this.#fail(3001, `HRANA_PROTO_ERROR: ${(e as Error).message}`);
      }
      if (msg.type === "hello") return this.#hello(msg.jwt);
      if (msg.type !== "request") return this.#fail(3001, "HRANA_PROTO_ERROR: a client message is hello or request");
      if (!this.principal) return this.#fail(3000, "HELLO_REQUIRED: send hello with a token before requests");
      // A token revoked since the hello (selkie token revoke, DELETE /v1/tokens/ID) ends the connection.
      if (!tokens.authenticate(this.#jwt!)) return this.#fail(3000, "UNAUTHORIZED: the token of this connection was revoked");
      const id = msg.request_id;
      if (typeof id !== "number" || !Number.isInteger(id) || id < -(2 ** 31) || id >= 2 ** 31) {
        return this.#fail(3001, "HRANA_PROTO_ERROR: request_id must be a 32-bit integer");
      }
      if (this.pending >= MAX_WS_PENDING) {
        return this.#answer(id, Promise.reject(new HttpError(503, "TOO_MANY_REQUESTS", `a connection has at most ${MAX_WS_PENDING} requests queued or running; wait for responses before sending more`)));
      }
      let result: Promise<Response>;
      try {
        result = this.#request(msg.request, this.principal);
      } catch (e) {
        result = Promise.reject(e);
      }
      this.#answer(id, result);
    }

    #answer(id: number, result: Promise<Response>): void {
      this.pending++;
      const t0 = process.hrtime.bigint();
      const seconds = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
      const p = result.then(
        (response) => {
          handler.context.metrics.observe("hrana_ws", "WS", 200, seconds());
          this.#send({ type: "response_ok", request_id: id, response });
        },
        (e: unknown) => {
          const error = this.#error(e);
          handler.context.metrics.observe("hrana_ws", "WS", e instanceof HttpError ? e.status : 500, seconds());
          this.#send({ type: "response_error", request_id: id, error });
          // The database moved (a live migration): end this connection; a client that reconnects
          // to this URL is tunnelled to the new owner (ws-forward.ts).
          if (this.principal !== undefined && handler.context.forwarding.get(this.#db) !== undefined) {
            this.#fail(1012, "DB_MOVED: the database moved to another server; reconnect to this URL");
          }
        },
      );
      this.#running.add(p);
      void p.finally(() => {
        this.pending--;
        this.#running.delete(p);
      });
    }

    #error(e: unknown): HranaError {
      const fake: CoreRequest = { method: "WS", pathname: this.dbName ? `/db/${this.dbName}` : "/", header: () => undefined, body: () => Promise.resolve(Buffer.alloc(0)) };
      const body = JSON.parse(errorResponse(e, fake, logger).body as string) as HranaError;
      handler.context.metrics.error(body.code);
      return { message: body.message, code: body.code };
    }

    #hello(jwt: unknown): void {
      const p = typeof jwt === "string" ? tokens.authenticate(jwt) : undefined;
      let error: HranaError | undefined;
      if (!p) error = { message: "authentication required: send hello with a valid token as jwt", code: "UNAUTHORIZED" };
      else if (this.dbName === undefined && p.db === null) error = { message: "an admin token must name the database in the URL: ws://HOST:PORT/db/NAME", code: "NO_DATABASE" };
      else if (this.dbName !== undefined && !p.admin && p.db !== this.dbName) error = { message: "this token is not valid for this database", code: "TOKEN_SCOPE" };
      if (error) {
        this.#send({ type: "hello_error", error });
        return this.#fail(3000, `${error.code}: hello refused`);
      }
      this.principal = p;
      this.#jwt = jwt as string;
      this.#send({ type: "hello_ok" });
    }

    get #db(): string {
      return this.dbName ?? this.principal!.db!;
    }

    #stream(v: unknown): [number, WsStream] {
      const id = int32(v, "stream_id");
      const s = this.streams.get(id);
      if (!s) throw reqError("STREAM_UNKNOWN", `no stream ${id} is open on this connection (open_stream first)`);
      return [id, s];
    }

    /** Checks a statement, batch or SQL reference with the pipeline's parser (same rules as HTTP). */
    #parse(r: Json): StreamRequest {
      const pl = parsePipeline({ baton: null, requests: [r] }, limits.maxSqlBytes);
      const req = pl.requests[0]!;
      // Stored SQL is the connection's: resolved now, so a later close_sql does not change it.
      // An unknown sql_id is left for the pipeline to refuse (SQL_ID_UNKNOWN, per batch step).
      const resolve = <T extends { sql?: string; sqlId?: number }>(x: T): T => {
        if (x.sqlId === undefined || !this.sqls.has(x.sqlId)) return x;
        const { sqlId: _id, ...rest } = x;
        return { ...rest, sql: this.sqls.get(x.sqlId)! } as T;
      };
      if (req.type === "execute") return { ...req, stmt: resolve(req.stmt) };
      if (req.type === "batch") return { ...req, steps: req.steps.map((s) => ({ ...s, stmt: resolve(s.stmt) })) };
      if (req.type === "sequence" || req.type === "describe") return resolve(req);
      return req;
    }

    /**
     * A statement, batch or SQL reference checked with the pipeline's parser (same rules as HTTP), in
     * its JSON form with the connection's stored SQL put in (resolved now, so a later close_sql does
     * not change it; an unknown sql_id is left for the pipeline to refuse, per batch step).
     */
    #resolved(r: Json): Json {
      this.#parse(r);
      const stmt = (x: unknown): unknown => {
        if (!isObject(x) || typeof x.sql_id !== "number" || !this.sqls.has(x.sql_id)) return x;
        const { sql_id: _id, ...rest } = x;
        return { ...rest, sql: this.sqls.get(x.sql_id) };
      };
      if (r.type === "execute") return { ...r, stmt: stmt(r.stmt) };
      if (r.type === "batch" && isObject(r.batch) && Array.isArray(r.batch.steps)) {
        return { ...r, batch: { ...r.batch, steps: r.batch.steps.map((st: unknown) => (isObject(st) ? { ...st, stmt: stmt(st.stmt) } : st)) } };
      }
      if (r.type === "sequence" || r.type === "describe") return stmt(r) as Json;
      return r;
    }

    #request(raw: unknown, p: Principal): Promise<Response> {
      if (!isObject(raw)) throw protoError("request must be an object");
      const type = raw.type;
      switch (type) {
        case "open_stream": {
          const id = int32(raw.stream_id, "stream_id");
          if (this.streams.has(id)) throw reqError("STREAM_ID_IN_USE", `stream ${id} is already open on this connection`);
          if (this.streams.size >= MAX_WS_STREAMS) throw reqError("TOO_MANY_STREAMS", `a connection has at most ${MAX_WS_STREAMS} open streams; close some`);
          this.streams.set(id, new WsStream());
          return Promise.resolve({ type });
        }
        case "close_stream": {
          const [id, s] = this.#stream(raw.stream_id);
          this.streams.delete(id);
          for (const [cid, c] of this.cursors) if (c.streamId === id) this.cursors.delete(cid);
          return this.#queue(s, async () => {
            await this.#end(s);
            return { type };
          });
        }
        case "execute":
        case "batch":
        case "sequence":
        case "describe":
        case "get_autocommit": {
          if (type !== "execute" && type !== "batch" && this.version < 2) throw protoError(`${type} needs hrana2 or later`);
          const [, s] = this.#stream(raw.stream_id);
          const req = this.#resolved(type === "batch" ? { type, batch: raw.batch } : { ...raw, stream_id: undefined });
          return this.#queue(s, async () => {
            const r = await this.#run(s, req, p);
            if (r.type === "error") throw new HttpError(400, r.error.code, r.error.message);
            return r.response;
          });
        }
        case "store_sql": {
          if (this.version < 2) throw protoError("store_sql needs hrana2 or later");
          const req = this.#parse(raw) as Extract<StreamRequest, { type: "store_sql" }>;
          if (this.sqls.has(req.sqlId)) throw reqError("SQL_ID_IN_USE", `sql_id ${req.sqlId} is in use on this connection; close_sql it first`);
          if (this.sqls.size >= MAX_STORED_SQL) throw reqError("TOO_MANY_SQL", `a connection stores at most ${MAX_STORED_SQL} SQL texts; close_sql some`);
          this.sqls.set(req.sqlId, req.sql);
          return Promise.resolve({ type });
        }
        case "close_sql":
          this.sqls.delete(int32(raw.sql_id, "sql_id"));
          return Promise.resolve({ type });
        case "open_cursor": {
          if (this.version < 3) throw protoError("cursors need hrana3");
          const [sid, s] = this.#stream(raw.stream_id);
          const cid = int32(raw.cursor_id, "cursor_id");
          if (this.cursors.has(cid)) throw reqError("CURSOR_ID_IN_USE", `cursor ${cid} is already open on this connection`);
          if (s.cursor !== undefined && this.cursors.has(s.cursor)) throw reqError("CURSOR_BUSY", `stream ${sid} already has cursor ${s.cursor} open; close it first`);
          if (this.cursors.size >= MAX_WS_CURSORS) throw reqError("TOO_MANY_CURSORS", `a connection has at most ${MAX_WS_CURSORS} open cursors; close some`);
          const req = this.#resolved({ type: "batch", batch: raw.batch });
          const cursor: WsCursor = { streamId: sid, ready: Promise.resolve(), entries: [], pos: 0 };
          const done = this.#queue(s, async () => {
            cursor.entries = resultEntries(await this.#run(s, req, p));
            return { type };
          });
          cursor.ready = done.then(
            () => {},
            (e: unknown) => void (cursor.entries = [{ type: "error", error: this.#error(e) }]),
          );
          this.cursors.set(cid, cursor);
          s.cursor = cid;
          return done;
        }
        case "fetch_cursor": {
          const cid = int32(raw.cursor_id, "cursor_id");
          const max = raw.max_count;
          if (typeof max !== "number" || !Number.isInteger(max) || max < 0 || max >= 2 ** 32) throw protoError("max_count must be a 32-bit unsigned integer");
          const c = this.cursors.get(cid);
          if (!c) throw reqError("CURSOR_UNKNOWN", `no cursor ${cid} is open on this connection`);
          return c.ready.then(() => {
            const entries = c.entries.slice(c.pos, c.pos + Math.min(max, MAX_FETCH));
            c.pos += entries.length;
            return { type, entries, done: c.pos >= c.entries.length };
          });
        }
        case "close_cursor":
          this.cursors.delete(int32(raw.cursor_id, "cursor_id"));
          return Promise.resolve({ type });
        default:
          throw protoError(`request.type ${JSON.stringify(type)} is not a Hrana WebSocket request`);
      }
    }

    /** Runs `fn` after the stream's earlier requests. */
    #queue<T>(s: WsStream, fn: () => T | Promise<T>): Promise<T> {
      const next = s.queue.then(fn, fn);
      s.queue = next.catch(() => {});
      return next;
    }

    /** One stream request as a pipeline on the stream's baton (see the top of the file). */
    async #run(s: WsStream, r: Json, p: Principal): Promise<{ type: "ok"; response: Response } | { type: "error"; error: HranaError }> {
      if (s.dead) throw s.dead;
      const fw = handler.context.forwarding.get(this.#db);
      if (fw !== undefined) throw movedError(this.#db, fw.to); // then the connection ends (#answer)
      const started = Date.now();
      // Through the engine, like an HTTP pipeline: the database may live on a worker thread, which
      // parses the request itself (typed values do not survive a copy between threads).
      const exec = async (baton: string | null) => {
        const body = Buffer.from(hranaJson({ baton, requests: [r, { type: "get_autocommit" }] }), "utf8");
        const a = await engine.pipeline(this.#db, p, body, started, false);
        return JSON.parse(a.body.toString("utf8")) as { baton: string | null; results: Array<{ type: "ok"; response: Response } | { type: "error"; error: HranaError }> };
      };
      const wasInTxn = s.inTxn;
      let resp;
      try {
        try {
          resp = await exec(s.baton);
        } catch (e) {
          // Outside a transaction an expired stream is nothing to lose: open a new one.
          if (s.baton === null || wasInTxn || !(e instanceof HttpError) || e.code !== "STREAM_EXPIRED") throw e;
          s.baton = null;
          resp = await exec(null);
        }
      } catch (e) {
        // The pipeline ended the stream (and rolled back its transaction).
        s.baton = null;
        s.inTxn = false;
        if (wasInTxn) s.dead = expired();
        throw e;
      }
      s.baton = resp.baton;
      const ac = resp.results[1]!;
      s.inTxn = ac.type === "ok" ? !(ac.response.is_autocommit as boolean) : wasInTxn;
      if (resp.baton === null) {
        if (s.inTxn) s.dead = expired();
        s.inTxn = false;
      }
      return resp.results[0]!;
    }

    /** Ends a stream's server side: rolls back its transaction and frees its lease (a `close` on its baton). */
    async #end(s: WsStream): Promise<void> {
      if (s.baton === null || !this.principal) return;
      const baton = s.baton;
      s.baton = null;
      try {
        await engine.pipeline(this.#db, this.principal, Buffer.from(JSON.stringify({ baton, requests: [{ type: "close" }] }), "utf8"), Date.now(), false);
      } catch {
        // Already expired (and ended by the stream table).
      }
    }

    /** The socket closed: every stream ends once its running requests have. */
    closed(): void {
      for (const s of this.streams.values()) void this.#queue(s, () => this.#end(s));
      this.streams.clear();
      this.cursors.clear();
      this.sqls.clear();
    }

    /** Resolves when no request of this connection is running. */
    async idle(): Promise<void> {
      while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    }
  }

  return {
    get size() {
      return conns.size;
    },
    async close(timeoutMs = 10_000) {
      closing = true;
      const all = [...conns];
      await Promise.race([Promise.all(all.map((c) => c.idle())), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
      for (const c of all) c.ws.close(1001, "server shutting down");
      await new Promise((r) => setTimeout(r, 50));
      for (const c of all) c.ws.terminate();
      wss.close();
    },
  };
}

function expired(): HttpError {
  return new HttpError(400, "STREAM_EXPIRED", "the stream's transaction was rolled back (it expired, ran past its time limit, or failed); close this stream and open a new one");
}
