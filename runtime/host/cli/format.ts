/**
 * UNTRUSTED (output). Renders result rows the way the sqlite3 shell's modes do: table, box, column,
 * markdown, json, csv, line, list, tabs, insert and quote. Widths count terminal columns
 * (string-width: CJK and emoji take two), and multi-line values span several lines of their row.
 * REALs arrive as SqlReal (Statement.typedReals) and print as sqlite3 prints them: `1.0`, `0.3`, `1.0e+20`.
 */
import stringWidth from "string-width";
import { SqlReal } from "../../sql/ecalls.js";

export type OutputMode = "table" | "box" | "column" | "markdown" | "json" | "csv" | "line" | "list" | "tabs" | "insert" | "quote";
export const OUTPUT_MODES: readonly OutputMode[] = ["table", "box", "column", "markdown", "json", "csv", "line", "list", "tabs", "insert", "quote"];

export interface FormatOptions {
  /** Text shown for NULL in table-like, list, line and csv modes (sqlite3's .nullvalue); default "". */
  nullValue?: string;
  /** The table named by INSERT statements in insert mode; default "table". */
  table?: string;
}

type Value = unknown;

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** A REAL as the sqlite3 shell shows it ("%!.15g": 15 significant digits, always a decimal point). */
export function realText(v: number): string {
  if (Number.isNaN(v)) return "";
  if (!Number.isFinite(v)) return v > 0 ? "Inf" : "-Inf";
  const [mant, e] = v.toExponential(14).split("e") as [string, string];
  const exp = Number(e);
  const strip = (s: string) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, ".0") : s + ".0");
  if (exp < -4 || exp >= 15) return `${strip(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return strip(v.toFixed(Math.max(0, 14 - exp)));
}

/** Text of one value for table, list and line modes (NULL shows as `nullValue`, as in sqlite3). */
export function cellText(v: Value, nullValue = ""): string {
  if (v === null || v === undefined) return nullValue;
  if (v instanceof SqlReal) return realText(v.value);
  // Only a REAL reads as a non-integral number (integral REALs come as SqlReal under typedReals).
  if (typeof v === "number" && !Number.isInteger(v)) return realText(v);
  if (v instanceof Uint8Array) return `x'${hex(v)}'`;
  return String(v);
}

/** One value as an SQL literal that reads back as the same value and storage class (insert, quote, .dump). */
export function sqlLiteral(v: Value): string {
  if (v === null || v === undefined) return "NULL";
  if (v instanceof Uint8Array) return `X'${hex(v)}'`;
  if (v instanceof SqlReal || (typeof v === "number" && !Number.isInteger(v))) {
    const x = Number(v);
    if (Number.isNaN(x)) return "NULL";
    if (!Number.isFinite(x)) return x > 0 ? "1e999" : "-1e999";
    const s = String(x); // shortest text that reads back as exactly x
    return /^-?\d+$/.test(s) ? s + ".0" : s;
  }
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  return `'${String(v).replace(/'/g, "''")}'`;
}

/** An identifier as sqlite3's .dump and insert mode write it: bare when it can be, else in double quotes. */
export function sqlName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !RESERVED.has(name.toUpperCase()) ? name : `"${name.replace(/"/g, '""')}"`;
}
const RESERVED = new Set(["TABLE", "SELECT", "FROM", "WHERE", "ORDER", "GROUP", "INDEX", "VALUES", "INSERT", "DEFAULT", "KEY", "PRIMARY", "CHECK", "UNIQUE", "REFERENCES", "CREATE", "DROP", "TO", "IN", "IS", "AS", "ON", "NOT", "NULL", "AND", "OR", "BY", "ALL", "UNION", "JOIN", "LIMIT", "CASE", "WHEN", "THEN", "ELSE", "END", "TRANSACTION", "COMMIT", "BEGIN", "ALTER", "ADD", "COLUMN", "INTO", "SET", "UPDATE", "DELETE", "TRIGGER", "VIEW"]);

