/**
 * Typed view of the SQLite enclave's ecalls (enclaves/ABI.md §3) with the marshalling of values
 * across the boundary. Every pointer the guest returns is read through GuestMemory, which checks it.
 */
import { EnclaveFault, UsageError } from "../errors.js";
import { COL_BIGINT, COL_BLOB, COL_FLOAT, COL_INTEGER, COL_NULL, COL_TEXT } from "../enclave/abi.js";
import type { GuestMemory } from "../enclave/memory.js";
import { SQLITE_NOMEM } from "./codes.js";

type I = number;
export interface SqliteExports {
  sk_malloc(n: I): I;
  sk_free(p: I): void;
  sk_libversion(): I;
  sk_open(p: I, n: I, flags: I, out: I): I;
  sk_close(db: I): I;
  sk_errcode(db: I): I;
  sk_errmsg(db: I): I;
  sk_error_offset(db: I): I;
  sk_exec(db: I, p: I, n: I): I;
  sk_prepare(db: I, p: I, n: I, flags: I, outStmt: I, outTail: I): I;
  sk_finalize(s: I): I;
  sk_reset(s: I): I;
  sk_clear_bindings(s: I): I;
  sk_step(s: I): I;
  sk_bind_parameter_count(s: I): I;
  sk_bind_parameter_name(s: I, i: I): I;
  sk_bind_null(s: I, i: I): I;
  sk_bind_int(s: I, i: I, v: number): I;
  sk_bind_int64(s: I, i: I, v: bigint): I;
  sk_bind_double(s: I, i: I, v: number): I;
  sk_bind_text(s: I, i: I, p: I, n: I): I;
  sk_bind_blob(s: I, i: I, p: I, n: I): I;
  sk_column_count(s: I): I;
  sk_column_name(s: I, i: I): I;
  sk_column_decltype(s: I, i: I): I;
  sk_column_type(s: I, i: I): I;
  sk_column_int(s: I, i: I): number;
  sk_column_int64(s: I, i: I): bigint;
  sk_column_double(s: I, i: I): number;
  sk_column_text(s: I, i: I): I;
  sk_column_blob(s: I, i: I): I;
  sk_column_bytes(s: I, i: I): I;
  sk_stmt_readonly(s: I): I;
  sk_stmt_status(s: I, op: I, reset: I): I;
  sk_changes(db: I): number;
  sk_total_changes(db: I): number;
  sk_last_insert_rowid(db: I): bigint;
  sk_run_info(db: I, out: I): void;
  sk_get_autocommit(db: I): I;
  sk_memory_used(): number;
  sk_memory_highwater(reset: I): number;
  sk_release_memory(n: I): I;
  sk_set_deadline(db: I, ms: number): I;
  sk_deadline_hit(): I;
  sk_set_scope(db: I, scope: I): I;
  sk_denied(): I;
}

/** A value SQLite can store, as the SQL API hands it out. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/**
 * A number that is REAL to SQLite whatever its value. JavaScript has one number type, so the SQL API
 * binds an integral number as INTEGER and reads REAL and INTEGER columns alike as numbers. A wire
 * protocol that keeps SQLite's storage classes (Hrana's "float" vs "integer") binds with this, and
 * reads integral REAL results as this when the statement asks (Statement.typedReals).
 */
export class SqlReal {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toJSON(): number {
    return this.value;
  }
}
/** What callers may bind (booleans become 0/1). */
export type BindValue = SqlValue | SqlReal | boolean | undefined | ArrayBuffer;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * A scratch buffer inside the enclave for strings and blobs going in. One per connection; grown by
 * reallocating when a value does not fit. SQLite copies bound values (SQLITE_TRANSIENT), so the
 * buffer is reusable right after each call.
 */
export class Scratch {
  ptr = 0;
  cap = 0;
  constructor(private readonly x: SqliteExports, private readonly mem: GuestMemory) {}

