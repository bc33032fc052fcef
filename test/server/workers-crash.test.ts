/**
 * kill -9 of `selkie serve --workers 2` while tenants on both workers commit: every write that was
 * acknowledged is there after a restart, and every database opens (its commit counter, whose
 * updates the main thread now syncs off its own thread, is not behind its sealed store).
 * WORKERS.md, "Platform RPC" (counter updates answered once durable).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createDb, exec, pipeline, startServer } from "./harness.js";

describe("selkie serve --workers 2 killed with SIGKILL under write load", () => {
  it("keeps every acknowledged write of every tenant, and every database opens after the restart", async () => {
    const s = await startServer({ args: ["--workers", "2", "--log-level", "warn"] });
    const token = s.adminToken!;
    const dbs = ["a", "b", "c", "d"];
    const acked = new Map<string, number[]>(dbs.map((d) => [d, []]));
    try {
      for (const d of dbs) {
        await createDb(s, d);
        const r = await pipeline(s, token, [exec("CREATE TABLE w(id INTEGER PRIMARY KEY)")], { db: d });
        assert.equal(r.status, 200, r.text);
      }
      let stop = false;
      let next = 0;
      const writers = Array.from({ length: 8 }, async (_, k) => {
        const d = dbs[k % dbs.length]!;
        while (!stop) {
          const id = ++next;
          try {
            const r = await pipeline(s, token, [exec("INSERT INTO w VALUES (?)", [id])], { db: d });
            if (r.status === 200 && r.json.results[0].type === "ok") acked.get(d)!.push(id);
          } catch {
            // the server died mid-request: not acknowledged
          }
        }
      });
      // Let commits flow, then kill the server in the middle of them.
      const t0 = Date.now();
      while ([...acked.values()].reduce((a, x) => a + x.length, 0) < 60 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
      await s.stop("SIGKILL");
      stop = true;
      await Promise.all(writers);
    } finally {
      await s.stop("SIGKILL");
    }
    const total = [...acked.values()].reduce((a, x) => a + x.length, 0);
    assert.ok(total >= 60, `only ${total} writes were acknowledged before the kill`);
    const again = await startServer({ dir: s.dir, args: ["--workers", "2", "--log-level", "warn"] });
    try {
      for (const d of dbs) {
        const r = await pipeline(again, token, [exec("SELECT id FROM w")], { db: d });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.results[0].type, "ok", `database ${d} after the restart: ${r.text}`);
        const present = new Set((r.json.results[0].response.result.rows as Array<Array<{ value: string }>>).map((row) => Number(row[0]!.value)));
        for (const id of acked.get(d)!) assert.ok(present.has(id), `acknowledged write ${id} of ${d} is missing`);
      }
    } finally {
      await again.stop();
      fs.rmSync(s.dir, { recursive: true, force: true });
    }
  });
});
