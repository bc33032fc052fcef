/**
 * UNTRUSTED (UI). The interactive SQL shell of `selkie sql <db>`: multi-line statements, history,
 * Tab completion, Ctrl-C clearing the line or interrupting a running statement (sigint.ts), and the
 * sqlite3 shell's dot-commands (shell-help.ts
 * lists them; SHELL.md compares them with sqlite3's).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import type { Database } from "../../sql/database.js";
import type { Platform } from "../../platform/platform.js";
import { SqliteError } from "../../sql/errors.js";
import { UsageError } from "../../errors.js";
import { describeError } from "./exit-codes.js";
import { SELKIE_VERSION } from "./version.js";
import { formatRows, OUTPUT_MODES, width, type OutputMode } from "./format.js";
import { helpFor, SHELL_HELP } from "./shell-help.js";
import { dumpSql } from "./dump.js";
import { importCsv } from "./csv-import.js";
import { complete } from "./completion.js";
import { progressBar } from "./progress.js";
import { SigintWatcher } from "./sigint.js";
import { StatementInterruptedError } from "../../sql/errors.js";

export { SHELL_HELP } from "./shell-help.js";

export interface ShellIO {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  error: NodeJS.WritableStream;
  interactive: boolean;
}

export interface ShellOptions {
  /** Opens a database for `.open` (on the shell's platform); without it `.open` is refused. */
  open?: (file: string) => Database;
  /** The platform that seals `.backup` copies; without it (a plain file) `.backup` is refused. */
  platform?: Platform;
}

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

/**
 * The line of `sql` holding the error at byte `offset`, and a caret under it, as sqlite3 shows a
 * parse error: "^--- error here" when the caret is near the left, "error here ---^" otherwise.
 */
export function caretLines(text: string, offset: number): string {
  const bytes = Buffer.from(text, "utf8");
  const lead = text.length - text.trimStart().length; // the statement as typed, without the blanks before it
  const sql = text.slice(lead);
  const at = Math.max(0, bytes.subarray(0, Math.min(offset, bytes.length)).toString("utf8").length - lead);
  const start = sql.lastIndexOf("\n", at - 1) + 1;
  const endNl = sql.indexOf("\n", at);
  const shown = sql.slice(start, endNl < 0 ? sql.length : endNl);
  const col = width(sql.slice(start, at));
  const mark = col < 25 ? " ".repeat(col) + "^--- error here" : " ".repeat(col - 14) + "error here ---^";
  return `  ${shown}\n  ${mark}\n`;
}

const onOff = (b: boolean) => (b ? "on" : "off");

export class Shell {
  mode: OutputMode;
  headers = true;
  nullValue = "";
  timer = false;
  changes = false;
  bail = false;
  /** The table insert mode names. */
  insertTable = "table";
  #buffer = "";
  #quit = false;
  /** Where output goes instead of io.output (.output/.once), and whether it is for one command only. */
  #sink: { fd: number; file: string; once: boolean } | undefined;
  /** The first error a statement or command raised (its class decides the exit code). */
  firstError: unknown;

  constructor(public db: Database, readonly io: ShellIO, mode: OutputMode = "table", readonly opts: ShellOptions = {}) {
    this.mode = mode;
  }

  #out(s: string): void {
    if (this.#sink) fs.writeSync(this.#sink.fd, s);
    else this.io.output.write(s);
  }

