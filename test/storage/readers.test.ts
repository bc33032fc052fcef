/**
 * Read-only opens beside a writer process (runtime/storage/FORMAT.md "Readers beside a writer"):
 * real child processes, a real platform, real files. The writer moves money between accounts so
 * that half a commit would show (test/storage/fixtures/ledger-writer.ts); the reader checks every
 * snapshot it reads (ledger-reader.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database } from "../../runtime/index.js";
import { Platform } from "../../runtime/platform/platform.js";
import { CLI, ROOT, tempDir } from "../helpers.js";

const WRITER = path.join(ROOT, "dist", "test", "storage", "fixtures", "ledger-writer.js");
const READER = path.join(ROOT, "dist", "test", "storage", "fixtures", "ledger-reader.js");

interface Child {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function start(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return { proc, out: () => out, exited };
}

async function until(c: Child, re: RegExp, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!re.test(c.out())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${re}; output:\n${c.out().slice(-2000)}`);
    if (c.proc.exitCode !== null) throw new Error(`the child exited (${c.proc.exitCode}) before ${re}:\n${c.out().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const acks = (out: string): number[] => [...out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
const reads = (out: string): number[] => [...out.matchAll(/^read (\d+)$/gm)].map((m) => Number(m[1]));

async function ledger(): Promise<{ platformDir: string; file: string }> {
  const platformDir = tempDir("selkie-readers-platform-");
  (await Platform.create(platformDir)).close();
  const file = path.join(tempDir("selkie-readers-"), "ledger.db");
  const w = start(WRITER, [platformDir, file, "3"]);
  assert.equal(await w.exited, 0, w.out());
  return { platformDir, file };
}

function hashes(paths: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of paths) {
    for (const f of fs.statSync(p).isDirectory() ? fs.readdirSync(p).map((n) => path.join(p, n)) : [p]) {
      const st = fs.statSync(f);
      out[f] = `${createHash("sha256").update(fs.readFileSync(f)).digest("hex")} ${st.mtimeMs}`;
    }
  }
  return out;
}

test("a reader process reads whole, increasing committed snapshots while a writer process commits in a loop", async () => {
  const { platformDir, file } = await ledger();
  const w = start(WRITER, [platformDir, file]);
  await until(w, /^ack 10$/m);
  const r = start(READER, [platformDir, file, "3000"]);
  assert.equal(await r.exited, 0, r.out());
  w.proc.kill("SIGTERM");
  await w.exited;
  const seen = reads(r.out());
  assert.doesNotMatch(r.out(), /^bad /m, "no snapshot was half a commit");
  assert.match(r.out(), /^done$/m);
  assert.ok(seen.length >= 10, `the reader followed the writer through ${seen.length} commits`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, "commits only move forward");
  assert.ok(seen[seen.length - 1]! <= Math.max(...acks(w.out())) + 1, "nothing past the writer's last commit in flight");
  assert.ok(!fs.existsSync(`${file}.lock`) || fs.readFileSync(`${file}.lock`, "utf8").trim() !== String(r.proc.pid), "the reader never took the process lock");
});

test("a writer killed with SIGKILL in the middle of commits leaves a running reader and a new reader fine", async () => {
  const { platformDir, file } = await ledger();
  const w = start(WRITER, [platformDir, file]);
  await until(w, /^ack 10$/m);
  const r = start(READER, [platformDir, file, "2500"]);
  await until(r, /^ready$/m);
  await new Promise((res) => setTimeout(res, 700));
  w.proc.kill("SIGKILL");
  await w.exited;
  const lastAck = Math.max(...acks(w.out()));
  assert.equal(await r.exited, 0, r.out());
  assert.doesNotMatch(r.out(), /^bad |^error /m);
  const seen = reads(r.out());
  const final = seen[seen.length - 1]!;
  assert.ok(final === lastAck || final === lastAck + 1, `after the kill the reader sees the last acknowledged commit ${lastAck} (or the one being counted), saw ${final}`);
  const again = start(READER, [platformDir, file, "200"]);
  assert.equal(await again.exited, 0, again.out());
  const n = reads(again.out())[0]!;
  assert.ok(n === final, `a new reader opens at the same counted commit (${n} vs ${final})`);
  // The writer's lock is stale; the next writer takes it over and goes on from the counted commit,
  // or from the one after it when the kill fell between a record's fsync and its counter step (a
  // writable open counts that complete record; a reader never applies it: FORMAT.md "Open").
  const next = start(WRITER, [platformDir, file, "2"]);
  assert.equal(await next.exited, 0, next.out());
  const [first] = acks(next.out());
  assert.ok(first === final + 1 || first === final + 2, `the next writer commits ${first} after the counted ${final}`);
});

test("a rolled-back copy of the files is refused to a reader as it is to a writer", async () => {
  const { platformDir, file } = await ledger();
  const copy = tempDir("selkie-readers-copy-");
  for (const f of [file, `${file}.log`]) fs.copyFileSync(f, path.join(copy, path.basename(f)));
  const w = start(WRITER, [platformDir, file, "2"]);
  assert.equal(await w.exited, 0, w.out());
  for (const f of [file, `${file}.log`]) fs.copyFileSync(path.join(copy, path.basename(f)), f);
  const r = start(READER, [platformDir, file, "100"]);
  assert.equal(await r.exited, 3);
  assert.match(r.out(), /^error STORAGE_ROLLBACK$/m);
  const cmd = spawnSync(process.execPath, [CLI, "sql", file, "SELECT n FROM meta", "--readonly", "--platform", platformDir], { encoding: "utf8" });
  assert.notEqual(cmd.status, 0);
  assert.match(cmd.stderr, /STORAGE_ROLLBACK/);
});

test("a read-only open writes nothing: no file, counter or lock changes", async () => {
  const { platformDir, file } = await ledger();
  const watched = [file, `${file}.log`, path.join(platformDir, "counters"), path.dirname(file)];
  const before = hashes(watched);
  const r = start(READER, [platformDir, file, "300"]);
  assert.equal(await r.exited, 0, r.out());
  assert.deepEqual(reads(r.out()), [3]);
  assert.deepEqual(hashes(watched), before, "every file of the database, its folder and the counter store are as they were");
});

test("selkie sql --readonly and selkie db export read a database while another process writes it", async () => {
  const { platformDir, file } = await ledger();
  const w = start(WRITER, [platformDir, file]);
  await until(w, /^ack 10$/m);
  try {
    const q = spawnSync(process.execPath, [CLI, "sql", file, "SELECT (SELECT sum(bal) FROM acct) AS total, n FROM meta", "--readonly", "--mode", "json", "--platform", platformDir], { encoding: "utf8" });
    assert.equal(q.status, 0, q.stderr);
    const [row] = JSON.parse(q.stdout) as Array<{ total: number; n: number }>;
    assert.equal(row!.total, 1000);
    assert.ok(row!.n >= 10);
    const plain = path.join(tempDir(), "copy.sqlite");
    const x = spawnSync(process.execPath, [CLI, "db", "export", file, plain, "--platform", platformDir], { encoding: "utf8" });
    assert.equal(x.status, 0, x.stderr);
    const check = spawnSync("sqlite3", [plain, "SELECT sum(bal) FROM acct"], { encoding: "utf8" });
    assert.equal(check.stdout.trim(), "1000");
    const plainWrite = spawnSync(process.execPath, [CLI, "sql", file, "SELECT 1", "--platform", platformDir], { encoding: "utf8" });
    assert.equal(plainWrite.status, 4, "a second writer is still refused");
    assert.match(plainWrite.stderr, /DB_LOCKED_BY_PROCESS/);
  } finally {
    w.proc.kill("SIGTERM");
    await w.exited;
  }
});

test("two Platforms opened on one folder in one process each serve a database that writes (issue 15 item 2)", async () => {
  const platformDir = tempDir("selkie-readers-platform-");
  (await Platform.create(platformDir)).close();
  const dir = tempDir("selkie-readers-");
  const a = await Platform.open(platformDir);
  const b = await Platform.open(platformDir);
  const one = new Database(path.join(dir, "one.db"), { platform: a });
  const two = new Database(path.join(dir, "two.db"), { platform: b });
  try {
    one.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    two.exec("CREATE TABLE t(x); INSERT INTO t VALUES (2)");
    one.close();
    a.close();
    two.exec("INSERT INTO t VALUES (3)"); // b still holds the shared counter store
    assert.deepEqual(two.query("SELECT sum(x) AS s FROM t"), [{ s: 5 }]);
  } finally {
    if (one.open) one.close();
    two.close();
    a.close();
    b.close();
  }
  assert.ok(!fs.existsSync(path.join(platformDir, "counters", "lock")), "the counter store's lock is released with the last Platform");
  const again = await Platform.open(platformDir);
  const reopened = new Database(path.join(dir, "one.db"), { platform: again });
  assert.deepEqual(reopened.query("SELECT x FROM t"), [{ x: 1 }]);
  reopened.close();
  again.close();
});
