/**
 * Model-checks the migration protocol (runtime/migration/model/migration.pml) with spin:
 *
 *   npm run check:model                  the protocol: every property must hold
 *   npm run check:model -- --mutants     also each mutant: each must yield a counterexample
 *   npm run check:model -- --stories     also print each counterexample (mutants, witnesses)
 *   npm run check:model -- --deep        the protocol under larger fault bounds (DEEP_BOUNDS; minutes, ~1.3 GB)
 *   npm run check:model -- --json        results as JSON
 *
 * For each variant it runs `spin -a` (with the mutant's -D flag), compiles the generated verifier with
 * gcc and runs `./pan` once per property: safety claims as a plain exhaustive search, the progress
 * claim with acceptance-cycle detection (-a). A counterexample is replayed (`spin -t`) and its story
 * (the model's printf lines) is printed. Exit codes: 0 all as expected, 1 a property does not hold on
 * the protocol or a mutant is not caught, 2 spin or gcc missing or a search that did not complete.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { SelkieError } from "../runtime/errors.js";
import { markdownTable } from "./table.js";

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const MODEL_FILE = path.join(ROOT, "runtime", "migration", "model", "migration.pml");

/**
 * The claims of migration.pml (`ltl` blocks): three safety invariants, `safety` (the three in one
 * search), the progress property, and witnesses: claims that must be violated, whose counterexample
 * shows that the model reaches a completed migration, an abort and a fork attempt (so the properties
 * do not hold vacuously). The protocol is checked against PROTOCOL_CHECKS.
 */
export type Property =
  | "no_two_owners"
  | "no_lost_commit"
  | "no_stale_read"
  | "safety"
  | "eventually_one_owner"
  | "witness_migrates"
  | "witness_aborts"
  | "witness_fork_attempt";
export const WITNESSES: ReadonlySet<Property> = new Set(["witness_migrates", "witness_aborts", "witness_fork_attempt"]);
export const PROTOCOL_CHECKS: readonly Property[] = ["safety", "eventually_one_owner", ...WITNESSES];
const LIVENESS: ReadonlySet<Property> = new Set(["eventually_one_owner"]);

/**
 * A deliberately broken protocol, chosen with `spin -D<define>`, the property it must break, and what
 * its counterexample must show (a pattern over the story's lines, joined by newlines): the mutated
 * step itself, so a counterexample found for another reason does not count.
 */
export interface Mutant {
  readonly define: string;
  readonly what: string;
  readonly breaks: Property;
  readonly story: RegExp;
}
export const MUTANTS: readonly Mutant[] = [
  { define: "MUT_COMMIT_BEFORE_PREPARED", what: "the source passes its commit point before the destination's `prepared`", breaks: "no_lost_commit", story: /journal COMMITTING without prepared/ },
  { define: "MUT_SOURCE_SERVES_WHILE_PREPARING", what: "the source keeps acknowledging writes after the freeze", breaks: "no_lost_commit", story: /source: frozen at v\d[\s\S]*client: v\d acknowledged by the source/ },
  { define: "MUT_DST_SERVES_BEFORE_DECISION", what: "the destination serves once PREPARED, before it learns the source's decision", breaks: "no_two_owners", story: /serves before the decision/ },
  { define: "MUT_VOLATILE_PREPARED", what: "the destination's PREPARED journal record is not durable (a crash loses it)", breaks: "no_lost_commit", story: /PREPARED was not durable/ },
  { define: "MUT_NO_COUNTER_DESTROY", what: "the source keeps its counter, so a copy of its folder serves again", breaks: "no_two_owners", story: /keeps its counter[\s\S]*folder restored from the copy/ },
  { define: "MUT_COMMIT_BEFORE_DESTROY", what: "the source sends `commit` before its counter is destroyed", breaks: "no_two_owners", story: /sends commit before destroying its counter[\s\S]*folder restored from the copy/ },
  { define: "MUT_DST_GIVES_UP", what: "a destination in PREPARED aborts on its own", breaks: "no_lost_commit", story: /gives up after PREPARED/ },
  { define: "MUT_ABORT_ANSWER_NOT_RECORDED", what: "a running migration answers `status` with abort instead of pending, unrecorded", breaks: "no_lost_commit", story: /outcome abort, not recorded/ },
  { define: "MUT_NO_DECISION_QUERY", what: "a destination in PREPARED never asks the source for the outcome", breaks: "eventually_one_owner", story: /journal PREPARED[\s\S]*START OF CYCLE/ },
];