function csvField(v: Value, nullValue: string): string {
  const s = cellText(v, nullValue);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

function jsonValue(v: Value): string {
  if (v === null || v === undefined) return "null";
  if (v instanceof SqlReal) return Number.isFinite(v.value) ? realText(v.value) : "null";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (v instanceof Uint8Array) return JSON.stringify(`x'${hex(v)}'`);
  return JSON.stringify(v);
}

/** Terminal columns `s` takes (CJK and emoji count two). */
export const width = (s: string): number => stringWidth(s);

const isNumber = (v: Value): boolean => typeof v === "number" || typeof v === "bigint" || v instanceof SqlReal;

type Align = "left" | "right" | "center";
function pad(s: string, w: number, align: Align): string {
  const gap = Math.max(0, w - width(s));
  if (align === "right") return " ".repeat(gap) + s;
  if (align === "center") return " ".repeat(gap >> 1) + s + " ".repeat(gap - (gap >> 1));
  return s + " ".repeat(gap);
}

interface GridStyle {
  top?: [string, string, string, string];
  mid: [string, string, string, string];
  bottom?: [string, string, string, string];
  side: [string, string, string];
  headerAlign: Align;
  numbersRight: boolean;
}
const GRIDS: Record<"table" | "box" | "markdown" | "column", GridStyle> = {
  table: { top: ["+", "-", "+", "+"], mid: ["+", "-", "+", "+"], bottom: ["+", "-", "+", "+"], side: ["| ", " | ", " |"], headerAlign: "left", numbersRight: true },
  box: { top: ["┌", "─", "┬", "┐"], mid: ["├", "─", "┼", "┤"], bottom: ["└", "─", "┴", "┘"], side: ["│ ", " │ ", " │"], headerAlign: "center", numbersRight: false },
  markdown: { mid: ["|", "-", "|", "|"], side: ["| ", " | ", " |"], headerAlign: "center", numbersRight: false },
  column: { mid: ["", "-", "  ", ""], side: ["", "  ", ""], headerAlign: "left", numbersRight: false },
};

function grid(style: GridStyle, columns: string[], rows: Value[][], headers: boolean, nullValue: string, boxed: boolean): string {
  const cells = rows.map((r) => columns.map((_, i) => cellText(r[i], nullValue).split(/\r?\n/)));
  const heads = columns.map((c) => c.split(/\r?\n/));
  // Loops, not Math.max(...cells): spreading a large result overflows the stack.
  const widths = columns.map((_, i) => {
    let w = headers || boxed ? heads[i]!.reduce((m, l) => Math.max(m, width(l)), 0) : 0;
    for (const r of cells) for (const l of r[i]!) w = Math.max(w, width(l));
    return w;
  });
  const numeric = columns.map((_, i) => style.numbersRight && rows.length > 0 && rows.every((r) => isNumber(r[i]) || r[i] === null));
  const rule = (p: [string, string, string, string]) =>
    boxed ? p[0] + widths.map((w) => p[1].repeat(w + 2)).join(p[2]) + p[3] : widths.map((w) => p[1].repeat(w)).join(p[2]);
  const line = (r: string[][], align: (i: number) => Align) => {
    const height = r.reduce((h, c) => Math.max(h, c.length), 1);
    const out: string[] = [];
    for (let k = 0; k < height; k++) out.push(style.side[0] + r.map((c, i) => pad(c[k] ?? "", widths[i]!, align(i))).join(style.side[1]) + style.side[2]);
    return out;
  };
  const out: string[] = [];
  if (style.top) out.push(rule(style.top));
  if (headers || boxed) {
    out.push(...line(heads, () => style.headerAlign));
    out.push(rule(style.mid));
  }
  for (const r of cells) out.push(...line(r, (i) => (numeric[i] ? "right" : "left")));
  if (style.bottom) out.push(rule(style.bottom));
  return out.join("\n") + "\n";
}

export function formatRows(mode: OutputMode, columns: string[], rows: Value[][], headers = true, opts: FormatOptions = {}): string {
  const nul = opts.nullValue ?? "";
  switch (mode) {
    case "json":
      return rows.length === 0
        ? ""
        : "[" + rows.map((r) => "{" + columns.map((c, i) => `${JSON.stringify(c)}:${jsonValue(r[i])}`).join(",") + "}").join(",\n") + "]\n";
    case "csv":
      return (headers ? [columns, ...rows] : rows).map((r) => r.map((v) => csvField(v, nul)).join(",")).join("\r\n") + (rows.length || headers ? "\r\n" : "");
    case "list":
    case "tabs": {
      const sep = mode === "tabs" ? "\t" : "|";
      if (rows.length === 0 && !headers) return "";
      return (headers ? [columns, ...rows] : rows).map((r) => r.map((v) => cellText(v, nul)).join(sep)).join("\n") + "\n";
    }
    case "line": {
      const w = columns.reduce((m, c) => Math.max(m, width(c)), 0);
      return rows.map((r) => columns.map((c, i) => `${pad(c, w, "right")} = ${cellText(r[i], nul)}`).join("\n")).join("\n\n") + (rows.length ? "\n" : "");
    }
    case "insert": {
      const head = `INSERT INTO ${sqlName(opts.table ?? "table")}${headers ? `(${columns.map(sqlName).join(",")})` : ""} VALUES(`;
      return rows.map((r) => head + r.map(sqlLiteral).join(",") + ");\n").join("");
    }
    case "quote":
      return (headers ? [columns.map((c) => sqlLiteral(c)).join(",")] : []).concat(rows.map((r) => r.map(sqlLiteral).join(","))).map((l) => l + "\n").join("");
    case "table":
    case "box":
    case "markdown":
    case "column":
      if (columns.length === 0 || (rows.length === 0 && mode !== "table")) return "";
      return grid(GRIDS[mode], columns, rows, mode === "column" ? headers : true, nul, mode !== "column");
  }
}