  #err(s: string): void {
    this.io.error.write(s.endsWith("\n") ? s : s + "\n");
  }

  #setSink(file: string | undefined, once: boolean): void {
    if (this.#sink) fs.closeSync(this.#sink.fd);
    this.#sink = undefined;
    if (file === undefined || file === "stdout") return;
    this.#sink = { fd: fs.openSync(file, "w", 0o600), file, once };
  }

  /** Runs SQL text (one or more statements) and prints results; returns false on error. */
  runSql(sql: string): boolean {
    let done = 0; // characters of `sql` already prepared: an error's offset counts from here
    try {
      const it = this.db.statements(sql);
      for (;;) {
        let next: IteratorResult<ReturnType<Database["prepare"]>>;
        try {
          next = it.next();
        } catch (e) {
          this.#fail(e, sql.slice(done));
          return false;
        }
        if (next.done) return true;
        const st = next.value;
        const t0 = process.hrtime.bigint();
        const cpu0 = process.cpuUsage();
        try {
          st.typedReals = true;
          const cols = st.columns();
          if (cols.length > 0) {
            // All rows are read before any is shown, so a read-only statement can run again (retryingReads).
            this.#out(formatRows(this.mode, cols, this.db.retryingReads(() => st.values()), this.headers, { nullValue: this.nullValue, table: this.insertTable }));
          } else {
            this.db.retryingReads(() => st.run());
          }
        } catch (e) {
          this.#fail(e, st.sql);
          it.return(undefined);
          return false;
        }
        if (this.changes) {
          const c = this.db.query<{ c: number; t: number }>("SELECT changes() AS c, total_changes() AS t")[0]!;
          this.#out(`changes: ${c.c}   total_changes: ${c.t}\n`);
        }
        if (this.timer) {
          const real = Number(process.hrtime.bigint() - t0) / 1e9;
          const cpu = process.cpuUsage(cpu0);
          this.#out(`Run Time: real ${real.toFixed(3)} user ${(cpu.user / 1e6).toFixed(6)} sys ${(cpu.system / 1e6).toFixed(6)}\n`);
        }
        done += st.sql.length;
      }
    } catch (e) {
      this.#fail(e);
      return false;
    }
  }

  #fail(e: unknown, sql?: string): void {
    this.firstError ??= e;
    let msg = e instanceof StatementInterruptedError ? "Interrupted" : describeError(e);
    if (e instanceof SqliteError && e.offset !== undefined && sql !== undefined) msg += "\n" + caretLines(sql, e.offset);
    this.#err(msg);
    if (this.bail) this.#quit = true;
  }

  #usage(msg: string): false {
    this.#fail(new UsageError("SHELL_USAGE", msg));
    return false;
  }

  #flag(arg: string, name: string, set: (b: boolean) => void): boolean {
    if (arg !== "on" && arg !== "off") return this.#usage(`${name} takes on or off`);
    set(arg === "on");
    return true;
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
      case ".help": {
        if (!arg) {
          this.#out(SHELL_HELP + "\n");
          return true;
        }
        const h = helpFor(arg);
        if (h === undefined) return this.#usage(`no command matches "${arg}"; enter ".help" for the list`);
        this.#out(h + "\n");
        return true;
      }
      case ".tables": {
        const rows = this.db.query<{ name: string }>(
          "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' AND name LIKE ? ORDER BY 1",
          arg || "%",
        );
        if (rows.length) this.#out(rows.map((r) => r.name).join("  ") + "\n");
        return true;
      }
      case ".indexes":
      case ".indices": {
        const rows = this.db.query<{ name: string }>("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name LIKE ? ORDER BY 1", arg || "%");
        if (rows.length) this.#out(rows.map((r) => r.name).join("\n") + "\n");
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
      case ".mode": {
        if (!arg) {
          this.#out(`current output mode: ${this.mode}${this.mode === "insert" ? ` ${this.insertTable}` : ""}\n`);
          return true;
        }
        const [m, table] = args;
        if (!(OUTPUT_MODES as readonly string[]).includes(m!)) return this.#usage(`.mode takes one of ${OUTPUT_MODES.join(", ")}`);
        this.mode = m as OutputMode;
        if (m === "insert") this.insertTable = table ?? "table";
        return true;
      }
      case ".headers":
      case ".header":
        if (!arg) {
          this.#out(`headers: ${onOff(this.headers)}\n`);
          return true;
        }
        return this.#flag(arg, ".headers", (b) => (this.headers = b));
      case ".nullvalue":
        this.nullValue = args[0] ?? "";
        return true;
      case ".timer":
        return this.#flag(arg, ".timer", (b) => (this.timer = b));
      case ".changes":
        return this.#flag(arg, ".changes", (b) => (this.changes = b));
      case ".bail":
        return this.#flag(arg, ".bail", (b) => (this.bail = b));
      case ".once":
        if (!arg) return this.#usage(".once takes a file name");
        this.#setSink(arg, true);
        return true;
      case ".output":
        this.#setSink(arg || undefined, false);
        return true;
      case ".show":
        this.#out(
          [
            ["headers", onOff(this.headers)],
            ["mode", this.mode + (this.mode === "insert" ? ` ${this.insertTable}` : "")],
            ["nullvalue", JSON.stringify(this.nullValue)],
            ["output", this.#sink?.file ?? "stdout"],
            ["timer", onOff(this.timer)],
            ["changes", onOff(this.changes)],
            ["bail", onOff(this.bail)],
            ["filename", path.resolve(this.db.path)],
          ]
            .map(([k, v]) => `${k!.padStart(9)}: ${v}\n`)
            .join(""),
        );
        return true;
      case ".databases":
        this.#out(`main: ${path.resolve(this.db.path)} ${this.db.readonly ? "r/o" : "r/w"}\n`);
        return true;
      case ".dump":
        for (const l of dumpSql(this.db, arg || "%")) this.#out(l);
        return true;
      case ".import": {
        const skipAt = args.indexOf("--skip");
        let skip = 0;
        if (skipAt >= 0) {
          skip = Number(args[skipAt + 1]);
          if (!Number.isInteger(skip) || skip < 0) return this.#usage("--skip takes a number of lines");
          args.splice(skipAt, 2);
        }
        const csv = args.indexOf("--csv");
        if (csv >= 0) args.splice(csv, 1);
        if (args.length !== 2) return this.#usage(".import takes FILE TABLE (and --csv, --skip N)");
        // As sqlite3: --csv, or the separator of the current mode (tabs, list), else CSV.
        const sep = csv >= 0 ? "," : this.mode === "tabs" ? "\t" : this.mode === "list" ? "|" : ",";
        const bar = progressBar("import");
        try {
          const r = importCsv(this.db, args[0]!, args[1]!, { sep, skip, onProgress: (d, t) => bar.update(d, t) });
          for (const w of r.warnings) this.#err(w);
        } finally {
          bar.stop();
        }
        return true;
      }
      case ".backup":
      case ".save": {
        const file = args[args.length - 1];
        if (!file || args.length > 2 || (args.length === 2 && args[0] !== "main")) return this.#usage(`${cmd} takes FILE (a new sealed database)`);
        if (!this.opts.platform) return this.#usage(`${this.db.path} is a plain file: copy it with cp instead`);
        const bar = progressBar("backup");
        try {
          this.db.backupTo(file, this.opts.platform, (d, t) => bar.update(d, t));
        } finally {
          bar.stop();
        }
        return true;
      }
      case ".open": {
        if (!arg) return this.#usage(".open takes a file name");
        if (!this.opts.open) return this.#usage(".open is not available here");
        const next = this.opts.open(arg);
        this.db.close();
        this.db = next;
        return true;
      }
      case ".enclave": {
        const e = this.db.enclave;
        this.#out(
          `enclave     ${e.name}\nmrenclave   ${e.mrenclave}\nsqlite      ${e.sqliteVersion}\nepc         ${e.epcBytes} bytes (cap)\ncommitted   ${e.committedBytes} bytes (peak ${e.peakBytes})\npermissions ${e.permissions.join(", ") || "none"}\nfaults      ${e.faults}\n`,
        );
        return true;
      }
      case ".read": {
        if (!arg) return this.#usage(".read takes a file name");
        let text: string;
        try {
          text = fs.readFileSync(arg, "utf8");
        } catch (e) {
          return this.#usage(`cannot read ${arg}: ${(e as Error).message}`);
        }
        let ok = true;
        for (const l of text.split(/\r?\n/)) {
          if (!this.feed(l)) ok = false;
          if (this.#quit) break;
        }
        if (this.pending) ok = this.flush() && ok;
        return ok;
      }
      default:
        return this.#usage(`unknown command "${cmd}". Enter ".help" for the list.`);
    }
  }

  /** Feeds one input line; returns false if it produced an error. */
  feed(line: string): boolean {
    if (this.#buffer === "" && line.trim().startsWith(".")) {
      const once = this.#sink?.once === true;
      try {
        return this.dot(line);
      } catch (e) {
        this.#fail(e);
        return false;
      } finally {
        if (once && this.#sink?.once) this.#setSink(undefined, false);
      }
    }
    this.#buffer += (this.#buffer ? "\n" : "") + line;
    if (!isComplete(this.#buffer)) return true;
    return this.flush();
  }

  /** Runs what is buffered (end of input in the middle of a statement runs it, as sqlite3 does). */
  flush(): boolean {
    const sql = this.#buffer;
    this.#buffer = "";
    const once = this.#sink?.once === true;
    try {
      return sql.trim() === "" || this.runSql(sql);
    } finally {
      if (once) this.#setSink(undefined, false);
    }
  }

  /** Drops a statement being typed (Ctrl-C). */
  clear(): void {
    this.#buffer = "";
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
    // Armed before readline starts reading, so that no line is emitted while we wait.
    let onIdleSignal = (): void => {};
    const watcher = new SigintWatcher(() => onIdleSignal());
    await watcher.ready;
    const rl = readline.createInterface({
      input: this.io.input,
      output: this.io.interactive ? this.io.output : undefined,
      terminal: this.io.interactive,
      history,
      historySize: 1000,
      prompt: "selkie> ",
      ...(this.io.interactive ? { completer: (line: string) => complete(this.db, line) } : {}),
    });
    const prompt = () => {
      rl.setPrompt(this.pending ? "   ...> " : "selkie> ");
      rl.prompt();
    };
    let errors = 0;
    // Ctrl-C at the prompt clears the line and any statement being typed, as in sqlite3; the third
    // in a row (no line entered between) leaves with status 1, as sqlite3 does. Ctrl-D or .quit leave.
    let idleInterrupts = 0;
    const idleInterrupt = (): void => {
      if (++idleInterrupts >= 3) {
        errors++;
        this.#quit = true;
        this.io.output.write("^C\n");
        rl.close();
        return;
      }
      if (this.io.interactive) {
        rl.write(null, { ctrl: true, name: "e" });
        rl.write(null, { ctrl: true, name: "u" });
      }
      this.clear();
      if (this.io.interactive) {
        this.io.output.write("^C\n");
        prompt();
      }
    };
    rl.on("SIGINT", idleInterrupt);
    onIdleSignal = idleInterrupt;
    // Ctrl-C during a statement interrupts it (sigint.ts: a real SIGINT reaches the statement through
    // SQLite's progress handler); the statement fails with "Interrupted" and the shell goes on.
    const tty = this.io.input as { isTTY?: boolean; setRawMode?: (raw: boolean) => void };
    const cooked = (on: boolean): void => {
      // readline keeps the terminal raw, where Ctrl-C is a key and not a signal; while a statement
      // runs the terminal is put back to cooked, so Ctrl-C sends SIGINT.
      if (this.io.interactive && tty.isTTY === true && tty.setRawMode) tty.setRawMode(!on);
    };
    let armed: Database | undefined;
    if (this.io.interactive) rl.prompt();
    try {
      for await (const line of rl) {
        idleInterrupts = 0;
        if (armed !== this.db && this.db.open) {
          this.db.setInterruptCheck(() => watcher.pending);
          armed = this.db;
        }
        watcher.take(); // a SIGINT handled at the prompt must not interrupt this line
        cooked(true);
        let ok: boolean;
        try {
          ok = this.feed(line);
        } finally {
          cooked(false);
        }
        const interrupted = watcher.pending;
        watcher.take();
        if (!ok) errors++;
        if (this.#quit) break;
        // sqlite3 stops reading a script that was interrupted; at a terminal it prompts again.
        if (interrupted && !this.io.interactive) break;
        if (this.io.interactive) prompt();
      }
    } finally {
      await watcher.stop();
    }
    if (this.pending && !this.#quit && !this.flush()) errors++;
    this.#setSink(undefined, false);
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
