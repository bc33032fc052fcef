import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, tempDir } from "../helpers.js";

test("selkie sql runs one statement and prints rows in each mode", () => {
  const file = path.join(tempDir(), "c.db");
  assert.equal(cli(["sql", file, "CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 'x,y'), (2, NULL)"]).status, 0);
  const table = cli(["sql", file, "SELECT a, b FROM t ORDER BY a"]);
  assert.equal(table.status, 0, table.stderr);
  assert.equal(table.stdout, "+---+-----+\n| a |  b  |\n+---+-----+\n| 1 | x,y |\n| 2 |     |\n+---+-----+\n".replace("|  b  |", "| b   |"));
  assert.deepEqual(JSON.parse(cli(["sql", file, "SELECT a, b FROM t ORDER BY a", "--mode", "json"]).stdout), [{ a: 1, b: "x,y" }, { a: 2, b: null }]);
  assert.equal(cli(["sql", file, "SELECT a, b FROM t ORDER BY a", "-m", "csv"]).stdout, 'a,b\r\n1,"x,y"\r\n2,\r\n');
  assert.equal(cli(["sql", file, "SELECT a FROM t ORDER BY a", "-m", "list", "--no-headers"]).stdout, "1\n2\n");
});

test("selkie sql exits 1 with SQLite's code on an SQL error, 2 on bad usage, 3 when the enclave cannot load", () => {
  const file = path.join(tempDir(), "e.db");
  const bad = cli(["sql", file, "SELEC 1"]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /Error \[SQLITE_ERROR\]: .*syntax error/);
  const usage = cli(["sql"]);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /missing required argument 'db'/);
  assert.equal(cli(["sql", file, "SELECT 1", "--mode", "yaml"]).status, 2);
  assert.equal(cli(["frobnicate"]).status, 2);
  const epc = cli(["sql", file, "SELECT 1", "--epc", "64KiB"]);
  assert.equal(epc.status, 3);
  assert.match(epc.stderr, /MANIFEST_EPC_TOO_SMALL.*raise epc/);
});

test("the shell reads statements from stdin, spanning lines, with dot-commands", () => {
  const file = path.join(tempDir(), "s.db");
  const script = [
    "CREATE TABLE seals(",
    "  name TEXT,",
    "  weight REAL);",
    "CREATE INDEX sw ON seals(weight);",
    "INSERT INTO seals VALUES ('Grey', 233.5), ('Harbour', 87);",
    ".tables",
    ".schema seals",
    ".mode json",
    "SELECT name FROM seals ORDER BY weight;",
    ".mode csv",
    "SELECT count(*) AS n FROM seals;",
    "SELEC nonsense;",
    ".bogus",
    ".quit",
    "SELECT 'never reached';",
  ].join("\n");
  const r = cli(["sql", file], { input: script });
  assert.equal(r.status, 1, "errors make the exit code 1");
  assert.match(r.stdout, /^seals\n/);
  assert.match(r.stdout, /CREATE TABLE seals\(\n  name TEXT,\n  weight REAL\);\nCREATE INDEX sw ON seals\(weight\);\n/);
  assert.match(r.stdout, /\[\{"name":"Harbour"\},\n\{"name":"Grey"\}\]\n/);
  assert.match(r.stdout, /n\r\n2\r\n/);
  assert.doesNotMatch(r.stdout, /never reached/);
  assert.match(r.stderr, /syntax error/);
  assert.match(r.stderr, /unknown command "\.bogus"/);
});

test("--help of the program and of every subcommand describes its options", () => {
  const top = cli(["--help"]);
  assert.equal(top.status, 0);
  for (const word of ["sql", "demo", "enclave", "Exit codes"]) assert.match(top.stdout, new RegExp(word));
  const sql = cli(["sql", "--help"]);
  assert.equal(sql.status, 0);
  for (const word of ["--mode", "--readonly", "--epc", ".tables", ".schema", ".mode", ".quit", "Exit codes"]) assert.ok(sql.stdout.includes(word), word);
  assert.equal(cli(["enclave", "inspect", "--help"]).status, 0);
  assert.equal(cli(["demo", "--help"]).status, 0);
});

