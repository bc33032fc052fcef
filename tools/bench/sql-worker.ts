/**
 * One benchmark run of the SQL workload mix against ONE engine, in a process of its own.
 *
 *   node dist/tools/bench/sql-worker.js <engine> <dir> <json-opts>
 *
 * The driver (tools/bench/sql.ts) spawns a fresh process per engine and per run, so engines never
 * share a heap, a JIT or a page cache inside the process. The result (timings per workload row,
 * check values, the engine's effective pragmas) is one JSON object on stdout.
 *
 * The workload is written once, in better-sqlite3's idiom (prepare once, then run/get/all with
 * positional values; a transaction function per transaction). better-sqlite3 and Selkie take that
 * code as is; sql.js gets a thin adapter onto its own idiom (bind/step/getAsObject/reset, BEGIN and
 * COMMIT through exec, as its documentation shows).
 *
 * Every row produces a check value computed from what the engine returned; the driver requires the
 * check values to be identical across engines and runs, so an engine that skips work cannot win.
 * Anything not part of a row's work (data generation, the final checksum, integrity_check) runs
 * outside the timed regions.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rng } from "../rng.js";

// ---------------------------------------------------------------------------------------------
// Options and workload rows

export interface WorkloadOpts {
  /** Rows inserted by the bulk insert (one transaction). */
  rows: number;
  /** Point selects by primary key. */
  points: number;
  /** Lookups through the secondary index. */
  lookups: number;
  /** Range scans by primary key, and rows per scan. */
  scans: number;
  scanLen: number;
  /** Repetitions of the GROUP BY aggregate over the whole table. */
  aggReps: number;
  /** Small transactions, and UPDATEs per transaction. */
  txns: number;
  updatesPerTxn: number;
  /** Seed of the deterministic generator (same data and same key sequences in every engine). */
  seed: number;
  /** PRAGMA cache_size for every engine (negative: KiB). */
  cacheSize: number;
  /** Run a small untimed copy of the workload first (JIT and wasm tier-up warm-up). */
  warmup: boolean;
}

export const FULL_OPTS: WorkloadOpts = {
  rows: 100_000,
  points: 10_000,
  lookups: 10_000,
  scans: 1_000,
  scanLen: 100,
  aggReps: 10,
  txns: 1_000,
  updatesPerTxn: 5,
  seed: 20240611,
  cacheSize: -16000,
  warmup: true,
};

export const QUICK_OPTS: WorkloadOpts = {
  ...FULL_OPTS,
  rows: 20_000,
  points: 2_000,
  lookups: 2_000,
  scans: 200,
  aggReps: 3,
  txns: 100,
};

export interface RowDef {
  id: string;
  /** Label for the table, given the options. */
  label(o: WorkloadOpts): string;
  /**
   * The row's time is dominated by file I/O (a journal created, written and deleted per transaction,
   * plus fsync when durable): an engine that keeps its database in memory is not comparable on it.
   */
  fileBound: boolean;
}

/** The workload rows, in execution order. */
export const ROWS: RowDef[] = [
  { id: "insert", label: (o) => `bulk insert ${fmtCount(o.rows)} rows, 1 txn`, fileBound: false },
  { id: "point", label: (o) => `${fmtCount(o.points)} point selects by PK`, fileBound: false },
  { id: "index", label: (o) => `${fmtCount(o.lookups)} index lookups`, fileBound: false },
  { id: "range", label: (o) => `${fmtCount(o.scans)} range scans x ${o.scanLen} rows`, fileBound: false },
  { id: "aggregate", label: (o) => `GROUP BY aggregate x ${o.aggReps}`, fileBound: false },
  { id: "commit", label: (o) => `${fmtCount(o.txns)} txns x ${o.updatesPerTxn} updates, durable`, fileBound: true },
  { id: "commit-nosync", label: (o) => `${fmtCount(o.txns)} txns x ${o.updatesPerTxn} updates, sync=OFF`, fileBound: true },
];

