/**
 * UNTRUSTED (server). Hrana 3 cursors (PROTOCOL.md §3): a batch run on a stream whose results are
 * returned as a sequence of entries. The batch runs through the pipeline (pipeline.ts) as one
 * `batch` stream request, so batons, leases, the authorizer, deadlines and the row and
 * response-byte limits are exactly a batch's; its result is then cut into entries.
 */
import { parsePipeline, type PipelineRequest } from "./protocol.js";
import { runPipeline, type PipelineContext } from "./pipeline.js";
import type { BatchResult, HranaError, StmtResult } from "./execute.js";
import type { HranaValue } from "./values.js";
import { badRequest } from "../errors.js";

export type CursorEntry =
  | { type: "step_begin"; step: number; cols: StmtResult["cols"] }
  | { type: "row"; row: HranaValue[] }
  | { type: "step_end"; affected_row_count: number; last_insert_rowid: string | null }
  | { type: "step_error"; step: number; error: HranaError }
  | { type: "error"; error: HranaError };

export interface CursorResponse {
  baton: string | null;
  base_url: string | null;
  entries: CursorEntry[];
}

/** A cursor request body `{baton, batch}` (JSON shape) as a one-request pipeline, checked like one. */
export function parseCursor(body: unknown, maxSqlBytes: number): PipelineRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw badRequest("HRANA_PROTO_ERROR", "the request body must be an object {baton, batch}");
  const o = body as Record<string, unknown>;
  return parsePipeline({ baton: o.baton, requests: [{ type: "batch", batch: o.batch }] }, maxSqlBytes);
}

/** The entries of a batch's result (skipped steps have none). */
export function batchEntries(r: BatchResult): CursorEntry[] {
  const out: CursorEntry[] = [];
  r.step_results.forEach((res, step) => {
    const err = r.step_errors[step];
    if (err) {
      out.push({ type: "step_error", step, error: err });
      return;
    }
    if (!res) return;
    out.push({ type: "step_begin", step, cols: res.cols });
    for (const row of res.rows) out.push({ type: "row", row });
    out.push({ type: "step_end", affected_row_count: res.affected_row_count, last_insert_rowid: res.last_insert_rowid });
  });
  return out;
}

/** The entries of a `batch` stream result: its steps, or one `error` entry when it could not run. */
export function resultEntries(result: { type: "ok"; response: Record<string, unknown> } | { type: "error"; error: HranaError }): CursorEntry[] {
  if (result.type === "error") return [{ type: "error", error: result.error }];
  return batchEntries(result.response.result as BatchResult);
}

/** Runs a cursor request (a one-batch pipeline from parseCursor) on its stream. */
export async function runCursor(ctx: PipelineContext, req: PipelineRequest): Promise<CursorResponse> {
  const resp = await runPipeline(ctx, req);
  return { baton: resp.baton, base_url: resp.base_url, entries: resultEntries(resp.results[0]!) };
}
