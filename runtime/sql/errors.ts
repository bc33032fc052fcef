import { SelkieError } from "../errors.js";
import { sqliteCodeName } from "./codes.js";

/**
 * An error SQLite reported. `code` is the extended code's name ("SQLITE_CONSTRAINT_UNIQUE"),
 * `primaryCode`/`extendedCode` the numbers, as in better-sqlite3 and the sqlite3 C API.
 */
export class SqliteError extends SelkieError {
  readonly primaryCode: number;
  readonly extendedCode: number;
  /** Byte offset of the error in the SQL text, when SQLite knows it. */
  readonly offset: number | undefined;

  constructor(extendedCode: number, message: string, offset?: number) {
    super(sqliteCodeName(extendedCode), message);
    this.extendedCode = extendedCode;
    this.primaryCode = extendedCode & 0xff;
    this.offset = offset !== undefined && offset >= 0 ? offset : undefined;
  }
}

/**
 * STATEMENT_TIMEOUT: a statement ran past the deadline set with Database.setDeadline and was
 * interrupted inside SQLite. SQLite rolled the statement back (inside an explicit transaction a
 * write statement's interrupt rolls the transaction back); the connection stays usable.
 */
export class StatementTimeoutError extends SelkieError {
  constructor(message = "the statement ran past its deadline and was interrupted; nothing it did was kept. Make it cheaper (an index, a LIMIT) or allow more time") {
    super("STATEMENT_TIMEOUT", message);
  }
}

/**
 * STATEMENT_INTERRUPTED: the statement was interrupted on request (Database.setInterruptCheck: the
 * shell's Ctrl-C) inside SQLite, and rolled back as an interrupt is; the connection stays usable.
 */
export class StatementInterruptedError extends SelkieError {
  constructor(message = "Interrupted") {
    super("STATEMENT_INTERRUPTED", message);
  }
}

/**
 * SQL_NOT_AUTHORIZED: the connection's scope (Database.setScope) does not allow this statement;
 * `denied` says what was refused ("PRAGMA hard_heap_limit = 100000", "ATTACH ':memory:'", "INSERT t").
 * Nothing ran.
 */
export class SqlNotAuthorizedError extends SelkieError {
  constructor(
    readonly scope: SqlScope,
    readonly denied: string,
  ) {
    super("SQL_NOT_AUTHORIZED", `${denied} is not allowed for a ${scope} connection`);
  }
}

/**
 * What a connection may do (enforced by an authorizer inside the enclave):
 *  - "all": everything (the default);
 *  - "read-write": reads and writes, but no setting other users of the connection share (heap
 *    limits, query_only, max_page_count, ignore_check_constraints, writable_schema, locking_mode,
 *    synchronous, journal_mode, foreign_keys, cache_size...), no ATTACH/DETACH, no TEMP trigger/view;
 *  - "read-only": SELECT, read-only PRAGMAs, transactions and savepoints.
 */
export type SqlScope = "all" | "read-write" | "read-only";
export const SCOPE_IDS: Readonly<Record<SqlScope, number>> = Object.freeze({ all: 0, "read-write": 1, "read-only": 2 });
