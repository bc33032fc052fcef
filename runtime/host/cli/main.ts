#!/usr/bin/env node
/**
 * UNTRUSTED (UI). The `selkie` command line.
 */
import { Command, CommanderError } from "commander";
import { versionLine } from "./version.js";
import { describeError, EXIT_CODES_HELP, EXIT_USAGE, exitCodeFor } from "./exit-codes.js";
import { registerSqlCommand } from "./sql-command.js";
import { registerEnclaveCommands } from "./enclave-commands.js";
import { registerDemoCommand } from "./demo-command.js";
import { registerDbCommands } from "./db-commands.js";
import { registerServeCommands } from "./serve-commands.js";
import { registerPlatformCommands } from "./platform-commands.js";
import { registerPsCommand } from "./ps-command.js";
import { registerMigrateCommand } from "./migrate-command.js";


/** Runs a command body: maps errors to a message on stderr and a stable exit code. */
async function run(fn: () => Promise<number> | number): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (e) {
    if (readerWentAway(e)) process.exit(0);
    process.stderr.write(describeError(e) + "\n");
    process.exitCode = exitCodeFor(e);
  }
}

/** stdout's reader closed the pipe (`| head`): writes after that fail; the command just ends. */
function readerWentAway(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return (code === "EPIPE" || code === "ERR_STREAM_DESTROYED") && (process.stdout.destroyed || process.stdout.writableEnded || code === "EPIPE");
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("selkie")
    .description("Selkie: SQLite and other workloads inside metered WebAssembly enclaves (emulated SGX).")
    .version(versionLine(), "-V, --version")
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText("after", `\n${EXIT_CODES_HELP}`);
  registerDemoCommand(program, run);
  registerSqlCommand(program, run);
  registerDbCommands(program, run);
  registerEnclaveCommands(program, run);
  registerServeCommands(program, run);
  registerPlatformCommands(program, run);
  registerPsCommand(program, run);
  registerMigrateCommand(program, run);
  return program;
}

// A reader that stops early (`selkie ... | head`) closes the pipe: that ends the command quietly, as
// it does for other Unix tools, instead of an unhandled EPIPE stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
}

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE;
  } else {
    process.stderr.write(describeError(e) + "\n");
    process.exitCode = exitCodeFor(e);
  }
}
