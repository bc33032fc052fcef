/**
 * UNTRUSTED (server). One open database in the server: its SQLite connections (each a Database,
 * whose SQLite runs in its own enclave, all over the one shared sealed page store), a statement
 * runner per connection, and the leases that hand connections to requests.
 *
 * Connections (hrana/ISOLATION.md): the first (`db`, the primary) opens with the database; more
 * are opened, up to the caller's `maxConns`, when a request finds every connection taken, and an
 * extra one is closed after CONNECTION_IDLE_MS unused. Readers on one connection read a snapshot of
 * the last commit (the store's read views) while another connection writes, so a stream in a
 * transaction never stops the others: they take another connection. Every connection's enclave is
 * admitted and metered by the EPC manager like any enclave.
 *
 * A lease (an async FIFO queue of owners, one connection per owner):
 *  - each HTTP pipeline request takes a connection for its Hrana stream before running any
 *    statement; when the pipeline ends outside a transaction the lease is released;
 *  - when it ends inside one (BEGIN without COMMIT), the stream keeps its connection across
 *    requests, so no other stream's statement can run inside that transaction; the stream's next
 *    request finds the lease already its own;
 *  - it is released when the stream commits, rolls back, closes, or expires (idle: rolled back).
 *  - `maxConns` 1 asks for the primary only (management: snapshot and hibernate are of it).
 * Waiters are bounded (limits.maxConcurrentPerDb: 503 DB_BUSY) and time out at their request's
 * deadline (503 REQUEST_TIMEOUT).
 *
 * EPC paging: a lease holder wakes a hibernated connection before its statements run (wake()). When
 * the EPC has no room because every resident enclave is busy (in a transaction), it waits for one
 * to finish, trying again for at most EPC_WAIT_MS (epc-room.ts) within the request's deadline, then answers 503
 * EPC_ADMISSION_REFUSED; nothing ran in the meantime. Opening a database on first use and creating
 * one wait the same way (withEpcRoom). An extra connection that the EPC cannot admit is simply not
 * opened: the request waits for a taken one instead.
 *
 * Group commit (group()): one-shot autocommit pipelines (the `execute` + `close` that
 * @libsql/client sends for client.execute) queue as jobs; one lease holder runs every job queued so
 * far inside one transaction and commits once, then answers them all. A commit costs fsyncs, so N
 * concurrent writers share one. Semantics are those of autocommit: a failing statement is rolled
 * back alone (SQLite's statement journal) while the others keep their effects. No job is answered
 * before the COMMIT returned; if it fails, or SQLite rolls the whole transaction back, every job of
 * the group fails (none was acknowledged). Jobs must not use transaction control or statements that
 * cannot run in a transaction (see pipeline.ts, groupable()). While another connection holds the
 * write lock (a stream's write transaction) the group waits for it, at most the busy timeout, before
 * it runs; its writes then fail with SQLITE_BUSY and its reads succeed.
 */
import type { Database } from "../../sql/database.js";
import { EpcError } from "../../errors.js";
import { processLocks } from "../../storage/lock-table.js";
import { HttpError } from "./errors.js";
import { SqlRunner } from "./hrana/execute.js";
import { withEpcRoom } from "./epc-room.js";
import { sleep, waitStep } from "./hrana/busy.js";

