/**
 * Settings shared by the model-based tests: how many cases (SELKIE_MODEL_RUNS, default a short smoke
 * run for `npm test`), the seed (SELKIE_MODEL_SEED, to replay a failure fast-check printed), and where
 * their real files go (SELKIE_MODEL_TMP: e.g. /dev/shm for a 10,000-case run; fsync is still called).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export function modelRuns(smoke: number): number {
  const n = Number(process.env.SELKIE_MODEL_RUNS);
  return Number.isInteger(n) && n > 0 ? n : smoke;
}

export function modelSeed(): number | undefined {
  const n = Number(process.env.SELKIE_MODEL_SEED);
  return Number.isInteger(n) ? n : undefined;
}

export function modelTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(process.env.SELKIE_MODEL_TMP || os.tmpdir(), prefix));
}
