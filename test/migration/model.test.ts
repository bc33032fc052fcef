/**
 * The migration protocol's Promela model (runtime/migration/model/migration.pml), checked with spin:
 * the protocol must satisfy every property, and each mutant (a deliberately broken variant) must be
 * caught with a counterexample of the property it breaks, so these tests can fail.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { checkModel, inTurns, MODEL_FILE, MUTANTS, PROTOCOL_CHECKS, WITNESSES, type VariantResult } from "../../tools/check-model.js";
import { ROOT, tempDir } from "../helpers.js";

// Every variant is searched up front, two at a time (each is a spin + gcc + pan pipeline).
const runs: Promise<VariantResult[]> = inTurns(
  [() => checkModel(), ...MUTANTS.map((m) => () => checkModel({ mutant: m.define, properties: [m.breaks] }))],
  2,
);
const variant = async (name: string): Promise<VariantResult> => (await runs).find((v) => v.variant === name)!;

test("the protocol never has two owners, loses no acknowledged commit, serves no stale read and always ends with one owner", async () => {
  const v = await variant("protocol");
  assert.deepEqual(v.results.map((r) => r.property), [...PROTOCOL_CHECKS]);
  for (const r of v.results.filter((x) => !WITNESSES.has(x.property))) {
    assert.ok(r.holds, `${r.property}: ${r.reason}\n${(r.trail ?? []).join("\n")}`);
    // The search covered the crashes, losses, duplicates and backups, not a collapsed model.
    assert.ok(r.states > 100_000, `${r.property} searched only ${r.states} states`);
  }
});

// What each witness's counterexample must show: the model reaches it, so the properties are not vacuous.
const witnessed: Record<string, { reaches: string; story: RegExp }> = {
  witness_migrates: {
    reaches: "a completed migration carrying an acknowledged commit",
    story: /client: v1 acknowledged by the source[\s\S]*destination: installed, journal DONE, serves/,
  },
  witness_aborts: { reaches: "an aborted migration after which the source serves", story: /journal FROZEN[\s\S]*journal ABORTED[\s\S]*serves/ },
  witness_fork_attempt: {
    reaches: "a copy of the frozen source's folder put back after the commit point, and refused",
    story: /operator: copies the source folder[\s\S]*counter destroyed \(commit point\)[\s\S]*folder restored from the copy\nsource: restart, counter gone: MOVED/,
  },
};
for (const w of WITNESSES) {
  test(`the model reaches ${witnessed[w]!.reaches} (${w} has a counterexample)`, async () => {
    const r = (await variant("protocol")).results.find((x) => x.property === w);
    assert.equal(r?.holds, false, `${w} was never reached`);
    assert.match(r.trail!.join("\n"), witnessed[w]!.story, r.trail!.join("\n"));
  });
}

for (const m of MUTANTS) {
  test(`the model check rejects a protocol where ${m.what}`, async () => {
    const [r] = (await variant(m.define)).results;
    assert.equal(r?.property, m.breaks);
    assert.equal(r.holds, false, `${m.define} was not caught: ${m.breaks} holds`);
    assert.match(r.reason ?? "", m.breaks === "eventually_one_owner" ? /acceptance cycle/ : /assertion violated|claim/);
    assert.match((r.trail ?? []).join("\n"), m.story, `the counterexample does not go through the mutated step:\n${(r.trail ?? []).join("\n")}`);
  });
}

test("every mutant written in the model is checked by the suite", () => {
  const inModel = new Set(fs.readFileSync(MODEL_FILE, "utf8").match(/\bMUT_[A-Z_]+/g));
  assert.deepEqual([...inModel].sort(), MUTANTS.map((m) => m.define).sort());
});

test("check:model without spin on the PATH fails with MODEL_TOOL_MISSING and says how to install it", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "dist", "tools", "check-model.js")], {
    encoding: "utf8",
    env: { ...process.env, PATH: tempDir("selkie-empty-path-") },
  });
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /MODEL_TOOL_MISSING: spin is not installed: run `npm run setup`/);
});
