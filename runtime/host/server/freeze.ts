/**
 * UNTRUSTED (server). A database frozen for a live migration (runtime/migration/protocol/PROTOCOL.md
 * §4.1), on the thread that hosts it (conn.ts: the main thread with --workers 0, else its worker).
 *
 * States of one database here:
 *   SERVING --freezeOn--> DRAINING (gate shut: new requests wait; the stream inside a transaction,
 *     if any, may go on until it ends or `waitMs` passes) --lease taken, streams ended, closed-->
 *   FROZEN (its files are quiescent) --thawOn()--> SERVING  |  --thawOn(movedTo)--> MOVED (gone)
 *   DRAINING --waitMs passed with a transaction open--> rolled back (when asked) and FROZEN,
 *     or SERVING again with MIGRATION_TRANSACTION_OPEN (never half a transaction)
 *
 * Invariants:
 *  1. While the gate is shut, no request opens or runs on the database except the streams that
 *     hold one of its connections inside a transaction (so they can end); none at all once FROZEN
 *     (db-host.ts acquireAll: every connection free, the extra ones closed).
 *  2. A request held by the gate proceeds after a thaw, or answers DB_MOVED after a move (the front
 *     then forwards it to the new owner), or MIGRATION_FROZEN_TOO_LONG at its own deadline.
 */
import { MigrationError } from "../../migration/protocol/errors.js";
import { HttpError } from "./errors.js";
import type { Conn } from "./conn.js";
import type { DbHost } from "./db-host.js";

export class FreezeGate {
  /** True once the database is closed (FROZEN): no stream may pass any more. */
  closed = false;
  #movedTo: string | undefined;
  #open!: () => void;
  readonly #opened = new Promise<void>((r) => (this.#open = r));

  /** Waits until the gate opens or `deadline`; throws DB_MOVED after a move. */
  async pass(name: string, deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), Math.max(0, deadline - Date.now()))));
    const r = await Promise.race([this.#opened, late]);
    clearTimeout(timer);
    if (r === "late") {
      throw new HttpError(503, "MIGRATION_FROZEN_TOO_LONG", `database ${name} stayed frozen for a migration past this request's deadline; retry it`, { "retry-after": "1" });
    }
    if (this.#movedTo !== undefined) throw movedError(name, this.#movedTo);
  }

  open(movedTo?: string): void {
    this.#movedTo = movedTo;
    this.#open();
  }
}

/** Answered for a database that moved while the request waited; the front forwards such requests. */
export function movedError(name: string, to: string): HttpError {
  return new HttpError(410, "DB_MOVED", `database ${name} moved to ${to}; send the request there`);
}

/**
 * Freezes `name` (the DRAINING and FROZEN steps above): its files are quiescent when this returns.
 * Throws MIGRATION_TRANSACTION_OPEN (and serves on) when a transaction stays open past `waitMs` and
 * `rollback` is false.
 */
export async function freezeOn(c: Conn, name: string, o: { waitMs: number; rollback: boolean }): Promise<void> {
  if (c.frozen.has(name)) throw new MigrationError("MIGRATION_IN_PROGRESS", `database ${name} is frozen for a migration already`);
  const gate = new FreezeGate();
  c.frozen.set(name, gate);
  try {
    if (c.registry.isOpen(name)) {
      const host = c.registry.get(name);
      const owner = {};
      try {
        await host.acquireAll(owner, Date.now() + o.waitMs); // every connection of it (ISOLATION.md)
      } catch (e) {
        if (!(e instanceof HttpError) || e.code !== "REQUEST_TIMEOUT") throw e;
        if (!o.rollback) {
          throw new MigrationError("MIGRATION_TRANSACTION_OPEN", `a transaction on ${name} stayed open longer than ${o.waitMs} ms; finish it and migrate again, or migrate with --rollback-open-transaction`);
        }
        c.streams.closeFor(host); // rolls their transactions back and releases their connections
        await host.acquireAll(owner, Date.now() + o.waitMs);
      }
      gate.closed = true;
      closeHost(c, name, host);
    }
    gate.closed = true;
  } catch (e) {
    c.frozen.delete(name);
    gate.open();
    throw e;
  }
}

function closeHost(c: Conn, name: string, host: DbHost): void {
  c.streams.closeFor(host); // parked streams outside a transaction: their batons end here
  c.registry.close(name);
}

/** Ends a freeze: the database serves again (it reopens on its next request), or it moved. */
export function thawOn(c: Conn, name: string, movedTo?: string): void {
  const gate = c.frozen.get(name);
  if (gate === undefined) return;
  c.frozen.delete(name);
  gate.open(movedTo);
}

/** Holds a request for a frozen database (invariant 1); returns at once when it is not frozen. */
export async function gateRequest(c: Conn, name: string, baton: string | null, deadline: number): Promise<void> {
  const gate = c.frozen.get(name);
  if (gate === undefined) return;
  // The stream that holds the lease inside its transaction goes on, so it can commit or roll back.
  if (!gate.closed && baton !== null && c.streams.holdsLease(baton)) return;
  await gate.pass(name, deadline);
}
