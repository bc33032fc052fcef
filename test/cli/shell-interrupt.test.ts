/**
 * Ctrl-C in the local shell (issue 15): during a running statement it interrupts the statement
 * through SQLite's progress handler (runtime/host/cli/sigint.ts), prints "Interrupted" and keeps the
 * shell and the database usable; at the prompt it behaves as in sqlite3's shell. A real child process
 * on a real pseudo-terminal, and a real SIGINT.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { CLI, cli, tempDir } from "../helpers.js";
import { cliInPty } from "./pty.js";

/** Runs until interrupted: counts an endless recursive sequence. */
const ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;";
/** A write that runs until interrupted: it must leave nothing behind. */
const ENDLESS_INSERT = "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c;";

function setup(): { env: NodeJS.ProcessEnv; file: string } {
  const dir = tempDir();
  const env = { ...process.env, SELKIE_HOME: path.join(dir, "home"), HOME: dir };
  const file = path.join(dir, "i.db");
  assert.equal(cli(["sql", file, "CREATE TABLE t(x); INSERT INTO t VALUES (1)"], { env }).status, 0);
  return { env, file };
}

test("at a terminal, Ctrl-C during a running statement interrupts it, prints Interrupted, and the shell and database stay usable", async () => {
  const { env, file } = setup();
  const s = cliInPty(["sql", file, "-m", "list", "--no-headers"], { env });
  await s.waitFor(/selkie> $/);
  let at = s.output.length;
  s.type(`${ENDLESS}\r`);
  await new Promise((r) => setTimeout(r, 1500)); // well inside the statement
  assert.doesNotMatch(s.output.slice(at), /selkie> $/, "the statement is still running");
  s.type("\x03");
  await s.waitFor(/Interrupted\r?\nselkie> $/, at);
  at = s.output.length;
  s.type(`${ENDLESS_INSERT}\r`);
  await new Promise((r) => setTimeout(r, 1500));
  s.type("\x03");
  await s.waitFor(/Interrupted\r?\nselkie> $/, at);
  at = s.output.length;
  s.type("INSERT INTO t VALUES (2); SELECT count(*), sum(x) FROM t;\r");
  await s.waitFor(/\r\n2\|3\r\nselkie> $/, at);
  s.type(".quit\r");
  // Two statements failed in this session, so the shell exits 1, as sqlite3's does after errors.
  assert.equal(await s.exited, 1, s.output);
  assert.doesNotMatch(s.output, /Error|Internal/);
  const after = cli(["sql", file, "SELECT count(*) AS n FROM t", "-m", "json"], { env });
  assert.equal(after.status, 0, after.stderr);
  assert.deepEqual(JSON.parse(after.stdout), [{ n: 2 }], "the interrupted INSERT left nothing; the later one was committed");
});

test("at a terminal, Ctrl-C at the prompt clears it twice and the third in a row leaves with status 1, as in sqlite3", async () => {
  const { env, file } = setup();
  const s = cliInPty(["sql", file], { env });
  await s.waitFor(/selkie> $/);
  for (let i = 0; i < 2; i++) {
    const at = s.output.length;
    s.type("\x03");
    await s.waitFor(/\^C\r?\nselkie> $/, at);
  }
  s.type("\x03");
  assert.equal(await s.exited, 1, s.output);
});

test("a SIGINT sent to the shell reading a script interrupts the running statement, and the script stops there as in sqlite3", async () => {
  const { env, file } = setup();
  const child = spawn(process.execPath, [CLI, "sql", file], { env, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  child.stdin.end(`${ENDLESS_INSERT}\nINSERT INTO t VALUES (99);\n`);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(child.exitCode, null, "still running the endless statement");
  child.kill("SIGINT");
  assert.equal(await exited, 1, err);
  assert.match(err, /^Interrupted$/m);
  assert.equal(out, "");
  const after = cli(["sql", file, "SELECT count(*) AS n, max(x) AS m FROM t", "-m", "json"], { env });
  assert.deepEqual(JSON.parse(after.stdout), [{ n: 1, m: 1 }], "neither the interrupted INSERT nor the line after it ran");
});
