/**
 * UNTRUSTED (server). Hrana over HTTP, JSON encoding (HRANA_3_SPEC "Hrana over HTTP"): the request
 * body of `POST v2/pipeline` and `v3/pipeline`, checked field by field into typed structures.
 * Anything malformed is a 400 with code HRANA_PROTO_ERROR naming the field, before any statement
 * runs. Unknown fields are ignored (the spec's forward compatibility rule).
 */
import type { SqlReal, SqlValue } from "../../../sql/ecalls.js";
import { badRequest, HttpError } from "../errors.js";
import { decodeValue } from "./values.js";

export interface Stmt {
  sql?: string;
  sqlId?: number;
  args: Array<SqlValue | SqlReal>;
  namedArgs: Array<{ name: string; value: SqlValue | SqlReal }>;
  wantRows: boolean;
}

export type BatchCond =
  | { type: "ok"; step: number }
  | { type: "error"; step: number }
  | { type: "not"; cond: BatchCond }
  | { type: "and"; conds: BatchCond[] }
  | { type: "or"; conds: BatchCond[] }
  | { type: "is_autocommit" };

export interface BatchStep {
  condition?: BatchCond;
  stmt: Stmt;
}

export type SqlRef = { sql?: string; sqlId?: number };

export type StreamRequest =
  | { type: "close" }
  | { type: "execute"; stmt: Stmt }
  | { type: "batch"; steps: BatchStep[] }
  | ({ type: "sequence" } & SqlRef)
  | ({ type: "describe" } & SqlRef)
  | { type: "store_sql"; sqlId: number; sql: string }
  | { type: "close_sql"; sqlId: number }
  | { type: "get_autocommit" };

export interface PipelineRequest {
  baton: string | null;
  requests: StreamRequest[];
}

const MAX_COND_DEPTH = 64;

const proto = (message: string): HttpError => badRequest("HRANA_PROTO_ERROR", message);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function int32(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw proto(`${where} must be a 32-bit integer`);
  return v;
}

function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw proto(`${where} must be a string`);
  return v;
}

/** Parses a pipeline body (already JSON.parse'd). `maxSqlBytes` bounds every SQL text in it. */
export function parsePipeline(body: unknown, maxSqlBytes: number): PipelineRequest {
  if (!isObject(body)) throw proto("the request body must be a JSON object {baton, requests}");
  const baton = optString(body.baton, "baton") ?? null;
  if (!Array.isArray(body.requests)) throw proto("requests must be an array");
  const sqlText = (v: unknown, where: string): string | undefined => {
    const s = optString(v, where);
    if (s !== undefined && s.length > maxSqlBytes / 3 && Buffer.byteLength(s, "utf8") > maxSqlBytes) {
      throw new HttpError(400, "SQL_TOO_LONG", `${where} is ${Buffer.byteLength(s, "utf8")} bytes, over the limit of ${maxSqlBytes} (selkie serve --max-sql)`);
    }
    return s;
  };
  const sqlRef = (o: Record<string, unknown>, where: string): SqlRef => {
    const sql = sqlText(o.sql, `${where}.sql`);
    const sqlId = o.sql_id === undefined || o.sql_id === null ? undefined : int32(o.sql_id, `${where}.sql_id`);
    if ((sql === undefined) === (sqlId === undefined)) throw proto(`${where} needs exactly one of sql and sql_id`);
    return sql !== undefined ? { sql } : { sqlId: sqlId! };
  };
  const stmt = (v: unknown, where: string): Stmt => {
    if (!isObject(v)) throw proto(`${where} must be a Stmt object`);
    const ref = sqlRef(v, where);
    const args: Array<SqlValue | SqlReal> = [];
    if (v.args !== undefined && v.args !== null) {
      if (!Array.isArray(v.args)) throw proto(`${where}.args must be an array`);
      v.args.forEach((a, i) => args.push(decodeValue(a, `${where}.args[${i}]`)));
    }
    const namedArgs: Stmt["namedArgs"] = [];
    if (v.named_args !== undefined && v.named_args !== null) {
      if (!Array.isArray(v.named_args)) throw proto(`${where}.named_args must be an array`);
      v.named_args.forEach((a, i) => {
        if (!isObject(a) || typeof a.name !== "string" || a.name.length === 0) throw proto(`${where}.named_args[${i}] must be {name, value} with a non-empty name`);
        namedArgs.push({ name: a.name, value: decodeValue(a.value, `${where}.named_args[${i}].value`) });
      });
    }
    if (v.want_rows !== undefined && v.want_rows !== null && typeof v.want_rows !== "boolean") throw proto(`${where}.want_rows must be a boolean`);
    return { ...ref, args, namedArgs, wantRows: v.want_rows !== false };
  };
  const cond = (v: unknown, where: string, before: number, depth: number): BatchCond => {
    if (depth > MAX_COND_DEPTH) throw proto(`${where} nests deeper than ${MAX_COND_DEPTH}`);
    if (!isObject(v)) throw proto(`${where} must be a BatchCond object`);
    switch (v.type) {
      case "ok":
      case "error": {
        const step = v.step;
        if (typeof step !== "number" || !Number.isInteger(step) || step < 0 || step >= before) {
          throw proto(`${where}.step must be the index of an earlier step (0..${before - 1})`);
        }
        return { type: v.type, step };
      }
      case "not":
        return { type: "not", cond: cond(v.cond, `${where}.cond`, before, depth + 1) };
      case "and":
      case "or":
        if (!Array.isArray(v.conds)) throw proto(`${where}.conds must be an array`);
        return { type: v.type, conds: v.conds.map((c, i) => cond(c, `${where}.conds[${i}]`, before, depth + 1)) };
      case "is_autocommit":
        return { type: "is_autocommit" };
      default:
        throw proto(`${where}.type must be one of ok, error, not, and, or, is_autocommit`);
    }
  };
  const requests = body.requests.map((r, i): StreamRequest => {
    const where = `requests[${i}]`;
    if (!isObject(r)) throw proto(`${where} must be an object`);
    switch (r.type) {
      case "close":
        return { type: "close" };
      case "get_autocommit":
        return { type: "get_autocommit" };
      case "execute":
        return { type: "execute", stmt: stmt(r.stmt, `${where}.stmt`) };
      case "batch": {
        if (!isObject(r.batch) || !Array.isArray(r.batch.steps)) throw proto(`${where}.batch must be {steps: [...]}`);
        const steps = r.batch.steps.map((s, j): BatchStep => {
          const sw = `${where}.batch.steps[${j}]`;
          if (!isObject(s)) throw proto(`${sw} must be an object`);
          const condition = s.condition === undefined || s.condition === null ? undefined : cond(s.condition, `${sw}.condition`, j, 0);
          return { ...(condition ? { condition } : {}), stmt: stmt(s.stmt, `${sw}.stmt`) };
        });
        return { type: "batch", steps };
      }
      case "sequence":
        return { type: "sequence", ...sqlRef(r, where) };
      case "describe":
        return { type: "describe", ...sqlRef(r, where) };
      case "store_sql": {
        const sql = sqlText(r.sql, `${where}.sql`);
        if (sql === undefined) throw proto(`${where}.sql must be a string`);
        return { type: "store_sql", sqlId: int32(r.sql_id, `${where}.sql_id`), sql };
      }
      case "close_sql":
        return { type: "close_sql", sqlId: int32(r.sql_id, `${where}.sql_id`) };
      default:
        throw proto(`${where}.type ${JSON.stringify(r.type)} is not a Hrana stream request (close, execute, batch, sequence, describe, store_sql, close_sql, get_autocommit)`);
    }
  });
  return { baton, requests };
}
