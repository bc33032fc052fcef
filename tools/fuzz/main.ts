/**
 * npm run fuzz [target...] [--minutes N | --seconds N] [--runs N] [--out DIR] [--seed N] [--no-instrument]
 * npm run fuzz -- --list
 * node dist/tools/fuzz/main.js TARGET --reproduce FILE
 *
 * Fuzzes each named target (all when none is named) one after the other, printing executions/s,
 * coverage (edges reached / edges instrumented in the runtime modules the target loaded) and findings,
 * and ends with a table. Findings go to DIR/<target>/findings (default fuzz-out/), each printed with
 * the command that reproduces it. Exit code 1 when anything was found. --no-instrument runs the same
 * loop on uninstrumented code (no coverage, so blind mutation of the seeds): the baseline for what
 * instrumentation costs in executions/s.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fuzz, ROOT, type FuzzResult } from "./engine.js";
import type { Target } from "./target.js";
import { TARGET_NAMES, targetModule } from "./targets/index.js";

function usage(): never {
  console.error(`usage: npm run fuzz -- [target...] [--minutes N | --seconds N] [--runs N] [--out DIR] [--seed N] [--no-instrument] | --list
       node dist/tools/fuzz/main.js TARGET --reproduce FILE
targets: ${TARGET_NAMES.join(", ")}`);
  process.exit(2);
}

const args = process.argv.slice(2);
const names: string[] = [];
let seconds = 60;
let runs = 0;
let out = path.join(ROOT, "fuzz-out");
let seed: number | undefined;
let reproduce: string | undefined;
let list = false;
let instrument = true;
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  const value = (): string => args[++i] ?? usage();
  if (a === "--minutes") seconds = Number(value()) * 60;
  else if (a === "--seconds") seconds = Number(value());
  else if (a === "--runs") runs = Number(value());
  else if (a === "--out") out = value() && path.resolve(args[i]!);
  else if (a === "--seed") seed = Number(value());
  else if (a === "--reproduce") reproduce = value();
  else if (a === "--list") list = true;
  else if (a === "--no-instrument") instrument = false;
  else if (a.startsWith("-")) usage();
  else if (TARGET_NAMES.includes(a) || a.startsWith("self-")) names.push(a);
  else {
    console.error(`unknown target ${a}`);
    usage();
  }
}
if (!(seconds > 0)) usage();

if (list) {
  for (const n of TARGET_NAMES) {
    const t: Target = (await import(targetModule(n))).target;
    console.log(`${n.padEnd(18)} ${t.about}`);
  }
  process.exit(0);
}

if (reproduce) {
  if (names.length !== 1) usage();
  const t: Target = (await import(targetModule(names[0]!))).target;
  await t.seeds();
  const data = new Uint8Array(fs.readFileSync(reproduce));
  const t0 = performance.now();
  try {
    t.run(data);
    console.log(`${names[0]}: the input passed (${Math.round(performance.now() - t0)} ms): no finding`);
  } catch (e) {
    console.error(`${names[0]}: FINDING after ${Math.round(performance.now() - t0)} ms`);
    console.error(e);
    process.exit(1);
  }
  process.exit(0);
}

const results: FuzzResult[] = [];
for (const name of names.length ? names : TARGET_NAMES) {
  let last = 0;
  results.push(await fuzz(name, {
    seconds, runs, out, instrument, ...(seed !== undefined ? { seed } : {}),
    log: (line) => {
      if (line.startsWith("FINDING") || Date.now() - last > 10_000) {
        last = Date.now();
        console.log(line);
      }
    },
  }));
}
console.log("\n| target | execs | execs/s | coverage (edges) | corpus | findings |\n|---|---|---|---|---|---|");
for (const r of results) {
  console.log(`| ${r.target} | ${r.execs} | ${r.execsPerSecond} | ${r.edges}/${r.totalEdges} | ${r.corpus} | ${r.findings.length ? r.findings.map((f) => f.kind).join(", ") : "none"} |`);
}
for (const r of results) for (const f of r.findings) console.log(`\n${r.target} ${f.kind}: ${f.signature}\n${f.message}\n  reproduce: ${f.reproduce ?? "(not saved)"}`);
process.exit(results.some((r) => r.findings.length) ? 1 : 0);
