import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database, DatabaseLockedError } from "../../runtime/index.js";
import { CLI, tempDir, openDb } from "../helpers.js";

test("a second process cannot open a database another process holds", async () => {
  const file = path.join(tempDir(), "held.db");
  const db = openDb(file, { plain: true });
  db.exec("CREATE TABLE t(x)");
  const r = spawnSync(process.execPath, [CLI, "sql", file, "SELECT 1", "--plain"], { encoding: "utf8" });
  assert.equal(r.status, 4);
  assert.match(r.stderr, new RegExp(`DB_LOCKED_BY_PROCESS.*process ${process.pid}`));
  db.close();
  const ok = spawnSync(process.execPath, [CLI, "sql", file, "SELECT count(*) AS n FROM t", "--mode", "json", "--plain"], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout), [{ n: 0 }]);
});

test("a lock left by a killed process is taken over", async () => {
  const file = path.join(tempDir(), "stale.db");
  const child = spawn(process.execPath, [CLI, "sql", file, "--plain"], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.write("CREATE TABLE t(x);\nINSERT INTO t VALUES (42);\n");
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (fs.existsSync(`${file}.lock`) && fs.existsSync(file)) {
        clearInterval(poll);
        resolve();
      }
    }, 20);
  });
  await new Promise((r) => setTimeout(r, 300));
  child.kill("SIGKILL");
  await new Promise((r) => child.on("exit", r));
  assert.ok(fs.existsSync(`${file}.lock`), "the killed process left its lock file");
  const db = openDb(file, { plain: true });
  assert.ok(db.query("SELECT name FROM sqlite_schema").length <= 1);
  db.close();
  assert.ok(!fs.existsSync(`${file}.lock`));
});

test("a lock held by a live process that is not ours is refused with a typed error", () => {
  const file = path.join(tempDir(), "other.db");
  fs.writeFileSync(`${file}.lock`, `${process.ppid}\n`);
  assert.throws(() => openDb(file), (e: unknown) => e instanceof DatabaseLockedError && e.code === "DB_LOCKED_BY_PROCESS");
});
