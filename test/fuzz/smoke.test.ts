/**
 * A short run of every fuzz target (tools/fuzz), as `npm test` runs it: the instrumented worker starts,
 * replays the target's seed corpus (test/fuzz/corpus/<target>/) and its authentic inputs, mutates for
 * a moment, and finds nothing. Longer runs: `npm run fuzz -- TARGET --minutes N` (README "Fuzzing").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
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

test("an input that never returns is stopped at the time bound and saved with a command to reproduce it", { timeout: 60_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-hang-"));
  try {
    const r = await fuzz("self-hang", { seconds: 4, out, seed: 1, hangMs: 1500 });
    const hang = r.findings.find((f) => f.kind === "hang");
    assert.ok(hang, `a hang was found (${JSON.stringify(r.findings)})`);
    assert.equal(fs.readFileSync(hang.file!, "latin1"), "HANG", "the saved input is the one that hung");
    assert.match(hang.reproduce!, /^node dist\/tools\/fuzz\/main\.js self-hang --reproduce \S+$/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
