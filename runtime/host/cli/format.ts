/**
 * UNTRUSTED (output). Renders result rows the way the sqlite3 shell's modes do: table, json, csv, line.
 */
export type OutputMode = "table" | "json" | "csv" | "line" | "list";
export const OUTPUT_MODES: readonly OutputMode[] = ["table", "json", "csv", "line", "list"];

type Value = unknown;

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Text of one value for table, list and line modes (NULL shows as empty, as in sqlite3). */
export function cellText(v: Value): string {
  if (v === null || v === undefined) return "";
  if (v instanceof Uint8Array) return `x'${hex(v)}'`;
  return String(v);
}

function csvField(v: Value): string {
  const s = cellText(v);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

function jsonValue(v: Value): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (v instanceof Uint8Array) return JSON.stringify(`x'${hex(v)}'`);
  return JSON.stringify(v);
}

const width = (s: string): number => [...s].length;

export function formatRows(mode: OutputMode, columns: string[], rows: Value[][], headers = true): string {
  switch (mode) {
    case "json":
      return rows.length === 0
        ? ""
        : "[" + rows.map((r) => "{" + columns.map((c, i) => `${JSON.stringify(c)}:${jsonValue(r[i])}`).join(",") + "}").join(",\n") + "]\n";
    case "csv":
      return (headers ? [columns, ...rows] : rows).map((r) => r.map(csvField).join(",")).join("\r\n") + (rows.length || headers ? "\r\n" : "");
    case "list":
      return (headers ? [columns, ...rows] : rows).map((r) => r.map(cellText).join("|")).join("\n") + "\n";
    case "line": {
      const w = Math.max(0, ...columns.map(width));
      return rows.map((r) => columns.map((c, i) => `${" ".repeat(w - width(c))}${c} = ${cellText(r[i])}`).join("\n")).join("\n\n") + "\n";
    }
    case "table": {
      if (columns.length === 0) return "";
      const cells = rows.map((r) => r.map(cellText));
      // A loop, not Math.max(...cells): spreading a large result overflows the stack.
      const widths = columns.map((c, i) => cells.reduce((w, r) => Math.max(w, width(r[i] ?? "")), width(c)));
      const rule = "+" + widths.map((w) => "-".repeat(w + 2)).join("+") + "+";
      const line = (r: string[], right: boolean[]) =>
        "|" + r.map((s, i) => " " + (right[i] ? " ".repeat(widths[i]! - width(s)) + s : s + " ".repeat(widths[i]! - width(s))) + " ").join("|") + "|";
      const numeric = columns.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number" || typeof r[i] === "bigint" || r[i] === null));
      const out = [rule, line(columns, columns.map(() => false)), rule];
      for (const r of cells) out.push(line(r, numeric));
      out.push(rule);
      return out.join("\n") + "\n";
    }
  }
}
