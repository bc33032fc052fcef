/**
 * UNTRUSTED (server). Hrana `describe`: parameter names, result columns with declared types, and
 * whether the statement is read-only or an EXPLAIN.
 */
import type { Database } from "../../../sql/database.js";
import { stripComments } from "../../../sql/statement.js";

export interface DescribeResult {
  params: Array<{ name: string | null }>;
  cols: Array<{ name: string; decltype: string | null }>;
  is_explain: boolean;
  is_readonly: boolean;
}

export function describeSql(db: Database, sql: string): DescribeResult {
  const st = db.prepare(sql); // one statement, or a typed UsageError (EMPTY_STATEMENT, MULTIPLE_STATEMENTS)
  try {
    const types = st.columnTypes();
    return {
      params: st.parameters().map((name) => ({ name })),
      cols: st.columns().map((name, i) => ({ name, decltype: types[i] ?? null })),
      is_explain: /^\s*EXPLAIN\b/i.test(stripComments(sql)),
      is_readonly: st.readonly,
    };
  } finally {
    st.finalize();
  }
}
