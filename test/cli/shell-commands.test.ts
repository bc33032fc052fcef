import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import stringWidth from "string-width";
import { cli, tempDir } from "../helpers.js";
import { DOT_COMMANDS } from "../../runtime/host/cli/shell-help.js";

const sqlite3 = (args: string[], input = "") => spawnSync("sqlite3", args, { input, encoding: "utf8" });

function seeded(): { dir: string; file: string } {
  const dir = tempDir();
  const file = path.join(dir, "s.db");
  const r = cli(["sql", file, "CREATE TABLE t(a INTEGER PRIMARY KEY AUTOINCREMENT, b TEXT, r REAL, z BLOB); CREATE INDEX tb ON t(b); CREATE VIEW v AS SELECT a FROM t; INSERT INTO t(b, r, z) VALUES ('héllo\nwörld', 1.0, x'00ff'), ('漢字😀', 0.1 + 0.2, NULL), ('it''s', 1e20, NULL), (NULL, -2.5, x'')"]);
  assert.equal(r.status, 0, r.stderr);
  return { dir, file };
}

test(".dump of a sealed database loads into sqlite3 with the same rows and storage classes", () => {
  const { dir, file } = seeded();
  const dump = cli(["sql", file, ".dump"]);
  assert.equal(dump.status, 0, dump.stderr);
  assert.match(dump.stdout, /^PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t/);
  assert.match(dump.stdout, /CREATE INDEX tb ON t\(b\);\nCREATE VIEW v AS SELECT a FROM t;\nCOMMIT;\n$/);
  const plain = path.join(dir, "plain.sqlite");
  const load = sqlite3([plain], dump.stdout);
  assert.equal(load.status, 0, load.stderr);
  // printf, not quote(r): the enclave's SQLite is newer than Debian's and quote() of a REAL changed between them.
  const q = "SELECT a, quote(b), typeof(r), printf('%!.17g', r), quote(z) FROM t ORDER BY a; SELECT seq FROM sqlite_sequence;";
  const theirs = sqlite3([plain, q]).stdout;
  const ours = cli(["sql", file, q, "-m", "list", "--no-headers"]).stdout;
  assert.equal(ours, theirs);
  assert.match(theirs, /^1\|'héllo\nwörld'\|real\|1\.0\|X'00FF'\n/);
});

test("REALs print as sqlite3 prints them: 1.0, 0.3, 1.0e+20, 1.5e-07", () => {
  const q = "SELECT 1.0, 0.1 + 0.2, 1e20, 1.5e-7, 2.50, -0.0001, 123456789012345.0, 1/3.0, 7";
  const theirs = sqlite3([":memory:", q]).stdout;
  const ours = cli(["sql", path.join(tempDir(), "r.db"), q, "-m", "list", "--no-headers"]);
  assert.equal(ours.stdout, theirs, ours.stderr);
  assert.equal(theirs, "1.0|0.3|1.0e+20|1.5e-07|2.5|-0.0001|123456789012345.0|0.333333333333333|7\n");
});

