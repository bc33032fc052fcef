/**
 * Hrana over HTTP, JSON: the body of POST v2|v3/pipeline (UNTRUSTED input from any client with a
 * token). Bytes -> UTF-8 -> JSON.parse (the server answers a JSON syntax error with its own 400, so a
 * body that does not parse is not interesting) -> parsePipeline. Property: only HttpError (400) comes
 * out, and what is accepted is well-typed (every arg one of the SQL API's value kinds).
 */
import { parsePipeline } from "../../../runtime/host/server/hrana/protocol.js";
import { HttpError } from "../../../runtime/host/server/errors.js";
import { SqlReal } from "../../../runtime/sql/ecalls.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

const seeds = [
  { baton: null, requests: [{ type: "execute", stmt: { sql: "SELECT ?, :a", args: [{ type: "integer", value: "9223372036854775807" }], named_args: [{ name: ":a", value: { type: "blob", base64: "AAE=" } }], want_rows: true } }, { type: "close" }] },
  { baton: "b1", requests: [{ type: "batch", batch: { steps: [{ stmt: { sql: "BEGIN" } }, { condition: { type: "and", conds: [{ type: "ok", step: 0 }, { type: "not", cond: { type: "error", step: 0 } }, { type: "is_autocommit" }] }, stmt: { sql_id: 3, args: [{ type: "float", value: 1.5 }, { type: "null" }, { type: "text", value: "x" }] } }] } }] },
  { baton: null, requests: [{ type: "store_sql", sql_id: 1, sql: "SELECT 1" }, { type: "sequence", sql_id: 1 }, { type: "describe", sql: "SELECT 2" }, { type: "close_sql", sql_id: 1 }, { type: "get_autocommit" }] },
  { baton: null, requests: [{ type: "batch", batch: { steps: [{ stmt: { sql: "x" } }, { condition: { type: "or", conds: [] }, stmt: { sql: "y", args: null, named_args: null, want_rows: false } }] } }] },
];

function checkValue(v: unknown): void {
  if (v === null || typeof v === "number" || typeof v === "bigint" || typeof v === "string" || v instanceof Uint8Array || v instanceof SqlReal) return;
  throw new PropertyViolation(`an accepted argument is not a SQL value: ${String(v)}`);
}

export const target: Target = {
  name: "hrana-pipeline",
  about: "Hrana JSON pipeline bodies: only HttpError, accepted args are SQL values",
  maxLength: 4096,
  seeds: () => seeds.map((s) => Buffer.from(JSON.stringify(s))),
  run(data) {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.from(data).toString("utf8"));
    } catch {
      return;
    }
    const p = refusedOr(() => parsePipeline(body, 1024), [HttpError]);
    if (!p) return;
    for (const r of p.requests) {
      const stmts = r.type === "execute" ? [r.stmt] : r.type === "batch" ? r.steps.map((s) => s.stmt) : [];
      for (const s of stmts) {
        s.args.forEach(checkValue);
        s.namedArgs.forEach((a) => checkValue(a.value));
        if ((s.sql === undefined) === (s.sqlId === undefined)) throw new PropertyViolation("a statement was accepted without exactly one of sql and sql_id");
        if (s.sql !== undefined && Buffer.byteLength(s.sql) > 1024) throw new PropertyViolation("an SQL text over --max-sql was accepted");
      }
    }
  },
};
