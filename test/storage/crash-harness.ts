/** Crash harness: a real writer process killed with SIGKILL, then a check of what survived. */
import assert from "node:assert/strict";
import * as path from "node:path";
import { Database } from "../../runtime/index.js";
import { Platform } from "../../runtime/platform/platform.js";
import { ROOT, rng, runUntilKilled, tempDir } from "../helpers.js";
import { batchSize } from "./fixtures/batch-size.js";

const FIXTURE = path.join(ROOT, "dist", "test", "storage", "fixtures", "crash-writer.js");

/** Starts the writer, kills it with SIGKILL `killAfterMs` after it is ready; returns the last acked batch. */
export async function runAndKill(platformDir: string, file: string, killAfterMs: number): Promise<number> {
  const out = await runUntilKilled(FIXTURE, [platformDir, file], /^ready$/m, killAfterMs);
  const acks = [...out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
  return acks.length ? acks[acks.length - 1]! : 0;
}

/** After a crash: integrity holds, every acked batch is present and whole, nothing beyond the one in flight. */
export async function checkAfterCrash(platformDir: string, file: string, lastAck: number, what: string): Promise<number> {
  const platform = await Platform.open(platformDir);
  try {
    const db = new Database(file, { platform });
    try {
      assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }], what);
      const batches = db.query<{ batch: number; n: number }>("SELECT batch, count(*) AS n FROM log GROUP BY batch ORDER BY batch");
      const max = batches.length ? batches[batches.length - 1]!.batch : 0;
      assert.ok(max >= lastAck, `${what}: acknowledged batch ${lastAck} is present (max ${max})`);
      assert.ok(max <= lastAck + 1, `${what}: nothing beyond the batch in flight (max ${max}, last ack ${lastAck})`);
      batches.forEach((b, i) => {
        assert.equal(b.batch, i + 1, `${what}: batch ${i + 1} is missing`);
        assert.equal(b.n, batchSize(b.batch), `${what}: batch ${b.batch} is whole`);
      });
      return max;
    } finally {
      db.close();
    }
  } finally {
    platform.close();
  }
}

export async function crashTrials(trials: number, seed: number): Promise<number> {
  const platformDir = tempDir("selkie-crash-platform-");
  (await Platform.create(platformDir)).close();
  const file = path.join(tempDir(), "crash.db");
  const r = rng(seed);
  let present = 0;
  for (let trial = 0; trial < trials; trial++) {
    const last = await runAndKill(platformDir, file, Math.floor(r() * 120));
    present = await checkAfterCrash(platformDir, file, Math.max(last, present), `trial ${trial}`);
  }
  return present;
}

