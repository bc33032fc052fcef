/**
 * UNTRUSTED (UI). The interactive SQL shell of `selkie sql <db>`: multi-line statements, history,
 * and the sqlite3 shell's essential dot-commands.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import type { Database } from "../../sql/database.js";
import { describeError } from "./exit-codes.js";
import { SELKIE_VERSION } from "./version.js";
import { formatRows, OUTPUT_MODES, type OutputMode } from "./format.js";

export interface ShellIO {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  error: NodeJS.WritableStream;
  interactive: boolean;
}

export const SHELL_HELP = `.help                 show this list
.tables [PATTERN]     list tables (and views) matching a LIKE pattern
.schema [PATTERN]     show CREATE statements of matching tables, indexes, views, triggers
.mode MODE            output mode: ${OUTPUT_MODES.join(", ")}
.headers on|off       column names in csv and list modes
.enclave              show the enclave's identity and memory use
.read FILE            run the SQL in FILE
.quit / .exit         leave the shell (Ctrl-D does too)
SQL statements end with ';' and may span several lines.`;

/** True when `text` ends with a complete statement (ends in ';' outside strings, comments, triggers). */
export function isComplete(text: string): boolean {
  let last = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      const end = text.indexOf(close, i + 1);
      if (end < 0) return false;
      i = end + 1;
      last = close;
      continue;
    }
    if (c === "-" && text[i + 1] === "-") {
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? text.length : nl + 1;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) return false;
      i = end + 2;
      continue;
    }
    if (!/\s/.test(c)) last = c;
    i++;
  }
  if (last !== ";") return false;
  if (/^\s*create\s+(temp\s+|temporary\s+)?trigger\b/i.test(text)) return /\bend\s*;\s*$/i.test(text.replace(/--[^\n]*$/gm, "").trimEnd());
  return true;
}

export class Shell {
  mode: OutputMode;
  headers = true;
  #buffer = "";
  #quit = false;
  /** The first error a statement or command raised (its class decides the exit code). */
  firstError: unknown;

  constructor(readonly db: Database, readonly io: ShellIO, mode: OutputMode = "table") {
    this.mode = mode;
  }

  #out(s: string): void {
    this.io.output.write(s);
  }

  #err(s: string): void {
    this.io.error.write(s.endsWith("\n") ? s : s + "\n");
  }

  /** Runs SQL text (one or more statements) and prints results; returns false on error. */
  runSql(sql: string): boolean {
    try {
      for (const st of this.db.statements(sql)) {
        const cols = st.columns();
        if (cols.length > 0) this.#out(formatRows(this.mode, cols, st.values(), this.headers));
        else st.run();
      }
      return true;
    } catch (e) {
      this.#fail(e);
      return false;
    }
  }

  #fail(e: unknown): void {
    this.firstError ??= e;
    this.#err(describeError(e));
  }

  /** Handles one dot-command line; returns false on error. */
  dot(line: string): boolean {
    const [cmd, ...args] = line.trim().split(/\s+/);
    const arg = args.join(" ");
    switch (cmd) {
      case ".quit":
      case ".exit":
        this.#quit = true;
        return true;
      case ".help":
        this.#out(SHELL_HELP + "\n");
        return true;
      case ".tables": {
        const rows = this.db.query<{ name: string }>(
          "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' AND name LIKE ? ORDER BY 1",
          arg || "%",
        );
        if (rows.length) this.#out(rows.map((r) => r.name).join("  ") + "\n");
        return true;
      }
      case ".schema": {
        const rows = this.db.query<{ sql: string }>(
          "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND (tbl_name LIKE ?1 OR name LIKE ?1) ORDER BY tbl_name, type DESC, name",
          arg || "%",
        );
        for (const r of rows) this.#out(r.sql + ";\n");
        return true;
      }
      case ".mode":
        if (!(OUTPUT_MODES as readonly string[]).includes(arg)) {
          this.#err(`Error: .mode takes one of ${OUTPUT_MODES.join(", ")}`);
          return false;
        }
        this.mode = arg as OutputMode;
        return true;
      case ".headers":
        if (arg !== "on" && arg !== "off") {
          this.#err("Error: .headers takes on or off");
          return false;
        }
        this.headers = arg === "on";
        return true;
      case ".enclave": {
        const e = this.db.enclave;
        this.#out(
          `enclave     ${e.name}\nmrenclave   ${e.mrenclave}\nsqlite      ${e.sqliteVersion}\nepc         ${e.epcBytes} bytes (cap)\ncommitted   ${e.committedBytes} bytes (peak ${e.peakBytes})\npermissions ${e.permissions.join(", ") || "none"}\nfaults      ${e.faults}\n`,
        );
        return true;
      }
      case ".read": {
        if (!arg) {
          this.#err("Error: .read takes a file name");
          return false;
        }
        let text: string;
        try {
          text = fs.readFileSync(arg, "utf8");
        } catch (e) {
          this.#err(`Error: cannot read ${arg}: ${(e as Error).message}`);
          return false;
        }
        return this.runSql(text);
      }
      default:
        this.#err(`Error: unknown command "${cmd}". Enter ".help" for the list.`);
        return false;
    }
  }

  /** Feeds one input line; returns false if it produced an error. */
  feed(line: string): boolean {
    if (this.#buffer === "" && line.trim().startsWith(".")) {
      try {
        return this.dot(line);
      } catch (e) {
        this.#fail(e);
        return false;
      }
    }
    this.#buffer += (this.#buffer ? "\n" : "") + line;
    if (!isComplete(this.#buffer)) return true;
    const sql = this.#buffer;
    this.#buffer = "";
    return this.runSql(sql);
  }

  get pending(): boolean {
    return this.#buffer.trim() !== "";
  }

  get quit(): boolean {
    return this.#quit;
  }

  /** Runs the read-eval-print loop until .quit or end of input; resolves to the number of errors. */
  async run(): Promise<number> {
    const historyFile = path.join(os.homedir(), ".selkie_history");
    let history: string[] = [];
    if (this.io.interactive) {
      try {
        history = fs.readFileSync(historyFile, "utf8").split("\n").filter(Boolean).reverse().slice(0, 1000);
      } catch {
        /* no history yet */
      }
      const e = this.db.enclave;
      this.#out(`Selkie ${SELKIE_VERSION} (SQLite ${e.sqliteVersion}) in enclave "${e.name}" (mrenclave ${e.mrenclave.slice(0, 16)}…)\nEnter ".help" for usage hints.\n`);
    }
    const rl = readline.createInterface({
      input: this.io.input,
      output: this.io.interactive ? this.io.output : undefined,
      terminal: this.io.interactive,
      history,
      historySize: 1000,
      prompt: "selkie> ",
    });
    let errors = 0;
    if (this.io.interactive) rl.prompt();
    for await (const line of rl) {
      if (!this.feed(line)) errors++;
      if (this.#quit) break;
      if (this.io.interactive) {
        rl.setPrompt(this.pending ? "   ...> " : "selkie> ");
        rl.prompt();
      }
    }
    if (this.pending) {
      // End of input in the middle of a statement: run what we have, as sqlite3 does.
      const sql = this.#buffer;
      this.#buffer = "";
      if (!this.runSql(sql)) errors++;
    }
    rl.close();
    if (this.io.interactive) {
      try {
        const h = (rl as unknown as { history: string[] }).history ?? [];
        fs.writeFileSync(historyFile, [...h].reverse().join("\n") + "\n", { mode: 0o600 });
      } catch {
        /* history is a convenience */
      }
    }
    return errors;
  }
}
