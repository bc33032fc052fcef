/**
 * Every code block of README.md runs as written (issue 15 item 2), in a scratch folder with its own
 * SELKIE_HOME:
 * - js/ts blocks run as ES modules (TypeScript is transpiled, nothing else changed); `import ... from
 *   "selkie"` resolves to this package. Blocks that talk to a server get one: the README's port is
 *   replaced by a free one and TOKEN is an admin token of that server, with the database `app` and the
 *   table `notes` the blocks before them create.
 * - sh blocks run in bash from the repository's root (as the README says), `npx selkie` being this
 *   checkout's CLI; a `selkie serve` line is started in the background on a free port (and a fresh
 *   folder for its /tmp one) and the block continues once it listens, with $TOKEN set to the admin
 *   token it printed.
 * Not run: blocks matched by SKIP_BLOCK and plain ``` blocks (file trees and tables, not code). Lines
 * listed in SKIP need state the README says they need (e.g. a database in the old store format); each
 * says why.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import ts from "typescript";
import { CLI, ROOT, tempDir } from "../helpers.js";

const SKIP: Record<string, string> = {
  "selkie db upgrade old.db": "needs a database of store format 1 (test/sql/sealing-policy.test.ts upgrades one)",
};

/** Blocks not run, and why. */
const SKIP_BLOCK: [RegExp, string][] = [
  [/^npm (run demo|test)\b/m, "the two set-up commands: this suite is one of them"],
  [/npm run fuzz|SELKIE_MODEL_/, "fuzzing and model runs of minutes to hours (test/fuzz/smoke.test.ts runs every target briefly)"],
  [/^selkie migrate /m, "needs two servers on two platforms of one fleet (test/migration/migrate-cli.test.ts runs the same command)"],
];

interface Block {
  lang: string;
  code: string;
  line: number;
}

function blocks(): Block[] {
  const text = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const out: Block[] = [];
  const re = /^```(\w*)\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ lang: m[1]!, code: m[2]!, line: text.slice(0, m.index).split("\n").length });
  return out;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A real server for blocks that need one, with `app` and its `notes` table. */
async function startServer(home: string): Promise<{ url: string; port: number; token: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = tempDir("selkie-readme-srv-");
  const child = spawn(process.execPath, [CLI, "serve", "--dir", dir, "--port", String(port)], { env: { ...process.env, SELKIE_HOME: home }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const token = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /admin token[^\n]*\n\s+(\S+)/.exec(err);
      if (m && /listening on/.test(err)) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const post = (p: string, body: unknown) => fetch(url + p, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal((await post("/v1/databases", { name: "app" })).status, 201);
  const r = await post("/db/app/v2/pipeline", { requests: [{ type: "execute", stmt: { sql: "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, tags BLOB)" } }, { type: "close" }] });
  assert.equal(r.status, 200);
  return {
    url,
    port,
    token,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((res) => child.once("exit", res));
    },
  };
}

const needsServer = (code: string) => /127\.0\.0\.1:7700|\bTOKEN\b/.test(code);

test("every js and ts block of the README runs as written", { timeout: 240_000 }, async () => {
  const home = tempDir("selkie-readme-home-");
  const cwd = tempDir("selkie-readme-cwd-");
  // Modules live inside the package (so `import "selkie"` resolves to it, as in an app that installed
  // it); they run with the scratch folder as their working directory.
  const modDir = path.join(ROOT, "tmp", `readme-${process.pid}`);
  fs.mkdirSync(modDir, { recursive: true });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const code = blocks().filter((b) => b.lang === "js" || b.lang === "ts");
    assert.ok(code.length >= 4, "the README's library examples were found");
    for (const b of code) {
      let src = b.lang === "ts" ? ts.transpileModule(b.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText : b.code;
      if (needsServer(src)) {
        server ??= await startServer(home);
        src = `const TOKEN = ${JSON.stringify(server.token)};\n` + src.replaceAll("127.0.0.1:7700", `127.0.0.1:${server.port}`);
      }
      const file = path.join(modDir, `block-${b.line}.mjs`);
      fs.writeFileSync(file, src);
      const r = spawnSync(process.execPath, [file], { cwd, encoding: "utf8", timeout: 60_000, env: { ...process.env, SELKIE_HOME: home } });
      assert.equal(r.status, 0, `README.md line ${b.line} (${b.lang}) failed:\n${b.code}\n--- stderr:\n${r.stderr}`);
    }
  } finally {
    await server?.stop();
    fs.rmSync(modDir, { recursive: true, force: true });
  }
});

test("every sh block of the README runs as written", { timeout: 240_000 }, async () => {
  const home = tempDir("selkie-readme-home-");
  const sh = blocks().filter((b) => b.lang === "sh" && !SKIP_BLOCK.some(([re]) => re.test(b.code)));
  assert.ok(sh.length >= 2);
  for (const b of sh) {
    const port = await freePort();
    const scratch = tempDir("selkie-readme-srv-");
    const srvDir = path.join(scratch, "srv");
    const log = path.join(scratch, "serve.log");
    const lines: string[] = [`set -euo pipefail`, `selkie() { "${process.execPath}" "${CLI}" "$@"; }`, `trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT`];
    for (const raw of b.code.split("\n")) {
      const line = raw.replace(/\s+#.*$/, "").trim();
      if (line === "" || line.startsWith("#")) continue;
      const cmd = line
        .replaceAll("npx selkie", "selkie")
        .replaceAll(":7700", `:${port}`)
        .replace(/--port 7700\b/, `--port ${port}`)
        .replaceAll("/tmp/selkie-srv", srvDir);
      if (SKIP[cmd] !== undefined) continue;
      if (/^selkie serve\b/.test(cmd)) {
        lines.push(
          // The server itself is the background job (not a bash function's subshell), so the EXIT
          // trap's kill reaches it.
          `${cmd.replace(/^selkie /, `"${process.execPath}" "${CLI}" `)} 2> "${log}" &`,
          `for i in $(seq 1 200); do grep -q "listening on" "${log}" 2>/dev/null && break; sleep 0.1; done`,
          `TOKEN=$(grep -A1 "admin token" "${log}" | tail -1 | tr -d ' ')`,
        );
      } else if (/^selkie sql \S+$/.test(cmd)) {
        lines.push(`${cmd} < /dev/null`); // the interactive shell, fed an empty input
      } else {
        lines.push(cmd);
      }
    }
    const r = spawnSync("bash", ["-c", lines.join("\n")], { cwd: ROOT, encoding: "utf8", timeout: 120_000, env: { ...process.env, SELKIE_HOME: home } });
    assert.equal(r.status, 0, `README.md line ${b.line} (sh) failed:\n${b.code}\n--- stderr:\n${r.stderr}`);
  }
});
