import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { cli, tempDir } from "../helpers.js";
import { cliInPty } from "./pty.js";

/** A plain SQLite file of about 3 MiB, made by Debian's sqlite3. */
function bigPlain(dir: string): string {
  const file = path.join(dir, "big.sqlite");
  const r = spawnSync("sqlite3", [file, "CREATE TABLE b(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 48) INSERT INTO b SELECT randomblob(65536) FROM n;"]);
  assert.equal(r.status, 0, r.stderr?.toString());
  return file;
}

test("db import and db export draw a progress bar on a terminal", async () => {
  const dir = tempDir();
  const env = { ...process.env, SELKIE_HOME: path.join(dir, "home") };
  const src = bigPlain(dir);
  const imp = cliInPty(["db", "import", src, path.join(dir, "big.db")], { env });
  assert.equal(await imp.exited, 0, imp.output);
  assert.match(imp.output, /import \[[█░]+\] 100% 3(\.\d+)? MiB\/3(\.\d+)? MiB/);
  assert.match(imp.output, /imported .* \(1 tables; integrity_check ok\)/);
  const exp = cliInPty(["db", "export", path.join(dir, "big.db"), path.join(dir, "out.sqlite")], { env });
  assert.equal(await exp.exited, 0, exp.output);
  assert.match(exp.output, /export \[[█░]+\] 100%/);
});

test("db import and db export are quiet when their output is piped", () => {
  const dir = tempDir();
  const env = { ...process.env, SELKIE_HOME: path.join(dir, "home") };
  const src = bigPlain(dir);
  const imp = cli(["db", "import", src, path.join(dir, "big.db")], { env });
  assert.equal(imp.status, 0, imp.stderr);
  const exp = cli(["db", "export", path.join(dir, "big.db"), path.join(dir, "out.sqlite")], { env });
  assert.equal(exp.status, 0, exp.stderr);
  for (const r of [imp, exp]) {
    assert.doesNotMatch(r.stderr + r.stdout, /[█░\r]|\[\?25l|%/);
  }
  assert.match(exp.stderr, /^selkie: EXPORT: [^\n]*\n$/);
});
