/**
 * UNTRUSTED (server). Hrana `describe`: parameter names, result columns with declared types, and
 * whether the statement is read-only or an EXPLAIN.
 *
 * The public Statement API has no parameter names or declared column types yet, so this reads them
 * through the SQL API's @internal ecall view (Database._prepareRaw, _x, _mem), always under
 * Database._guard so a trap restarts the enclave as any other call would. Replace with
 * Statement.parameters() / Statement.columnTypes() once runtime/sql has them.
 */
import type { Database } from "../../../sql/database.js";
import { UsageError } from "../../../errors.js";
import { stripComments } from "../../../sql/statement.js";

export interface DescribeResult {
  params: Array<{ name: string | null }>;
  cols: Array<{ name: string; decltype: string | null }>;
  is_explain: boolean;
  is_readonly: boolean;
}

export function describeSql(db: Database, sql: string): DescribeResult {
  return db._guard(() => {
    const { handle, tail } = db._prepareRaw(sql, 0);
    if (handle === 0) throw new UsageError("EMPTY_STATEMENT", "the SQL text holds no statement (only whitespace or comments)");
    const x = db._x;
    const mem = db._mem;
    try {
      if (/\S/.test(stripComments(sql.slice(tail)))) throw new UsageError("MULTIPLE_STATEMENTS", "describe takes one statement");
      const params: DescribeResult["params"] = [];
      const np = x.sk_bind_parameter_count(handle);
      for (let i = 1; i <= np; i++) {
        const p = x.sk_bind_parameter_name(handle, i);
        params.push({ name: p === 0 ? null : mem.cstring(p, 4096) });
      }
      const cols: DescribeResult["cols"] = [];
      const nc = x.sk_column_count(handle);
      for (let i = 0; i < nc; i++) {
        const d = x.sk_column_decltype(handle, i);
        cols.push({ name: mem.cstring(x.sk_column_name(handle, i), 4096), decltype: d === 0 ? null : mem.cstring(d, 4096) });
      }
      return {
        params,
        cols,
        is_explain: /^\s*EXPLAIN\b/i.test(stripComments(sql)),
        is_readonly: x.sk_stmt_readonly(handle) !== 0,
      };
    } finally {
      x.sk_finalize(handle);
    }
  });
}
