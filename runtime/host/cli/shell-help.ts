/**
 * UNTRUSTED (UI). The shell's dot-commands, one line of help each, in sqlite3's `.help` layout.
 * runtime/host/cli/SHELL.md compares them with the sqlite3 shell's.
 */
import { OUTPUT_MODES } from "./format.js";

export interface DotCommand {
  name: string;
  args: string;
  help: string;
}

export const DOT_COMMANDS: readonly DotCommand[] = [
  { name: ".backup", args: "FILE", help: "write a sealed copy of the database to the new database FILE" },
  { name: ".bail", args: "on|off", help: "stop after the first error (default off)" },
  { name: ".changes", args: "on|off", help: "show the number of rows each statement changed" },
  { name: ".databases", args: "", help: "list the open database and its file" },
  { name: ".dump", args: "?TABLE?", help: "write the database (or the tables matching TABLE) as SQL that sqlite3 can load" },
  { name: ".enclave", args: "", help: "show the enclave's identity and memory use" },
  { name: ".exit", args: "", help: "leave the shell (Ctrl-D does too)" },
  { name: ".headers", args: "?on|off?", help: "column names in list, csv, tabs, column and quote modes; no argument shows the setting" },
  { name: ".help", args: "?COMMAND?", help: "show this list, or the help of COMMAND" },
  { name: ".import", args: "FILE TABLE", help: "import CSV rows from FILE into TABLE (created from the header row when missing); --skip N skips N lines" },
  { name: ".indexes", args: "?TABLE?", help: "list the indexes (of tables matching TABLE)" },
  { name: ".mode", args: "?MODE? ?TABLE?", help: `output mode: ${OUTPUT_MODES.join(", ")}; no argument shows it; insert takes a TABLE name` },
  { name: ".nullvalue", args: "STRING", help: "show NULL as STRING" },
  { name: ".once", args: "FILE", help: "send the output of the next command only to FILE" },
  { name: ".open", args: "FILE", help: "close this database and open (or create) FILE" },
  { name: ".output", args: "?FILE?", help: "send output to FILE, or back to standard output without FILE" },
  { name: ".quit", args: "", help: "leave the shell (Ctrl-D does too)" },
  { name: ".read", args: "FILE", help: "run the SQL and dot-commands in FILE" },
  { name: ".schema", args: "?PATTERN?", help: "show CREATE statements of matching tables, indexes, views, triggers" },
  { name: ".show", args: "", help: "show the current settings" },
  { name: ".tables", args: "?PATTERN?", help: "list tables (and views) matching a LIKE pattern" },
  { name: ".timer", args: "on|off", help: "show how long each statement took" },
];

const line = (c: DotCommand): string => `${(c.name + " " + c.args).trimEnd().padEnd(22)}${c.help}`;

/** `.help` without an argument: every command, then how statements end. */
export const SHELL_HELP = DOT_COMMANDS.map(line).join("\n") + "\nSQL statements end with ';' and may span several lines. Ctrl-C clears the line; Tab completes.";

/** `.help CMD`: the lines of commands whose name starts with CMD (with or without the dot); undefined if none. */
export function helpFor(topic: string): string | undefined {
  const t = topic.startsWith(".") ? topic : "." + topic;
  const hits = DOT_COMMANDS.filter((c) => c.name.startsWith(t));
  return hits.length ? hits.map(line).join("\n") : undefined;
}