function fmtCount(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

// ---------------------------------------------------------------------------------------------
// Engines: one table keyed by name. Each opens a database in `dir` and hands back the workload's
// view of it. Modules are imported lazily, so importing this table (the driver does) loads none.

type Param = number | string | null;
type Row = Record<string, unknown>;

/** The subset of the better-sqlite3 statement API the workload uses. */
export interface BenchStatement {
  run(...params: Param[]): unknown;
  get(...params: Param[]): Row | undefined;
  all(...params: Param[]): Row[];
}

export interface BenchDb {
  exec(sql: string): void;
  prepare(sql: string): BenchStatement;
  /** Runs fn in a transaction (BEGIN ... COMMIT) the engine's idiomatic way. */
  transaction(fn: () => void): () => void;
  close(): void;
}

export interface EngineDef {
  /** "subject": an engine under test (gets ratio columns and a verdict); "baseline": a reference. */
  role: "subject" | "baseline";
  /** Version string reported in the results. */
  version(): Promise<string>;
  /** Opens (creating) database `file`. In-memory engines ignore the file. */
  open(file: string): Promise<BenchDb>;
  /** "file": a real database file on disk, commits durable; "memory": the database never leaves memory. */
  storage: "file" | "memory";
  /** One-line description for the table's notes. */
  note: string;
}

const require = createRequire(import.meta.url);
const repoRoot = findRepoRoot();

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj) && (JSON.parse(fs.readFileSync(pj, "utf8")) as { name?: string }).name === "selkie") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find selkie's package.json");
    dir = up;
  }
}

function pkgVersion(name: string): string {
  const pj = path.join(repoRoot, "node_modules", name, "package.json");
  return (JSON.parse(fs.readFileSync(pj, "utf8")) as { version: string }).version;
}

// better-sqlite3 and Selkie share the statement API the workload uses, so they need no adapter.
interface BetterSqliteDb {
  exec(sql: string): unknown;
  prepare(sql: string): BenchStatement;
  transaction(fn: () => void): () => void;
  close(): unknown;
}

// sql.js (no type declarations installed): the part of its API used here.
interface SqlJsStatement {
  bind(values?: Param[]): boolean;
  step(): boolean;
  getAsObject(): Row;
  run(values?: Param[]): void;
  reset(): boolean;
  free(): boolean;
}
interface SqlJsDatabase {
  exec(sql: string): unknown;
  run(sql: string): unknown;
  prepare(sql: string): SqlJsStatement;
  close(): void;
}
interface SqlJsStatic {
  Database: new () => SqlJsDatabase;
}

function sqlJsStatement(st: SqlJsStatement): BenchStatement {
  return {
    run(...params) {
      st.run(params);
    },
    get(...params) {
      st.bind(params);
      const row = st.step() ? st.getAsObject() : undefined;
      st.reset();
      return row;
    },
    all(...params) {
      st.bind(params);
      const rows: Row[] = [];
      while (st.step()) rows.push(st.getAsObject());
      st.reset();
      return rows;
    },
  };
}

