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
 *
 * EPC paging: a lease holder wakes a hibernated database before its statements run (wake()). When
 * the EPC has no room because every resident enclave is busy (in a transaction), it waits for one
 * to finish, trying again for at most EPC_WAIT_MS (epc-room.ts) within the request's deadline, then answers 503
 * EPC_ADMISSION_REFUSED; nothing ran in the meantime. Opening a database on first use and creating
 * one wait the same way (withEpcRoom).
 *
 * Group commit (group()): one-shot autocommit pipelines (the `execute` + `close` that
 * @libsql/client sends for client.execute) queue as jobs; one lease holder runs every job queued so
 * far inside one transaction and commits once, then answers them all. A commit costs fsyncs, so N
 * concurrent writers share one. Semantics are those of autocommit: a failing statement is rolled
 * back alone (SQLite's statement journal) while the others keep their effects. No job is answered
 * before the COMMIT returned; if it fails, or SQLite rolls the whole transaction back, every job of
 * the group fails (none was acknowledged). Jobs must not use transaction control or statements that
 * cannot run in a transaction (see pipeline.ts, groupable()).
 */
import type { Database } from "../../sql/database.js";
import { HttpError } from "./errors.js";
import { SqlRunner } from "./hrana/execute.js";
import { withEpcRoom } from "./epc-room.js";

interface Job {
  run: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  deadline: number;
}

/**
 * An enclave whose memory grew past this is recycled (fresh memory) after its request, between
 * transactions: wasm memory never shrinks, and a tenant's one big query (or one that ended in NOMEM
 * at the EPC cap) would otherwise keep its EPC and push other tenants out. A database's usual size
 * (4 MB page cache, 1 MiB stack, its statements) is well under it.
 */
export const RECYCLE_BYTES = 24 * 1024 * 1024;

/** The most jobs one group commit takes. */
const MAX_GROUP = 256;
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
  #jobs: Job[] = [];
  #flushing = false;
  #flushWaiting = false;
  /** Group commits run, and the jobs they carried (metrics). */
  readonly groupStats = { groups: 0, jobs: 0 };
  /** Times the enclave was recycled because it had grown (metrics). */
  recycles = 0;

  constructor(
    readonly name: string,
    readonly db: Database,
  ) {
    this.runner = new SqlRunner(db);
  }

  get closed(): boolean {
    return this.#closed || !this.db.open;
  }

  /** Requests waiting for the lease (or in the next group commit). */
  get waiting(): number {
    // The group flusher's own place in the queue stands for its jobs, which are counted instead.
    return this.#waiters.length - (this.#flushWaiting ? 1 : 0) + this.#jobs.length;
  }

  /**
   * Runs `run` in the next group commit (see the file comment); resolves after the COMMIT. A job
   * that only reads runs at once when the database is idle (nothing to commit, no hop to wait).
   */
  group<T>(run: () => T, deadline: number, maxWaiting: number, readOnly = false): Promise<T> {
    if (readOnly && !this.#closed && this.#owner === undefined && this.#waiters.length === 0 && this.#jobs.length === 0 && !this.db.inTransaction && this.db.paging.state === "running") {
      try {
        return Promise.resolve(run());
      } catch (e) {
        return Promise.reject(e);
      } finally {
        this.shrink();
      }
    }
    if (this.#closed) return Promise.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    if (this.waiting >= maxWaiting) {
      return Promise.reject(new HttpError(503, "DB_BUSY", `database ${this.name} has ${maxWaiting} requests waiting already (selkie serve --max-concurrent); retry later`, { "retry-after": "1" }));
    }
    return new Promise<T>((resolve, reject) => {
      this.#jobs.push({ run, resolve: resolve as (v: unknown) => void, reject, deadline });
      if (!this.#flushing) {
        this.#flushing = true;
        // After the I/O phase: requests that arrived while the last commit held the thread join this group.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    const owner = {};
    try {
      this.#flushWaiting = this.#owner !== undefined || this.#waiters.length > 0;
      await this.acquire(owner, Math.max(...this.#jobs.map((j) => j.deadline)), Infinity);
      this.#flushWaiting = false;
    } catch (e) {
      this.#flushWaiting = false;
      for (const j of this.#jobs.splice(0)) j.reject(e);
      this.#flushing = false;
      return;
    }
    try {
      await this.wake(Math.max(...this.#jobs.map((j) => j.deadline)));
    } catch (e) {
      for (const j of this.#jobs.splice(0)) j.reject(e);
      this.#flushing = false;
      this.release(owner);
      return;
    }
    try {
      while (this.#jobs.length > 0 && !this.closed) {
        const jobs = this.#jobs.splice(0, MAX_GROUP);
        this.#runGroup(jobs);
      }
    } finally {
      this.#flushing = false;
      for (const j of this.#jobs.splice(0)) j.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
      this.shrink();
      this.release(owner);
    }
  }

  #runGroup(jobs: Job[]): void {
    const now = Date.now();
    const live: Job[] = [];
    for (const j of jobs) {
      if (now > j.deadline) j.reject(new HttpError(503, "REQUEST_TIMEOUT", `timed out waiting for database ${this.name} (selkie serve --request-timeout)`, { "retry-after": "1" }));
      else live.push(j);
    }
    if (live.length === 0) return;
    const db = this.db;
    const grouped = live.length > 1 && !db.inTransaction;
    if (!grouped) {
      for (const j of live) this.#settle(j);
      return;
    }
    try {
      db.exec("BEGIN");
    } catch {
      for (const j of live) this.#settle(j);
      return;
    }
    const done: Array<{ job: Job; ok: boolean; value: unknown }> = [];
    let broken = false;
    for (const job of live) {
      try {
        done.push({ job, ok: true, value: job.run() });
      } catch (e) {
        done.push({ job, ok: false, value: e });
      }
      if (!db.open || !db.inTransaction) {
        broken = true; // SQLite rolled the whole transaction back (I/O error, enclave restart...)
        break;
      }
    }
    let commitError: unknown;
    if (!broken) {
      try {
        db.exec("COMMIT");
      } catch (e) {
        commitError = e;
      }
    }
    if (broken || commitError !== undefined) {
      this.runner.rollbackIfOpen();
      const err = new HttpError(500, "GROUP_COMMIT_FAILED", `the commit of this request (grouped with ${live.length - 1} others) failed and was rolled back${commitError instanceof Error ? `: ${commitError.message}` : ""}; nothing was applied, retry`);
      for (const j of live) j.reject(err);
      return;
    }
    this.groupStats.groups++;
    this.groupStats.jobs += live.length;
    for (const d of done) (d.ok ? d.job.resolve : d.job.reject)(d.value);
  }

  #settle(j: Job): void {
    try {
      j.resolve(j.run());
    } catch (e) {
      j.reject(e);
    }
  }

  /**
   * Wakes the database if it is hibernated, waiting for EPC room if need be (withEpcRoom). Call it
   * holding the lease, before any statement runs.
   */
  async wake(deadline: number): Promise<void> {
    // Refusals of the tries before the last are not failed wakes: the request is still waiting.
    await withEpcRoom(deadline, (last) => {
      if (!this.closed) this.db.wake({ retrying: !last }); // closed: the statements report it
    });
  }

  /**
   * Gives memory back after a request (holding the lease, or with the database idle): recycles an
   * enclave that grew past RECYCLE_BYTES when no transaction is open. Never throws: a failed
   * recycle is the database's own fault handling's to report on its next statement.
   */
  shrink(): void {
    try {
      const db = this.db;
      if (this.closed || db.paging.state !== "running" || db.enclave.committedBytes <= RECYCLE_BYTES) return;
      if (db.recycle()) this.recycles++;
    } catch {
      // reported by the next statement
    }
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
    for (const j of this.#jobs.splice(0)) j.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
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
