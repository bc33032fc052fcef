/**
 * File helpers for the platform's emulated non-volatile state (root secrets, certificates, counters).
 *
 * Invariants: every file is replaced atomically (temp file created O_EXCL with its final mode, data
 * fsynced, renamed over the target, directory fsynced), so a crash leaves the old or the new content,
 * never a mix. Directories are created 0700, secret files 0600. A secret file readable by group or
 * others is refused on read (as ssh does with private keys).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

export const DIR_MODE = 0o700;
export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export function ensureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

/** Atomically replaces `file` with `data` (mode `mode`); durable when it returns. */
export function writeFileAtomic(file: string, data: Uint8Array | string, mode: number = SECRET_MODE): void {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const dir = path.dirname(file);
  const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    writeAll(fd, bytes, 0);
    fs.fchmodSync(fd, mode); // the umask may have removed bits we want (public files)
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/** True when the file's mode grants any permission to group or others. */
export function isGroupOrWorldAccessible(file: string): boolean {
  return (fs.statSync(file).mode & 0o077) !== 0;
}

export function exists(file: string): boolean {
  return fs.existsSync(file);
}

/** Default platform directory: `$SELKIE_HOME`, else `~/.selkie`. */
export function defaultPlatformDir(env: NodeJS.ProcessEnv = process.env): string {
  const home = env["SELKIE_HOME"];
  if (home !== undefined && home !== "") return path.resolve(home);
  return path.join(env["HOME"] ?? (process.platform === "win32" ? env["USERPROFILE"] ?? "." : "."), ".selkie");
}
