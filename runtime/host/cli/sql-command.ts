/**
 * `selkie sql <db> [SQL]`: one statement (or several) from the command line, or the shell.
 */
import { Command, Option } from "commander";
import { Database } from "../../sql/database.js";
import { defaultPlatformDir, openDefaultPlatform } from "../default-platform.js";
import { EXIT_CODES_HELP, EXIT_OK, EXIT_SQL_ERROR, exitCodeFor } from "./exit-codes.js";
import { OUTPUT_MODES, type OutputMode } from "./format.js";
import { Shell, SHELL_HELP } from "./shell.js";

export function registerSqlCommand(program: Command, run: (fn: () => Promise<number> | number) => Promise<void>): void {
  program
    .command("sql")
    .summary("run SQL against a database inside an enclave, or open a shell")
    .description(
      "Opens DB (created when missing, unless --readonly) inside a SQLite enclave. With SQL, runs it\n" +
        "(one or more statements separated by ';') and prints the rows; without SQL, opens an\n" +
        "interactive shell (or reads statements from standard input when it is not a terminal).",
    )
    .argument("<db>", "database file")
    .argument("[sql]", "SQL to run, or a dot-command such as .tables or .dump (lines of either); omit for the shell")
    .addOption(new Option("-m, --mode <mode>", "output mode").choices(OUTPUT_MODES as string[]).default("table"))
    .option("--no-headers", "omit column names in csv and list modes")
    .option("-r, --readonly", "open read-only")
    .option("--epc <size>", "the enclave's EPC size (its memory cap), e.g. 64MiB")
    .option("--platform <dir>", "the platform whose keys and counters seal the database (default: $SELKIE_HOME or ~/.selkie, created on first use)")
    .option("--plain", "use an UNPROTECTED plain SQLite file (no sealing, no rollback protection)")
    .addHelpText(
      "after",
      `\nShell commands:\n${SHELL_HELP.replace(/^/gm, "  ")}\n\nExamples:\n  selkie sql app.db "CREATE TABLE t(x); INSERT INTO t VALUES (1)"\n  selkie sql app.db "SELECT * FROM t" --mode json\n  selkie sql app.db < dump.sql\n  selkie sql app.db .dump | sqlite3 copy.sqlite\n\n${EXIT_CODES_HELP}`,
    )
    .action(async (file: string, sql: string | undefined, opts: { mode: OutputMode; headers: boolean; readonly?: boolean; epc?: string; platform?: string; plain?: boolean }) => {
      await run(async () => {
        const platform = opts.plain ? undefined : await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), {
              forDatabase: file,
              create: opts.readonly !== true,
              onCreate: (d) => process.stderr.write(`selkie: created a development platform in ${d} (its keys seal your databases; keep it)\n`),
            });
        const open = (f: string) =>
          new Database(f, {
            readonly: opts.readonly === true,
            ...(opts.epc ? { epc: opts.epc } : {}),
            ...(platform ? { platform } : { plain: true }),
          });
        const shell = new Shell(
          open(file),
          { input: process.stdin, output: process.stdout, error: process.stderr, interactive: sql === undefined && process.stdin.isTTY === true },
          opts.mode,
          { open, ...(platform ? { platform } : {}) },
        );
        try {
          shell.headers = opts.headers;
          const failed = sql === undefined ? (await shell.run()) > 0 : !oneShot(shell, sql);
          if (!failed) return EXIT_OK;
          // One exit code per error class, whichever way the error came (see exit-codes.ts).
          return shell.firstError !== undefined ? exitCodeFor(shell.firstError) : EXIT_SQL_ERROR;
        } finally {
          shell.db.close();
          platform?.close();
        }
      });
    });
}

/** SQL or dot-commands given on the command line: SQL runs as one text; dot-command lines run one by one. */
function oneShot(shell: Shell, text: string): boolean {
  if (!text.trimStart().startsWith(".")) return shell.runSql(text);
  let ok = true;
  for (const line of text.split(/\r?\n/)) {
    if (!shell.feed(line)) ok = false;
    if (shell.quit || (!ok && shell.bail)) break;
  }
  return (shell.pending ? shell.flush() : true) && ok;
}
