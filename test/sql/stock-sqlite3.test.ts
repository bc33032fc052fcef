import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { tempDir, openDb } from "../helpers.js";

test("a plain-mode database written by the enclave opens in the stock sqlite3 shell and passes integrity_check", () => {
  const file = path.join(tempDir(), "stock.db");
  const db = openDb(file, { plain: true });
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB); CREATE INDEX tv ON t(v);");
  const ins = db.prepare("INSERT INTO t(v, b) VALUES (?, randomblob(100))");
  db.transaction(() => {
    for (let i = 0; i < 5000; i++) ins.run(`row ${i}`);
  })();
  db.run("DELETE FROM t WHERE id % 3 = 0");
  db.close();
  const r = spawnSync("sqlite3", [file, "PRAGMA integrity_check; SELECT count(*), max(v) FROM t;"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "ok\n3334|row 999");
});
