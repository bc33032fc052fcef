/**
 * Runs one fuzz target in an instrumented worker thread and watches it: a worker that makes no
 * progress for `hangMs` is stopped and its current input saved as a "hang" finding; one that runs out
 * of its heap (`maxHeapMb`), or makes the process pass `maxRssMb` resident, is saved as "oom"; either way the worker is restarted until time is up.
 * Findings are written to `<out>/<target>/findings/` with a one-line command that reproduces each.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { WorkerConfig, WorkerMessage } from "./worker.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const REGISTER = path.join(ROOT, "tools", "fuzz", "register.mjs");
const MAX_INPUT = 1 << 20;
/** Shared words: [0] runs so far (the heartbeat), [1] length of the input running, [2] 1 once set-up is done. */
const WORDS = 4;

export interface FuzzOptions {
  seconds: number;
  runs?: number;
  seed?: number;
  /** Folder for findings and the grown corpus ("" keeps nothing on disk). */
  out: string;
  hangMs?: number;
  slowMs?: number;
  maxHeapMb?: number;
  /** Bound on the whole process's resident memory (wasm modules and buffers live outside the heap). */
  maxRssMb?: number;
  /** false: run without instrumentation (no coverage, blind mutation): the baseline for execs/s. */
  instrument?: boolean;
  /** End the run at the first finding (tests). */
  stopOnFinding?: boolean;
  log?: (line: string) => void;
}

export interface Finding {
  kind: "crash" | "slow" | "hang" | "oom";
  signature: string;
  message: string;
  file?: string;
  reproduce?: string;
}

export interface FuzzResult {
  target: string;
  execs: number;
  seconds: number;
  execsPerSecond: number;
  edges: number;
  totalEdges: number;
  corpus: number;
  words: number;
  findings: Finding[];
}

export function corpusDir(target: string): string {
  return path.join(ROOT, "test", "fuzz", "corpus", target);
}

export async function fuzz(target: string, o: FuzzOptions): Promise<FuzzResult> {
  const log = o.log ?? (() => {});
  const findings: Finding[] = [];
  const findingsDir = o.out ? path.join(o.out, target, "findings") : "";
  const started = Date.now();
  let totals = { execs: 0, edges: 0, totalEdges: 0, corpus: 0, words: 0 };
  let restarts = 0;

  const save = (f: Finding, input: Uint8Array): void => {
    if (findingsDir) {
      fs.mkdirSync(findingsDir, { recursive: true });
      const file = path.join(findingsDir, `${f.kind}-${createHash("sha1").update(input).digest("hex").slice(0, 16)}`);
      fs.writeFileSync(file, input);
      f.file = file;
      const rel = path.relative(ROOT, file);
      f.reproduce = `node dist/tools/fuzz/main.js ${target} --reproduce ${rel.startsWith("..") ? file : rel}`;
    }
    findings.push(f);
    log(`FINDING ${f.kind}: ${f.signature}${f.reproduce ? `\n  reproduce: ${f.reproduce}` : ""}`);
  };

  while (true) {
    const left = o.seconds * 1000 - (Date.now() - started);
    if (left <= 0 || restarts > 20) break;
    const shared = new SharedArrayBuffer(WORDS * 4 + MAX_INPUT);
    const view = new Int32Array(shared, 0, WORDS);
    const cfg: WorkerConfig = {
      target, seconds: left / 1000, runs: o.runs ?? 0, seed: (o.seed ?? Date.now()) + restarts,
      corpusDirs: [corpusDir(target), ...(o.out ? [path.join(o.out, target, "corpus")] : [])],
      outCorpus: o.out ? path.join(o.out, target, "corpus") : "", slowMs: o.slowMs ?? 1000, shared,
      stopOnFinding: o.stopOnFinding === true,
    };
    const base = totals.execs;
    const worker = new Worker(path.join(ROOT, "dist", "tools", "fuzz", "worker.js"), {
      workerData: cfg, execArgv: o.instrument === false ? [] : ["--import", REGISTER], resourceLimits: { maxOldGenerationSizeMb: o.maxHeapMb ?? 512 },
      stdout: true, stderr: false,
    });
    worker.stdout.resume();
    const currentInput = (): Uint8Array => Buffer.from(new Uint8Array(shared, WORDS * 4, Atomics.load(view, 1)));
    const outcome = await new Promise<"done" | "restart">((resolve) => {
      let lastExecs = -1;
      let lastChange = Date.now();
      let settled = false;
      const finish = (r: "done" | "restart"): void => {
        if (settled) return;
        settled = true;
        clearInterval(watch);
        resolve(r);
      };
      const watch = setInterval(() => {
        const n = Atomics.load(view, 0);
        // Set-up (a platform, instrumenting the runtime) is not an input: the bound starts after it.
        if (Atomics.load(view, 2) === 0) {
          lastChange = Date.now();
          return;
        }
        const rssMb = process.memoryUsage.rss() / 2 ** 20;
        if (rssMb > (o.maxRssMb ?? 2048)) {
          save({ kind: "oom", signature: `resident memory ${Math.round(rssMb)} MiB over ${o.maxRssMb ?? 2048} MiB`, message: "memory grew past the bound while fuzzing (the input shown was running then; the growth may be cumulative)" }, currentInput());
          void worker.terminate();
          finish("restart");
          return;
        }
        if (n !== lastExecs) {
          lastExecs = n;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > (o.hangMs ?? 10_000)) {
          save({ kind: "hang", signature: `no progress for ${o.hangMs ?? 10_000} ms`, message: "one input ran past the time bound" }, currentInput());
          void worker.terminate();
          finish("restart");
        }
      }, 250);
      worker.on("message", (m: WorkerMessage) => {
        if (m.type === "stats") {
          totals = { execs: base + m.execs, edges: Math.max(totals.edges, m.edges), totalEdges: m.totalEdges, corpus: m.corpus, words: m.words };
          const s = (Date.now() - started) / 1000;
          log(`${target}: ${totals.execs} execs (${Math.round(totals.execs / s)}/s), ${totals.edges}/${totals.totalEdges} edges, corpus ${totals.corpus}, dictionary ${totals.words}, findings ${findings.length}`);
        } else if (m.type === "finding") {
          save({ kind: m.kind, signature: m.signature, message: m.message }, m.input);
        } else if (m.type === "done") {
          finish("done");
        }
      });
      worker.on("error", (e: Error & { code?: string }) => {
        if (e.code === "ERR_WORKER_OUT_OF_MEMORY") save({ kind: "oom", signature: "worker heap exhausted", message: e.message }, currentInput());
        else save({ kind: "crash", signature: `worker died: ${e.message}`, message: e.stack ?? e.message }, currentInput());
        finish("restart");
      });
      worker.on("exit", () => finish("restart"));
    });
    if (outcome === "done") {
      await worker.terminate();
      break;
    }
    restarts++;
  }
  const seconds = (Date.now() - started) / 1000;
  return { target, ...totals, seconds, execsPerSecond: Math.round(totals.execs / seconds), findings };
}
