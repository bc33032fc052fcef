/**
 * Hrana 3 over HTTP, protobuf: the body of POST v3-protobuf/pipeline and v3-protobuf/cursor, and a
 * WebSocket ClientMsg of the hrana3-protobuf subprotocol (UNTRUSTED input from any client). The first
 * byte picks which decoder; the rest is the message. Bytes -> protobuf.ts -> parsePipeline /
 * parseCursor (as the server does). Property: only HttpError (400) comes out, and what is accepted is
 * well-typed (every arg one of the SQL API's value kinds), exactly as for the JSON encoding.
 */
import { cursorBodyIn, clientMsgIn, pipelineBodyIn } from "../../../runtime/host/server/hrana/protobuf.js";
import { parsePipeline } from "../../../runtime/host/server/hrana/protocol.js";
import { parseCursor } from "../../../runtime/host/server/hrana/cursor.js";
import { HttpError } from "../../../runtime/host/server/errors.js";
import { SqlReal } from "../../../runtime/sql/ecalls.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

function checkValue(v: unknown): void {
  if (v === null || typeof v === "number" || typeof v === "bigint" || typeof v === "string" || v instanceof Uint8Array || v instanceof SqlReal) return;
  throw new PropertyViolation(`an accepted argument is not a SQL value: ${String(v)}`);
}

type Stmt = { args: unknown[]; namedArgs: Array<{ value: unknown }> };
function checkStmts(stmts: Stmt[]): void {
  for (const s of stmts) {
    s.args.forEach(checkValue);
    s.namedArgs.forEach((a) => checkValue(a.value));
  }
}

// Hand-encoded seeds (protobuf wire format): field numbers from hrana/proto-schema.ts.
const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ""), "hex");
const seeds = [
  // kind 0, PipelineReqBody { requests: [ { execute: { stmt: { sql: "SELECT 1" } } } ] }
  Buffer.concat([Buffer.from([0]), hex("12 0e 0a 0c 0a 0a 0a 08 53454c4543542031")]),
  // kind 0, PipelineReqBody { baton: "b", requests: [ { close: {} } ] }
  Buffer.concat([Buffer.from([0]), hex("0a 01 62 12 02 12 00")]),
  // kind 1, CursorReqBody { batch: { steps: [ { stmt: { sql: "x" } } ] } }
  Buffer.concat([Buffer.from([1]), hex("12 07 0a 05 0a 03 0a 01 78")]),
  // kind 2, ClientMsg { hello: { jwt: "t" } }
  Buffer.concat([Buffer.from([2]), hex("0a 03 0a 01 74")]),
];

export const target: Target = {
  name: "hrana-protobuf",
  about: "Hrana 3 protobuf pipeline/cursor bodies and WebSocket client messages: only HttpError, accepted args are SQL values",
  maxLength: 4096,
  seeds: () => seeds,
  run(data) {
    if (data.length === 0) return;
    const body = data.subarray(1);
    switch (data[0]! % 3) {
      case 0: {
        const json = refusedOr(() => pipelineBodyIn(body), [HttpError]);
        if (!json) return;
        const p = refusedOr(() => parsePipeline(json, 1024), [HttpError]);
        if (!p) return;
        for (const r of p.requests) checkStmts(r.type === "execute" ? [r.stmt] : r.type === "batch" ? r.steps.map((s) => s.stmt) : []);
        return;
      }
      case 1: {
        const json = refusedOr(() => cursorBodyIn(body), [HttpError]);
        if (!json) return;
        const p = refusedOr(() => parseCursor(json, 1024), [HttpError]);
        if (!p) return;
        for (const r of p.requests) checkStmts(r.type === "batch" ? r.steps.map((s) => s.stmt) : []);
        return;
      }
      default: {
        const m = refusedOr(() => clientMsgIn(body), [HttpError]);
        if (m !== undefined && (typeof m !== "object" || m === null)) throw new PropertyViolation("a client message decoded to a non-object");
      }
    }
  },
};
