import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, tempDir } from "../helpers.js";
import { cliInPty } from "./pty.js";

function setup(): { env: NodeJS.ProcessEnv; file: string; dir: string } {
  const dir = tempDir();
  const env = { ...process.env, SELKIE_HOME: path.join(dir, "home"), HOME: dir };
  const file = path.join(dir, "p.db");
  assert.equal(cli(["sql", file, "CREATE TABLE seal_colony(weight_kg REAL, pup_count INTEGER); INSERT INTO seal_colony VALUES (87.5, 3)"], { env }).status, 0);
  return { env, file, dir };
}

test("at a terminal, Ctrl-C clears the line and a half-typed statement instead of leaving the shell", async () => {
  const { env, file } = setup();
  const s = cliInPty(["sql", file, "-m", "list", "--no-headers"], { env });
  await s.waitFor(/selkie> $/);
  s.type("SELECT 'abandoned'");
  await s.waitFor(/'abandoned'$/);
  s.type("\x03");
  let at = s.output.length;
  await s.waitFor(/\^C\r?\nselkie> $/, at);
  s.type("SELECT 'first\r");
  await s.waitFor(/\.\.\.> $/, at);
  at = s.output.length;
  s.type("\x03");
  await s.waitFor(/\^C\r?\nselkie> $/, at);
  s.type("SELECT 'kept';\r");
  await s.waitFor(/\r\nkept\r\nselkie> $/, at);
  s.type(".quit\r");
  assert.equal(await s.exited, 0, s.output);
  assert.doesNotMatch(s.output, /\r\nabandoned\r\n|first\r?\n.*kept'/);
});

test("at a terminal, Tab completes table names, column names and keywords", async () => {
  const { env, file } = setup();
  const s = cliInPty(["sql", file, "-m", "list", "--no-headers"], { env });
  await s.waitFor(/selkie> $/);
  s.type("sel\t");
  await s.waitFor(/select$/);
  s.type(" pup_c\t");
  await s.waitFor(/pup_count$/);
  s.type(" FROM seal_c\t");
  await s.waitFor(/seal_colony$/);
  const at = s.output.length;
  s.type(";\r");
  await s.waitFor(/\r\n3\r\nselkie> $/, at);
  s.type(".quit\r");
  assert.equal(await s.exited, 0, s.output);
});

test(".import and .backup of large data show a progress bar at a terminal and none when piped", async () => {
  const { env, file, dir } = setup();
  const csv = path.join(dir, "big.csv");
  fs.writeFileSync(csv, "id,payload\n" + Array.from({ length: 30_000 }, (_, i) => `${i},${"x".repeat(60)}`).join("\n") + "\n");
  const s = cliInPty(["sql", file, "-m", "list", "--no-headers"], { env });
  await s.waitFor(/selkie> $/);
  const at = s.output.length;
  s.type(`.import ${csv} big\r`);
  await s.waitFor(/import \[[█░]+\] 100%[^\n]*\r?\nselkie> $/, at, 60_000);
  s.type("SELECT count(*) FROM big;\r");
  await s.waitFor(/\r\n30000\r\nselkie> $/, at);
  s.type(`.backup ${path.join(dir, "copy.db")}\r`);
  await s.waitFor(/backup \[[█░]+\] 100%[^\n]*\r?\nselkie> $/, at, 60_000);
  s.type(".quit\r");
  assert.equal(await s.exited, 0, s.output);
  const piped = cli(["sql", file, `.import ${csv} big2\n.backup ${path.join(dir, "copy2.db")}`], { env });
  assert.equal(piped.status, 0, piped.stderr);
  assert.equal(piped.stdout + piped.stderr, "");
  assert.equal(cli(["sql", path.join(dir, "copy2.db"), "SELECT count(*) FROM big2", "-m", "list", "--no-headers"], { env }).stdout, "30000\n");
});
