/**
 * UNTRUSTED (server). Runs Hrana stream requests on one Database through the public SQL API and
 * builds the spec's result structures (StmtResult, BatchResult, DescribeResult).
 *
 * Errors: a statement's own failure (SqliteError, a binding UsageError, an enclave fault...) becomes
 * a Hrana Error `{message, code}` for that request or batch step, with the code the local API throws
 * (e.g. SQLITE_CONSTRAINT_UNIQUE). An HttpError (a read-only token writing) aborts the whole HTTP
 * request instead.
 */
import type { Database } from "../../../sql/database.js";
import type { Statement } from "../../../sql/statement.js";
import type { SqlReal, SqlValue } from "../../../sql/ecalls.js";
import { SelkieError, UsageError } from "../../../errors.js";
import { sqliteCodeName } from "../../../sql/codes.js";
import { SqliteError, SqlNotAuthorizedError, StatementTimeoutError, type SqlScope } from "../../../sql/errors.js";
import { clientMessage, forbidden, HttpError } from "../errors.js";
import type { BatchCond, BatchStep, Stmt } from "./protocol.js";
import { encodeValue, type HranaValue } from "./values.js";
import { describeSql, type DescribeResult } from "./describe.js";

export interface StmtResult {
  cols: Array<{ name: string; decltype: string | null }>;
  rows: HranaValue[][];
  affected_row_count: number;
  last_insert_rowid: string | null;
}

export interface HranaError {
  message: string;
  /** SQLite's primary result code name (SQLITE_CONSTRAINT), as sqld and the clients use, or Selkie's code. */
  code: string;
  /**
   * SQLite's extended result code name (SQLITE_CONSTRAINT_PRIMARYKEY) when it differs from `code`.
   * An extra field Hrana clients ignore (their JSON decoders read only `message` and `code`).
   */
  extended_code?: string;
}

export interface BatchResult {
  step_results: Array<StmtResult | null>;
  step_errors: Array<HranaError | null>;
}

/** What a caller may do and until when. */
export interface RunOptions {
  readOnly: boolean;
  maxRows: number;
  deadline: number;
  /** Bytes the rest of the response may still take (shared by every statement of a request). */
  budget?: { left: number; max: number };
}

/** A statement failed in a way the client should see as a Hrana Error (not an HTTP error). */
export class StatementError extends SelkieError {}

export function timeoutError(): StatementError {
  return new StatementError("REQUEST_TIMEOUT", "the request ran past its time limit (selkie serve --request-timeout); the remaining requests of the pipeline were not run");
}

/** The request's deadline passed while a statement ran: SQLite interrupted and rolled it back. */
export function statementTimeout(): StatementError {
  return new StatementError("STATEMENT_TIMEOUT", "the statement was interrupted at the request's deadline (selkie serve --request-timeout) and rolled back; nothing it did was kept. Make it cheaper (an index, a LIMIT) or split it");
}

/** A statement the token's scope does not allow: 403 naming the statement and the scope. */
export function notAuthorized(e: SqlNotAuthorizedError, sql: string): HttpError {
  const text = sql.length > 200 ? `${sql.slice(0, 200)}...` : sql;
  if (e.scope === "read-only") {
    return forbidden("READ_ONLY_TOKEN", `this token is read-only: ${e.denied} is not allowed in ${JSON.stringify(text)} (read-only tokens may SELECT, read PRAGMA values and use transactions; see the README's "Token scopes"); use a read-write token`);
  }
  return forbidden("SETTING_NOT_ALLOWED", `this token (read-write) may not run ${e.denied} in ${JSON.stringify(text)}: it changes a setting every client of the database shares (see the README's "Token scopes"); the operator sets these`);
}

/** Maps anything a statement threw to a Hrana Error; rethrows HTTP-level errors and bugs. */
export function toHranaError(e: unknown): HranaError {
  if (e instanceof HttpError) throw e;
  // SQLite's messages quote the client's own SQL; other errors (storage, enclave) may name server files.
  if (e instanceof SqliteError) {
    const code = sqliteCodeName(e.primaryCode);
    return code === e.code ? { message: e.message, code } : { message: e.message, code, extended_code: e.code };
  }
  if (e instanceof StatementError) return { message: e.message, code: e.code };
  // sqld's codes and messages for an execute whose text is not exactly one statement.
  if (e instanceof UsageError && e.code === "MULTIPLE_STATEMENTS") return { message: "SQL string contains more than one statement", code: "SQL_MANY_STATEMENTS" };
  if (e instanceof UsageError && e.code === "EMPTY_STATEMENT") return { message: "SQL string does not contain any statement", code: "SQL_NO_STATEMENT" };
  if (e instanceof SelkieError) return { message: clientMessage(e.message), code: e.code };
  throw e;
}

const RETURNING_RE = /\bRETURNING\b/i;

export class SqlRunner {
  readonly #cache = new Map<string, Statement>();
  #changes: Statement | undefined;

