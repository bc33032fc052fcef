/**
 * Exit codes of the selkie CLI (stable; scripts may rely on them).
 */
import { EnclaveFault, EnclaveLoadError, ManifestError, SelkieError, UsageError } from "../../errors.js";
import { SqliteError, StatementInterruptedError } from "../../sql/errors.js";
import { DatabaseLockedError } from "../process-lock.js";

export const EXIT_OK = 0;
/** SQLite reported an error for the SQL given. */
export const EXIT_SQL_ERROR = 1;
/** Wrong command-line use. */
export const EXIT_USAGE = 2;
/** The enclave could not be loaded (module missing or refused, bad manifest). */
export const EXIT_ENCLAVE = 3;
/** Another process holds the database. */
export const EXIT_LOCKED = 4;
/** The enclave faulted (trap); it was restarted, the call rolled back. */
export const EXIT_FAULT = 5;
/** Any other Selkie error (platform, sealing, quotes: see the error's code). */
export const EXIT_OTHER = 6;
/** A bug: an unexpected exception. */
export const EXIT_INTERNAL = 70;

export function exitCodeFor(e: unknown): number {
  if (e instanceof SqliteError || e instanceof StatementInterruptedError) return EXIT_SQL_ERROR; // sqlite3 exits 1 too
  if (e instanceof UsageError) return EXIT_USAGE;
  if (e instanceof EnclaveLoadError || e instanceof ManifestError) return EXIT_ENCLAVE;
  if (e instanceof DatabaseLockedError) return EXIT_LOCKED;
  if (e instanceof EnclaveFault) return EXIT_FAULT;
  if (e instanceof SelkieError) return EXIT_OTHER;
  return EXIT_INTERNAL;
}

/** One line for the user: "Error [CODE]: message". */
export function describeError(e: unknown): string {
  if (e instanceof SelkieError) return `Error [${e.code}]: ${e.message}`;
  if (e instanceof Error) return `Internal error: ${e.stack ?? e.message}`;
  return `Internal error: ${String(e)}`;
}

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  SQL error (the message and SQLite's code say what), or a statement interrupted (Ctrl-C)
  2  wrong usage of the command
  3  enclave could not be loaded (module missing or refused, bad manifest)
  4  the database is in use by another process
  5  the enclave faulted; it was restarted and the statement rolled back
  6  other Selkie error (see its code)
 70  internal error (a bug: please report it)`;
