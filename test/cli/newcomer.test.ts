// The traps a newcomer met on a clean clone (issue 15, items 4, 5, 8 and 10), driven as a user drives
// the CLI: real child processes, real files, real ports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { CLI, cli, tempDir } from "../helpers.js";

test("db export of a database that does not exist fails and creates nothing", () => {
  const dir = tempDir();
  const r = cli(["db", "export", path.join(dir, "nosuch.db"), path.join(dir, "out.sqlite")]);
  assert.equal(r.status, 6, r.stderr);
  assert.match(r.stderr, /STORAGE_MISSING_FILE.*nosuch\.db does not exist/);
  assert.doesNotMatch(r.stderr, /EXPORT:/, "the audit line is only for exports that happen");
  assert.deepEqual(fs.readdirSync(dir), []);
});

test("opening an existing database with a wrong SELKIE_HOME names the problem and creates no platform", () => {
  const dir = tempDir();
  const db = path.join(dir, "a.db");
  assert.equal(cli(["sql", db, "CREATE TABLE t(x)"]).status, 0);
  const wrongHome = path.join(dir, "wrong-home");
  for (const args of [["sql", db, "SELECT 1"], ["db", "export", db, path.join(dir, "o.sqlite")], ["db", "upgrade", db]]) {
    const r = cli(args, { env: { SELKIE_HOME: wrongHome } });
    assert.equal(r.status, 6, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /PLATFORM_NOT_FOUND/);
    assert.equal(fs.existsSync(wrongHome), false, `${args[0]} created a platform it could never use`);
  }
  // A new database still gets a platform created on first use.
  const fresh = cli(["sql", path.join(dir, "new.db"), "SELECT 1"], { env: { SELKIE_HOME: wrongHome } });
  assert.equal(fresh.status, 0, fresh.stderr);
  assert.match(fresh.stderr, /created a development platform/);
  // And with that (other) platform, the first database is refused as sealed elsewhere, without
  // advice about commands that do not exist.
  const other = cli(["sql", db, "SELECT 1"], { env: { SELKIE_HOME: wrongHome } });
  assert.equal(other.status, 6);
  assert.match(other.stderr, /STORAGE_WRONG_PLATFORM.*--platform DIR or \$SELKIE_HOME/);
  assert.doesNotMatch(other.stderr, /move it with a migration/);
});

test("a tampered block exits 6 whichever block it is (found at open or by a later read)", () => {
  const dir = tempDir();
  const db = path.join(dir, "t.db");
  assert.equal(cli(["sql", db, "CREATE TABLE t(x); INSERT INTO t VALUES (zeroblob(3000)), (zeroblob(3000)), (zeroblob(3000))"]).status, 0);
  const clean = fs.readFileSync(db);
  const SLOT = 4124; // runtime/storage/FORMAT.md "Slot file": iv || ciphertext || tag
  const refused: number[] = [];
  for (let slot = 0; slot * SLOT < clean.length; slot++) {
    const bad = Buffer.from(clean);
    bad[slot * SLOT + 100]! ^= 1;
    fs.writeFileSync(db, bad);
    const r = cli(["sql", db, "SELECT count(*) FROM t"]);
    // A superseded slot holds nothing the table points at: changing it changes nothing.
    if (r.status === 0) continue;
    assert.match(r.stderr, /STORAGE_TAMPERED/, r.stderr);
    refused.push(r.status ?? -1);
  }
  fs.writeFileSync(db, clean);
  assert.ok(refused.length >= 2, `only ${refused.length} live blocks found`);
  assert.deepEqual(refused, refused.map(() => 6));
});

test("a usage error exits 2 wherever the value is checked (init --epc 10 as --epc lots)", () => {
  const dir = tempDir();
  for (const epc of ["10", "lots", "600GiB"]) {
    const r = cli(["init", "--dir", path.join(dir, "p"), "--epc", epc]);
    assert.equal(r.status, 2, `--epc ${epc}: ${r.stderr}`);
  }
  assert.equal(fs.existsSync(path.join(dir, "p")), false);
});

test("-V names Selkie's own version, and piping into head ends quietly", () => {
  const v = cli(["-V"]);
  const pkg = JSON.parse(fs.readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  assert.match(v.stdout, new RegExp(`^selkie ${pkg.version.replace(/\./g, "\\.")} `));
  const dir = tempDir();
  const r = spawnSync(
    "bash",
    ["-c", `"${process.execPath}" "${CLI}" sql "${path.join(dir, "p.db")}" "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT 200000) SELECT i, 'padding padding padding' FROM c" | head -1; echo "status=\${PIPESTATUS[0]}"`],
    { encoding: "utf8", env: { ...process.env, SELKIE_HOME: path.join(dir, "home") } },
  );
  assert.equal(r.stderr.replace(/^selkie: created a development platform.*\n/m, ""), "", "nothing else on stderr: no EPIPE trace, no stack overflow on 200,000 rows");
  assert.match(r.stdout, /status=0/);
});

async function freePortHeld(): Promise<{ port: number; close: () => void }> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  return { port: (s.address() as net.AddressInfo).port, close: () => s.close() };
}

async function startServe(dir: string): Promise<{ child: ReturnType<typeof spawn>; url: string }> {
  const child = spawn(process.execPath, [CLI, "serve", "--dir", dir, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  return { child, url };
}

test("serve on a busy port exits 2 with a clear message and leaves no unseen admin token", async () => {
  const held = await freePortHeld();
  try {
    const dir = tempDir();
    const r = cli(["serve", "--dir", dir, "--port", String(held.port)]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /SERVE_LISTEN.*in use.*another --port/);
    assert.doesNotMatch(r.stderr, /Internal error|at .*node:/);
    assert.equal(fs.existsSync(path.join(dir, "tokens.json")), false);
    assert.equal(fs.existsSync(path.join(dir, "serve.lock")), false);
  } finally {
    held.close();
  }
});

test("a second serve on a folder already served is refused; a lock left by a killed server is taken over", async () => {
  const dir = tempDir();
  const first = await startServe(dir);
  try {
    const second = cli(["serve", "--dir", dir, "--port", "0"]);
    assert.equal(second.status, 2, second.stderr);
    assert.match(second.stderr, new RegExp(`SERVE_DIR_IN_USE.*pid ${first.child.pid}`));
  } finally {
    first.child.kill("SIGKILL");
    await new Promise((r) => first.child.once("exit", r));
  }
  assert.equal(fs.existsSync(path.join(dir, "serve.lock")), true, "kill -9 leaves its lock");
  const again = await startServe(dir);
  again.child.kill("SIGTERM");
  await new Promise((r) => again.child.once("exit", r));
  assert.equal(fs.existsSync(path.join(dir, "serve.lock")), false, "a clean stop removes the lock");
});
