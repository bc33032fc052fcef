/**
 * `node dist/tools/bench/engine-hop.js [--n N]`: what the worker hop costs, without HTTP. The same
 * Hrana JSON pipelines (point reads, then single-row writes, 4 at a time) through InProcessEngine
 * and through WorkerEngine with one worker, in this process; CPU per operation of the main thread,
 * the database worker (found by its nice value) and the other threads, from
 * /proc/self/task/TID/schedstat (nanoseconds). Linux only. A measurement, not a test.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Platform } from "../../runtime/platform/platform.js";
import { DatabaseRegistry } from "../../runtime/host/server/registry.js";
import { StreamTable } from "../../runtime/host/server/hrana/streams.js";
import { resolveLimits } from "../../runtime/host/server/limits.js";
import { InProcessEngine, WorkerEngine, type Engine } from "../../runtime/host/server/engine.js";

const i = process.argv.indexOf("--n");
const N = i > 0 ? Number(process.argv[i + 1]) : 3000;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

const tids = (): string[] => fs.readdirSync("/proc/self/task");
const onCpuNs = (tid: string): number => {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  } catch {
    return 0;
  }
};
const nice = (tid: string): number => {
  try {
    const st = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    return Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[16]);
  } catch {
    return 0;
  }
};

async function measure(op: (i: number) => Promise<unknown>, n: number): Promise<string> {
  for (let i = 0; i < 200; i++) await op(i); // warm-up
  const before = new Map(tids().map((t) => [t, onCpuNs(t)]));
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 4 }, async (_, c) => {
    for (let i = c; i < n; i += 4) await op(i);
  }));
  const wall = performance.now() - t0;
  const mainNice = nice(String(process.pid));
  let main = 0;
  let worker = 0;
  let other = 0;
  for (const t of tids()) {
    const us = (onCpuNs(t) - (before.get(t) ?? 0)) / 1000 / n;
    if (t === String(process.pid)) main += us;
    else if (nice(t) > mainNice) worker += us;
    else other += us;
  }
  return `| ${main.toFixed(0)} | ${worker.toFixed(0)} | ${other.toFixed(0)} | ${((wall * 1000) / n).toFixed(0)} |`;
}

async function run(mode: "in-process" | "worker"): Promise<string[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-engine-hop-"));
  await (await Platform.create(path.join(dir, "platform"))).close();
  const platform = await Platform.open(path.join(dir, "platform"));
  const limits = resolveLimits({});
  const registry = new DatabaseRegistry({ dir: path.join(dir, "databases"), platform });
  const engine: Engine = mode === "worker" ? new WorkerEngine({ workers: 1, registry, platform, limits, logger: quiet }) : new InProcessEngine(registry, new StreamTable(limits.streamIdleMs, limits.maxStreams), limits);
  try {
    const who = { tokenId: "bench", readOnly: false };
    const pipeline = (requests: unknown[]): Promise<unknown> => engine.pipeline("a", who, Buffer.from(JSON.stringify({ baton: null, requests: [...requests, { type: "close" }] })), Date.now(), false);
    const stmt = (sql: string, args: unknown[] = []): unknown => ({ type: "execute", stmt: { sql, args } });
    const int = (n: number): unknown => ({ type: "integer", value: String(n) });
    await engine.create("a");
    await pipeline([stmt("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)"), stmt("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO kv SELECT i, 'value-' || i FROM n")]);
    const read = await measure((i) => pipeline([stmt("SELECT v FROM kv WHERE id = ?", [int(((i * 7919) % 1000) + 1)])]), N);
    const write = await measure((i) => pipeline([stmt("UPDATE kv SET v = ? WHERE id = ?", [{ type: "text", value: `w${i}` }, int(((i * 7919) % 1000) + 1)])]), Math.round(N / 5));
    return [`| point read | ${mode} ${read}`, `| single-row write | ${mode} ${write}`];
  } finally {
    await engine.closeAll();
    platform.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const lines = [
  `engine-hop: ${N} point reads and ${Math.round(N / 5)} writes, 4 at a time, per engine; Node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}`,
  "",
  "| operation | engine | main µs | db worker µs | other threads µs | wall µs |",
  "|---|---|---:|---:|---:|---:|",
];
for (const mode of ["in-process", "worker", "in-process", "worker"] as const) lines.push(...(await run(mode)));
process.stdout.write(`${lines.join("\n")}\n`);
