/**
 * UNTRUSTED (server). Hrana's Value encoding (HRANA_3_SPEC "Values") to and from the SQL API's values.
 *
 *   Hrana JSON                              SQL API (runtime/sql)
 *   {"type":"null"}                         null
 *   {"type":"integer","value":"<i64>"}      number when a safe integer, else bigint (as the local API returns)
 *   {"type":"float","value":<number>}       number
 *   {"type":"text","value":"..."}           string
 *   {"type":"blob","base64":"..."}          Uint8Array
 *
 * SQLite's storage class is kept both ways, as sqld does: a "float" argument binds as REAL even when
 * its value is integral (SqlReal), and a REAL result goes out as "float" even when it is integral (the
 * runner's statements read with typedReals, so an integral REAL arrives here as SqlReal). An INTEGER
 * goes out as "integer" (a decimal string, any 64-bit value).
 * +-Infinity (1e999 in SQL) goes out as the JSON number 1e999 / -1e999 (see http.ts), which
 * JSON.parse reads back as +-Infinity, and comes in the same way; SQLite never returns NaN (it stores
 * NULL), so a NaN would be null.
 */
import { SqlReal, type SqlValue } from "../../../sql/ecalls.js";
import { badRequest } from "../errors.js";
import { infinityPlaceholder } from "../http.js";

export type HranaValue =
  | { type: "null" }
  | { type: "integer"; value: string }
  | { type: "float"; value: number }
  | { type: "text"; value: string }
  | { type: "blob"; base64: string };

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const INT_RE = /^-?\d{1,20}$/;
const B64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

export function encodeValue(v: SqlValue | SqlReal): HranaValue {
  switch (typeof v) {
    case "number":
      // A plain number is an INTEGER when integral (the runner reads integral REALs as SqlReal).
      if (Number.isSafeInteger(v)) return { type: "integer", value: String(v) };
      if (Number.isNaN(v)) return { type: "null" };
      if (!Number.isFinite(v)) return { type: "float", value: infinityPlaceholder(v) as unknown as number };
      return { type: "float", value: v };
    case "bigint":
      return { type: "integer", value: v.toString() };
    case "string":
      return { type: "text", value: v };
    default:
      if (v === null) return { type: "null" };
      if (v instanceof SqlReal) return Number.isFinite(v.value) ? { type: "float", value: v.value } : encodeValue(v.value);
      return { type: "blob", base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
}

/** Decodes one argument; `where` names it in the error ("args[2]"). */
export function decodeValue(raw: unknown, where: string): SqlValue | SqlReal {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw badRequest("HRANA_PROTO_ERROR", `${where} must be a Value object`);
  const o = raw as Record<string, unknown>;
  switch (o.type) {
    case "null":
      return null;
    case "integer": {
      const s = o.value;
      // Some clients send integers as JSON numbers; accept safe ones.
      if (typeof s === "number" && Number.isSafeInteger(s)) return s;
      if (typeof s !== "string" || !INT_RE.test(s)) throw badRequest("HRANA_PROTO_ERROR", `${where}.value must be a string holding a 64-bit integer`);
      const b = BigInt(s);
      if (b < I64_MIN || b > I64_MAX) throw badRequest("HRANA_PROTO_ERROR", `${where}.value ${s} does not fit a 64-bit integer`);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    case "float":
      // 1e999 / -1e999 (how Infinity goes out, see encodeValue) parse as +-Infinity: SQLite stores them.
      if (typeof o.value !== "number" || Number.isNaN(o.value)) throw badRequest("HRANA_PROTO_ERROR", `${where}.value must be a number`);
      return new SqlReal(o.value);
    case "text":
      if (typeof o.value !== "string") throw badRequest("HRANA_PROTO_ERROR", `${where}.value must be a string`);
      return o.value;
    case "blob": {
      const s = o.base64;
      if (typeof s !== "string" || !B64_RE.test(s)) throw badRequest("HRANA_PROTO_ERROR", `${where}.base64 must be a base64 string`);
      return new Uint8Array(Buffer.from(s, "base64"));
    }
    default:
      throw badRequest("HRANA_PROTO_ERROR", `${where}.type must be one of null, integer, float, text, blob`);
  }
}
