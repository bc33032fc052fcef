/**
 * UNTRUSTED (server). `POST [db/NAME/]v2/pipeline` and `v3/pipeline`: one Hrana pipeline on one
 * stream (HRANA_3_SPEC "Execute a pipeline of requests").
 *
 * Every request of the pipeline is run in order, even after an earlier one failed; each gets an
 * `ok` or `error` result. Exceptions: a read-only token trying to write aborts the whole HTTP request
 * with 403 (the stream is closed and its transaction rolled back; reads before it changed nothing),
 * and once the request's time limit has passed the remaining requests fail with REQUEST_TIMEOUT
 * (and an open transaction of the stream is rolled back and the stream closed). A statement still
 * running at that deadline is interrupted inside SQLite (STATEMENT_TIMEOUT). Inside an interactive
 * transaction the deadline is also the transaction's end of life (--max-transaction, and the
 * shorter --max-read-transaction for read-only tokens): at it the transaction is rolled back.
 *
 * One-shot autocommit pipelines (execute..., close) go through the database's group commit
 * (db-host.ts): same results, one COMMIT shared by the writers that arrived together.
 */
import type { DbConn, DbHost } from "../db-host.js";
import type { Limits } from "../limits.js";
import { StatementError, timeoutError, toHranaError, type BatchResult, type HranaError, type RunOptions, type SqlRunner } from "./execute.js";
import { busyMessage, isBusy, sleep, STALE_MESSAGE, waitStep } from "./busy.js";
import type { PipelineRequest, Stmt, StreamRequest } from "./protocol.js";
import { stripComments } from "../../../sql/statement.js";
import { endStream, MAX_STORED_SQL, type HranaStream, type StreamTable } from "./streams.js";

type StreamResult = { type: "ok"; response: Record<string, unknown> & { type: string } } | { type: "error"; error: HranaError };

export interface PipelineResponse {
  baton: string | null;
  base_url: string | null;
  results: StreamResult[];
}

export interface PipelineContext {
  host: DbHost;
  streams: StreamTable;
  tokenId: string;
  readOnly: boolean;
  limits: Limits;
  /** When the HTTP request arrived (ms). */
  started: number;
}

/** Statements that control transactions or cannot run inside one: never group-committed. */
const UNGROUPABLE_RE = /^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|PRAGMA|ATTACH|DETACH)\b/i;

/** A one-shot autocommit pipeline (execute... then close, no baton) that a group commit may run. */
function groupable(req: PipelineRequest): boolean {
  const rs = req.requests;
  if (req.baton !== null || rs.length < 2 || rs[rs.length - 1]!.type !== "close") return false;
  for (let i = 0; i < rs.length - 1; i++) {
    const r = rs[i]!;
    if (r.type !== "execute" || r.stmt.sql === undefined) return false;
    const sql = stripComments(r.stmt.sql);
    // OR ROLLBACK would roll the whole group back: such statements run alone.
    if (UNGROUPABLE_RE.test(sql) || /\bROLLBACK\b/i.test(sql)) return false;
  }
  return true;
}

/** True when every statement of a groupable pipeline prepares and is read-only (on a resident connection). */
function readsOnly(runner: SqlRunner, req: PipelineRequest): boolean {
  try {
    return req.requests.every((r) => r.type !== "execute" || runner.prepare(r.stmt.sql!).readonly);
  } catch {
    return false;
  }
}

/** A busy error's message after the wait: what happened and what to do (ISOLATION.md). */
function explainBusy(e: HranaError, waited: number, stale: boolean): HranaError {
  return isBusy(e) ? { ...e, message: stale ? STALE_MESSAGE : busyMessage(waited) } : e;
}

