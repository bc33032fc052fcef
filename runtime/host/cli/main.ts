#!/usr/bin/env node
/**
 * UNTRUSTED (UI). The `selkie` command line.
 */
import { Command, CommanderError } from "commander";
import { createRequire } from "node:module";
import { describeError, EXIT_CODES_HELP, EXIT_USAGE, exitCodeFor } from "./exit-codes.js";
import { registerSqlCommand } from "./sql-command.js";
import { registerEnclaveCommands } from "./enclave-commands.js";
import { registerDemoCommand } from "./demo-command.js";
import { registerDbCommands } from "./db-commands.js";
import { registerServeCommands } from "./serve-commands.js";
import { registerPlatformCommands } from "./platform-commands.js";
import { registerPsCommand } from "./ps-command.js";

const pkg = createRequire(import.meta.url)("../../../../package.json") as { version: string };

/** Runs a command body: maps errors to a message on stderr and a stable exit code. */
async function run(fn: () => Promise<number> | number): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (e) {
    process.stderr.write(describeError(e) + "\n");
    process.exitCode = exitCodeFor(e);
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("selkie")
    .description("Selkie: SQLite and other workloads inside metered WebAssembly enclaves (emulated SGX).")
    .version(pkg.version, "-V, --version")
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
  return program;
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
