import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { createRequire } from "node:module";
import { Database } from "../../runtime/index.js";
import { tempDir, openDb } from "../helpers.js";
import { norm, outcome, workload, type Param, type Step } from "./workload.js";

type BetterDb = {
  prepare(sql: string): { reader: boolean; safeIntegers(on: boolean): unknown; all(...p: unknown[]): Record<string, unknown>[]; run(...p: unknown[]): { changes: number } };
  close(): void;
};
const BetterSqlite = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => BetterDb;

type Outcome = string;

/** better-sqlite3 binds every JS number as REAL; hand it bigints for integers so both bind INTEGER. */
const forBetter = (p: Param): unknown => (typeof p === "number" && Number.isSafeInteger(p) ? BigInt(p) : p);

const runSelkie = outcome;

function runBetter(db: BetterDb, s: Step): Outcome {
  try {
    const st = db.prepare(s.sql);
    if (s.reads) {
      st.safeIntegers(true);
      return JSON.stringify(st.all(...s.params.map(forBetter)).map((r) => Object.entries(r).map(([k, v]) => `${k}=${norm(v)}`)));
    }
    return `changes=${st.run(...s.params.map(forBetter)).changes}`;
  } catch (e) {
    return `error:${(e as { code?: string }).code}`;
  }
}

export function differential(seed: number, steps: number, open: (file: string) => Database = (f) => openDb(f)): void {
  const dir = tempDir();
  const selkie = open(path.join(dir, "selkie.db"));
  const better = new BetterSqlite(path.join(dir, "better.db"));
  try {
    const w = workload(seed, steps);
    w.forEach((s, i) => {
      const a = runSelkie(selkie, s);
      const b = runBetter(better, s);
      assert.equal(a, b, `seed ${seed}, step ${i}: ${s.sql} ${JSON.stringify(s.params.map(norm))}`);
    });
  } finally {
    selkie.close();
    better.close();
  }
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seeded random workload ${seed} gives identical results in a sealed Selkie database and better-sqlite3`, () => {
    differential(seed, 400);
  });
}

for (const seed of [7, 8]) {
  test(`seeded random workload ${seed} gives identical results in a plain Selkie database and better-sqlite3`, () => {
    differential(seed, 400, (f) => openDb(f, { plain: true }));
  });
}
