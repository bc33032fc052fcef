/**
 * Seeded random SQL workloads for differential tests: DDL, inserts, updates, deletes, selects with
 * joins and aggregates, every value type, NULLs and statements that fail.
 */
import { rng } from "../helpers.js";
import type { Database } from "../../runtime/index.js";

export type Param = null | number | bigint | string | Uint8Array;
export interface Step {
  sql: string;
  params: Param[];
  reads: boolean;
}

export function workload(seed: number, steps: number): Step[] {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const value = (): Param => {
    switch (int(9)) {
      case 0: return null;
      case 1: return int(1000) - 500;
      case 2: return BigInt(int(2 ** 30)) * BigInt(int(2 ** 30) + 1) * (r() < 0.5 ? -1n : 1n) * 8n;
      case 3: return Math.round((r() - 0.5) * 1e6) / 64;
      case 4: return pick(["", "a", "seal", "Selkie ✓", "O'Brien", "x".repeat(int(300)), "naïve", "🦭🦭"]);
      case 5: return new Uint8Array(Array.from({ length: int(40) }, () => int(256)));
      case 6: return int(20);
      case 7: return pick(["alpha", "beta", "gamma", "delta"]);
      default: return r() * 100;
    }
  };
  const out: Step[] = [
    { sql: "CREATE TABLE t1(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, d BLOB, e)", params: [], reads: false },
    { sql: "CREATE TABLE t2(id INTEGER PRIMARY KEY, t1id INTEGER, tag TEXT UNIQUE, n NUMERIC)", params: [], reads: false },
    { sql: "CREATE INDEX t1a ON t1(a)", params: [], reads: false },
  ];
  let nextTag = 0;
  for (let i = 0; i < steps; i++) {
    const k = int(100);
    if (k < 30) {
      out.push({ sql: "INSERT INTO t1(a, b, c, d, e) VALUES (?, ?, ?, ?, ?)", params: [value(), value(), value(), value(), value()], reads: false });
    } else if (k < 40) {
      const tag = r() < 0.15 && nextTag > 0 ? `tag${int(nextTag)}` : `tag${nextTag++}`; // sometimes a UNIQUE violation
      out.push({ sql: "INSERT INTO t2(t1id, tag, n) VALUES (?, ?, ?)", params: [int(60), tag, value()], reads: false });
    } else if (k < 48) {
      out.push({ sql: `UPDATE t1 SET ${pick(["a", "b", "c", "e"])} = ? WHERE id % ? = ?`, params: [value(), 2 + int(5), int(3)], reads: false });
    } else if (k < 53) {
      out.push({ sql: "DELETE FROM t1 WHERE a > ? OR b IS NULL AND id % 5 = 0", params: [int(1000) - 200], reads: false });
    } else if (k < 60) {
      out.push({ sql: "SELECT id, a, b, c, d, e, typeof(a) AS ta, typeof(e) AS te FROM t1 ORDER BY id", params: [], reads: true });
    } else if (k < 67) {
      out.push({
        sql: "SELECT t1.id, t2.tag, t1.b, t2.n FROM t1 JOIN t2 ON t2.t1id = t1.id WHERE t1.id > ? ORDER BY t1.id, t2.id",
        params: [int(30)],
        reads: true,
      });
    } else if (k < 74) {
      out.push({
        sql: "SELECT typeof(a) AS ty, count(*) AS n, sum(CASE WHEN typeof(a) IN ('integer','real') THEN a END) AS s, min(b) AS mn, max(length(d)) AS ml, total(c) AS tc FROM t1 GROUP BY typeof(a) ORDER BY ty",
        params: [],
        reads: true,
      });
    } else if (k < 78) {
      out.push({ sql: "SELECT b, count(*) AS n, group_concat(id) AS ids FROM t1 WHERE b IS NOT NULL GROUP BY b HAVING count(*) >= ? ORDER BY n DESC, b", params: [1 + int(2)], reads: true });
    } else if (k < 81) {
      out.push({ sql: "SELECT * FROM t1 LEFT JOIN t2 ON t2.t1id = t1.id WHERE t1.a BETWEEN ? AND ? ORDER BY t1.id, t2.id", params: [int(500) - 500, int(500)], reads: true });
    } else if (k < 84) {
      out.push({ sql: pick(["SELECT * FROM missing_table", "SELEKT 1", "INSERT INTO t1(nope) VALUES (1)", "SELECT abs(-9223372036854775808)", "SELECT 1/0, 5 % 0"]), params: [], reads: true });
    } else if (k < 87) {
      out.push({ sql: "INSERT INTO t1(id, a) VALUES (?, ?)", params: [1 + int(20), value()], reads: false }); // often a PRIMARY KEY violation
    } else if (k < 90) {
      out.push({ sql: pick(["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s1", "RELEASE s1", "ROLLBACK TO s1"]), params: [], reads: false });
    } else if (k < 93) {
      out.push({ sql: "SELECT ? AS v, typeof(?) AS t, hex(?) AS h, quote(?) AS q", params: (() => { const v = value(); return [v, v, v, v]; })(), reads: true });
    } else if (k < 95) {
      out.push({ sql: `ALTER TABLE t2 ADD COLUMN x${i} TEXT DEFAULT 'd'`, params: [], reads: false });
    } else if (k < 97) {
      out.push({ sql: "SELECT id, a FROM t1 WHERE a IN (SELECT t1id FROM t2) ORDER BY a DESC, id LIMIT ? OFFSET ?", params: [int(10), int(3)], reads: true });
    } else {
      out.push({ sql: "SELECT count(*) AS n, sum(length(b)) AS lb, avg(c) AS ac FROM t1", params: [], reads: true });
    }
  }
  out.push({ sql: "SELECT * FROM t1 ORDER BY id", params: [], reads: true });
  out.push({ sql: "SELECT * FROM t2 ORDER BY id", params: [], reads: true });
  return out;
}

/** A comparable form of a value: ints as "i:", reals as "r:", text, blobs as hex. */
export function norm(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "bigint") return `n:${v}`;
  if (typeof v === "number") return Number.isInteger(v) ? `n:${v}` : `n:${v}`;
  if (typeof v === "string") return `s:${v}`;
  if (v instanceof Uint8Array) return `b:${Buffer.from(v).toString("hex")}`;
  return `?:${String(v)}`;
}

/** What a step gives in a Selkie database, as one comparable string (rows, changes or the error code). */
export function outcome(db: Database, s: Step): string {
  try {
    if (s.reads) return JSON.stringify(db.query(s.sql, ...s.params).map((r) => Object.entries(r).map(([k, v]) => `${k}=${norm(v)}`)));
    return `changes=${db.run(s.sql, ...s.params).changes}`;
  } catch (e) {
    return `error:${(e as { code?: string }).code}`;
  }
}
