/**
 * UNTRUSTED (UI). A progress bar for long copies (db import/export, .backup, .import): drawn on
 * standard error only when it is a terminal and the work is large enough to wait for; otherwise
 * silent, so pipes and logs stay clean.
 */
import cliProgress from "cli-progress";
import { formatBytes } from "../../enclave/manifest.js";

/** Work below this many bytes finishes too fast for a bar to help. */
export const PROGRESS_MIN_BYTES = 1 << 20;

export interface ProgressBar {
  /** Bytes (or units) done of total; draws at most ten times a second, also during synchronous work. */
  update(done: number, total: number): void;
  /** Draws the final state and ends the line. */
  stop(): void;
}

const QUIET: ProgressBar = { update() {}, stop() {} };

export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (stream.isTTY !== true || process.env.TERM === "dumb") return QUIET;
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(done, total) {
      if (bar === undefined) {
        if (total < PROGRESS_MIN_BYTES) return;
        bar = new cliProgress.SingleBar(
          {
            stream,
            format: `${label} [{bar}] {percentage}% {doneText}/{totalText} {duration}s`,
            hideCursor: true,
            synchronousUpdate: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0, { doneText: formatBytes(0), totalText: formatBytes(total) });
      }
      bar.update(done, { doneText: formatBytes(done), totalText: formatBytes(total) });
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
