/**
 * Prepared statements. A Statement keeps its SQL text and re-prepares itself after the enclave was
 * restarted (its old handle died with the old instance), so a caller's statement survives a trap.
 */
import { UsageError } from "../errors.js";
import { SQLITE_DONE, SQLITE_OK, SQLITE_ROW } from "./codes.js";
import { bindValue, columnValue, SqlReal, type BindValue, type SqlValue } from "./ecalls.js";
import type { Database } from "./database.js";

const STMTSTATUS_REPREPARE = 5;

export type Row = Record<string, SqlValue>;
export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}
/** Positional values, one array of them, or one object of named values (keys with or without :, @, $). */
export type BindArgs = BindValue[] | [BindValue[]] | [Record<string, BindValue>];

function isNamed(v: unknown): v is Record<string, BindValue> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof ArrayBuffer) && !(v instanceof SqlReal);
}

export class Statement {
  #handle = 0;
  #gen = -1;
  #columns: string[] | undefined;
  /** SQLITE_STMTSTATUS_REPREPARE when #columns was read: a schema change re-prepares and may change them. */
  #columnsAt = -1;
  #params: (string | undefined)[] = [];
  #busy = false;
  #finalized = false;
  /**
   * When true, an integral REAL value is read as SqlReal (not a plain number), so a wire protocol
   * can keep SQLite's storage class (REAL 2.0 vs INTEGER 2). Off for the local API (numbers, as
   * better-sqlite3). Rows typed as SqlValue may then hold SqlReal: only the server's Hrana layer sets it.
   */
  typedReals = false;

  /** @internal — use Database.prepare. */
  constructor(readonly db: Database, readonly sql: string) {
    this.#ensure();
  }

  /** True when the statement returns rows (SELECT, RETURNING, most PRAGMAs). */
  get reader(): boolean {
    return this.columns().length > 0;
  }

