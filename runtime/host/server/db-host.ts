/**
 * UNTRUSTED (server). One open database in the server: its single connection (a Database, whose
 * SQLite runs in its own enclave), a statement runner, and the lease that serializes requests.
 *
 * The lease (an async FIFO mutex with an owner):
 *  - each HTTP pipeline request takes it for its Hrana stream before running any statement;
 *  - when the pipeline ends outside a transaction the lease is released;
 *  - when it ends inside one (BEGIN without COMMIT), the stream keeps the lease across requests,
 *    so no other stream's statement can run inside that transaction; the stream's next request
 *    finds the lease already its own;
 *  - it is released when the stream commits, rolls back, closes, or expires (idle: rolled back).
 * Waiters are bounded (limits.maxConcurrentPerDb: 503 DB_BUSY) and time out at their request's
 * deadline (503 REQUEST_TIMEOUT).
 */
import type { Database } from "../../sql/database.js";
import { HttpError } from "./errors.js";
import { SqlRunner } from "./hrana/execute.js";

interface Waiter {
  owner: object;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class DbHost {
  readonly runner: SqlRunner;
  #owner: object | undefined;
  readonly #waiters: Waiter[] = [];
  #closed = false;

  constructor(
    readonly name: string,
    readonly db: Database,
  ) {
    this.runner = new SqlRunner(db);
  }

  get closed(): boolean {
    return this.#closed || !this.db.open;
  }

  /** Requests waiting for the lease. */
  get waiting(): number {
    return this.#waiters.length;
  }

  owns(owner: object): boolean {
    return this.#owner === owner;
  }

  /** Takes the lease for `owner` (immediately when it already holds it). */
  acquire(owner: object, deadline: number, maxWaiting: number): Promise<void> {
    if (this.#closed) return Promise.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    if (this.#owner === owner) return Promise.resolve();
    if (this.#owner === undefined && this.#waiters.length === 0) {
      this.#owner = owner;
      return Promise.resolve();
    }
    if (this.#waiters.length >= maxWaiting) {
      return Promise.reject(new HttpError(503, "DB_BUSY", `database ${this.name} has ${maxWaiting} requests waiting already (selkie serve --max-concurrent); retry later`, { "retry-after": "1" }));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        owner,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new HttpError(503, "REQUEST_TIMEOUT", `timed out waiting for database ${this.name}: a transaction on another stream holds it (selkie serve --request-timeout)`, { "retry-after": "1" }));
        }, Math.max(0, deadline - Date.now())),
      };
      this.#waiters.push(w);
    });
  }

  release(owner: object): void {
    if (this.#owner !== owner) return;
    this.#owner = undefined;
    const next = this.#waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      this.#owner = next.owner;
      next.resolve();
    }
  }

  /** Fails every waiter and closes the connection (rolling back an open transaction). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    }
    try {
      this.runner.rollbackIfOpen();
      this.runner.clear();
    } finally {
      this.db.close();
    }
  }
}
