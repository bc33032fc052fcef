/**
 * UNTRUSTED (host side). A MigrationSource for one Database opened by this process (PROTOCOL.md
 * §4.1): requests go through use(); freeze() lets the statement in flight finish (Database calls are
 * synchronous, so none is in flight between two calls), holds new requests, waits up to `waitMs` for
 * an open transaction, then rolls it back when asked or aborts the migration with
 * MIGRATION_TRANSACTION_OPEN (never half a transaction), and closes the database. Held requests
 * proceed after resume(), or get MIGRATION_MOVED after the commit, or MIGRATION_FROZEN_TOO_LONG after
 * `holdMs`.
 */
import type { Database } from "../../sql/database.js";
import { MigrationError } from "./errors.js";
import type { MigrationSource } from "./source.js";

export class DatabaseSource implements MigrationSource {
  #db: Database | undefined;
  readonly #reopen: () => Database;
  readonly #holdMs: number;
  #gate: { promise: Promise<void>; open: () => void } | undefined;
  #movedTo: string | undefined;

  constructor(db: Database, reopen: () => Database, opts: { holdMs?: number } = {}) {
    this.#db = db;
    this.#reopen = reopen;
    this.#holdMs = opts.holdMs ?? 10_000;
  }

  /** Runs `fn` on the database, waiting (bounded) while it is frozen. */
  async use<T>(fn: (db: Database) => T): Promise<T> {
    if (this.#gate) {
      const gate = this.#gate.promise;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_r, reject) => {
        timer = setTimeout(() => reject(new MigrationError("MIGRATION_FROZEN_TOO_LONG", `the database stayed frozen for a migration longer than ${this.#holdMs} ms; retry the request`)), this.#holdMs);
      });
      try {
        await Promise.race([gate, late]);
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.#movedTo !== undefined) throw new MigrationError("MIGRATION_MOVED", `the database was migrated to ${this.#movedTo}; send the request there`);
    if (!this.#db) throw new MigrationError("MIGRATION_MOVED", "the database is not served here");
    return fn(this.#db);
  }

  async freeze(opts: { waitMs: number; rollbackOpenTransaction: boolean }): Promise<void> {
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.#gate = { promise, open };
    const db = this.#db!;
    const until = Date.now() + opts.waitMs;
    while (db.inTransaction && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    if (db.inTransaction) {
      if (!opts.rollbackOpenTransaction) {
        this.#thaw();
        throw new MigrationError("MIGRATION_TRANSACTION_OPEN", `a transaction stayed open longer than ${opts.waitMs} ms; finish it and migrate again, or migrate with rollback of the open transaction`);
      }
      db.exec("ROLLBACK");
    }
    db.close();
    this.#db = undefined;
  }

  async resume(): Promise<void> {
    this.#db = this.#reopen();
    this.#thaw();
  }

  moved(to: string): void {
    this.#movedTo = to;
    this.#thaw();
  }

  #thaw(): void {
    const g = this.#gate;
    this.#gate = undefined;
    g?.open();
  }

  /** The database while it is served here (undefined when frozen or moved). */
  get database(): Database | undefined {
    return this.#db;
  }
}
