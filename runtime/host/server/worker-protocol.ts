/**
 * UNTRUSTED (server). Messages between the main thread and a database worker (WORKERS.md,
 * "Worker messages, version 1"). Every request carries an id; the worker answers each with the
 * same id, exactly once, plus its current stats (metrics). Errors cross as their class name,
 * code, message and HTTP status, and are rebuilt on the main thread (reviveError) so the handler
 * answers them exactly as it would in-process.
 */
import { SelkieError, EpcError } from "../../errors.js";
import { DatabaseLockedError } from "../process-lock.js";
import { HttpError } from "./errors.js";
import type { EngineStats } from "./conn.js";
import type { Limits } from "./limits.js";
import type { WorkerPlatformInit } from "./worker-platform.js";

export const WORKER_PROTOCOL = 1;

export interface WorkerInit {
  protocol: typeof WORKER_PROTOCOL;
  /** The worker's index in the pool (its paging folder is the platform's `paging-worker-K`). */
  index: number;
  /** The databases folder. */
  dir: string;
  limits: Limits;
  epc?: number | string;
  platform: WorkerPlatformInit;
}

export type WorkerOp =
  /** The request body as received (parsed in the worker: its typed values are class instances). */
  | { op: "pipeline"; db: string; tokenId: string; readOnly: boolean; started: number; body: Uint8Array; draining: boolean; ep: { protobuf: boolean; cursor: boolean } }
  | { op: "reclaim"; bytes: number }
  | { op: "create"; db: string }
  | { op: "info"; db: string }
  | { op: "remove"; db: string }
  | { op: "close"; db: string }
  | { op: "image"; db: string; what: "snapshot" | "hibernate"; full: boolean }
  | { op: "freeze"; db: string; waitMs: number; rollback: boolean }
  | { op: "thaw"; db: string; movedTo?: string }
  | { op: "closeStreams" }
  | { op: "closeAll" }
  | { op: "stats" };

export type ToWorker = WorkerOp & { id: number };

export interface WireError {
  name: string;
  code: string;
  message: string;
  status?: number;
  headers?: Record<string, string>;
  stack?: string;
}

export type FromWorker =
  | { t: "rpc" }
  | { t: "log"; level: "info" | "warn" | "error"; obj: Record<string, unknown>; msg: string }
  | { t: "answer"; id: number; ok: true; value: unknown; stats: EngineStats }
  | { t: "answer"; id: number; ok: false; error: WireError; stats: EngineStats };

export function toWire(e: unknown): WireError {
  if (e instanceof HttpError) return { name: "HttpError", code: e.code, message: e.message, status: e.status, headers: { ...e.headers } };
  if (e instanceof SelkieError) return { name: e.name, code: e.code, message: e.message };
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, code: "INTERNAL", message: err.message, ...(err.stack ? { stack: err.stack } : {}) };
}

/** An error of a worker that is not one of the classes the handler maps by type. */
export class WorkerSideError extends SelkieError {}

export function reviveError(w: WireError): Error {
  if (w.name === "HttpError") return new HttpError(w.status ?? 500, w.code, w.message, w.headers ?? {});
  if (w.name === "DatabaseLockedError") return new DatabaseLockedError(w.code, w.message);
  if (w.name === "EpcError") return new EpcError(w.code, w.message);
  if (w.code !== "INTERNAL") {
    const e = new WorkerSideError(w.code, w.message);
    e.name = w.name;
    return e;
  }
  const e = new Error(w.message);
  if (w.stack) e.stack = w.stack;
  return e;
}
