/**
 * UNTRUSTED (server). Hrana 3's protobuf encoding (PROTOCOL.md §2), with protobufjs over the schema
 * in proto-schema.ts. Incoming messages are turned into the JSON encoding's shapes and then checked
 * by the same code as JSON (protocol.ts), so both encodings accept and refuse exactly the same
 * things; outgoing results are built as JSON shapes (execute.ts) and turned into protobuf here.
 *
 * Anything protobufjs cannot decode (bad wire types, truncated messages, nesting too deep) is a
 * 400 HRANA_PROTO_ERROR; nothing runs for it.
 */
import protobuf from "protobufjs";
import { badRequest, type HttpError } from "../errors.js";
import { infinityPlaceholder } from "../http.js";
import { HRANA_HTTP_PROTO, HRANA_PROTO, HRANA_WS_PROTO } from "./proto-schema.js";
import type { HranaValue } from "./values.js";

const root = new protobuf.Root();
for (const text of [HRANA_PROTO, HRANA_HTTP_PROTO, HRANA_WS_PROTO]) protobuf.parse(text, root, { keepCase: true });
root.resolveAll();
const T = {
  PipelineReqBody: root.lookupType("hrana.http.PipelineReqBody"),
  PipelineRespBody: root.lookupType("hrana.http.PipelineRespBody"),
  CursorReqBody: root.lookupType("hrana.http.CursorReqBody"),
  CursorRespBody: root.lookupType("hrana.http.CursorRespBody"),
  CursorEntry: root.lookupType("hrana.CursorEntry"),
  ClientMsg: root.lookupType("hrana.ws.ClientMsg"),
  ServerMsg: root.lookupType("hrana.ws.ServerMsg"),
};

/* eslint-disable @typescript-eslint/no-explicit-any -- decoded protobufjs messages are untyped */
type Pb = any;
type Json = Record<string, unknown>;

const proto = (message: string): HttpError => badRequest("HRANA_PROTO_ERROR", message);

function decode(type: protobuf.Type, bytes: Uint8Array, what: string): Pb {
  try {
    return type.decode(bytes);
  } catch (e) {
    throw proto(`the ${what} is not a valid protobuf ${type.name}: ${(e as Error).message}`);
  }
}

const opt = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

// ---- protobuf -> JSON shapes (then checked by protocol.ts) ----

function valueIn(v: Pb): Json {
  switch (v?.value) {
    case "null":
      return { type: "null" };
    case "integer":
      return { type: "integer", value: String(v.integer) };
    case "float":
      return { type: "float", value: v.float };
    case "text":
      return { type: "text", value: v.text };
    case "blob":
      return { type: "blob", base64: Buffer.from(v.blob).toString("base64") };
    default:
      return { type: undefined }; // refused by decodeValue with the argument's name
  }
}

function stmtIn(s: Pb): Json | undefined {
  if (!s) return undefined;
  return {
    sql: opt(s.sql),
    sql_id: opt(s.sql_id),
    args: (s.args as Pb[]).map(valueIn),
    named_args: (s.named_args as Pb[]).map((a) => ({ name: a.name, value: a.value ? valueIn(a.value) : undefined })),
    want_rows: opt(s.want_rows),
  };
}

function condIn(c: Pb): Json {
  switch (c?.cond) {
    case "step_ok":
      return { type: "ok", step: c.step_ok };
    case "step_error":
      return { type: "error", step: c.step_error };
    case "not":
      return { type: "not", cond: condIn(c.not) };
    case "and":
      return { type: "and", conds: (c.and.conds as Pb[]).map(condIn) };
    case "or":
      return { type: "or", conds: (c.or.conds as Pb[]).map(condIn) };
    case "is_autocommit":
      return { type: "is_autocommit" };
    default:
      return { type: undefined };
  }
}

function batchIn(b: Pb): Json | undefined {
  if (!b) return undefined;
  return { steps: (b.steps as Pb[]).map((s) => ({ condition: s.condition ? condIn(s.condition) : undefined, stmt: stmtIn(s.stmt) })) };
}

