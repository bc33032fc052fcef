/**
 * UNTRUSTED (server). Request limits: each has a default, a `selkie serve` flag, and an error with a
 * clear status and code when exceeded.
 *
 *   limit                 default   flag                  when exceeded
 *   request body          10 MiB    --max-body            413 BODY_TOO_LARGE (nothing executed)
 *   statement length      1 MiB     --max-sql             400 SQL_TOO_LONG (nothing executed)
 *   rows returned         100000    --max-rows            the statement fails with ROWS_LIMIT (a write is rolled back)
 *   response bytes        32 MiB    --max-response-bytes  the statement fails with RESPONSE_TOO_LARGE as soon as its rows pass it (a write is rolled back)
 *   request time          30 s      --request-timeout     503 REQUEST_TIMEOUT while queued; later pipeline requests fail with REQUEST_TIMEOUT
 *   concurrent requests   64        --max-concurrent      503 DB_BUSY (per database, queued + running)
 *   open streams          1000      --max-streams         503 TOO_MANY_STREAMS (per server)
 *   stream idle time      10 s      --stream-idle         the stream is closed, an open transaction rolled back; its baton then gets 400 STREAM_EXPIRED
 *   transaction life      30 s      --max-transaction     an interactive transaction is rolled back at it (statements interrupted); its baton gets 400 TRANSACTION_TIMEOUT
 *   read-only txn life    2 s       --max-read-transaction the same for read-only tokens
 *   connections per db    4         --connections-per-db  more streams in transactions wait for a connection (503 REQUEST_TIMEOUT at the deadline)
 *   busy wait             5 s       --busy-timeout        a write waiting for another stream's write transaction fails with SQLITE_BUSY (hrana/ISOLATION.md)
 *
 * The request-time limit also bounds each statement: a progress handler inside the enclave
 * interrupts a statement still running at the request's deadline (STATEMENT_TIMEOUT, rolled back,
 * the database usable). It is checked between requests and result rows too.
 */
export interface Limits {
  maxBodyBytes: number;
  maxSqlBytes: number;
  maxRows: number;
  maxResponseBytes: number;
  requestTimeoutMs: number;
  maxConcurrentPerDb: number;
  maxStreams: number;
  streamIdleMs: number;
  maxTransactionMs: number;
  readOnlyTransactionMs: number;
  /** SQLite connections (enclaves) one database may have, so streams in transactions do not wait for each other. */
  connectionsPerDb: number;
  /** How long a write waits for another connection's write lock before SQLITE_BUSY. */
  busyTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxBodyBytes: 10 * 1024 * 1024,
  maxSqlBytes: 1024 * 1024,
  maxRows: 100_000,
  maxResponseBytes: 32 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  maxConcurrentPerDb: 64,
  maxStreams: 1000,
  streamIdleMs: 10_000,
  maxTransactionMs: 30_000,
  readOnlyTransactionMs: 2_000,
  connectionsPerDb: 4,
  busyTimeoutMs: 5_000,
});

export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const out = { ...DEFAULT_LIMITS } as Limits;
  for (const [k, v] of Object.entries(partial) as [keyof Limits, number | undefined][]) {
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`limit ${k} must be a positive integer, got ${String(v)}`);
    out[k] = v;
  }
  return out;
}