  get readonly(): boolean {
    return this.db._guard(() => this.db._x.sk_stmt_readonly(this.#ensure()) !== 0);
  }

  /** @internal — the handle inside the enclave (0 when none is prepared). */
  get _handle(): number {
    return this.#gen === this.db._generation ? this.#handle : 0;
  }

  get finalized(): boolean {
    return this.#finalized;
  }

  #ensure(): number {
    if (this.#finalized) throw new UsageError("STATEMENT_FINALIZED", "this statement was finalized; prepare it again");
    const db = this.db;
    if (this.#gen === db._generation && this.#handle !== 0) return this.#handle;
    const { handle, tail } = db._prepareRaw(this.sql, 0);
    if (handle === 0) {
      throw new UsageError("EMPTY_STATEMENT", "the SQL text holds no statement (only whitespace or comments)");
    }
    if (/\S/.test(stripComments(this.sql.slice(tail)))) {
      db._x.sk_finalize(handle);
      throw new UsageError("MULTIPLE_STATEMENTS", "prepare() takes one statement; run several with exec()");
    }
    this.#handle = handle;
    this.#gen = db._generation;
    this.#columns = undefined;
    const n = db._x.sk_bind_parameter_count(handle);
    this.#params = [];
    for (let i = 1; i <= n; i++) {
      const p = db._x.sk_bind_parameter_name(handle, i);
      this.#params.push(p === 0 ? undefined : db._mem.cstring(p, 4096));
    }
    db._track(this);
    return handle;
  }

  /** Column names of the result (empty for statements that return no rows). */
  columns(): string[] {
    return this.db._guard(() => {
      const h = this.#ensure();
      const x = this.db._x;
      const reprepared = x.sk_stmt_status(h, STMTSTATUS_REPREPARE, 0);
      if (!this.#columns || this.#columnsAt !== reprepared) {
        this.#columnsAt = reprepared;
        const n = x.sk_column_count(h);
        const names: string[] = [];
        for (let i = 0; i < n; i++) names.push(this.db._mem.cstring(x.sk_column_name(h, i), 4096));
        this.#columns = names;
      }
      return this.#columns;
    });
  }

  /** Parameter names in order (":a", "@b", "$c", "?2"), null for a nameless "?". */
  parameters(): (string | null)[] {
    return this.db._guard(() => {
      this.#ensure();
      return this.#params.map((p) => p ?? null);
    });
  }

  /** Declared types of the result columns ("INTEGER", "TEXT"...), null for expressions. */
  columnTypes(): (string | null)[] {
    return this.db._guard(() => {
      const h = this.#ensure();
      const x = this.db._x;
      const out: (string | null)[] = [];
      for (let i = 0, n = x.sk_column_count(h); i < n; i++) {
        const d = x.sk_column_decltype(h, i);
        out.push(d === 0 ? null : this.db._mem.cstring(d, 4096));
      }
      return out;
    });
  }

  #bind(h: number, args: unknown[]): void {
    const db = this.db;
    const x = db._x;
    const params = this.#params;
    let values: unknown[];
    if (args.length === 1 && isNamed(args[0])) {
      const obj = args[0];
      values = params.map((name, i) => {
        if (name === undefined || /^\?\d*$/.test(name)) {
          throw new UsageError("BIND_NAMED_MISMATCH", `parameter ${i + 1} is positional (?) but named values were given; pass values in order instead`);
        }
        const bare = name.slice(1);
        if (bare in obj) return obj[bare];
        if (name in obj) return obj[name];
        throw new UsageError("BIND_MISSING_NAMED", `missing a value for named parameter ${name}`);
      });
    } else {
      values = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
      if (values.length !== params.length) {
        throw new UsageError(
          "BIND_COUNT_MISMATCH",
          `the statement takes ${params.length} parameter${params.length === 1 ? "" : "s"} but ${values.length} ${values.length === 1 ? "was" : "were"} given`,
        );
      }
    }
    // Every parameter is bound on every run (the count was checked), so no clear_bindings needed.
    for (let i = 0; i < values.length; i++) {
      const rc = bindValue(x, db._scratch, h, i + 1, values[i] as BindValue);
      if (rc !== SQLITE_OK) throw db._error(rc);
    }
  }

  #start(args: unknown[]): number {
    if (this.#busy) throw new UsageError("STATEMENT_BUSY", "this statement is being iterated; finish or break out of that loop first");
    const h = this.#ensure();
    this.db._x.sk_reset(h);
    this.#bind(h, args);
    return h;
  }

  #fail(h: number, rc: number): Error {
    const err = this.db._error(rc);
    this.db._x.sk_reset(h);
    return err;
  }

  /** Column names valid for the execution under way (call after its first step). */
  #names(h: number): string[] {
    if (this.#columns && this.db._x.sk_stmt_status(h, STMTSTATUS_REPREPARE, 0) === this.#columnsAt) return this.#columns;
    return this.columns();
  }

  #row(h: number, names: string[]): Row {
    const x = this.db._x;
    const mem = this.db._mem;
    const row: Row = {};
    for (let i = 0; i < names.length; i++) row[names[i]!] = columnValue(x, mem, h, i, this.typedReals) as SqlValue;
    return row;
  }

  /** Runs the statement to completion; returns changes and the last inserted rowid. */
  run(...args: BindArgs): RunResult {
    try {
      const h = this.#start(args);
      const x = this.db._x;
      const before = this.db._totalChanges();
      let rc: number;
      while ((rc = x.sk_step(h)) === SQLITE_ROW);
      if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
      x.sk_reset(h);
      return this.db._runResult(before);
    } catch (e) {
      throw this.db._fault(e);
    }
  }

