import { test } from "node:test";
import * as assert from "node:assert/strict";
import { Platform } from "../../runtime/platform/index.js";
import { killTrial } from "./crash.js";
import { identity, rmDir, tempDir } from "./helpers.js";

const TRIALS = Number(process.env["SELKIE_CRASH_TRIALS"] ?? 40);

test(`kill -9 of a process incrementing a counter never loses an acknowledged increment (${TRIALS} trials)`, { timeout: 120_000 }, async () => {
  const dir = tempDir();
  try {
    let p = await Platform.create(dir);
    const id = p.servicesFor(identity()).counters.create().id;
    p.close();
    let floor = 0; // the highest value known to be acknowledged
    let killedWhileRunning = 0;
    for (let t = 0; t < TRIALS; t++) {
      // Most kills land at a random instant of the increment loop (a small compaction interval puts
      // many inside a compaction); every fifth lands at a random instant of start-up and open.
      const startup = t % 5 === 4;
      const r = await killTrial(dir, id, 3 + (t % 7), Math.floor(Math.random() * (startup ? 250 : 60)), !startup);
      assert.equal(r.exitSignal, "SIGKILL", `trial ${t}: child exited on its own: ${r.stderr}`);
      p = await Platform.open(dir);
      const value = p.servicesFor(identity()).counters.read(id);
      p.close();
      const acked = r.lastAcked ?? floor;
      assert.ok(value >= acked, `trial ${t}: counter reads ${value}, below the last acknowledged ${acked}`);
      assert.ok(value <= acked + 1, `trial ${t}: counter reads ${value}, more than one past the last acknowledged ${acked}`);
      if (r.lines > 0) killedWhileRunning++;
      floor = value;
    }
    assert.ok(killedWhileRunning >= TRIALS * 0.7, `only ${killedWhileRunning} of ${TRIALS} kills hit a running increment loop`);
  } finally {
    rmDir(dir);
  }
});
