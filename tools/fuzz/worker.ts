/**
 * The fuzzing loop, run in a worker thread started by engine.ts with `--import tools/fuzz/register.mjs`
 * so the runtime's modules are instrumented (edge counters and compare hooks, see coverage.mjs).
 *
 * Loop: pick a corpus entry, mutate it, run the target; an input that reached a new (edge, hit-count
 * bucket) pair joins the corpus; anything the target throws is a finding. The input being run is
 * mirrored into shared memory before each run so the parent can save it if the run hangs or the worker
 * runs out of memory (the parent then terminates the worker: that is the per-input time bound).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { mutate } from "./mutate.js";
import { makeRng } from "./rng.js";
import type { Target } from "./target.js";
import { targetModule } from "./targets/index.js";

export interface WorkerConfig {
  target: string;
  seconds: number;
  /** Stop after this many runs (0: no limit). */
  runs: number;
  seed: number;
  corpusDirs: string[];
  /** Where new corpus entries go (not the repo's seed corpus), or "" to keep them in memory. */
  outCorpus: string;
  /** Slower than this (ms) is reported as a finding ("slow"). */
  slowMs: number;
  stopOnFinding: boolean;
  shared: SharedArrayBuffer;
}

interface Fuzzer {
  modules: Uint8Array[];
  words: Set<string>;
}

export type WorkerMessage =
  | { type: "stats"; execs: number; corpus: number; edges: number; totalEdges: number; words: number; elapsedMs: number }
  | { type: "finding"; kind: "crash" | "slow"; signature: string; message: string; input: Uint8Array }
  | { type: "done" };

const cfg = workerData as WorkerConfig;
// Started without the instrumenting loader (engine option `instrument: false`, a baseline): an empty
// coverage map, so nothing is ever new and the loop mutates its seeds blindly.
if (!(globalThis as { Fuzzer?: Fuzzer }).Fuzzer) {
  const coverage = new URL("../../../tools/fuzz/coverage.mjs", import.meta.url).href;
  ((await import(coverage)) as { installCoverage(): void }).installCoverage();
}
const fz = (globalThis as unknown as { Fuzzer: Fuzzer }).Fuzzer;
const shared = new Int32Array(cfg.shared, 0, 4);
const current = new Uint8Array(cfg.shared, 16);
const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

/** AFL's hit-count buckets, one bit each. */
const BUCKET = new Uint8Array(256);
for (let c = 1; c < 256; c++) BUCKET[c] = c === 1 ? 1 : c === 2 ? 2 : c === 3 ? 4 : c < 8 ? 8 : c < 16 ? 16 : c < 32 ? 32 : c < 128 ? 64 : 128;

const virgin: Uint8Array[] = [];
let edges = 0;

/** Folds the counters into the seen map; true when something new was reached. Clears the counters. */
function newCoverage(): boolean {
  let found = false;
  const mods = fz.modules;
  for (let m = 0; m < mods.length; m++) {
    const c = mods[m]!;
    let v = virgin[m];
    if (!v) v = virgin[m] = new Uint8Array(c.length);
    for (let i = 0; i < c.length; i++) {
      const hit = c[i]!;
      if (hit === 0) continue;
      const bit = BUCKET[hit]!;
      if ((v[i]! & bit) === 0) {
        if (v[i] === 0) edges++;
        v[i]! |= bit;
        found = true;
      }
    }
    c.fill(0);
  }
  return found;
}

function totalEdges(): number {
  return fz.modules.reduce((n, m) => n + m.length, 0);
}

function signature(e: unknown): string {
  const err = e instanceof Error ? e : new Error(String(e));
  const inner = (err.cause instanceof Error ? err.cause : err).stack ?? "";
  const frame = inner.split("\n").find((l) => l.trim().startsWith("at ")) ?? "";
  return `${err.message.split("\n")[0]!.replace(/\d+/g, "N").slice(0, 160)} ${frame.trim()}`;
}

async function main(): Promise<void> {
  const target: Target = (await import(targetModule(cfg.target))).target;
  const rng = makeRng(cfg.seed);
  const corpus: Uint8Array[] = [];
  for (const dir of cfg.corpusDirs) {
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir).sort()) corpus.push(new Uint8Array(fs.readFileSync(path.join(dir, f))));
  }
  corpus.push(...(await target.seeds()));
  if (cfg.outCorpus) fs.mkdirSync(cfg.outCorpus, { recursive: true });
  const seen = new Set<string>();
  let execs = 0;
  const start = performance.now();
  let lastStats = start;
  let wordList: Uint8Array[] = [];
  let wordCount = -1;

  const runOne = (data: Uint8Array): boolean => {
    const n = Math.min(data.length, current.length);
    current.set(data.subarray(0, n));
    Atomics.store(shared, 1, n);
    const t0 = performance.now();
    try {
      target.run(data);
    } catch (e) {
      const sig = signature(e);
      if (!seen.has(sig)) {
        seen.add(sig);
        post({ type: "finding", kind: "crash", signature: sig, message: e instanceof Error ? `${e.message}${e.cause instanceof Error ? `\n  cause: ${e.cause.stack}` : ""}` : String(e), input: data });
      }
    }
    const ms = performance.now() - t0;
    if (ms > cfg.slowMs && execs > corpus.length) {
      const sig = `slow ${Math.round(ms)} ms`;
      if (!seen.has("slow")) {
        seen.add("slow");
        post({ type: "finding", kind: "slow", signature: sig, message: `one input took ${Math.round(ms)} ms (bound ${cfg.slowMs} ms)`, input: data });
      }
    }
    execs++;
    Atomics.add(shared, 0, 1);
    return newCoverage();
  };

  newCoverage(); // drop what start-up reached: it says nothing about inputs
  Atomics.store(shared, 2, 1); // set-up done: from here the parent bounds each input's time
  for (const s of [...corpus]) runOne(s);
  const seeded = corpus.length;
  const deadline = start + cfg.seconds * 1000;
  for (;;) {
    const now = performance.now();
    if (now >= deadline || (cfg.runs && execs >= cfg.runs) || (cfg.stopOnFinding && seen.size > 0)) break;
    if (now - lastStats >= 2000) {
      lastStats = now;
      post({ type: "stats", execs, corpus: corpus.length, edges, totalEdges: totalEdges(), words: fz.words.size, elapsedMs: now - start });
    }
    if (fz.words.size !== wordCount) {
      wordCount = fz.words.size;
      wordList = [...fz.words].map((w) => Buffer.from(w, "utf8"));
    }
    // Newer entries are picked more often (they tend to sit deeper).
    const pick = rng.int(2) ? corpus.length - 1 - rng.int(Math.min(corpus.length, 16)) : rng.int(corpus.length);
    const input = mutate(corpus[pick]!, rng, wordList, corpus, target.maxLength);
    if (runOne(input)) {
      corpus.push(input);
      if (cfg.outCorpus && corpus.length > seeded) {
        fs.writeFileSync(path.join(cfg.outCorpus, createHash("sha1").update(input).digest("hex").slice(0, 16)), input);
      }
    }
  }
  post({ type: "stats", execs, corpus: corpus.length, edges, totalEdges: totalEdges(), words: fz.words.size, elapsedMs: performance.now() - start });
  post({ type: "done" });
}

await main();