export async function runPipeline(ctx: PipelineContext, req: PipelineRequest): Promise<PipelineResponse> {
  const { host, streams, limits } = ctx;
  if (groupable(req)) {
    const deadline = ctx.started + limits.requestTimeoutMs;
    const opts: RunOptions = { readOnly: ctx.readOnly, maxRows: limits.maxRows, deadline, budget: { left: limits.maxResponseBytes, max: limits.maxResponseBytes } };
    const queued = Date.now();
    const results = await host.group(
      (runner) => {
        const out: StreamResult[] = [];
        for (const r of req.requests) {
          if (r.type !== "execute") {
            out.push({ type: "ok", response: { type: "close" } });
            continue;
          }
          try {
            out.push({ type: "ok", response: { type: "execute", result: runner.execute(r.stmt as Stmt & { sql: string }, opts) } });
          } catch (e) {
            out.push({ type: "error", error: toHranaError(e) });
          }
        }
        return out;
      },
      deadline,
      limits.maxConcurrentPerDb,
      (runner) => readsOnly(runner, req),
      limits.connectionsPerDb,
      limits.busyTimeoutMs,
    );
    const waited = Date.now() - queued;
    return { baton: null, base_url: null, results: results.map((r) => (r.type === "error" ? { type: "error", error: explainBusy(r.error, waited, false) } : r)) };
  }
  const stream = req.baton === null ? streams.open(host, ctx.tokenId) : streams.take(req.baton, host, ctx.tokenId);
  // Inside a transaction the statements also stop at its end of life (see streams.ts).
  const deadline = Math.min(ctx.started + limits.requestTimeoutMs, stream.txnDeadline ?? Infinity);
  let conn: DbConn;
  try {
    conn = await host.acquire(stream, deadline, limits.maxConcurrentPerDb, limits.connectionsPerDb);
    await host.wake(deadline, conn);
  } catch (e) {
    streams.discard(stream);
    endStream(stream);
    throw e;
  }
  const opts: RunOptions = { readOnly: ctx.readOnly, maxRows: limits.maxRows, deadline, budget: { left: limits.maxResponseBytes, max: limits.maxResponseBytes } };
  const results: StreamResult[] = [];
  let closed = false;
  let timedOut = false;
  try {
    for (const r of req.requests) {
      if (closed) {
        results.push({ type: "error", error: { message: "the stream was closed by an earlier request of this pipeline", code: "STREAM_CLOSED" } });
        continue;
      }
      if (Date.now() > deadline) {
        timedOut = true;
        results.push({ type: "error", error: toHranaError(timeoutError()) });
        continue;
      }
      const ran = await runWaiting(ctx, stream, conn, r, opts, Math.min(deadline, Date.now() + limits.busyTimeoutMs));
      conn = ran.conn;
      results.push(ran.result);
      if (r.type === "close") closed = true;
    }
    if (Date.now() > deadline) timedOut = true;
  } catch (e) {
    // A 403 (read-only token writing) or a bug: the stream ends here.
    streams.discard(stream);
    endStream(stream);
    throw e;
  }
  if (host.closed || conn.closed) {
    // The enclave faulted and could not be restarted: the connection is gone, and the stream with it.
    streams.discard(stream);
    endStream(stream);
    return { baton: null, base_url: null, results };
  }
  if (closed || (timedOut && !conn.runner.autocommit)) {
    streams.discard(stream);
    endStream(stream);
    host.shrink(conn);
    return { baton: null, base_url: null, results };
  }
  if (conn.runner.autocommit) {
    stream.txnDeadline = undefined;
    host.shrink(conn);
    host.release(stream);
  } else {
    // The transaction's life counts from the request that left it open; read-only tokens get a short one.
    stream.txnDeadline ??= ctx.started + (ctx.readOnly ? limits.readOnlyTransactionMs : limits.maxTransactionMs);
    host.spare(limits.connectionsPerDb); // the other streams get a connection without waiting for one to open
  }
  return { baton: streams.park(stream), base_url: null, results };
}

/**
 * One stream request, run again while another connection's write lock makes it busy, until
 * `until` (ISOLATION.md "Busy wait"). Only execute, batch and sequence can be busy; one is run
 * again only when it left the transaction state as it found it (no BEGIN of its own stays open).
 * Outside a transaction the stream gives its connection back while it sleeps, so waiting writers
 * never keep readers from a connection. Returns the result and the connection it ran on last.
 */
