/** Shared test helpers: temp dirs, WAT -> wasm, running the CLI as a real child process. */
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = path.join(ROOT, "dist", "runtime", "host", "cli", "main.js");

export function tempDir(prefix = "selkie-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Crash tests: runs `node script ...args`, waits until its stdout matches `ready`, lets it work for
 * `killAfterMs`, kills it with SIGKILL and returns everything it printed (its acknowledgements).
 */
export async function runUntilKilled(script: string, args: string[], ready: RegExp, killAfterMs: number): Promise<string> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (ready.test(out)) {
        clearInterval(t);
        resolve();
      }
    }, 1);
    void exited.then((code) => {
      clearInterval(t);
      reject(new Error(`${path.basename(script)} exited (${code}) before it was ready: ${err}`));
    });
  });
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill("SIGKILL");
  await exited;
  return out;
}

type Wabt = { parseWat(name: string, text: string): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void } };
let wabt: Wabt | undefined;

/** Compiles WebAssembly text to bytes with wabt. */
export async function wat(text: string): Promise<Uint8Array> {
  if (!wabt) {
    const init = createRequire(import.meta.url)("wabt") as () => Promise<Wabt>;
    wabt = await init();
  }
  const m = wabt.parseWat("test.wat", text);
  try {
    return m.toBinary({}).buffer;
  } finally {
    m.destroy();
  }
}

/** Runs the selkie CLI; stdin optional. */
export function cli(args: string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    input: opts.input ?? "",
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, SELKIE_HOME: CLI_HOME, ...opts.env },
    encoding: "utf8",
    timeout: 60_000,
  });
}

/** A seeded PRNG (mulberry32) so random workloads replay exactly from their seed. */
export { rng } from "../tools/rng.js";

import { Platform } from "../runtime/platform/platform.js";
import { Database, type DatabaseOptions } from "../runtime/index.js";

/** One real platform per test process (its own temp dir), for in-process databases. */
export const testPlatform: Platform = await Platform.create(tempDir("selkie-platform-"));

/** A sealed database on the test platform (or a plain one with { plain: true }). */
export function openDb(file: string, opts: DatabaseOptions = {}): Database {
  return new Database(file, opts.plain ? opts : { platform: testPlatform, ...opts });
}

/** The platform directory CLI child processes of this test process use (SELKIE_HOME). */
export const CLI_HOME = tempDir("selkie-cli-home-");
