import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, tempDir } from "../helpers.js";

const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");

/** The first ```sh block after `heading`. */
function shBlock(heading: string): string {
  const at = readme.indexOf(heading);
  assert.ok(at >= 0, `README has "${heading}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `a sh block follows "${heading}"`);
  return m[1]!;
}

test("the README's CLI examples, run from the repository root, create their files in a scratch folder and none in the repository", () => {
  const home = tempDir();
  const before = fs.readdirSync(ROOT).sort();
  // Each line runs in one bash, as a reader pastes them; a failing example (db upgrade of a missing file) does not stop the rest.
  const r = spawnSync("bash", ["-c", shBlock("## Using it") + "\necho SCRATCH=$PWD\n"], {
    cwd: ROOT,
    env: { ...process.env, SELKIE_HOME: path.join(home, "platform") },
    input: "",
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.match(r.stdout, /\[\{"x":1\},\s*\{"x":2\}\]/, r.stderr);
  const scratch = /SCRATCH=(.*)/.exec(r.stdout)![1]!;
  assert.notEqual(path.resolve(scratch), ROOT);
  assert.ok(fs.existsSync(path.join(scratch, "shop.db")), "the renamed database lives in the scratch folder");
  assert.deepEqual(fs.readdirSync(ROOT).sort(), before, "no file appeared in the repository root");
});

test("the README's serve, keygen and sign examples name paths outside the repository", () => {
  for (const m of readme.matchAll(/selkie (serve|token create) --dir (\S+)/g)) assert.match(m[2]!, /^\/tmp\//, m[0]);
  for (const m of readme.matchAll(/enclave keygen --out (\S+?)`/g)) assert.match(m[1]!, /^\/tmp\//, m[0]);
  const signs = [...readme.matchAll(/enclave sign [^`]*/g)].map((m) => m[0]);
  assert.ok(signs.length > 0);
  for (const s of signs) assert.match(s, /--out \/tmp\//, `${s}: without --out the signature lands in enclaves/`);
});

test(".gitignore covers what the README's examples create when run in the repository root", () => {
  const r = spawnSync("git", ["check-ignore", "--no-index", "app.db", "app.db.log", "shop.db", "plain.sqlite", "srv/x", "embed-data/x", "dev.pem", "enclaves/counter-as/counter.sig.json"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(r.stdout.trim().split("\n").length, 8, r.stdout + r.stderr);
});
