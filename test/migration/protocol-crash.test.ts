/**
 * kill -9 of the source and of the destination, and a cut connection, at every protocol step
 * (PROTOCOL.md §6 "Crash points"), plus kills at random instants: two real peer processes with
 * their own platforms, a write workload on the source during the migration, both restarted and
 * settled. Afterwards exactly one side serves, every acknowledged write is there, and the owner's
 * rows have no gap (nothing unacknowledged half-present).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DESTINATION_CRASH_POINTS, SOURCE_CRASH_POINTS } from "../../runtime/migration/protocol/crash-points.js";
import { makePeers, trial, type Peers, type TrialOptions } from "./harness.js";
import { rng } from "../helpers.js";

const POINTS = [...SOURCE_CRASH_POINTS, ...DESTINATION_CRASH_POINTS];
const random = rng(1313);
const cases: Array<{ what: string; o: TrialOptions }> = [
  ...POINTS.map((p) => ({ what: `kill -9 at ${p}`, o: { crash: p } })),
  ...POINTS.map((p) => ({ what: `connection cut at ${p}`, o: { cut: p } })),
  ...Array.from({ length: 18 }, (_, i) => {
    const side = i % 2 === 0 ? ("source" as const) : ("destination" as const);
    const afterMs = Math.floor(random() * 1_500);
    return { what: `kill -9 of the ${side} ${afterMs} ms into the migration`, o: { kill: { side, afterMs } } };
  }),
];
const WORKERS = 4;
const pairs: Peers[] = await Promise.all(Array.from({ length: WORKERS }, () => makePeers()));

test(`after a crash or a cut at any step (${cases.length} trials) exactly one side serves, with every acknowledged write`, { timeout: 600_000 }, async () => {
  const failures: string[] = [];
  let next = 0;
  let migrated = 0;
  const worker = async (peers: Peers): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]!;
      const r = await trial(peers, { ...c.o, rows: 400 });
      if (r.migrated) migrated++;
      const bad = r.serving.length !== 1 ? `${r.serving.length} sides serve (${r.serving.join(", ")})` : r.missing.length ? `${r.missing.length} acknowledged writes missing` : !r.gapless ? "the owner's rows have a gap" : "";
      if (bad) failures.push(`${c.what}: ${bad}\n${r.log}`);
    }
  };
  await Promise.all(pairs.map(worker));
  assert.deepEqual(failures, [], failures.join("\n\n"));
  assert.ok(migrated > 0 && migrated < cases.length, `some trials commit and some abort (${migrated} of ${cases.length} committed)`);
});
