/**
 * Where the default platform lives ($SELKIE_HOME, else ~/.selkie) and opening it, creating it (with
 * a development CA) on first use so that `selkie sql app.db` works on a fresh machine.
 */
import * as os from "node:os";
import * as path from "node:path";
import { Platform } from "../platform/platform.js";

export function defaultPlatformDir(): string {
  return path.resolve(process.env.SELKIE_HOME || path.join(os.homedir(), ".selkie"));
}

/** Opens the platform in `dir` (default: defaultPlatformDir()), creating it when absent. */
export async function openDefaultPlatform(dir = defaultPlatformDir(), onCreate?: (dir: string) => void): Promise<Platform> {
  if (Platform.exists(dir)) return Platform.open(dir);
  const p = await Platform.create(dir);
  onCreate?.(dir);
  return p;
}
