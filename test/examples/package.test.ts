/**
 * Selkie as a dependency (issue 15 item 1): `npm pack` the repository, install the tarball into a
 * scratch project outside it, and use it there as a user would: the library opens a sealed database
 * (the enclave module must be in the package; no clang on the consumer's side), and the installed
 * `selkie` bin serves it. The tarball must not carry the tests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, tempDir } from "../helpers.js";

const npm = (args: string[], cwd: string) =>
  spawnSync("npm", args, { cwd, encoding: "utf8", timeout: 180_000, env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" } });

test("the packed tarball installs into another project, opens a sealed database and serves it", { timeout: 300_000 }, async () => {
  const work = tempDir("selkie-pack-");
  // --ignore-scripts: the suite runs after the build; prepack would rebuild what is already built.
  const pack = npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], ROOT);
  assert.equal(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }];
  const files = info.files.map((f) => f.path);
  assert.ok(files.includes("sqlite-wasm/build/sqlite3.wasm"), "the SQLite enclave module is in the package");
  assert.ok(files.includes("enclaves/sqlite/manifest.json"));
  assert.ok(files.includes("dist/runtime/index.js") && files.includes("dist/runtime/index.d.ts"));
  assert.deepEqual(files.filter((f) => f.startsWith("dist/test") || f.startsWith("dist/tools") || f.startsWith("test/")), [], "no tests in the package");

  const app = path.join(work, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", type: "module", private: true }));
  const install = npm(["install", "--prefer-offline", "--no-save", path.join(work, info.filename)], app);
  assert.equal(install.status, 0, install.stderr);

  fs.writeFileSync(
    path.join(app, "use.mjs"),
    `import { Database, Platform } from "selkie";
const platform = await Platform.create(process.argv[2]);
const db = new Database("shop.db", { platform });
db.exec("CREATE TABLE items(name TEXT); INSERT INTO items VALUES ('seal'), ('selkie')");
db.close();
const again = new Database("shop.db", { platform });
console.log(JSON.stringify(again.query("SELECT name FROM items ORDER BY name")));
again.close();
platform.close();
`,
  );
  const use = spawnSync(process.execPath, ["use.mjs", path.join(work, "platform")], { cwd: app, encoding: "utf8", timeout: 60_000 });
  assert.equal(use.status, 0, use.stderr);
  assert.deepEqual(JSON.parse(use.stdout), [{ name: "seal" }, { name: "selkie" }]);
  assert.equal(fs.readFileSync(path.join(app, "shop.db")).includes("selkie"), false, "the file on disk is sealed");

  const bin = path.join(app, "node_modules", ".bin", "selkie");
  const serve = spawn(bin, ["serve", "--dir", path.join(work, "srv"), "--port", "0"], { cwd: app, stdio: ["ignore", "ignore", "pipe"] });
  try {
    let err = "";
    const url = await new Promise<string>((resolve, reject) => {
      serve.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
        const m = /listening on (http:\/\/[^\s]+)/.exec(err);
        if (m) resolve(m[1]!);
      });
      serve.once("exit", (code) => reject(new Error(`installed selkie serve exited ${code}: ${err}`)));
    });
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
  } finally {
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("exit", r));
  }
});