function streamRequestIn(r: Pb): Json {
  const type = r.request as string | undefined;
  switch (type) {
    case "execute":
      return { type, stmt: stmtIn(r.execute.stmt) };
    case "batch":
      return { type, batch: batchIn(r.batch.batch) };
    case "sequence":
    case "describe":
      return { type, sql: opt(r[type].sql), sql_id: opt(r[type].sql_id) };
    case "store_sql":
      return { type, sql_id: r.store_sql.sql_id, sql: r.store_sql.sql };
    case "close_sql":
      return { type, sql_id: r.close_sql.sql_id };
    default:
      return { type: type ?? "(none: an unknown or empty StreamRequest)" };
  }
}

/** A `PipelineReqBody` as the JSON encoding's `{baton, requests}` (checked by parsePipeline). */
export function pipelineBodyIn(bytes: Uint8Array): Json {
  const m = decode(T.PipelineReqBody, bytes, "request body");
  return { baton: opt(m.baton), requests: (m.requests as Pb[]).map(streamRequestIn) };
}

/** A `CursorReqBody` as the JSON encoding's `{baton, batch}`. */
export function cursorBodyIn(bytes: Uint8Array): Json {
  const m = decode(T.CursorReqBody, bytes, "request body");
  return { baton: opt(m.baton), batch: batchIn(m.batch) };
}

/** A WebSocket `ClientMsg` as the JSON encoding's message (checked by ws.ts). */
export function clientMsgIn(bytes: Uint8Array): Json {
  const m = decode(T.ClientMsg, bytes, "message");
  if (m.msg === "hello") return { type: "hello", jwt: opt(m.hello.jwt) };
  if (m.msg !== "request") return { type: undefined };
  const r = m.request;
  const type = r.request as string | undefined;
  const body = type ? r[type] : undefined;
  let request: Json;
  switch (type) {
    case "open_stream":
    case "close_stream":
    case "get_autocommit":
      request = { type, stream_id: body.stream_id };
      break;
    case "execute":
      request = { type, stream_id: body.stream_id, stmt: stmtIn(body.stmt) };
      break;
    case "batch":
      request = { type, stream_id: body.stream_id, batch: batchIn(body.batch) };
      break;
    case "open_cursor":
      request = { type, stream_id: body.stream_id, cursor_id: body.cursor_id, batch: batchIn(body.batch) };
      break;
    case "close_cursor":
      request = { type, cursor_id: body.cursor_id };
      break;
    case "fetch_cursor":
      request = { type, cursor_id: body.cursor_id, max_count: body.max_count };
      break;
    case "sequence":
    case "describe":
      request = { type, stream_id: body.stream_id, sql: opt(body.sql), sql_id: opt(body.sql_id) };
      break;
    case "store_sql":
      request = { type, sql_id: body.sql_id, sql: body.sql };
      break;
    case "close_sql":
      request = { type, sql_id: body.sql_id };
      break;
    default:
      request = { type: undefined };
  }
  return { type: "request", request_id: r.request_id, request };
}

// ---- JSON shapes -> protobuf ----

const POS_INF = infinityPlaceholder(Infinity);
const NEG_INF = infinityPlaceholder(-Infinity);

function valueOut(v: HranaValue): Pb {
  switch (v.type) {
    case "null":
      return { null: {} };
    case "integer":
      return { integer: v.value };
    case "float": {
      const x = v.value as unknown;
      return { float: x === POS_INF ? Infinity : x === NEG_INF ? -Infinity : x };
    }
    case "text":
      return { text: v.value };
    case "blob":
      return { blob: Buffer.from(v.base64, "base64") };
  }
}

function colsOut(cols: Array<{ name: string | null; decltype: string | null }>): Pb[] {
  return cols.map((c) => ({ name: opt(c.name), decltype: opt(c.decltype) }));
}

