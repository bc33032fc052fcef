/**
 * UNTRUSTED (UI). `.import FILE TABLE`: CSV (RFC 4180: quoted fields, doubled quotes, CRLF or LF)
 * into a table, as the sqlite3 shell does it: a missing table is created from the header row (all
 * columns TEXT); into an existing table every row is data (skip a header with --skip 1). Short rows
 * are filled with NULL, long ones cut, each with a warning naming the line. One transaction.
 */
import * as fs from "node:fs";
import type { Database } from "../../sql/database.js";
import { UsageError } from "../../errors.js";
import { sqlName } from "./format.js";

export interface CsvRecord {
  fields: string[];
  /** 1-based line where the record starts. */
  line: number;
  /** Offset just past the record, in characters (for progress). */
  end: number;
}

/** Splits CSV text into records; `sep` is the field separator. */
export function* parseCsv(text: string, sep = ","): Generator<CsvRecord> {
  let i = 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let f = "";
      if (text[i] === '"') {
        i++;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) throw new UsageError("CSV_UNTERMINATED", `line ${start}: a quoted field never ends; close it with '"'`);
          f += text.slice(i, q);
          for (let k = i; k < q; k++) if (text[k] === "\n") line++;
          i = q + 1;
          if (text[i] === '"') {
            f += '"';
            i++;
          } else break;
        }
        while (i < n && text[i] !== sep && text[i] !== "\n" && text[i] !== "\r") f += text[i++];
      } else {
        while (i < n && text[i] !== sep && text[i] !== "\n" && text[i] !== "\r") f += text[i++];
      }
      fields.push(f);
      if (text[i] === sep) {
        i++;
        continue;
      }
      if (text[i] === "\r") i++;
      if (text[i] === "\n") i++;
      line++;
      break;
    }
    yield { fields, line: start, end: i };
  }
}

export interface ImportResult {
  rows: number;
  created: boolean;
  warnings: string[];
}

export function importCsv(db: Database, file: string, table: string, opts: { sep?: string; skip?: number; onProgress?: (done: number, total: number) => void } = {}): ImportResult {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError("IMPORT_UNREADABLE", `cannot read ${file}: ${(e as Error).message}`);
  }
  const records = parseCsv(text, opts.sep ?? ",");
  for (let k = 0; k < (opts.skip ?? 0); k++) records.next();
  const exists = db.query("SELECT 1 FROM sqlite_schema WHERE type IN ('table','view') AND name = ?", table).length > 0;
  const warnings: string[] = [];
  let rows = 0;
  db.exec("SAVEPOINT selkie_import");
  try {
    let ncols: number;
    if (exists) {
      ncols = db.query(`SELECT * FROM pragma_table_info(?)`, table).length;
    } else {
      const head = records.next();
      if (head.done) throw new UsageError("IMPORT_EMPTY", `${file} is empty: nothing to create ${table} from`);
      ncols = head.value.fields.length;
      db.exec(`CREATE TABLE ${sqlName(table)}(${head.value.fields.map((f) => `${sqlName(f)} TEXT`).join(", ")})`);
    }
    const insert = db.prepare(`INSERT INTO ${sqlName(table)} VALUES(${Array(ncols).fill("?").join(",")})`);
    try {
      for (const r of records) {
        let f: (string | null)[] = r.fields;
        if (f.length !== ncols) {
          warnings.push(`${file}:${r.line}: expected ${ncols} columns but found ${f.length} - ${f.length < ncols ? "filling the rest with NULL" : "extras ignored"}`);
          f = f.length < ncols ? [...f, ...Array<null>(ncols - f.length).fill(null)] : f.slice(0, ncols);
        }
        insert.run(f);
        if (++rows % 1000 === 0) opts.onProgress?.(r.end, text.length);
      }
    } finally {
      insert.finalize();
    }
    db.exec("RELEASE selkie_import");
    opts.onProgress?.(text.length, text.length);
    return { rows, created: !exists, warnings };
  } catch (e) {
    db.exec("ROLLBACK TO selkie_import; RELEASE selkie_import");
    throw e;
  }
}