async function runWaiting(ctx: PipelineContext, stream: HranaStream, conn: DbConn, r: StreamRequest, opts: RunOptions, until: number): Promise<{ result: StreamResult; conn: DbConn }> {
  const once = (c: DbConn): StreamResult => {
    try {
      return { type: "ok", response: runRequest(stream, c.runner, r, opts) };
    } catch (e) {
      return { type: "error", error: toHranaError(e) };
    }
  };
  if (r.type !== "execute" && r.type !== "batch" && r.type !== "sequence") return { result: once(conn), conn };
  const start = Date.now();
  conn.db.takeStaleView();
  let stale = false;
  let result: StreamResult;
  for (let i = 0; ; i++) {
    const autocommit = conn.runner.autocommit;
    result = once(conn);
    if (conn.closed) break;
    // Run again only when nothing changed: a BEGIN that ran before the busy statement left a transaction open.
    const busy =
      conn.runner.autocommit === autocommit &&
      (result.type === "error" ? isBusy(result.error) : result.response.type === "batch" && (result.response.result as BatchResult).step_errors.some((e) => e !== null && isBusy(e)));
    if (!busy) break;
    if (conn.db.takeStaleView()) {
      stale = true;
      break;
    }
    const left = until - Date.now();
    if (left <= 0) break;
    if (conn.runner.autocommit) {
      ctx.host.release(stream);
      await sleep(Math.min(waitStep(i), left));
      conn = await ctx.host.acquire(stream, opts.deadline, ctx.limits.maxConcurrentPerDb, ctx.limits.connectionsPerDb);
      await ctx.host.wake(opts.deadline, conn);
    } else {
      await sleep(Math.min(waitStep(i), left));
    }
  }
  const waited = Date.now() - start;
  if (result.type === "error") return { result: { type: "error", error: explainBusy(result.error, waited, stale) }, conn };
  if (result.response.type === "batch") {
    const br = result.response.result as BatchResult;
    br.step_errors = br.step_errors.map((e) => (e === null ? null : explainBusy(e, waited, stale)));
  }
  return { result, conn };
}

function sqlOf(stream: HranaStream, ref: { sql?: string; sqlId?: number }): string {
  if (ref.sql !== undefined) return ref.sql;
  const s = stream.sqls.get(ref.sqlId!);
  if (s === undefined) throw new StatementError("SQL_ID_UNKNOWN", `no SQL text is stored under sql_id ${ref.sqlId} on this stream (store_sql first)`);
  return s;
}

function withSql(stream: HranaStream, stmt: Stmt): Stmt & { sql: string } {
  return { ...stmt, sql: sqlOf(stream, stmt) };
}

function runRequest(stream: HranaStream, runner: SqlRunner, r: StreamRequest, opts: RunOptions): Record<string, unknown> & { type: string } {
  switch (r.type) {
    case "close":
      return { type: "close" };
    case "execute":
      return { type: "execute", result: runner.execute(withSql(stream, r.stmt), opts) };
    case "batch": {
      // An unknown sql_id fails that step only.
      const steps = r.steps.map((s) => {
        try {
          return { ...s, stmt: withSql(stream, s.stmt) };
        } catch (e) {
          return { ...s, stmt: { ...s.stmt, sql: "" }, error: e as Error };
        }
      });
      return { type: "batch", result: runner.batch(steps, opts) };
    }
    case "sequence":
      runner.sequence(sqlOf(stream, r), opts);
      return { type: "sequence" };
    case "describe":
      return { type: "describe", result: runner.describe(sqlOf(stream, r), opts) };
    case "store_sql":
      if (stream.sqls.has(r.sqlId)) throw new StatementError("SQL_ID_IN_USE", `sql_id ${r.sqlId} is in use on this stream; close_sql it first`);
      if (stream.sqls.size >= MAX_STORED_SQL) throw new StatementError("TOO_MANY_SQL", `a stream stores at most ${MAX_STORED_SQL} SQL texts; close_sql some`);
      stream.sqls.set(r.sqlId, r.sql);
      return { type: "store_sql" };
    case "close_sql":
      stream.sqls.delete(r.sqlId);
      return { type: "close_sql" };
    case "get_autocommit":
      return { type: "get_autocommit", is_autocommit: runner.autocommit };
  }
}

