/**
 * UNTRUSTED. One `selkie serve` per data folder: a second server on the same folder would open the
 * same databases underneath the first and then fail every request, so it is refused at start.
 * The lock is `<dir>/serve.lock` holding the owner's pid (runtime/host/process-lock.ts: a lock left
 * by a process that died, kill -9 included, is taken over).
 */
import * as path from "node:path";
import { acquireProcessLock, DatabaseLockedError, releaseProcessLock } from "../process-lock.js";
import { UsageError } from "../../errors.js";

const lockBase = (dir: string): string => path.join(dir, "serve");

export function acquireServeLock(dir: string): void {
  try {
    acquireProcessLock(lockBase(dir));
  } catch (e) {
    if (e instanceof DatabaseLockedError) {
      const pid = /process (\d+)/.exec(e.message)?.[1];
      throw new UsageError(
        "SERVE_DIR_IN_USE",
        `${dir} is already served by another selkie serve${pid ? ` (pid ${pid})` : ""}; stop it first, or serve another --dir`,
        { cause: e },
      );
    }
    throw e;
  }
}

export function releaseServeLock(dir: string): void {
  releaseProcessLock(lockBase(dir));
}
