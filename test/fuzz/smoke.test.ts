/**
 * A short run of every fuzz target (tools/fuzz), as `npm test` runs it: the instrumented worker starts,
 * replays the target's seed corpus (test/fuzz/corpus/<target>/) and its authentic inputs, mutates for
 * a moment, and finds nothing. Longer runs: `npm run fuzz -- TARGET --minutes N` (README "Fuzzing").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fuzz } from "../../tools/fuzz/engine.js";
import { TARGET_NAMES } from "../../tools/fuzz/targets/index.js";

const SECONDS = Number(process.env.SELKIE_FUZZ_SMOKE_SECONDS ?? 1);

test("every fuzz target runs a moment with no finding", { concurrency: 2, timeout: 120_000 }, async (t) => {
  await Promise.all(TARGET_NAMES.map((name) =>
    t.test(`the ${name} target runs its corpus and ${SECONDS} s of mutations with no finding`, async () => {
      const r = await fuzz(name, { seconds: SECONDS, out: "", seed: 20 });
      assert.deepEqual(r.findings.map((f) => `${f.kind}: ${f.signature}\n${f.message}`), []);
      assert.ok(r.execs > 0, "it ran inputs");
      assert.ok(r.edges > 0 && r.edges <= r.totalEdges, `coverage was measured (${r.edges}/${r.totalEdges} edges)`);
    })));
});

test("a target that breaks its property is reported with the input that broke it", { timeout: 60_000 }, async () => {
  const r = await fuzz("self-check", { seconds: 30, out: "", seed: 1, stopOnFinding: true });
  assert.equal(r.findings.length, 1, "one finding");
  assert.equal(r.findings[0]!.kind, "crash");
  assert.match(r.findings[0]!.signature, /FUZZ/);
});
