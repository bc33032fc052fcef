/**
 * Soak of the migration protocol: `npm run soak:migrate -- [--trials N] [--seed S] [--workers W]`
 * (default 1,000 trials, seed 1, 4 workers). Each trial migrates a database under a write load
 * between two real peer processes (test/migration/harness.ts) and, chosen by the seeded generator,
 * kills one side with SIGKILL or cuts the connection at a protocol step or at a random instant,
 * or lets it run clean; then restarts and settles both. Checks: exactly one side serves, every
 * acknowledged write is there, no gap. Prints a summary; exits 1 on any violation.
 */
import { DESTINATION_CRASH_POINTS, SOURCE_CRASH_POINTS } from "../../runtime/migration/protocol/crash-points.js";
import { makePeers, trial, type TrialOptions } from "../../test/migration/harness.js";
import { rng } from "../../test/helpers.js";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const trials = arg("trials", 1000);
const seed = arg("seed", 1);
const workers = arg("workers", 4);
const random = rng(seed);
const POINTS = [...SOURCE_CRASH_POINTS, ...DESTINATION_CRASH_POINTS];

function pick(): { kind: string; o: TrialOptions } {
  const r = random();
  const p = POINTS[Math.floor(random() * POINTS.length)]!;
  const rows = 100 + Math.floor(random() * 600);
  if (r < 0.35) return { kind: "crash-at-step", o: { crash: p, rows } };
  if (r < 0.6) return { kind: "cut-at-step", o: { cut: p, rows } };
  if (r < 0.9) return { kind: "kill-random", o: { rows, kill: { side: random() < 0.5 ? "source" : "destination", afterMs: Math.floor(random() * 3_000) } } };
  return { kind: "clean", o: { rows } };
}

const plan = Array.from({ length: trials }, pick);
const summary = new Map<string, { trials: number; committed: number; aborted: number }>();
const violations: string[] = [];
let next = 0;
let done = 0;
const t0 = Date.now();
await Promise.all(
  Array.from({ length: workers }, async () => {
    const peers = await makePeers();
    while (next < plan.length) {
      const i = next++;
      const { kind, o } = plan[i]!;
      const r = await trial(peers, o);
      const s = summary.get(kind) ?? { trials: 0, committed: 0, aborted: 0 };
      s.trials++;
      if (r.serving[0] === "destination") s.committed++;
      else s.aborted++;
      summary.set(kind, s);
      if (r.serving.length !== 1 || r.missing.length > 0 || !r.gapless) {
        violations.push(`trial ${i} ${JSON.stringify(o)}: serving ${JSON.stringify(r.serving)}, missing ${r.missing.length}, gapless ${r.gapless}\n${r.log}`);
      }
      if (++done % 25 === 0) process.stdout.write(`${done}/${trials} trials, ${violations.length} violations, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    }
  }),
);
process.stdout.write(`\nmigration soak: seed ${seed}, ${trials} trials in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${workers} workers\n`);
process.stdout.write(`kind            trials  owner=destination  owner=source\n`);
for (const [k, s] of [...summary].sort()) process.stdout.write(`${k.padEnd(16)}${String(s.trials).padStart(6)}${String(s.committed).padStart(19)}${String(s.aborted).padStart(14)}\n`);
process.stdout.write(`violations: ${violations.length}\n`);
for (const v of violations.slice(0, 3)) process.stdout.write(`${v}\n`);
process.exit(violations.length ? 1 : 0);