  constructor(
    readonly db: Database,
    readonly cacheSize = 128,
  ) {}

  /**
   * A prepared statement for `sql`, from a per-database LRU cache keyed by scope too: the authorizer
   * judges a statement when it is prepared, so one prepared for a read-write token is never handed
   * to a read-only one.
   */
  prepare(sql: string): Statement {
    const key = `${this.db.scope}\0${sql}`;
    let st = this.#cache.get(key);
    if (st && !st.finalized) {
      this.#cache.delete(key);
      this.#cache.set(key, st);
      return st;
    }
    st = this.db.prepare(sql);
    st.typedReals = true; // REAL stays "float" on the wire even when integral (values.ts)
    this.#cache.set(key, st);
    if (this.#cache.size > this.cacheSize) {
      const [k, old] = this.#cache.entries().next().value as [string, Statement];
      this.#cache.delete(k);
      old.finalize();
    }
    return st;
  }

  get autocommit(): boolean {
    return !this.db.inTransaction;
  }

  /** Rolls back an open transaction (a stream closed or expired inside one). */
  rollbackIfOpen(): boolean {
    if (!this.db.open || !this.db.inTransaction) return false;
    try {
      this.db.exec("ROLLBACK");
    } catch {
      // SQLite may already have rolled back (e.g. after an I/O error); nothing else to undo.
    }
    return true;
  }

  /**
   * Sets the caller's scope (the enclave's authorizer) and deadline (its progress handler) for the
   * statements `run` runs, and takes the deadline off afterwards (a group COMMIT runs without one).
   * Maps the limits' errors to the server's: 403 for a refused statement, STATEMENT_TIMEOUT.
   */
  limited<T>(opts: RunOptions, sql: string, run: () => T): T {
    const scope: SqlScope = opts.readOnly ? "read-only" : "read-write";
    try {
      this.db.setScope(scope);
      this.db.setDeadline(opts.deadline);
      return run();
    } catch (e) {
      if (e instanceof SqlNotAuthorizedError) throw notAuthorized(e, sql);
      if (e instanceof StatementTimeoutError) throw statementTimeout();
      throw e;
    } finally {
      if (this.db.open) this.db.setDeadline(0);
    }
  }

  execute(stmt: Stmt & { sql: string }, opts: RunOptions): StmtResult {
    return this.limited(opts, stmt.sql, () => this.#execute(stmt, opts));
  }

  #execute(stmt: Stmt & { sql: string }, opts: RunOptions): StmtResult {
    if (Date.now() > opts.deadline) throw timeoutError();
    const st = this.prepare(stmt.sql);
    if (opts.readOnly && !st.readonly) {
      throw forbidden("READ_ONLY_TOKEN", "this token is read-only: the statement would write; use a read-write token");
    }
    const args = bindArgs(stmt);
    const names = st.columns();
    if (names.length === 0) {
      const r = st.run(...(args as []));
      return { cols: [], rows: [], affected_row_count: r.changes, last_insert_rowid: String(r.lastInsertRowid) };
    }
    if (!st.readonly && RETURNING_RE.test(stmt.sql)) return this.#returning(st, args, stmt.wantRows, opts);
    if (!stmt.wantRows) {
      st.run(...(args as []));
      return { cols: colsOf(st), rows: [], affected_row_count: 0, last_insert_rowid: null };
    }
    const rows = this.#readRows(st, args, opts);
    return { cols: colsOf(st), rows, affected_row_count: 0, last_insert_rowid: null };
  }