  /** Every row, as objects keyed by column name. */
  all(...args: BindArgs): Row[] {
    try {
      const h = this.#start(args);
      const x = this.db._x;
      const rows: Row[] = [];
      let rc: number;
      let names: string[] | undefined;
      while ((rc = x.sk_step(h)) === SQLITE_ROW) rows.push(this.#row(h, (names ??= this.#names(h))));
      if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
      x.sk_reset(h);
      return rows;
    } catch (e) {
      throw this.db._fault(e);
    }
  }

  /** The first row, or undefined. */
  get(...args: BindArgs): Row | undefined {
    try {
      const h = this.#start(args);
      const rc = this.db._x.sk_step(h);
      if (rc === SQLITE_ROW) {
        const row = this.#row(h, this.#names(h));
        this.db._x.sk_reset(h);
        return row;
      }
      if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
      this.db._x.sk_reset(h);
      return undefined;
    } catch (e) {
      throw this.db._fault(e);
    }
  }

  /** Every row as an array of values in column order. */
  values(...args: BindArgs): SqlValue[][] {
    return this.db._guard(() => {
      const h = this.#start(args);
      const x = this.db._x;
      const mem = this.db._mem;
      const rows: SqlValue[][] = [];
      let n = -1;
      let rc: number;
      while ((rc = x.sk_step(h)) === SQLITE_ROW) {
        if (n < 0) n = x.sk_column_count(h); // after the first step: a re-prepare may change it
        const r: SqlValue[] = new Array(n);
        for (let i = 0; i < n; i++) r[i] = columnValue(x, mem, h, i, this.typedReals) as SqlValue;
        rows.push(r);
      }
      if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
      x.sk_reset(h);
      return rows;
    });
  }

  /** Rows one at a time; the statement is busy until the loop ends or breaks. */
  *iterate(...args: BindArgs): IterableIterator<Row> {
    const gen = this.db._generation;
    const h = this.db._guard(() => this.#start(args));
    this.#busy = true;
    let names: string[] | undefined;
    try {
      for (;;) {
        if (this.db._generation !== gen) throw new UsageError("STATEMENT_INVALIDATED", "the enclave restarted during iteration; run the query again");
        const row = this.db._guard(() => {
          const rc = this.db._x.sk_step(h);
          if (rc === SQLITE_ROW) return this.#row(h, (names ??= this.#names(h)));
          if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
          return undefined;
        });
        if (row === undefined) return;
        yield row;
      }
    } finally {
      this.#busy = false;
      if (this.db._generation === gen && this.db.open) this.db._x.sk_reset(h);
    }
  }

  /** Rows one at a time as arrays of values in column order; busy until the loop ends or breaks. */
  *iterateValues(...args: BindArgs): IterableIterator<SqlValue[]> {
    const gen = this.db._generation;
    const h = this.db._guard(() => this.#start(args));
    this.#busy = true;
    try {
      for (;;) {
        if (this.db._generation !== gen) throw new UsageError("STATEMENT_INVALIDATED", "the enclave restarted during iteration; run the query again");
        const row = this.db._guard(() => {
          const x = this.db._x;
          const rc = x.sk_step(h);
          if (rc === SQLITE_ROW) {
            const n = x.sk_column_count(h);
            const r: SqlValue[] = new Array(n);
            for (let i = 0; i < n; i++) r[i] = columnValue(x, this.db._mem, h, i, this.typedReals) as SqlValue;
            return r;
          }
          if (rc !== SQLITE_DONE) throw this.#fail(h, rc);
          return undefined;
        });
        if (row === undefined) return;
        yield row;
      }
    } finally {
      this.#busy = false;
      if (this.db._generation === gen && this.db.open) this.db._x.sk_reset(h);
    }
  }

  /** Frees the statement inside the enclave. Further use throws. */
  finalize(): void {
    if (this.#finalized) return;
    this.#finalized = true;
    if (this.#handle !== 0 && this.#gen === this.db._generation && this.db.open) {
      this.db._guard(() => this.db._x.sk_finalize(this.#handle));
    }
    this.#handle = 0;
    this.db._untrack(this);
  }

  /** @internal — the database is closing or its enclave restarted. */
  _drop(finalizeInEnclave: boolean): void {
    if (finalizeInEnclave && this.#handle !== 0 && this.#gen === this.db._generation) this.db._x.sk_finalize(this.#handle);
    this.#handle = 0;
  }
}

/** Removes SQL comments so a tail of only comments counts as empty. */
export function stripComments(s: string): string {
  return s.replace(/--[^\n]*(\n|$)/g, " ").replace(/\/\*[\s\S]*?(\*\/|$)/g, " ");
}