export type ModelCheckErrorCode = "MODEL_TOOL_MISSING" | "MODEL_BUILD_FAILED" | "MODEL_SEARCH_INCOMPLETE" | "MODEL_OUTPUT_UNREADABLE";
export class ModelCheckError extends SelkieError {
  declare readonly code: ModelCheckErrorCode;
  constructor(code: ModelCheckErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface PropertyResult {
  readonly property: Property;
  readonly holds: boolean;
  /** pan's first error line, when the property does not hold. */
  readonly reason?: string;
  /** The counterexample as the model's printf lines, when the property does not hold. */
  readonly trail?: string[];
  readonly states: number;
  readonly transitions: number;
  readonly depth: number;
  readonly seconds: number;
}

export interface VariantResult {
  /** "protocol", or a mutant's define. */
  readonly variant: string;
  readonly buildSeconds: number;
  readonly results: PropertyResult[];
}

/** Search depth limit (runs are ~90 steps deep) and hash table size (2^21 slots: a few 100k states). */
const MAX_DEPTH = 10_000;
const HASH_BITS = 21;

/**
 * Larger fault bounds for `--deep` (the model's defaults: 2 losses, 1 duplicate, 2 crashes of each
 * side, 2 writes): 7.6 million states for the safety search and 14.5 million (about 3 min of CPU
 * time and 1.3 GB) for the progress search, so not in the suite.
 */
export const DEEP_BOUNDS: Readonly<Record<string, number>> = { MAX_LOSS: 3, MAX_DUP: 2, MAX_SRC_CRASH: 3, MAX_DST_CRASH: 3, MAX_WRITES: 3 };

/** Checks `properties` on the protocol, or on `mutant`'s variant of it. */
export async function checkModel(
  options: { mutant?: string; properties?: readonly Property[]; bounds?: Readonly<Record<string, number>> } = {},
): Promise<VariantResult> {
  const properties = options.properties ?? PROTOCOL_CHECKS;
  const bounds = Object.entries(options.bounds ?? {}).map(([k, v]) => `-D${k}=${v}`);
  const defines = [...(options.mutant ? [`-D${options.mutant}`] : []), ...bounds];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-model-"));
  try {
    fs.copyFileSync(MODEL_FILE, path.join(dir, "migration.pml"));
    const t0 = performance.now();
    await tool("spin", [...defines, "-a", "migration.pml"], dir);
    // A mutant's search is short, so compile time dominates (-O0 compiles 3x faster than -O1), and a
    // breadth-first search (safety claims only) finds its shortest counterexample: a readable story.
    const bfs = options.mutant !== undefined && properties.every((p) => !LIVENESS.has(p));
    // Larger bounds: -O2, and COLLAPSE to store states compressed (about half the memory).
    const deep = bounds.length > 0 ? ["-O2", "-DCOLLAPSE"] : [options.mutant ? "-O0" : "-O1"];
    await tool("gcc", [...deep, ...(bfs ? ["-DBFS"] : []), "-w", "-o", "pan", "pan.c"], dir);
    const buildSeconds = (performance.now() - t0) / 1000;
    const results: PropertyResult[] = [];
    const hashBits = bounds.length > 0 ? 24 : HASH_BITS;
    for (const property of properties) results.push(await search(dir, property, defines, hashBits));
    const name = options.mutant ?? "protocol";
    return { variant: bounds.length > 0 ? `${name} (${bounds.map((d) => d.slice(2)).join(" ")})` : name, buildSeconds, results };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function search(dir: string, property: Property, defines: string[], hashBits: number): Promise<PropertyResult> {
  const args = ["-n", `-m${MAX_DEPTH}`, `-w${hashBits}`, "-N", property, ...(LIVENESS.has(property) ? ["-a"] : [])];
  const t0 = performance.now();
  const out = await tool("./pan", args, dir);
  const seconds = (performance.now() - t0) / 1000;
  if (/max search depth too small/.test(out)) {
    throw new ModelCheckError("MODEL_SEARCH_INCOMPLETE", `the search for ${property} hit the depth limit ${MAX_DEPTH}: raise MAX_DEPTH in tools/check-model.ts`);
  }
  const errors = /errors: (\d+)/.exec(out);
  const states = /(\d+) states, stored/.exec(out);
  const transitions = /(\d+) transitions/.exec(out);
  const depth = /depth reached (\d+)/.exec(out);
  if (!errors || !states || !transitions || !depth) {
    throw new ModelCheckError("MODEL_OUTPUT_UNREADABLE", `pan's report for ${property} has no error or state counts (is this spin 6?):\n${out.slice(0, 2000)}`);
  }
  const stats = { property, states: Number(states[1]), transitions: Number(transitions[1]), depth: Number(depth[1]), seconds };
  if (Number(errors[1]) === 0) return { ...stats, holds: true };
  const reason = /^pan:1: (.*)$/m.exec(out)?.[1] ?? "counterexample found";
  const replay = await tool("spin", [...defines, "-t", "migration.pml"], dir);
  const trail = replay.split("\n").filter((l) => /^\s+(source|destination|client|network|operator):|START OF CYCLE/.test(l)).map((l) => l.trim());
  return { ...stats, holds: false, reason, trail };
}

async function tool(cmd: string, args: string[], cwd: string): Promise<string> {
  try {
    const r = await run(cmd, args, { cwd, maxBuffer: 64 * 1024 * 1024 });
    return r.stdout + r.stderr; // pan exits 0 whether or not it found an error: its report says which
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (err.code === "ENOENT") {
      throw new ModelCheckError("MODEL_TOOL_MISSING", `${cmd} is not installed: run \`npm run setup\` (it installs spin and gcc), or \`apt-get install spin gcc\` as root`);
    }
    throw new ModelCheckError("MODEL_BUILD_FAILED", `${cmd} ${args.join(" ")} failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`, { cause: e });
  }
}

/** Runs `tasks` at most `limit` at a time (the machine is shared), keeping their order. */
export async function inTurns<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return out;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes("--json");
  const stories = argv.includes("--stories");
  const withMutants = argv.includes("--mutants") || stories;
  const deep = argv.includes("--deep");
  const tasks = [
    () => checkModel(deep ? { bounds: DEEP_BOUNDS } : {}),
    ...(withMutants ? MUTANTS.map((m) => () => checkModel({ mutant: m.define, properties: [m.breaks] })) : []),
  ];
  const variants = await inTurns(tasks, 2);
  let failed = false;
  const rows: string[][] = [];
  for (const v of variants) {
    const mutant = MUTANTS.find((m) => v.variant.startsWith(m.define));
    for (const r of v.results) {
      const expected = mutant || WITNESSES.has(r.property) ? !r.holds : r.holds;
      failed ||= !expected;
      const verdict = mutant ? (r.holds ? "NOT CAUGHT" : "counterexample (expected)")
        : WITNESSES.has(r.property) ? (r.holds ? "NOT REACHED" : "reached (expected)")
        : r.holds ? "holds" : "VIOLATED";
      rows.push([v.variant, r.property, verdict, String(r.states), String(r.transitions), String(r.depth), r.seconds.toFixed(2)]);
      if ((!expected || (stories && !r.holds)) && !json) {
        process.stdout.write(`\n${v.variant}: ${r.property} ${verdict}${r.reason ? `: ${r.reason}` : ""}\n`);
        for (const line of r.trail ?? []) process.stdout.write(`  ${line}\n`);
      }
    }
  }
  if (json) process.stdout.write(JSON.stringify(variants, null, 2) + "\n");
  else {
    process.stdout.write(markdownTable(["variant", "property", "result", "states", "transitions", "depth", "seconds"], rows, (c) => c >= 3) + "\n");
    if (withMutants) {
      process.stdout.write("\nmutants:\n");
      for (const m of MUTANTS) process.stdout.write(`  ${m.define}: ${m.what} (breaks ${m.breaks})\n`);
    }
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof ModelCheckError ? `${e.code}: ` : ""}${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(2);
    },
  );
}
