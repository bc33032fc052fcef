/**
 * Model-based test of the platform's monotonic counters (runtime/platform/counters.ts over the
 * counter store, counter-store.ts) with fast-check's async command model: creations, increments,
 * advances, destructions, reopenings of the platform (with compaction every 3 records, so most runs
 * cross generations), and kill -9 of a child process incrementing a counter at a random instant. The
 * model is a map from counter id to value.
 *
 * Properties: every counter reads its model value; a destroyed counter is COUNTER_NOT_FOUND forever;
 * after a kill, a counter reads at least its last acknowledged value and at most one more.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { CounterError } from "../../runtime/platform/errors.js";
import { Platform } from "../../runtime/platform/platform.js";
import type { CounterService } from "../../runtime/platform/counters.js";
import { killTrial } from "../platform/crash.js";
import { identity } from "../platform/helpers.js";
import { modelRuns, modelSeed, modelTempDir } from "./model-env.js";

const COMPACT_EVERY = 3;

interface Model {
  values: Map<string, number>;
  ids: string[];
  destroyed: string[];
  /** Whether this case may kill a child (SELKIE_MODEL_KILL_EVERY: one case in N; default every case). */
  mayKill: boolean;
}

/** Node starts in ~0.1-1 s, so a 10,000-case run kills a child in one case of N (printed at the end). */
const KILL_EVERY = Math.max(1, Number(process.env.SELKIE_MODEL_KILL_EVERY ?? 1));
let kills = 0;

interface Real {
  dir: string;
  platform: Platform;
  counters: CounterService;
}

async function reopen(r: Real): Promise<void> {
  r.platform = await Platform.open(r.dir, { counterCompactEvery: COMPACT_EVERY });
  r.counters = r.platform.servicesFor(identity()).counters;
}

function checkAll(m: Model, r: Real, what: string): void {
  for (const [id, v] of m.values) assert.equal(r.counters.read(id), v, `${what}: counter ${id.slice(0, 8)}`);
  for (const id of m.destroyed) {
    assert.throws(() => r.counters.read(id), (e: unknown) => e instanceof CounterError && e.code === "COUNTER_NOT_FOUND", `${what}: destroyed ${id.slice(0, 8)}`);
  }
}

const live = (m: Readonly<Model>): boolean => m.values.size > 0;
const pickId = (m: Model, k: number): string => [...m.values.keys()][k % m.values.size]!;

class Create implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const id = r.counters.create().id;
    m.values.set(id, r.counters.read(id));
    assert.equal(m.values.get(id), 0, "a new counter reads 0");
    checkAll(m, r, "create");
  }
  toString = (): string => "create";
}

class Increment implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number) {}
  check = live;
  async run(m: Model, r: Real): Promise<void> {
    const id = pickId(m, this.k);
    assert.equal(r.counters.increment(id), m.values.get(id)! + 1);
    m.values.set(id, m.values.get(id)! + 1);
    checkAll(m, r, this.toString());
  }
  toString = (): string => `increment(${this.k})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly by: number) {}
  check = live;
  async run(m: Model, r: Real): Promise<void> {
    const id = pickId(m, this.k);
    const to = m.values.get(id)! + this.by;
    assert.equal(r.counters.advance(id, to), to);
    m.values.set(id, to);
    checkAll(m, r, this.toString());
  }
  toString = (): string => `advance(${this.k}, +${this.by})`;
}

/** Counters never go down: advancing below the value is COUNTER_BAD_REQUEST and changes nothing. */
class AdvanceDown implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly by: number) {}
  check = (m: Readonly<Model>): boolean => live(m) && [...m.values.values()].some((v) => v > 0);
  async run(m: Model, r: Real): Promise<void> {
    const id = [...m.values.keys()].filter((i) => m.values.get(i)! > 0)[this.k % [...m.values.values()].filter((v) => v > 0).length]!;
    const to = Math.max(0, m.values.get(id)! - this.by);
    assert.throws(() => r.counters.advance(id, to), (e: unknown) => e instanceof CounterError && e.code === "COUNTER_BAD_REQUEST");
    checkAll(m, r, this.toString());
  }
  toString = (): string => `advanceDown(${this.k}, -${this.by})`;
}

class Destroy implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number) {}
  check = live;
  async run(m: Model, r: Real): Promise<void> {
    const id = pickId(m, this.k);
    r.counters.destroy(id);
    m.values.delete(id);
    m.destroyed.push(id);
    checkAll(m, r, this.toString());
  }
  toString = (): string => `destroy(${this.k})`;
}

class Reopen implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    r.platform.close();
    await reopen(r);
    checkAll(m, r, "reopen");
  }
  toString = (): string => "reopen";
}

/** A child increments one counter in a loop and is killed with SIGKILL `ms` after its first ack. */
class KillChild implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number, readonly ms: number) {}
  check = (m: Readonly<Model>): boolean => live(m) && m.mayKill;
  async run(m: Model, r: Real): Promise<void> {
    const id = pickId(m, this.k);
    kills++;
    r.platform.close();
    const t = await killTrial(r.dir, id, COMPACT_EVERY, this.ms);
    assert.equal(t.exitSignal, "SIGKILL", `the child was killed, not: ${t.stderr}`);
    await reopen(r);
    const acked = t.lastAcked ?? m.values.get(id)!;
    const v = r.counters.read(id);
    assert.ok(v >= acked && v <= acked + 1, `${this}: reads ${v}, last acknowledged ${acked}`);
    m.values.set(id, v);
    checkAll(m, r, this.toString());
  }
  toString = (): string => `killChild(${this.k}, after ${this.ms} ms)`;
}

const commands = [
  fc.constant(new Create()),
  fc.nat().map((k) => new Increment(k)),
  fc.nat().map((k) => new Increment(k)),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 1000 })).map(([k, by]) => new Advance(k, by)),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 5 })).map(([k, by]) => new AdvanceDown(k, by)),
  fc.nat().map((k) => new Destroy(k)),
  fc.constant(new Reopen()),
  fc.tuple(fc.nat(), fc.nat(20)).map(([k, ms]) => new KillChild(k, ms)),
];

test("monotonic counters behave as their model under creations, increments, reopenings and kill -9", { timeout: 600_000 }, async () => {
  const dir = modelTempDir("selkie-model-counters-");
  const pdir = path.join(dir, "platform");
  (await Platform.create(pdir)).close();
  let cases = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 20 }), async (cmds) => {
        const real: Real = { dir: pdir, platform: undefined as never, counters: undefined as never };
        await reopen(real);
        const model: Model = { values: new Map(), ids: [], destroyed: [], mayKill: cases++ % KILL_EVERY === 0 };
        try {
          await fc.asyncModelRun(() => ({ model, real }), cmds);
        } finally {
          // Each case leaves no counter behind (every compaction rewrites all live counters).
          for (const id of model.values.keys()) {
            try {
              real.counters.destroy(id);
            } catch {
              // a failed case may have left the platform closed or the counter gone
            }
          }
          real.platform.close();
        }
      }),
      { numRuns: modelRuns(15), ...(modelSeed() !== undefined ? { seed: modelSeed()! } : {}) },
    );
    console.log(`counters model: ${cases} cases, ${kills} children killed with SIGKILL`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
