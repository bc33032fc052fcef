/**
 * Where the default platform lives ($SELKIE_HOME, else ~/.selkie) and opening it, creating it (with
 * a development CA) on first use so that `selkie sql app.db` works on a fresh machine.
 *
 * A platform is created only for a database that does not exist yet: a database that exists was
 * sealed by some platform, and a new one could never open it (a wrong $SELKIE_HOME must say so, not
 * quietly create a platform and then fail with STORAGE_WRONG_PLATFORM).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Platform } from "../platform/platform.js";
import { PlatformError } from "../platform/errors.js";

export function defaultPlatformDir(): string {
  return path.resolve(process.env.SELKIE_HOME || path.join(os.homedir(), ".selkie"));
}

export interface OpenDefaultPlatformOptions {
  /** Called after a platform was created in `dir`. */
  onCreate?: (dir: string) => void;
  /**
   * The sealed database about to be opened. When it exists and `dir` holds no platform, opening
   * fails with PLATFORM_NOT_FOUND instead of creating a platform that could never open it.
   */
  forDatabase?: string;
  /** Never create a platform (commands that only read existing databases). */
  create?: boolean;
}

/** Opens the platform in `dir` (default: defaultPlatformDir()), creating it when absent and allowed. */
export async function openDefaultPlatform(dir = defaultPlatformDir(), opts: OpenDefaultPlatformOptions | ((dir: string) => void) = {}): Promise<Platform> {
  const o: OpenDefaultPlatformOptions = typeof opts === "function" ? { onCreate: opts } : opts;
  if (Platform.exists(dir)) return Platform.open(dir);
  const abs = path.resolve(dir);
  if (o.forDatabase !== undefined && fs.existsSync(o.forDatabase)) {
    throw new PlatformError(
      "PLATFORM_NOT_FOUND",
      `${o.forDatabase} exists, so it was sealed by an existing platform, but there is no platform in ${abs}: point --platform (or $SELKIE_HOME) at the platform that created it (each platform keeps its id in its platform.json)`,
    );
  }
  if (o.create === false) {
    throw new PlatformError("PLATFORM_NOT_FOUND", `no platform in ${abs}: point --platform (or $SELKIE_HOME) at the platform that sealed the database, or create one with \`selkie init --dir ${abs}\``);
  }
  const p = await Platform.create(dir);
  o.onCreate?.(dir);
  return p;
}
