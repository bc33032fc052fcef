/**
 * UNTRUSTED. One process at a time per database: a lock file `<db>.lock` holding the owner's pid.
 *
 * The enclave's VFS locks coordinate connections inside one process; this file keeps a second
 * process (another `selkie sql`, a server) from opening the same database underneath the first.
 * A lock left by a process that died (kill -9) is detected by probing its pid and taken over.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SelkieError, UsageError } from "../errors.js";

export class DatabaseLockedError extends SelkieError {}

const held = new Map<string, number>();

function ownerAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  return !exited(pid);
}

/**
 * True when `pid` has exited but is not reaped yet (a zombie, state Z or X in /proc/PID/stat):
 * kill(pid, 0) still succeeds for it, yet it holds nothing any more. Where /proc is missing, false.
 */
function exited(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state === "Z" || state === "X";
}

/** Takes (or re-enters, within this process) the lock of `dbPath`. */
export function acquireProcessLock(dbPath: string): void {
  const lockPath = `${dbPath}.lock`;
  const count = held.get(lockPath);
  if (count !== undefined) {
    held.set(lockPath, count + 1);
    return;
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(lockPath, "wx", 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      held.set(lockPath, 1);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new UsageError("DB_DIR_MISSING", `cannot open ${dbPath}: the folder ${path.dirname(path.resolve(dbPath))} does not exist; create it first`, { cause: e });
      }
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
        throw new UsageError("DB_DIR_NOT_WRITABLE", `cannot open ${dbPath}: its folder is not writable (${code}); a database needs its folder writable for its lock, journal and log files`, { cause: e });
      }
      if (code !== "EEXIST") throw e;
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(fs.readFileSync(lockPath, "utf8"), 10);
    } catch {
      continue; // vanished between open and read: try again
    }
    if (ownerAlive(pid)) {
      throw new DatabaseLockedError(
        "DB_LOCKED_BY_PROCESS",
        `${dbPath} is in use by process ${pid}; close it there first (one process may open a database at a time)`,
      );
    }
    try {
      fs.unlinkSync(lockPath); // stale: its owner died without cleaning up
    } catch {
      /* someone else took it over; loop and see */
    }
  }
  throw new DatabaseLockedError("DB_LOCKED_BY_PROCESS", `${dbPath}: could not take ${lockPath}; remove it if no process uses the database`);
}

export function releaseProcessLock(dbPath: string): void {
  const lockPath = `${dbPath}.lock`;
  const count = held.get(lockPath);
  if (count === undefined) return;
  if (count > 1) {
    held.set(lockPath, count - 1);
    return;
  }
  held.delete(lockPath);
  try {
    fs.unlinkSync(lockPath);
  } catch {
    /* already gone */
  }
}
