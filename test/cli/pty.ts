/**
 * Runs the CLI on a pseudo-terminal, as a user at a terminal does: util-linux `script` allocates the
 * pty (node-pty needs a native build; `script` is on every Debian system, installed by tools/setup.sh).
 * Keystrokes are written one step at a time, waiting for the output to match before the next.
 */
import { spawn } from "node:child_process";
import { CLI } from "../helpers.js";

const plain = (s: string): string => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface PtySession {
  /** Everything the terminal showed so far, without ANSI control sequences (cursor moves, clears). */
  readonly output: string;
  /** Types `keys` (raw bytes: "\x03" is Ctrl-C, "\t" Tab, "\r" Enter). */
  type(keys: string): void;
  /** Resolves once the output after `from` matches `re`; rejects after `ms`. */
  waitFor(re: RegExp, from?: number, ms?: number): Promise<string>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

export function cliInPty(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; columns?: number } = {}): PtySession {
  const cmd = `stty cols ${opts.columns ?? 200} rows 50 2>/dev/null; exec ${quote(process.execPath)} ${quote(CLI)} ${args.map(quote).join(" ")}`;
  const child = spawn("script", ["-qefc", cmd, "/dev/null"], { cwd: opts.cwd, env: { TERM: "xterm", ...opts.env }, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => (out += d.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    get output() {
      return plain(out);
    },
    type(keys) {
      child.stdin.write(keys);
    },
    waitFor(re, from = 0, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = setInterval(() => {
          const m = re.exec(plain(out).slice(from));
          if (m) {
            clearInterval(tick);
            resolve(m[0]);
          } else if (Date.now() - t0 > ms) {
            clearInterval(tick);
            child.kill("SIGKILL");
            reject(new Error(`timed out waiting for ${re} in:\n${JSON.stringify(plain(out).slice(from))}`));
          }
        }, 20);
      });
    },
    exited,
  };
}
