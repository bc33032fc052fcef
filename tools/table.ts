/** Markdown tables for the benchmarks and soaks: columns padded to their widest cell. */

/** `header` and `rows` as a Markdown table; columns where `rightAlign(col)` is true are right-aligned. */
export function markdownTable(header: string[], rows: string[][], rightAlign: (col: number) => boolean): string {
  const w = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const fmt = (r: string[]): string => "| " + r.map((cell, c) => (rightAlign(c) ? cell.padStart(w[c]!) : cell.padEnd(w[c]!))).join(" | ") + " |";
  const sep = "|" + w.map((n, c) => (rightAlign(c) ? "-".repeat(n + 1) + ":" : "-".repeat(n + 2))).join("|") + "|";
  return [fmt(header), sep, ...rows.map(fmt)].join("\n");
}
