/**
 * The kill -9 trial used by the counter crash test and the soak script: run the counter child, kill it
 * with SIGKILL after `delayMs`, and report the last value it acknowledged (its last complete stdout line).
 */
import { spawn } from "node:child_process";
import { fixture } from "./helpers.js";

export interface TrialResult {
  lastAcked: number | undefined;
  lines: number;
  exitSignal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * `delayMs` counts from the first acknowledged value when `afterFirstAck`, else from spawn (which can
 * kill the child during start-up or while it opens the store).
 */
export function killTrial(dir: string, counterId: string, compactEvery: number, delayMs: number, afterFirstAck = true): Promise<TrialResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture("counter-child.js"), dir, counterId, String(compactEvery)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      timer ??= setTimeout(() => child.kill("SIGKILL"), delayMs);
    };
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      arm();
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    if (!afterFirstAck) arm();
    child.on("error", reject);
    // 'close' fires after the pipes drained: every line the child wrote before dying is in `out`.
    child.on("close", (_code, signal) => {
      clearTimeout(timer);
      const complete = out.slice(0, out.lastIndexOf("\n") + 1).split("\n").filter((l) => l !== "");
      const last = complete.at(-1);
      resolve({ lastAcked: last === undefined ? undefined : Number(last), lines: complete.length, exitSignal: signal, stderr: err });
    });
  });
}
