/**
 * UNTRUSTED (server). The bounded busy wait of hrana/ISOLATION.md ("Busy wait"): SQLite's own busy
 * handler cannot wait for a writer that runs on the same thread, so a stream request that found
 * the write lock held by another connection is run again after a sleep, while the event loop runs
 * the other streams, until it gets through or its busy timeout passes.
 */
import { SqliteError } from "../../../sql/errors.js";
import type { HranaError } from "./execute.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** The i-th sleep of a wait: 2 ms doubling to 50 ms. */
export function waitStep(i: number): number {
  return Math.min(50, 2 << Math.min(i, 5));
}

/** True for SQLite's busy error (any extended form), thrown or as a Hrana error. */
export function isBusy(e: unknown): boolean {
  if (e instanceof SqliteError) return e.primaryCode === 5;
  const h = e as HranaError | null | undefined;
  return typeof h?.code === "string" && h.code === "SQLITE_BUSY";
}

/** The message a client gets when the wait ran out: what happened and what to do. */
export function busyMessage(waitedMs: number): string {
  return `database is locked: another stream holds a write transaction; waited ${waitedMs} ms (selkie serve --busy-timeout). Retry after it commits, or make the other transaction shorter`;
}

export const STALE_MESSAGE = "database is locked: this transaction read data that another stream has changed since (a snapshot conflict); roll the transaction back and run it again";