  /** Ensures capacity for n bytes; returns false when the enclave is out of memory. */
  reserve(n: number): boolean {
    if (n <= this.cap) return true;
    const want = Math.max(n, 4096, this.cap * 2);
    if (this.ptr) this.x.sk_free(this.ptr);
    this.ptr = this.x.sk_malloc(want);
    if (this.ptr === 0) {
      this.cap = 0;
      return false;
    }
    this.view(want); // checks the returned range is inside memory
    this.cap = want;
    return true;
  }

  view(n: number): Uint8Array {
    return this.mem.view(this.ptr, n);
  }

  /** Writes text as UTF-8 and returns its byte length, or -1 when out of memory. */
  putText(s: string): number {
    if (s.length < 1024 || this.cap >= s.length * 3) {
      if (!this.reserve(Math.max(s.length * 3, 16))) return -1;
      return this.mem.writeText(this.ptr, this.cap, s);
    }
    const bytes = Buffer.from(s, "utf8");
    return this.putBytes(bytes) ? bytes.length : -1;
  }

  putBytes(b: Uint8Array): boolean {
    if (!this.reserve(Math.max(b.length, 1))) return false;
    this.mem.u8.set(b, this.ptr);
    return true;
  }
}

/** Binds one value at a 1-based index; returns SQLite's result code. */
export function bindValue(x: SqliteExports, scratch: Scratch, stmt: number, i: number, v: BindValue): number {
  switch (typeof v) {
    case "number":
      if (Number.isSafeInteger(v)) return x.sk_bind_int(stmt, i, v);
      return x.sk_bind_double(stmt, i, v);
    case "string": {
      const n = scratch.putText(v);
      return n < 0 ? SQLITE_NOMEM : x.sk_bind_text(stmt, i, scratch.ptr, n);
    }
    case "bigint":
      if (v < I64_MIN || v > I64_MAX) {
        throw new UsageError("BIND_OUT_OF_RANGE", `parameter ${i}: ${v} does not fit SQLite's 64-bit integers`);
      }
      return x.sk_bind_int64(stmt, i, v);
    case "boolean":
      return x.sk_bind_int(stmt, i, v ? 1 : 0);
    case "undefined":
      return x.sk_bind_null(stmt, i);
    case "object": {
      if (v === null) return x.sk_bind_null(stmt, i);
      if (v instanceof SqlReal) return x.sk_bind_double(stmt, i, v.value);
      const bytes = v instanceof Uint8Array ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : undefined;
      if (bytes) {
        if (bytes.length === 0) return x.sk_bind_blob(stmt, i, 0, 0);
        return scratch.putBytes(bytes) ? x.sk_bind_blob(stmt, i, scratch.ptr, bytes.length) : SQLITE_NOMEM;
      }
      break;
    }
  }
  throw new UsageError("BIND_BAD_TYPE", `parameter ${i}: cannot bind a ${describe(v)}; use null, a number, a bigint, a string, a boolean or a Uint8Array`);
}

function describe(v: unknown): string {
  if (typeof v === "object" && v !== null) return v.constructor?.name ?? "object";
  return typeof v;
}

/** Reads column i of the current row; with `typedReals`, an integral REAL comes back as SqlReal. */
export function columnValue(x: SqliteExports, mem: GuestMemory, stmt: number, i: number, typedReals = false): SqlValue | SqlReal {
  switch (x.sk_column_type(stmt, i)) {
    case COL_INTEGER:
      return x.sk_column_int(stmt, i);
    case COL_FLOAT: {
      const d = x.sk_column_double(stmt, i);
      return typedReals && Number.isInteger(d) ? new SqlReal(d) : d;
    }
    case COL_TEXT: {
      const p = x.sk_column_text(stmt, i);
      const n = x.sk_column_bytes(stmt, i);
      return n === 0 ? "" : mem.text(p, n);
    }
    case COL_BLOB: {
      const n = x.sk_column_bytes(stmt, i);
      return n === 0 ? new Uint8Array(0) : mem.copy(x.sk_column_blob(stmt, i), n);
    }
    case COL_NULL:
      return null;
    case COL_BIGINT: {
      const v = x.sk_column_int64(stmt, i);
      return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v;
    }
    default:
      throw new EnclaveFault("ENCLAVE_BAD_VALUE", `enclave returned unknown column type for column ${i}`);
  }
}