test("box, column and markdown modes align CJK, emoji and multi-line values by terminal width", () => {
  const { file } = seeded();
  for (const mode of ["box", "markdown", "column", "table"]) {
    const r = cli(["sql", file, "SELECT a, b, r FROM t ORDER BY a", "-m", mode]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.replace(/\n$/, "").split("\n");
    const widths = new Set(lines.map((l) => stringWidth(l)));
    assert.equal(widths.size, 1, `${mode}: every line is as wide on screen:\n${r.stdout}`);
    assert.ok(lines.some((l) => l.includes("漢字😀")) && lines.some((l) => /\bwörld\b/.test(l)), r.stdout);
  }
  const box = cli(["sql", file, "SELECT a, b FROM t WHERE a <= 2 ORDER BY a", "-m", "box"]).stdout;
  assert.equal(box, ["┌───┬────────┐", "│ a │   b    │", "├───┼────────┤", "│ 1 │ héllo  │", "│   │ wörld  │", "│ 2 │ 漢字😀 │", "└───┴────────┘", ""].join("\n"));
});

test("insert and quote modes write SQL literals that keep each value's storage class", () => {
  const { file } = seeded();
  const r = cli(["sql", file], { input: ".mode insert seals\nSELECT b, r, z FROM t WHERE a >= 3 ORDER BY a;\n.mode quote\nSELECT r, z FROM t WHERE a = 1;\n" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "INSERT INTO seals(b,r,z) VALUES('it''s',100000000000000000000.0,NULL);\nINSERT INTO seals(b,r,z) VALUES(NULL,-2.5,X'');\n'r','z'\n1.0,X'00ff'\n");
});

test("settings: .mode and .headers without an argument show them; .show, .nullvalue, .changes, .timer; .bail stops at the first error", () => {
  const { file } = seeded();
  const script = [".mode", ".headers", ".mode list", ".headers off", ".nullvalue NULL", ".show", "SELECT b FROM t WHERE a = 4;", ".changes on", "UPDATE t SET b = 'x' WHERE a > 2;", ".changes off", ".timer on", "SELECT 1;", ".timer off", ".databases", ".bail on", "SELECT nosuch;", "SELECT 'after bail';"].join("\n");
  const r = cli(["sql", file], { input: script });
  assert.equal(r.status, 1);
  const out = r.stdout;
  assert.match(out, /^current output mode: table\nheaders: on\n/);
  assert.match(out, / {2}headers: off\n {5}mode: list\nnullvalue: "NULL"\n {3}output: stdout\n/);
  assert.match(out, /\nNULL\nchanges: 2 {3}total_changes: 2\n1\nRun Time: real \d+\.\d{3} user \d+\.\d{6} sys \d+\.\d{6}\n/);
  assert.ok(out.includes(`main: ${fs.realpathSync(file)} r/w\n`), out);
  assert.doesNotMatch(out, /after bail/);
  assert.match(r.stderr, /no such column: nosuch/);
});

test(".once sends one command's output to a file, .output all of it until .output alone", () => {
  const { dir, file } = seeded();
  const once = path.join(dir, "once.txt");
  const all = path.join(dir, "all.txt");
  const r = cli(["sql", file, "-m", "list", "--no-headers"], { input: `.once ${once}\nSELECT 1;\nSELECT 2;\n.output ${all}\nSELECT 3;\n.tables\n.output\nSELECT 4;\n` });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "2\n4\n");
  assert.equal(fs.readFileSync(once, "utf8"), "1\n");
  assert.equal(fs.readFileSync(all, "utf8"), "3\nt  v\n");
});

test(".import creates a table from a CSV header row, and appends to an existing one with --skip 1", () => {
  const { dir, file } = seeded();
  const csv = path.join(dir, "in.csv");
  fs.writeFileSync(csv, 'name,note\r\nGrey,"big, grey"\r\nHarbour,"says ""hi""\nand more"\r\nRinged\r\n');
  const r = cli(["sql", file, "-m", "quote", "--no-headers"], { input: `.import ${csv} seals\n.import --skip 1 ${csv} seals\nSELECT * FROM seals ORDER BY rowid;\n.schema seals\n` });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    "'Grey','big, grey'\n'Harbour','says \"hi\"\nand more'\n'Ringed',NULL\n'Grey','big, grey'\n'Harbour','says \"hi\"\nand more'\n'Ringed',NULL\nCREATE TABLE seals(name TEXT, note TEXT);\n",
  );
  assert.match(r.stderr, /in\.csv:5: expected 2 columns but found 1 - filling the rest with NULL/);
});

test(".backup writes a sealed copy that opens on its own, and .open switches to it", () => {
  const { dir, file } = seeded();
  const copy = path.join(dir, "copy.db");
  const r = cli(["sql", file, "-m", "list", "--no-headers"], { input: `.backup ${copy}\n.open ${copy}\nSELECT count(*) FROM t;\n.databases\n` });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `4\nmain: ${fs.realpathSync(copy)} r/w\n`);
  assert.ok(!fs.readFileSync(copy).includes("wörld"), "the copy holds only ciphertext");
  assert.equal(cli(["sql", copy, "SELECT b FROM t WHERE a = 3", "-m", "list", "--no-headers"]).stdout, "it's\n");
  const again = cli(["sql", file, `.backup ${copy}`]);
  assert.notEqual(again.status, 0);
  assert.match(again.stderr, /DEST_EXISTS.*choose a new file name/);
});

test("a parse error shows the statement and a caret under the token, where sqlite3 puts it", () => {
  const { dir, file } = seeded();
  const plain = path.join(dir, "p.sqlite");
  sqlite3([plain, "CREATE TABLE t(a, b)"]);
  for (const q of ["SELEC 1", "SELECT * FROM t WHERE a = 'abc' AND nosuchcol = 1"]) {
    const theirs = sqlite3([plain, q]).stderr.split("\n").slice(1).join("\n");
    const ours = cli(["sql", file, q]);
    assert.equal(ours.status, 1);
    assert.ok(ours.stderr.endsWith(theirs + "\n") || ours.stderr.endsWith(theirs), `ours:\n${ours.stderr}\nsqlite3's:\n${theirs}`);
    assert.match(ours.stderr, /error here/);
  }
});

test(".help lists every dot-command, .help CMD one, and each listed command is known", () => {
  const { file } = seeded();
  const help = cli(["sql", file, ".help"]);
  assert.equal(help.status, 0);
  for (const c of DOT_COMMANDS) assert.ok(help.stdout.includes(c.name + " ") || help.stdout.includes(c.name + "\n"), c.name);
  assert.match(cli(["sql", file, ".help dump"]).stdout, /^\.dump \?TABLE\? +write the database/);
  const input = DOT_COMMANDS.filter((c) => !["open", "once", "output", "backup", "import", "read", "quit", "exit"].includes(c.name.slice(1))).map((c) => c.name + (c.args.startsWith("on|off") ? " off" : c.name === ".nullvalue" ? " -" : "")).join("\n");
  const all = cli(["sql", file], { input });
  assert.doesNotMatch(all.stderr, /unknown command/);
  assert.equal(all.status, 0, all.stderr);
});

test("a dot-command works as the one-shot argument, as in sqlite3", () => {
  const { file } = seeded();
  const r = cli(["sql", file, ".tables"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "t  v\n");
  assert.equal(cli(["sql", file, ".indexes t"]).stdout, "tb\n");
});