export const ENGINES: Record<string, EngineDef> = {
  selkie: {
    role: "subject",
    storage: "file",
    note: "SQLite in Selkie's wasm enclave, plain (unsealed) file in a temp dir: VFS ocalls to node:fs, xSync = fsync",
    async version() {
      const pj = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
      return `selkie ${pj.version}`;
    },
    async open(file) {
      const { Database } = await import("../../runtime/index.js");
      // A plain (unsealed) SQLite file: what issue 2 measures. `plain` is how runtimes with sealed
      // storage (issue 4) ask for it; older runtimes ignore it. A sealed column is another engine.
      const opts = { plain: true, statementCache: 64 };
      const db = new Database(file, opts);
      return {
        exec: (sql) => void db.exec(sql),
        prepare: (sql) => db.prepare(sql) as unknown as BenchStatement,
        transaction: (fn) => db.transaction(fn),
        close: () => db.close(),
      };
    },
  },
  "selkie-sealed": {
    role: "subject",
    storage: "file",
    note: "SQLite in Selkie's wasm enclave, sealed store (issue 4): AES-256-GCM blocks, table log, platform counter per commit; journal in enclave memory",
    async version() {
      const pj = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
      return `selkie ${pj.version} (sealed)`;
    },
    async open(file) {
      const { Database, Platform } = await import("../../runtime/index.js");
      // A fresh platform (root secrets, counter store) beside the database, as a host would have.
      const dir = path.join(path.dirname(file), "platform");
      const platform = Platform.exists(dir) ? await Platform.open(dir) : await Platform.create(dir);
      const db = new Database(file, { platform, statementCache: 64 });
      return {
        exec: (sql) => void db.exec(sql),
        prepare: (sql) => db.prepare(sql) as unknown as BenchStatement,
        transaction: (fn) => db.transaction(fn),
        close: () => {
          db.close();
          platform.close();
        },
      };
    },
  },
  "better-sqlite3": {
    role: "baseline",
    storage: "file",
    note: "native SQLite (N-API), real file in a temp dir",
    async version() {
      return `better-sqlite3 ${pkgVersion("better-sqlite3")}`;
    },
    async open(file) {
      const BetterSqlite = require("better-sqlite3") as new (file: string) => BetterSqliteDb;
      const db = new BetterSqlite(file);
      return {
        exec: (sql) => void db.exec(sql),
        prepare: (sql) => db.prepare(sql),
        transaction: (fn) => db.transaction(fn),
        close: () => void db.close(),
      };
    },
  },
  "sql.js": {
    role: "baseline",
    storage: "memory",
    note: "SQLite compiled by Emscripten, database in Emscripten's in-memory file system (MEMFS): fsync is a no-op, commits are NOT durable",
    async version() {
      return `sql.js ${pkgVersion("sql.js")}`;
    },
    async open() {
      const init = require("sql.js") as () => Promise<SqlJsStatic>;
      const SQL = await init();
      const db = new SQL.Database();
      return {
        exec: (sql) => void db.exec(sql),
        prepare: (sql) => sqlJsStatement(db.prepare(sql)),
        // sql.js has no transaction helper; its documented way is BEGIN/COMMIT through exec/run.
        transaction: (fn) => () => {
          db.run("BEGIN");
          try {
            fn();
            db.run("COMMIT");
          } catch (e) {
            db.run("ROLLBACK");
            throw e;
          }
        },
        close: () => db.close(),
      };
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Deterministic data


const WORDS = ["alder", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo", "hazel", "ilex", "juniper", "kauri", "larch", "maple", "nutmeg", "oak", "pine"];

interface Data {
  name: string[];
  grp: number[];
  score: number[];
  k: number[];
}

function makeData(n: number, rnd: () => number): Data {
  const name: string[] = new Array(n);
  const grp: number[] = new Array(n);
  const score: number[] = new Array(n);
  const k: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    name[i] = `${WORDS[Math.floor(rnd() * WORDS.length)]}-${WORDS[Math.floor(rnd() * WORDS.length)]}-${(i * 2654435761 >>> 0).toString(36)}`;
    grp[i] = Math.floor(rnd() * 100);
    score[i] = Math.round(rnd() * 1e6) / 100;
    k[i] = i;
  }
  // The indexed column holds a random permutation of 0..n-1: every lookup finds exactly one row.
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = k[i]!;
    k[i] = k[j]!;
    k[j] = t;
  }
  return { name, grp, score, k };
}

function randInts(n: number, below: number, rnd: () => number): number[] {
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rnd() * below);
  return out;
}

/** Rounds a float for cross-engine comparison (aggregates of REALs may differ in the last bits across SQLite versions). */
function r10(x: unknown): string {
  return typeof x === "number" ? x.toPrecision(10) : String(x);
}

// ---------------------------------------------------------------------------------------------
// The workload

export interface WorkerResult {
  engine: string;
  version: string;
  storage: "file" | "memory";
  opts: WorkloadOpts;
  pragmas: Record<string, string>;
  /** Milliseconds per row id. */
  times: Record<string, number>;
  /** Check value per row id (must be equal across engines). */
  checks: Record<string, string>;
  /** SHA-256 over every row of the final table, in id order. */
  finalHash: string;
  integrity: string;
}

const SCHEMA = `CREATE TABLE t (
  id    INTEGER PRIMARY KEY,
  name  TEXT NOT NULL,
  grp   INTEGER NOT NULL,
  score REAL NOT NULL,
  k     INTEGER NOT NULL
);
CREATE INDEX t_k ON t(k);`;

function pragmas(db: BenchDb, o: WorkloadOpts): Record<string, string> {
  // Same pragmas for every engine. sql.js is in memory: its journal_mode reads back as "memory".
  db.exec(`PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; PRAGMA cache_size=${o.cacheSize}`);
  const read = (p: string): string => {
    const row = db.prepare(`PRAGMA ${p}`).get();
    return row ? String(Object.values(row)[0]) : "?";
  };
  return { journal_mode: read("journal_mode"), synchronous: read("synchronous"), cache_size: read("cache_size") };
}

async function runWorkload(db: BenchDb, o: WorkloadOpts): Promise<Pick<WorkerResult, "times" | "checks" | "finalHash" | "integrity">> {
  const times: Record<string, number> = {};
  const checks: Record<string, string> = {};
  const rnd = rng(o.seed);
  const N = o.rows;
  const data = makeData(N, rnd);
  db.exec(SCHEMA);

  // (1) Bulk insert, one transaction (ids 1..N).
  {
    const ins = db.prepare("INSERT INTO t (id, name, grp, score, k) VALUES (?, ?, ?, ?, ?)");
    const { name, grp, score, k } = data;
    const load = db.transaction(() => {
      for (let i = 0; i < N; i++) ins.run(i + 1, name[i]!, grp[i]!, score[i]!, k[i]!);
    });
    const t0 = performance.now();
    load();
    times.insert = performance.now() - t0;
    const row = db.prepare("SELECT count(*) AS n, sum(k) AS sk, sum(grp) AS sg, total(score) AS ts FROM t").get()!;
    checks.insert = `${row.n}/${row.sk}/${row.sg}/${r10(row.ts)}`;
  }

  // (2) Point selects by primary key.
  {
    const ids = randInts(o.points, N, rnd).map((x) => x + 1);
    const st = db.prepare("SELECT id, name, grp, score, k FROM t WHERE id = ?");
    let acc = 0;
    const t0 = performance.now();
    for (let i = 0; i < ids.length; i++) {
      const r = st.get(ids[i]!)!;
      acc += (r.k as number) + (r.name as string).length;
    }
    times.point = performance.now() - t0;
    checks.point = String(acc);
  }

  // (3) Lookups through the secondary index on k.
  {
    const ks = randInts(o.lookups, N, rnd);
    const st = db.prepare("SELECT id, name, grp, score, k FROM t WHERE k = ?");
    let acc = 0;
    const t0 = performance.now();
    for (let i = 0; i < ks.length; i++) {
      const r = st.get(ks[i]!)!;
      acc += (r.id as number) + (r.grp as number);
    }
    times.index = performance.now() - t0;
    checks.index = String(acc);
  }

  // (4) Range scans by primary key.
  {
    const los = randInts(o.scans, Math.max(1, N - o.scanLen), rnd).map((x) => x + 1);
    const st = db.prepare("SELECT id, name, score FROM t WHERE id >= ? AND id < ? ORDER BY id");
    let rows = 0;
    let acc = 0;
    const t0 = performance.now();
    for (let i = 0; i < los.length; i++) {
      const lo = los[i]!;
      const rs = st.all(lo, lo + o.scanLen);
      rows += rs.length;
      for (let j = 0; j < rs.length; j++) acc += (rs[j]!.name as string).length;
    }
    times.range = performance.now() - t0;
    checks.range = `${rows}/${acc}`;
  }

  // (5) Aggregate over the whole table.
  {
    const st = db.prepare(
      "SELECT grp, count(*) AS n, sum(k) AS sk, total(score) AS ts, max(length(name)) AS ml FROM t GROUP BY grp ORDER BY grp",
    );
    let last: Row[] = [];
    const t0 = performance.now();
    for (let i = 0; i < o.aggReps; i++) last = st.all();
    times.aggregate = performance.now() - t0;
    checks.aggregate = createHash("sha256")
      .update(last.map((r) => `${r.grp}:${r.n}:${r.sk}:${r10(r.ts)}:${r.ml}`).join("|"))
      .digest("hex")
      .slice(0, 16);
  }

  // (6) Update-heavy: many small transactions, each COMMIT durable (synchronous=FULL), then (7) the
  // same with synchronous=OFF (no fsync: what a commit costs apart from the disk).
  const updates = (rowId: string): void => {
    const n = o.txns * o.updatesPerTxn;
    const ids = randInts(n, N, rnd).map((x) => x + 1);
    const deltas = randInts(n, 400, rnd).map((x) => x / 4 - 50);
    const names = randInts(n, 1 << 30, rnd).map((x) => `upd-${x.toString(36)}`);
    const st = db.prepare("UPDATE t SET score = score + ?, name = ? WHERE id = ?");
    let base = 0;
    const txn = db.transaction(() => {
      for (let j = base; j < base + o.updatesPerTxn; j++) st.run(deltas[j]!, names[j]!, ids[j]!);
    });
    const t0 = performance.now();
    for (let i = 0; i < o.txns; i++) {
      base = i * o.updatesPerTxn;
      txn();
    }
    times[rowId] = performance.now() - t0;
    const row = db.prepare("SELECT total(score) AS ts, sum(length(name)) AS sl FROM t").get()!;
    checks[rowId] = `${r10(row.ts)}/${row.sl}`;
  };
  updates("commit");
  db.exec("PRAGMA synchronous=OFF");
  updates("commit-nosync");
  db.exec("PRAGMA synchronous=FULL");

  // Untimed: a hash of the whole final table, and SQLite's own integrity check.
  const h = createHash("sha256");
  for (const r of db.prepare("SELECT id, name, grp, score, k FROM t ORDER BY id").all()) {
    h.update(`${r.id}\t${r.name}\t${r.grp}\t${r.score}\t${r.k}\n`);
  }
  const integrity = String(Object.values(db.prepare("PRAGMA integrity_check").get() ?? {})[0]);
  return { times, checks, finalHash: h.digest("hex"), integrity };
}

/** Runs the workload once against `engine` in `dir` and returns the result. */
export async function runEngine(engine: string, dir: string, o: WorkloadOpts): Promise<WorkerResult> {
  const def = ENGINES[engine];
  if (!def) throw new Error(`unknown engine ${JSON.stringify(engine)}; known: ${Object.keys(ENGINES).join(", ")}`);
  fs.mkdirSync(dir, { recursive: true });
  if (o.warmup) {
    // A small untimed copy of the workload on its own database: loads the engine's code and lets the
    // JIT (and V8's wasm tier-up for the wasm engines) settle before anything is timed.
    const warm = await def.open(path.join(dir, "warmup.db"));
    pragmas(warm, o);
    await runWorkload(warm, { ...o, rows: 5000, points: 2000, lookups: 2000, scans: 200, aggReps: 2, txns: 50 });
    warm.close();
  }
  const db = await def.open(path.join(dir, "bench.db"));
  const effective = pragmas(db, o);
  const sqlite = String(Object.values(db.prepare("SELECT sqlite_version() AS v").get() ?? {})[0]);
  const r = await runWorkload(db, o);
  db.close();
  return { engine, version: `${await def.version()} (SQLite ${sqlite})`, storage: def.storage, opts: o, pragmas: effective, ...r };
}

async function main(): Promise<void> {
  const [engine, dir, json] = process.argv.slice(2);
  if (!engine || !dir) {
    process.stderr.write("usage: node dist/tools/bench/sql-worker.js <engine> <dir> [json-opts]\n");
    process.exit(2);
  }
  const o: WorkloadOpts = { ...FULL_OPTS, ...(json ? (JSON.parse(json) as Partial<WorkloadOpts>) : {}) };
  const result = await runEngine(engine, dir, o);
  process.stdout.write(JSON.stringify(result) + "\n");
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`sql-worker: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