  /** Rows of a read, stopping at maxRows + 1 and at the deadline (checked every 256 rows). */
  #readRows(st: Statement, args: unknown[], opts: RunOptions): HranaValue[][] {
    // Arrays in column order, not row objects: the columns (st.columns() after the run) match them
    // even after a re-prepare, duplicate names need no care, and (Node 20.20's V8) TurboFan
    // miscompiled the row-object loop into a SIGSEGV once it had seen rows of many shapes.
    const out: HranaValue[][] = [];
    for (const r of st.iterateValues(...(args as []))) {
      if (out.length >= opts.maxRows) throw rowsLimit(opts.maxRows);
      charge(opts, r);
      out.push(r.map(encodeValue));
      if ((out.length & 255) === 0 && Date.now() > opts.deadline) throw timeoutError();
    }
    return out;
  }

  /** INSERT/UPDATE/DELETE ... RETURNING: under a savepoint, so a result over maxRows is rolled back. */
  #returning(st: Statement, args: unknown[], wantRows: boolean, opts: RunOptions): StmtResult {
    const sp = "selkie_returning";
    this.db.exec(`SAVEPOINT ${sp}`);
    let rows: SqlValue[][];
    let changes: number;
    let rowid: number | bigint;
    try {
      rows = st.values(...(args as []));
      if (rows.length > opts.maxRows) throw rowsLimit(opts.maxRows);
      if (wantRows) for (const r of rows) charge(opts, r); // rolled back when over
      this.#changes ??= this.db.prepare("SELECT changes() AS c, last_insert_rowid() AS r");
      const c = this.#changes.get()!;
      changes = Number(c.c);
      rowid = c.r as number | bigint;
    } catch (e) {
      try {
        if (this.db.inTransaction) this.db.exec(`ROLLBACK TO ${sp}; RELEASE ${sp}`);
      } catch {
        // SQLite already rolled the transaction back.
      }
      throw e;
    }
    this.db.exec(`RELEASE ${sp}`);
    return {
      cols: colsOf(st),
      rows: wantRows ? rows.map((r) => r.map(encodeValue)) : [],
      affected_row_count: changes,
      last_insert_rowid: String(rowid),
    };
  }

  batch(steps: Array<BatchStep & { stmt: Stmt & { sql: string }; error?: Error }>, opts: RunOptions): BatchResult {
    const step_results: BatchResult["step_results"] = [];
    const step_errors: BatchResult["step_errors"] = [];
    const holds = (c: BatchCond): boolean => {
      switch (c.type) {
        case "ok":
          return step_results[c.step] != null;
        case "error":
          return step_errors[c.step] != null;
        case "not":
          return !holds(c.cond);
        case "and":
          return c.conds.every(holds);
        case "or":
          return c.conds.some(holds);
        case "is_autocommit":
          return this.autocommit;
      }
    };
    for (const step of steps) {
      if (step.condition && !holds(step.condition)) {
        step_results.push(null);
        step_errors.push(null);
        continue;
      }
      if (step.error) {
        step_errors.push(toHranaError(step.error));
        step_results.push(null);
        continue;
      }
      try {
        step_results.push(this.execute(step.stmt, opts));
        step_errors.push(null);
      } catch (e) {
        step_errors.push(toHranaError(e));
        step_results.push(null);
      }
    }
    return { step_results, step_errors };
  }

  /** Runs every statement of `sql` in order, ignoring rows; stops at the first error. */
  sequence(sql: string, opts: RunOptions): void {
    this.limited(opts, sql, () => this.#sequence(sql, opts));
  }

  #sequence(sql: string, opts: RunOptions): void {
    for (const st of this.db.statements(sql)) {
      if (Date.now() > opts.deadline) throw timeoutError();
      if (opts.readOnly && !st.readonly) {
        throw forbidden("READ_ONLY_TOKEN", "this token is read-only: a statement of the sequence would write; use a read-write token");
      }
      st.run();
    }
  }

  describe(sql: string, opts: RunOptions): DescribeResult {
    return this.limited(opts, sql, () => describeSql(this.db, sql));
  }

  /** Finalizes cached statements (before the database closes). */
  clear(): void {
    for (const st of this.#cache.values()) st.finalize();
    this.#cache.clear();
    this.#changes?.finalize();
    this.#changes = undefined;
  }
}

function responseTooLarge(max: number): StatementError {
  return new StatementError("RESPONSE_TOO_LARGE", `the response would be larger than ${max} bytes (selkie serve --max-response-bytes); select fewer or smaller values (a LIMIT, substr()) or page through the rows`);
}

/** About the bytes a value takes in the JSON response (before it is built). */
function valueBytes(v: SqlValue): number {
  if (typeof v === "string") return v.length + 32;
  if (v instanceof Uint8Array) return Math.ceil(v.length / 3) * 4 + 32;
  return 48;
}

/** Charges a row to the response budget; throws RESPONSE_TOO_LARGE when it is spent. */
function charge(opts: RunOptions, row: Iterable<SqlValue>): void {
  const b = opts.budget;
  if (!b) return;
  for (const v of row) b.left -= valueBytes(v);
  if (b.left < 0) throw responseTooLarge(b.max);
}

function rowsLimit(max: number): StatementError {
  return new StatementError("ROWS_LIMIT", `the statement returned more than ${max} rows (selkie serve --max-rows); add a LIMIT or page through the results`);
}

/** Result columns with their declared types (null for expressions), as sqld answers them. */
function colsOf(st: Statement): StmtResult["cols"] {
  const types = st.columnTypes();
  return st.columns().map((name, i) => ({ name, decltype: types[i] ?? null }));
}

/** Positional values, or one object of named values (null prototype: names like "constructor" are safe). */
function bindArgs(stmt: Stmt): unknown[] {
  if (stmt.namedArgs.length === 0) return stmt.args;
  if (stmt.args.length > 0) {
    throw new StatementError("MIXED_ARGS", "this server does not take positional and named arguments in one statement; use one kind");
  }
  const named: Record<string, SqlValue | SqlReal> = Object.create(null) as Record<string, SqlValue | SqlReal>;
  // Keys without their prefix: the SQL API matches ":a", "@a" and "$a" parameters by the bare name.
  for (const a of stmt.namedArgs) named[/^[:@$]/.test(a.name) ? a.name.slice(1) : a.name] = a.value;
  return [named];
}