function stmtResultOut(r: Pb): Pb {
  return {
    cols: colsOut(r.cols),
    rows: (r.rows as HranaValue[][]).map((row) => ({ values: row.map(valueOut) })),
    affected_row_count: r.affected_row_count,
    last_insert_rowid: opt(r.last_insert_rowid),
  };
}

function errorOut(e: Pb): Pb {
  return { message: e.message, code: opt(e.code) };
}

function batchResultOut(r: Pb): Pb {
  const step_results: Record<number, Pb> = {};
  const step_errors: Record<number, Pb> = {};
  (r.step_results as Pb[]).forEach((s, i) => s && (step_results[i] = stmtResultOut(s)));
  (r.step_errors as Pb[]).forEach((e, i) => e && (step_errors[i] = errorOut(e)));
  return { step_results, step_errors };
}

function describeOut(r: Pb): Pb {
  return { params: (r.params as Pb[]).map((p) => ({ name: opt(p.name) })), cols: colsOut(r.cols), is_explain: r.is_explain, is_readonly: r.is_readonly };
}

/** A response of a stream request (HTTP `StreamResponse` and WebSocket `ResponseOkMsg` share the shapes). */
function responseOut(r: Pb): Pb {
  switch (r.type) {
    case "execute":
      return { execute: { result: stmtResultOut(r.result) } };
    case "batch":
      return { batch: { result: batchResultOut(r.result) } };
    case "describe":
      return { describe: { result: describeOut(r.result) } };
    case "get_autocommit":
      return { get_autocommit: { is_autocommit: r.is_autocommit } };
    case "fetch_cursor":
      return { fetch_cursor: { entries: (r.entries as Pb[]).map(cursorEntryOut), done: r.done } };
    default:
      return { [r.type]: {} };
  }
}

function cursorEntryOut(e: Pb): Pb {
  switch (e.type) {
    case "step_begin":
      return { step_begin: { step: e.step, cols: colsOut(e.cols) } };
    case "step_end":
      return { step_end: { affected_row_count: e.affected_row_count, last_insert_rowid: e.last_insert_rowid === null ? undefined : BigInt.asUintN(64, BigInt(e.last_insert_rowid)).toString() } };
    case "step_error":
      return { step_error: { step: e.step, error: errorOut(e.error) } };
    case "row":
      return { row: { values: (e.row as HranaValue[]).map(valueOut) } };
    default:
      return { error: errorOut(e.error) };
  }
}

/** The JSON encoding's pipeline response as a `PipelineRespBody`. */
export function pipelineResponseOut(resp: { baton: string | null; base_url: string | null; results: Pb[] }): Buffer {
  const results = resp.results.map((r) => (r.type === "ok" ? { ok: responseOut(r.response) } : { error: errorOut(r.error) }));
  return Buffer.from(T.PipelineRespBody.encode({ baton: opt(resp.baton), base_url: opt(resp.base_url), results }).finish());
}

/** The body of a protobuf cursor response: `CursorRespBody` then each `CursorEntry`, length-delimited. */
export function cursorResponseOut(head: { baton: string | null; base_url: string | null }, entries: Pb[]): Buffer {
  const w = protobuf.Writer.create();
  T.CursorRespBody.encodeDelimited({ baton: opt(head.baton), base_url: opt(head.base_url) }, w);
  for (const e of entries) T.CursorEntry.encodeDelimited(cursorEntryOut(e), w);
  return Buffer.from(w.finish());
}

/** A WebSocket server message (JSON shape) as a `ServerMsg`. */
export function serverMsgOut(m: Pb): Buffer {
  let msg: Pb;
  switch (m.type) {
    case "hello_ok":
      msg = { hello_ok: {} };
      break;
    case "hello_error":
      msg = { hello_error: { error: errorOut(m.error) } };
      break;
    case "response_ok":
      msg = { response_ok: { request_id: m.request_id, ...responseOut(m.response) } };
      break;
    default:
      msg = { response_error: { request_id: m.request_id, error: errorOut(m.error) } };
  }
  return Buffer.from(T.ServerMsg.encode(msg).finish());
}
