import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, tempDir } from "../helpers.js";

test("two builds of the SQLite enclave, one compiling sqlite3.c afresh, give identical bytes", { timeout: 180_000 }, () => {
  const out = tempDir("selkie-build-");
  const r = spawnSync(process.execPath, [path.join(ROOT, "tools", "build-wasm.mjs"), "--no-cache", "--out", out], { encoding: "utf8", cwd: ROOT });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const fresh = fs.readFileSync(path.join(out, "sqlite3.wasm"));
  const regular = fs.readFileSync(path.join(ROOT, "sqlite-wasm", "build", "sqlite3.wasm"));
  assert.ok(fresh.length > 500_000, "a real module was built");
  assert.ok(fresh.equals(regular), "byte-identical");
});