test("selkie enclave inspect prints the SQLite enclave's identity and imports", () => {
  const r = cli(["enclave", "inspect", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.match(info.mrenclave, /^[0-9a-f]{64}$/);
  assert.ok(info.ocalls.every((o: string) => o.startsWith("selkie:")));
  assert.deepEqual(info.permissions, ["clock", "random"]);
});

test("a database in a folder that does not exist is a usage error naming the folder, not an internal error", () => {
  const missing = path.join(tempDir(), "no-such-folder");
  const r = cli(["sql", path.join(missing, "x.db"), "SELECT 1"]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /DB_DIR_MISSING/);
  assert.ok(r.stderr.includes(missing), r.stderr);
  assert.doesNotMatch(r.stderr, /Internal error|\n\s+at /);
  assert.equal(fs.existsSync(missing), false, "nothing was created");
});

test("selkie demo creates, writes and queries a database inside an enclave, then migrates one live and shows a fork and a rollback refused", () => {
  const dir = tempDir();
  const r = cli(["demo", "--db", path.join(dir, "demo.db")]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /mrenclave [0-9a-f]{64}/);
  assert.match(r.stdout, /SQLITE_CONSTRAINT_NOTNULL/);
  assert.match(r.stdout, /still 7 rows/);
  assert.match(r.stdout, /9007199254740993n/);
  assert.match(r.stdout, /Hibernated the enclave .* sealed into a [\d.]+ KiB image/);
  assert.match(r.stdout, /woke it where it was and answered 7 rows/);
  assert.match(r.stdout, /\d+ writes acknowledged, 0 failed; edge-b has every one of them/);
  assert.match(r.stdout, /Fork attempt.*\n\s+STORAGE_DELETED/);
  assert.match(r.stdout, /Rollback attempt.*\n\s+STORAGE_ROLLBACK/);
  assert.match(r.stdout, /removed .*selkie-demo-migration-/);
});

test("selkie db export writes a plain SQLite file the stock sqlite3 reads, and db import seals one back", () => {
  const dir = tempDir();
  const sealed = path.join(dir, "s.db");
  assert.equal(cli(["sql", sealed, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'), ('b'), ('c')"]).status, 0);
  const plain = path.join(dir, "plain.sqlite");
  const ex = cli(["db", "export", sealed, plain]);
  assert.equal(ex.status, 0, ex.stderr);
  assert.match(ex.stderr, /EXPORT: writing the plaintext/);
  const stock = spawnSync("sqlite3", [plain, "PRAGMA integrity_check; SELECT group_concat(v) FROM t;"], { encoding: "utf8" });
  assert.equal(stock.stdout, "ok\na,b,c\n");
  assert.notEqual(cli(["db", "export", sealed, plain]).status, 0, "refuses to overwrite");
  spawnSync("sqlite3", [plain, "INSERT INTO t(v) VALUES ('d')"]);
  const back = path.join(dir, "back.db");
  const im = cli(["db", "import", plain, back]);
  assert.equal(im.status, 0, im.stderr);
  assert.deepEqual(JSON.parse(cli(["sql", back, "SELECT group_concat(v) AS v FROM t", "-m", "json"]).stdout), [{ v: "a,b,c,d" }]);
  const garbage = path.join(dir, "garbage.sqlite");
  fs.writeFileSync(garbage, "this is not a database at all".repeat(100));
  const bad = cli(["db", "import", garbage, path.join(dir, "g.db")]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /SQLITE_NOTADB|not a database/);
  assert.ok(!fs.existsSync(path.join(dir, "g.db")), "nothing was created from a bad import");
});

test("selkie sql --epc 32MiB, then without --epc, then --epc 128MiB: the same database opens each time", () => {
  const file = path.join(tempDir(), "epc.db");
  const first = cli(["sql", file, "CREATE TABLE t(n); INSERT INTO t VALUES (1)", "--epc", "32MiB"]);
  assert.equal(first.status, 0, first.stderr);
  const dflt = cli(["sql", file, "INSERT INTO t VALUES (2)"]);
  assert.equal(dflt.status, 0, dflt.stderr);
  const big = cli(["sql", file, "SELECT count(*) AS n FROM t", "--epc", "128MiB", "--mode", "json"]);
  assert.equal(big.status, 0, big.stderr);
  assert.deepEqual(JSON.parse(big.stdout), [{ n: 2 }]);
});

test("selkie db rename moves a sealed database to a new name, logged; files renamed by hand are refused", () => {
  const dir = tempDir();
  const a = path.join(dir, "a.db");
  const b = path.join(dir, "b.db");
  assert.equal(cli(["sql", a, "CREATE TABLE t(v); INSERT INTO t VALUES ('kept')"]).status, 0);
  const r = cli(["db", "rename", a, b]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /RENAME: sealed database/);
  assert.ok(!fs.existsSync(a) && !fs.existsSync(`${a}.log`));
  assert.deepEqual(JSON.parse(cli(["sql", b, "SELECT v FROM t", "-m", "json"]).stdout), [{ v: "kept" }]);
  fs.renameSync(b, a);
  fs.renameSync(`${b}.log`, `${a}.log`);
  const wrong = cli(["sql", a, "SELECT v FROM t"]);
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /STORAGE_WRONG_NAME|created as b\.db/);
});
