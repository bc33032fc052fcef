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