interface Job {
  run: (runner: SqlRunner) => unknown;
  /** Says whether the job only reads (it then need not wait for another connection's writer). */
  reads: ((runner: SqlRunner) => boolean) | undefined;
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
/** An extra connection unused this long is closed (its enclave's EPC given back). */
export const CONNECTION_IDLE_MS = 30_000;

/** One SQLite connection of a database, and who holds it. */
export class DbConn {
  readonly runner: SqlRunner;
  owner: object | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  constructor(readonly db: Database) {
    this.runner = new SqlRunner(db);
  }
  get closed(): boolean {
    return !this.db.open;
  }
}

interface Waiter {
  owner: object;
  maxConns: number;
  /** acquireAll's: once it has the primary, nobody else is served. */
  all: boolean;
  resolve: (c: DbConn) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class DbHost {
  /** The connections; [0] is the primary, opened with the database. */
  readonly #conns: DbConn[];
  readonly #waiters: Waiter[] = [];
  #closed = false;
  #jobs: Job[] = [];
  #flushing = false;
  #flushWaiting = false;
  /** The owner quiescing the database (acquireAll): nobody else takes a connection meanwhile. */
  #exclusive: object | undefined;
  #flushConns = 1;
  #busyTimeoutMs = 0;
  /** Group commits run, and the jobs they carried (metrics). */
  readonly groupStats = { groups: 0, jobs: 0 };
  /** Times an enclave was recycled because it had grown (metrics). */
  recycles = 0;
  /** Extra connections opened (metrics and tests). */
  connectionsOpened = 0;

  /**
   * @param openConn opens one more connection to the same database (another enclave); without it
   *   the database has its primary connection only. For a `spare` (opened ahead of need) it
   *   returns undefined unless the EPC has room without paging another enclave out.
   */
  constructor(
    readonly name: string,
    db: Database,
    readonly openConn?: (spare: boolean) => Database | undefined,
  ) {
    this.#conns = [new DbConn(db)];
  }

  /** The primary connection's database (management, info, paging). */
  get db(): Database {
    return this.#conns[0]!.db;
  }

  /** The primary connection's runner. */
  get runner(): SqlRunner {
    return this.#conns[0]!.runner;
  }

  get connections(): number {
    return this.#conns.length;
  }

  get closed(): boolean {
    return this.#closed || !this.db.open;
  }

  /** Requests waiting for a connection (or in the next group commit). */
  get waiting(): number {
    // The group flusher's own place in the queue stands for its jobs, which are counted instead.
    return this.#waiters.length - (this.#flushWaiting ? 1 : 0) + this.#jobs.length;
  }

  /** The connection `owner` holds, if any. */
  connOf(owner: object): DbConn | undefined {
    return this.#conns.find((c) => c.owner === owner);
  }

  /** True while a connection other than `c` holds the database's write lock (RESERVED or above). */
  writerElsewhere(c: DbConn): boolean {
    return processLocks.reserved(this.db.path) && !c.db.writing;
  }

  /**
   * Runs `run` in the next group commit (see the file comment); resolves after the COMMIT. A job
   * that only reads (`reads` says so for a connection) runs at once on a free resident connection
   * outside a transaction: nothing to commit, no hop to wait.
   */
  group<T>(run: (runner: SqlRunner) => T, deadline: number, maxWaiting: number, reads?: (runner: SqlRunner) => boolean, maxConns = 1, busyTimeoutMs = 0): Promise<T> {
    if (reads && !this.#closed && this.#waiters.length === 0 && this.#exclusive === undefined) {
      let c = this.#conns.slice(0, maxConns).find((x) => x.owner === undefined && !x.closed && x.db.paging.state === "running" && !x.db.inTransaction);
      try {
        // A free connection that is hibernated is woken by the queued path, not replaced by a new one.
        if (!c && !this.#free(maxConns)) c = this.#openMore(maxConns);
      } catch {
        // the queued path below tries again and reports the error to the request
      }
      if (c && reads(c.runner)) {
        try {
          return Promise.resolve(run(c.runner));
        } catch (e) {
          return Promise.reject(e);
        } finally {
          this.shrink(c);
          this.#idle(c);
        }
      }
      if (c) this.#idle(c);
    }
    if (this.#closed) return Promise.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    if (this.waiting >= maxWaiting) {
      return Promise.reject(new HttpError(503, "DB_BUSY", `database ${this.name} has ${maxWaiting} requests waiting already (selkie serve --max-concurrent); retry later`, { "retry-after": "1" }));
    }
    this.#flushConns = Math.max(this.#flushConns, maxConns);
    this.#busyTimeoutMs = Math.max(this.#busyTimeoutMs, busyTimeoutMs);
    return new Promise<T>((resolve, reject) => {
      this.#jobs.push({ run, reads, resolve: resolve as (v: unknown) => void, reject, deadline });
      if (!this.#flushing) {
        this.#flushing = true;
        // After the I/O phase: requests that arrived while the last commit held the thread join this group.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    const owner = {};
    let conn: DbConn;
    const deadline = () => Math.max(...this.#jobs.map((j) => j.deadline));
    try {
      this.#flushWaiting = !this.#conns.slice(0, this.#flushConns).some((c) => c.owner === undefined) || this.#waiters.length > 0;
      conn = await this.acquire(owner, deadline(), Infinity, this.#flushConns);
      this.#flushWaiting = false;
    } catch (e) {
      this.#flushWaiting = false;
      for (const j of this.#jobs.splice(0)) j.reject(e);
      this.#flushing = false;
      return;
    }
    try {
      await this.wake(deadline(), conn);
      // Another connection's write transaction: wait for it (bounded) rather than fail the writers.
      const until = Math.min(deadline(), Date.now() + this.#busyTimeoutMs);
      // Readers first: they never wait for a writer (each reads the last commit, in autocommit).
      for (let i = 0; this.writerElsewhere(conn) && Date.now() < until; i++) {
        const readers = this.#jobs.filter((j) => j.reads?.(conn.runner) === true);
        this.#jobs = this.#jobs.filter((j) => !readers.includes(j));
        for (const j of readers) this.#settle(conn, j);
        if (this.#jobs.length === 0) break;
        await sleep(Math.min(waitStep(i), until - Date.now()));
      }
    } catch (e) {
      for (const j of this.#jobs.splice(0)) j.reject(e);
      this.#flushing = false;
      this.release(owner);
      return;
    }
    try {
      while (this.#jobs.length > 0 && !this.closed && !conn.closed) {
        const jobs = this.#jobs.splice(0, MAX_GROUP);
        this.#runGroup(conn, jobs);
      }
    } finally {
      this.#flushing = false;
      for (const j of this.#jobs.splice(0)) j.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
      this.shrink(conn);
      this.release(owner);
    }
  }

  #runGroup(conn: DbConn, jobs: Job[]): void {
    const now = Date.now();
    const live: Job[] = [];
    for (const j of jobs) {
      if (now > j.deadline) j.reject(new HttpError(503, "REQUEST_TIMEOUT", `timed out waiting for database ${this.name} (selkie serve --request-timeout)`, { "retry-after": "1" }));
      else live.push(j);
    }
    if (live.length === 0) return;
    const db = conn.db;
    const grouped = live.length > 1 && !db.inTransaction;
    if (!grouped) {
      for (const j of live) this.#settle(conn, j);
      return;
    }
    try {
      db.exec("BEGIN");
    } catch {
      for (const j of live) this.#settle(conn, j);
      return;
    }
    const done: Array<{ job: Job; ok: boolean; value: unknown }> = [];
    let broken = false;
    for (const job of live) {
      try {
        done.push({ job, ok: true, value: job.run(conn.runner) });
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
      conn.runner.rollbackIfOpen();
      const err = new HttpError(500, "GROUP_COMMIT_FAILED", `the commit of this request (grouped with ${live.length - 1} others) failed and was rolled back${commitError instanceof Error ? `: ${commitError.message}` : ""}; nothing was applied, retry`);
      for (const j of live) j.reject(err);
      return;
    }
    this.groupStats.groups++;
    this.groupStats.jobs += live.length;
    for (const d of done) (d.ok ? d.job.resolve : d.job.reject)(d.value);
  }

  #settle(conn: DbConn, j: Job): void {
    try {
      j.resolve(j.run(conn.runner));
    } catch (e) {
      j.reject(e);
    }
  }

  /**
   * Wakes a connection (default the primary) if it is hibernated, waiting for EPC room if need be
   * (withEpcRoom). Call it holding its lease, before any statement runs.
   */
  async wake(deadline: number, conn: DbConn = this.#conns[0]!): Promise<void> {
    // Refusals of the tries before the last are not failed wakes: the request is still waiting.
    await withEpcRoom(deadline, (last) => {
      if (!this.closed && !conn.closed) conn.db.wake({ retrying: !last }); // closed: the statements report it
    });
  }

  /**
   * Gives memory back after a request (holding the lease, or with the connection idle): recycles
   * an enclave that grew past RECYCLE_BYTES when no transaction is open. Never throws: a failed
   * recycle is the database's own fault handling's to report on its next statement.
   */
  shrink(conn: DbConn = this.#conns[0]!): void {
    try {
      const db = conn.db;
      if (this.closed || conn.closed || db.paging.state !== "running" || db.enclave.committedBytes <= RECYCLE_BYTES) return;
      if (db.recycle()) this.recycles++;
    } catch {
      // reported by the next statement
    }
  }

  owns(owner: object): boolean {
    return this.connOf(owner) !== undefined;
  }

  /**
   * Takes a connection for `owner` (at once when it holds one already): a free one among the
   * first `maxConns`, else a new one while there are fewer, else the first released (FIFO).
   */
  acquire(owner: object, deadline: number, maxWaiting: number, maxConns = 1, all = false): Promise<DbConn> {
    if (this.#closed) return Promise.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    const mine = this.connOf(owner);
    if (mine) return Promise.resolve(mine);
    if (this.#waiters.length === 0 && this.#exclusive === undefined) {
      const free = this.#free(maxConns) ?? this.#openMore(maxConns);
      if (free) return Promise.resolve(this.#give(free, owner, all));
    }
    if (this.#waiters.length >= maxWaiting) {
      return Promise.reject(new HttpError(503, "DB_BUSY", `database ${this.name} has ${maxWaiting} requests waiting already (selkie serve --max-concurrent); retry later`, { "retry-after": "1" }));
    }
    return new Promise<DbConn>((resolve, reject) => {
      const w: Waiter = {
        owner,
        maxConns,
        all,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new HttpError(503, "REQUEST_TIMEOUT", `timed out waiting for database ${this.name}: transactions on other streams hold its connections (selkie serve --request-timeout, --connections-per-db)`, { "retry-after": "1" }));
        }, Math.max(0, deadline - Date.now())),
      };
      this.#waiters.push(w);
    });
  }

  /**
   * Quiesces the database for `owner` (a migration's freeze, a whole-database operation): waits,
   * in the lease queue, for the primary connection, then until every other connection is free,
   * closes those, and keeps the primary. Meanwhile no other request takes a connection or opens
   * one (they queue behind). Release with release(owner). Rejects at `deadline` (503
   * REQUEST_TIMEOUT), having closed nothing that was in use and holding nothing.
   */
  async acquireAll(owner: object, deadline: number): Promise<DbConn> {
    const primary = await this.acquire(owner, deadline, Infinity, 1, true);
    try {
      for (let i = 0; this.#conns.some((c, k) => k > 0 && c.owner !== undefined); i++) {
        if (Date.now() >= deadline) throw new HttpError(503, "REQUEST_TIMEOUT", `timed out waiting for the transactions on database ${this.name} to end (selkie serve --request-timeout)`, { "retry-after": "1" });
        await sleep(Math.min(waitStep(i), deadline - Date.now()));
      }
      for (const c of this.#conns.slice(1)) this.#closeIdle(c);
      return primary;
    } catch (e) {
      this.#exclusive = undefined;
      this.release(owner);
      throw e;
    }
  }

  #free(maxConns: number): DbConn | undefined {
    return this.#conns.slice(0, maxConns).find((c) => c.owner === undefined && !c.closed);
  }

  /** Opens one more connection when allowed; undefined when not (at the limit, or no EPC room). */
  #openMore(maxConns: number, spare = false): DbConn | undefined {
    if (!this.openConn || this.#conns.length >= maxConns || this.closed || this.#exclusive !== undefined) return undefined;
    let db: Database | undefined;
    try {
      db = this.openConn(spare);
    } catch (e) {
      if (e instanceof EpcError) return undefined; // no room for another enclave: wait for a taken connection
      throw e;
    }
    if (!db) return undefined;
    const c = new DbConn(db);
    this.#conns.push(c);
    this.connectionsOpened++;
    return c;
  }

  #give(c: DbConn, owner: object, all = false): DbConn {
    if (all) this.#exclusive = owner;
    clearTimeout(c.idleTimer);
    c.idleTimer = undefined;
    c.owner = owner;
    return c;
  }

  release(owner: object): void {
    if (this.#exclusive === owner) this.#exclusive = undefined;
    const c = this.connOf(owner);
    if (c) {
      c.owner = undefined;
      const i = this.#conns.indexOf(c);
      if (i > 0 && c.closed) this.#conns.splice(i, 1); // an extra connection whose enclave could not be restarted
    }
    this.#serveWaiters();
    if (c && c.owner === undefined) this.#idle(c);
  }

  /** Gives free (or newly opened) connections to the waiters that fit them, oldest first. */
  #serveWaiters(): void {
    if (this.#exclusive !== undefined) return; // quiescing: the waiters wait for acquireAll's owner
    for (let k = 0; k < this.#waiters.length; ) {
      const w = this.#waiters[k]!;
      let c: DbConn | undefined;
      try {
        c = this.#free(w.maxConns) ?? this.#openMore(w.maxConns);
      } catch (e) {
        this.#waiters.splice(k, 1);
        clearTimeout(w.timer);
        w.reject(e as Error);
        continue;
      }
      if (!c) {
        k++;
        continue;
      }
      this.#waiters.splice(k, 1);
      clearTimeout(w.timer);
      w.resolve(this.#give(c, w.owner, w.all));
      if (this.#exclusive !== undefined) return;
    }
  }

  /** An extra connection left free closes after CONNECTION_IDLE_MS unless it is taken again. */
  #idle(c: DbConn): void {
    if (this.#conns.indexOf(c) <= 0 || c.closed || c.owner !== undefined) return;
    clearTimeout(c.idleTimer);
    c.idleTimer = setTimeout(() => this.#closeIdle(c), CONNECTION_IDLE_MS);
    c.idleTimer.unref();
  }

  /**
   * After a stream kept a connection for its transaction: when none is left free, opens a spare
   * one off the request path, so the next stream does not wait for an enclave to start.
   */
  spare(maxConns: number): void {
    if (this.#free(maxConns) || this.#conns.length >= maxConns || !this.openConn) return;
    setImmediate(() => {
      if (this.#closed || this.#free(maxConns) || this.#waiters.length > 0) return;
      try {
        const c = this.#openMore(maxConns, true);
        if (c) this.#idle(c);
      } catch {
        /* the next request that needs it reports why */
      }
    });
  }

  #closeIdle(c: DbConn): void {
    const i = this.#conns.indexOf(c);
    if (i <= 0 || c.owner !== undefined) return;
    this.#conns.splice(i, 1);
    try {
      c.runner.rollbackIfOpen();
      c.runner.clear();
    } catch {
      /* closing anyway */
    }
    c.db.close();
  }

  /** Fails every waiter and closes the connections (rolling back open transactions). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const j of this.#jobs.splice(0)) j.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new HttpError(503, "DB_CLOSING", `database ${this.name} is closing; retry`, { "retry-after": "1" }));
    }
    let first: unknown;
    for (const c of [...this.#conns].reverse()) {
      clearTimeout(c.idleTimer);
      try {
        try {
          c.runner.rollbackIfOpen();
          c.runner.clear();
        } finally {
          c.db.close();
        }
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }
}
