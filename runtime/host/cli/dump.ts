/**
 * UNTRUSTED (UI). `.dump`: the database as SQL text that the sqlite3 shell (or Selkie's) loads back,
 * in sqlite3's order: tables with their rows inside one transaction, then indexes, triggers, views.
 * Values are literals of their own storage class (REAL keeps its decimal point, BLOBs are X'..').
 */
import type { Database } from "../../sql/database.js";
import { sqlLiteral, sqlName } from "./format.js";

interface SchemaRow {
  type: string;
  name: string;
  sql: string | null;
}

/** Yields the dump a line (or statement) at a time, each ending in "\n". */
export function* dumpSql(db: Database, pattern = "%"): Generator<string> {
  yield "PRAGMA foreign_keys=OFF;\n";
  yield "BEGIN TRANSACTION;\n";
  const tables = db.query<SchemaRow>(
    "SELECT type, name, sql FROM sqlite_schema WHERE type = 'table' AND sql NOT NULL AND tbl_name LIKE ? ORDER BY name = 'sqlite_sequence', rowid",
    pattern,
  );
  for (const t of tables) {
    if (t.name === "sqlite_sequence") {
      yield "DELETE FROM sqlite_sequence;\n";
    } else if (t.name.startsWith("sqlite_")) {
      continue;
    } else if (/^\s*create\s+virtual\s+table/i.test(t.sql!)) {
      yield "PRAGMA writable_schema=ON;\n";
      yield `INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql) VALUES('table',${sqlLiteral(t.name)},${sqlLiteral(t.name)},0,${sqlLiteral(t.sql)});\n`;
      yield "PRAGMA writable_schema=OFF;\n";
      continue;
    } else {
      yield `${t.sql};\n`;
    }
    const st = db.prepare(`SELECT * FROM ${sqlName(t.name)}`);
    st.typedReals = true;
    try {
      for (const row of st.iterateValues()) yield `INSERT INTO ${sqlName(t.name)} VALUES(${row.map(sqlLiteral).join(",")});\n`;
    } finally {
      st.finalize();
    }
  }
  const rest = db.query<SchemaRow>(
    "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') AND sql NOT NULL AND tbl_name LIKE ? AND name NOT LIKE 'sqlite_%' ORDER BY type = 'view', rowid",
    pattern,
  );
  for (const r of rest) yield `${r.sql};\n`;
  yield "COMMIT;\n";
}
