/**
 * UNTRUSTED (UI). Tab completion for the shell: dot-commands at the start of a line, otherwise SQL
 * keywords, table names and column names, matched case-insensitively and offered in the case typed.
 */
import type { Database } from "../../sql/database.js";
import { DOT_COMMANDS } from "./shell-help.js";

const KEYWORDS = (
  "ABORT ACTION ADD AFTER ALL ALTER ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN BETWEEN BY CASCADE CASE CAST CHECK " +
  "COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DEFAULT DEFERRED DELETE " +
  "DESC DISTINCT DROP EACH ELSE END ESCAPE EXCEPT EXCLUSIVE EXISTS EXPLAIN FOREIGN FROM FULL GLOB GROUP HAVING IF IGNORE " +
  "IMMEDIATE IN INDEX INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LEFT LIKE LIMIT MATCH NATURAL NOT NOTNULL NULL " +
  "OF OFFSET ON OR ORDER OUTER PLAN PRAGMA PRIMARY QUERY RECURSIVE REFERENCES REINDEX RELEASE RENAME REPLACE RETURNING RIGHT " +
  "ROLLBACK ROW SAVEPOINT SELECT SET STRICT TABLE TEMP TEMPORARY THEN TO TRANSACTION TRIGGER UNION UNIQUE UPDATE USING VACUUM " +
  "VALUES VIEW WHEN WHERE WINDOW WITH WITHOUT INTEGER REAL TEXT BLOB"
).split(" ");

/** Names in the schema: tables, views, and their columns. */
function schemaNames(db: Database): string[] {
  const names = new Set<string>();
  try {
    for (const { name } of db.query<{ name: string }>("SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%'")) {
      names.add(name);
      for (const c of db.query<{ name: string }>("SELECT name FROM pragma_table_info(?)", name)) names.add(c.name);
    }
  } catch {
    /* completion must never fail the shell */
  }
  return [...names];
}

/** readline's completer: the candidates for the word before the cursor, and that word. */
export function complete(db: Database, line: string): [string[], string] {
  if (/^\s*\.\S*$/.test(line)) {
    const word = line.trim();
    return [DOT_COMMANDS.map((c) => c.name).filter((n) => n.startsWith(word)), word];
  }
  const word = /[A-Za-z0-9_]*$/.exec(line)![0];
  if (word === "") return [[], word];
  const lower = word === word.toLowerCase();
  const w = word.toLowerCase();
  const hits = new Set<string>();
  for (const n of schemaNames(db)) if (n.toLowerCase().startsWith(w)) hits.add(n);
  for (const k of KEYWORDS) if (k.toLowerCase().startsWith(w)) hits.add(lower ? k.toLowerCase() : k);
  return [[...hits].sort(), word];
}
