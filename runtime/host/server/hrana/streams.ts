/**
 * UNTRUSTED (server). Hrana streams over HTTP and their batons.
 *
 * A baton is 18 random bytes (base64url): unguessable, so it cannot be forged. It names one stream
 * for one next request only: taking a stream removes its baton, and every response carries a new
 * one (or null when the stream closed). A baton is also bound to the database and the token that
 * opened the stream; presented anywhere else it is unknown (400 STREAM_EXPIRED), like an expired one.
 *
 * A parked stream expires after `idleMs` without a request: an open transaction is rolled back and
 * the database lease released (see db-host.ts). A stream inside a transaction also expires at the
 * transaction's end of life (`txnDeadline`, set by the pipeline), idle or not: the next request
 * with its baton gets 400 TRANSACTION_TIMEOUT (the transaction was rolled back), or
 * STREAM_EXPIRED once the stream is gone.
 */
import { randomBytes } from "node:crypto";
import { HttpError } from "../errors.js";
import type { DbHost } from "../db-host.js";

export const MAX_STORED_SQL = 4096;

export class HranaStream {
  /** SQL texts stored with store_sql (per stream, as the spec says for HTTP). */
  readonly sqls = new Map<number, string>();
  baton: string | undefined;
  timer: NodeJS.Timeout | undefined;
  /** When the open transaction must end (ms since the epoch); undefined outside one. */
  txnDeadline: number | undefined;
  constructor(
    readonly host: DbHost,
    readonly tokenId: string,
  ) {}
}

export class StreamTable {
  readonly #parked = new Map<string, HranaStream>();
  #live = 0;

  constructor(
    readonly idleMs: number,
    readonly maxStreams: number,
    readonly onExpire: (s: HranaStream, rolledBack: boolean) => void = () => {},
  ) {}

  /** Streams open now (parked or running a request). */
  get size(): number {
    return this.#live;
  }

  open(host: DbHost, tokenId: string): HranaStream {
    if (this.#live >= this.maxStreams) {
      throw new HttpError(503, "TOO_MANY_STREAMS", `the server has ${this.maxStreams} open streams (selkie serve --max-streams); close streams or retry later`, { "retry-after": "1" });
    }
    this.#live++;
    return new HranaStream(host, tokenId);
  }

  /** The stream a baton names, taken off the parked table; 400 STREAM_EXPIRED when there is none. */
  take(baton: string, host: DbHost, tokenId: string): HranaStream {
    const s = this.#parked.get(baton);
    if (!s || s.host !== host || s.tokenId !== tokenId) {
      throw new HttpError(400, "STREAM_EXPIRED", "the baton names no open stream: the stream expired, was closed, or the baton was already used; open a new stream (send no baton)");
    }
    this.#parked.delete(baton);
    clearTimeout(s.timer);
    s.timer = undefined;
    s.baton = undefined;
    if (s.txnDeadline !== undefined && Date.now() >= s.txnDeadline) {
      this.discard(s);
      this.onExpire(s, endStream(s));
      throw transactionTimeout();
    }
    return s;
  }

  /** Parks a stream until its next request; returns its new baton. */
  park(s: HranaStream): string {
    const baton = randomBytes(18).toString("base64url");
    s.baton = baton;
    this.#parked.set(baton, s);
    const life = s.txnDeadline === undefined ? Infinity : Math.max(0, s.txnDeadline - Date.now());
    s.timer = setTimeout(() => this.#expire(s), Math.min(this.idleMs, life));
    s.timer.unref();
    return baton;
  }

  /** Ends a stream that is not parked (closed by its request, or failed). */
  discard(s: HranaStream): void {
    if (s.baton !== undefined) {
      this.#parked.delete(s.baton);
      clearTimeout(s.timer);
      s.baton = undefined;
    }
    this.#live--;
  }

  #expire(s: HranaStream): void {
    if (s.baton === undefined || this.#parked.get(s.baton) !== s) return;
    this.discard(s);
    this.onExpire(s, endStream(s));
  }

  /** Parked streams that hold their database's lease (inside a transaction). */
  holdingLease(): number {
    let n = 0;
    for (const s of this.#parked.values()) if (s.host.owns(s)) n++;
    return n;
  }

  /** True when `baton` names a parked stream that holds its database's lease (inside a transaction). */
  holdsLease(baton: string): boolean {
    const s = this.#parked.get(baton);
    return s !== undefined && s.host.owns(s);
  }

  /** Ends every parked stream of one database, rolling back an open transaction (a migration's freeze). */
  closeFor(host: DbHost): void {
    for (const s of [...this.#parked.values()]) {
      if (s.host !== host) continue;
      this.discard(s);
      endStream(s);
    }
  }

  /** Ends every parked stream, rolling back open transactions (shutdown). */
  closeAll(): void {
    for (const s of [...this.#parked.values()]) {
      this.discard(s);
      endStream(s);
    }
  }
}

function transactionTimeout(): HttpError {
  return new HttpError(400, "TRANSACTION_TIMEOUT", "the stream's transaction outlived its limit (selkie serve --max-transaction, --max-read-transaction for read-only tokens) and was rolled back; open a new stream and retry it shorter");
}

/** Rolls back the stream's transaction if it holds a connection, and releases the lease. */
export function endStream(s: HranaStream): boolean {
  let rolledBack = false;
  const c = s.host.connOf(s);
  if (c) {
    try {
      if (!s.host.closed && !c.closed) rolledBack = c.runner.rollbackIfOpen();
    } finally {
      s.host.release(s); // even when the rollback failed (e.g. its enclave could not be woken)
    }
  }
  return rolledBack;
}
