/**
 * Soak: EPC paging in a real `selkie serve`, under load and kill -9.
 *   npm run soak:paging -- [--seconds 60] [--dbs 300] [--epc 16MiB] [--clients 8] [--kill-every 15] [--seed N] [--dir DIR]
 *
 * Why: the pager hibernates idle databases into sealed images and wakes them on their next request,
 * while clients write through group commit, interactive transactions and batches, and the process
 * may die at any instant. Unit tests cover each piece; this drives them all at once, for minutes.
 *
 * What it checks: a spawned server with a small EPC budget hosts many databases; concurrent
 * @libsql/client workers hammer a skewed mix of them (a hot set and many cold, hibernated ones) with
 * inserts, reads, interactive transactions (committed or rolled back), batches, and now and then a
 * snapshot or hibernation through /v1. The soak runs at most one operation per database at a time,
 * so it knows each database's exact content (rows n = 1..count): every read must match it exactly.
 * Every --kill-every seconds the server is killed with SIGKILL and restarted on the same directory;
 * then every database must hold all its acknowledged rows, plus either none or all of the rows of the
 * one operation that was in flight on it at the kill (never part of a transaction or batch), and
 * PRAGMA integrity_check must pass on a sample. At the end the server is stopped gracefully (exit 0),
 * restarted, and every database is checked once more, exactly.
 *
 * Any failed operation while the server is up is a violation, except the documented load-shedding
 * answers (503 DB_BUSY, EPC_ADMISSION_REFUSED, REQUEST_TIMEOUT, 409 SNAPSHOT_BUSY) and client
 * timeouts: those are counted by code and reported; a shed operation must have changed nothing, a
 * timed-out one is settled like one in flight at a kill. Exits 1 on the first violation (the server
 * directory is kept), 2 on bad options, 0 after printing the tables and PASS.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { createClient, type Client, type InStatement, type ResultSet } from "@libsql/client";
import { parseSize } from "../../runtime/platform/epc.js";
import { rng } from "../rng.js";
import { markdownTable } from "../table.js";
import { api, startServer, type ServerProc } from "../../test/server/harness.js";
import { CLI_HOME, testPlatform } from "../../test/helpers.js";

/** Importing the test harness made a platform and a CLI home in temp dirs; this soak uses neither. */
process.once("exit", () => {
  testPlatform.close();
  fs.rmSync(testPlatform.dir, { recursive: true, force: true });
  fs.rmSync(CLI_HOME, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `usage: node dist/tools/soak/paging-server.js [options]   (npm run soak:paging -- [options])

  --seconds S      how long the clients run, pauses for restarts not counted (default 60)
  --dbs N          databases to create (default 300)
  --epc SIZE       the server platform's EPC budget (default 16MiB)
  --clients C      concurrent client workers (default 8)
  --kill-every S   seconds of load between kill -9 of the server; 0: never (default 15)
  --seed N         seed of the workload's random choices (default: from the clock)
  --dir DIR        server directory, kept afterwards (must be new or empty); default: a temp dir,
                   removed on success and kept on failure
  -h, --help       this text

Exit: 0 PASS, 1 a violation (message on stderr, directory kept), 2 bad options.`;

interface Options {
  seconds: number;
  dbs: number;
  epc: string;
  clients: number;
  killEvery: number;
  seed: number;
  dir: string | undefined;
}

function usageError(msg: string): never {
  process.stderr.write(`soak:paging: ${msg}\n\n${USAGE}\n`);
  process.exit(2);
}

function num(raw: string | undefined, name: string, def: number, min: number): number {
  if (raw === undefined) return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || raw.trim() === "") usageError(`--${name} takes a number >= ${min}, not ${JSON.stringify(raw)}`);
  return v;
}

function int(raw: string | undefined, name: string, def: number, min: number): number {
  const v = num(raw, name, def, min);
  if (!Number.isSafeInteger(v)) usageError(`--${name} takes an integer, not ${JSON.stringify(raw)}`);
  return v;
}

function parseOptions(): Options {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: "string" },
        dbs: { type: "string" },
        epc: { type: "string" },
        clients: { type: "string" },
        "kill-every": { type: "string" },
        seed: { type: "string" },
        dir: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    usageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const s = (k: string): string | undefined => values[k] as string | undefined;
  const dir = s("dir");
  if (dir !== undefined && fs.existsSync(dir) && fs.readdirSync(dir).length > 0) usageError(`--dir ${dir} is not empty: give a new or empty directory`);
  const epc = s("epc") ?? "16MiB";
  try {
    parseSize(epc);
  } catch (e) {
    usageError(`--epc takes a size such as 16MiB: ${(e as Error).message}`);
  }
  return {
    seconds: num(s("seconds"), "seconds", 60, 1),
    dbs: int(s("dbs"), "dbs", 300, 1),
    epc,
    clients: int(s("clients"), "clients", 8, 1),
    killEvery: num(s("kill-every"), "kill-every", 15, 0),
    seed: int(s("seed"), "seed", Date.now() % 1e9, 0),
    dir: dir === undefined ? undefined : path.resolve(dir),
  };
}

const OPTS = parseOptions();
const DIR = OPTS.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "selkie-soak-paging-"));
const random = rng(OPTS.seed);
/** A request that takes longer than this counts as a client timeout (the server's own queue limit is 30 s). */
const CLIENT_TIMEOUT_MS = 40_000;
/** Databases checked with PRAGMA integrity_check after each restart, besides those an operation was in flight on. */
const INTEGRITY_SAMPLE = 12;
/** Server answers that shed load: documented, retried later, never a violation. */
const SHED_CODES = new Set(["DB_BUSY", "EPC_ADMISSION_REFUSED", "REQUEST_TIMEOUT", "SNAPSHOT_BUSY"]);
const SERVER_ARGS = ["--epc", OPTS.epc, "--log-level", "warn"];

// ---------------------------------------------------------------------------------------------
// The model: what each database must hold

interface Db {
  name: string;
  /** Acknowledged rows: the table holds exactly n = 1..rows, each with db = name. */
  rows: number;
  /** An operation on it is in flight (the soak runs one at a time per database). */
  busy: boolean;
  /**
   * An operation whose outcome is unknown (in flight at a kill, or timed out on the client): it adds
   * `rows` or nothing. Settled at the next verification; until then the database sits out.
   */
  unresolved: { op: OpKind; rows: number } | undefined;
}

const OP_KINDS = ["insert", "read", "tx-commit", "tx-rollback", "batch", "hibernate", "snapshot"] as const;
type OpKind = (typeof OP_KINDS)[number];
/** Relative frequency of each operation. */
const OP_WEIGHTS: Record<OpKind, number> = { insert: 35, read: 30, "tx-commit": 12, "tx-rollback": 5, batch: 15, hibernate: 2, snapshot: 1 };

interface Counts {
  ok: number;
  shed: number;
  atKill: number;
  timeouts: number;
}
const zero = (): Counts => ({ ok: 0, shed: 0, atKill: 0, timeouts: 0 });

const dbs: Db[] = Array.from({ length: OPTS.dbs }, (_, i) => ({ name: `p${String(i).padStart(4, "0")}`, rows: 0, busy: false, unresolved: undefined }));
/** The hot set: 20% of the databases get 80% of the accesses. */
const hotCount = Math.max(1, Math.round(OPTS.dbs * 0.2));
const ops = Object.fromEntries(OP_KINDS.map((k) => [k, zero()])) as Record<OpKind, Counts>;
const shedCodes = new Map<string, number>();

// ---------------------------------------------------------------------------------------------
// The server, its clients, and failure

let server: ServerProc | undefined;
let adminToken = "";
let expectExit = false;
const clients = new Map<string, Client>();

class Violation extends Error {}

function fail(msg: string, label = "VIOLATION"): never {
  process.stderr.write(`\n${label}: ${msg}\n  seed ${OPTS.seed}; server directory kept: ${DIR}\n`);
  if (server) {
    const tail = (s: string): string => s.split("\n").slice(-20).join("\n");
    process.stderr.write(`--- server stderr (tail) ---\n${tail(server.stderr())}\n--- server stdout (tail) ---\n${tail(server.stdout())}\n`);
    expectExit = true;
    server.proc.kill("SIGKILL");
  }
  process.exit(1);
}

function progress(s: string): void {
  process.stderr.write(`soak:paging: ${s}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** fetch with the client timeout: a hung request becomes a TimeoutError. */
const timedFetch = (req: Request): Promise<Response> => fetch(req, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) });

async function start(): Promise<void> {
  let s: ServerProc;
  try {
    s = await startServer({ dir: DIR, args: SERVER_ARGS });
  } catch (e) {
    server = undefined;
    fail(`the server did not start on ${DIR}: ${describe(e)}`);
  }
  if (s.adminToken) adminToken = s.adminToken;
  expectExit = false;
  s.proc.once("exit", (code, signal) => {
    if (!expectExit) fail(`the server exited by itself (code ${code}, signal ${signal})`);
  });
  server = s;
}

function up(): ServerProc {
  if (!server) throw new Error("no server");
  return server;
}

function clientFor(db: Db): Client {
  let c = clients.get(db.name);
  if (!c) {
    c = createClient({ url: `${up().url}/db/${db.name}/`, authToken: adminToken, fetch: timedFetch });
    clients.set(db.name, c);
  }
  return c;
}

function closeClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

/** A management call with the admin token; answers non-2xx as an error carrying the server's code. */
async function admin(method: string, p: string, body?: unknown): Promise<any> {
  const r = await api(up(), adminToken, method, p, body, {}, AbortSignal.timeout(CLIENT_TIMEOUT_MS));
  if (r.status < 200 || r.status > 299) throw Object.assign(new Error(`${method} ${p}: ${r.status} ${r.text}`), { status: r.status, code: r.json?.code as string | undefined });
  return r.json;
}

// ---------------------------------------------------------------------------------------------
// Errors: answers, load shedding, timeouts, and the transport failing (the server is gone)

type ErrorClass = { kind: "shed"; code: string } | { kind: "timeout" } | { kind: "transport" } | { kind: "answer" };

const TRANSPORT = /ECONNRESET|ECONNREFUSED|EPIPE|UND_ERR_SOCKET|UND_ERR_CLOSED|socket hang up|other side closed|fetch failed/i;

function describe(e: unknown): string {
  const parts: string[] = [];
  for (let x: unknown = e, depth = 0; x !== undefined && x !== null && depth < 4; x = (x as { cause?: unknown }).cause, depth++) {
    const err = x as { name?: string; code?: string; message?: string };
    parts.push(`${err.name ?? "Error"}${err.code ? ` [${err.code}]` : ""}: ${err.message ?? String(x)}`);
  }
  return parts.join(" <- ");
}

function classify(e: unknown): ErrorClass {
  const chain: Array<{ name?: string; code?: string }> = [];
  for (let x: unknown = e, depth = 0; x !== undefined && x !== null && depth < 4; x = (x as { cause?: unknown }).cause, depth++) chain.push(x as { name?: string; code?: string });
  const code = chain.find((x) => typeof x.code === "string" && SHED_CODES.has(x.code))?.code;
  if (code !== undefined) return { kind: "shed", code };
  if (chain.some((x) => x.name === "TimeoutError")) return { kind: "timeout" };
  if (TRANSPORT.test(describe(e))) return { kind: "transport" };
  return { kind: "answer" };
}

/** Retries an operation of the soak's own (setup, verification) while the server sheds load. */
async function retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof Violation) throw e;
      const c = classify(e);
      if (c.kind !== "shed" || attempt >= 50) fail(`${what}: ${describe(e)}`);
      shedCodes.set(c.code, (shedCodes.get(c.code) ?? 0) + 1);
      await sleep(20 * attempt);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Operations

const insert = (db: Db, n: number): InStatement => ({ sql: "INSERT INTO t(db, n) VALUES (?, ?)", args: [db.name, n] });

interface Content {
  count: number;
  max: number;
  sum: number;
  foreign: number;
}

async function readContent(c: { execute(stmt: InStatement): Promise<ResultSet> }, db: Db): Promise<Content> {
  const rs = await c.execute({ sql: "SELECT count(*) AS c, coalesce(max(n), 0) AS m, coalesce(sum(n), 0) AS s, coalesce(sum(db <> ?), 0) AS x FROM t", args: [db.name] });
  const r = rs.rows[0]!;
  return { count: Number(r.c), max: Number(r.m), sum: Number(r.s), foreign: Number(r.x) };
}

/** The table must hold n = 1..count, all of this database: anything else is a lost, doubled or stray row. */
function checkShape(db: Db, got: Content, when: string): void {
  const sum = (got.count * (got.count + 1)) / 2;
  if (got.max !== got.count || got.sum !== sum || got.foreign !== 0) {
    throw new Violation(`${db.name} ${when}: rows are not n = 1..${got.count}: count ${got.count}, max(n) ${got.max}, sum(n) ${got.sum} (want ${sum}), rows of other databases ${got.foreign}; the soak's model: ${db.rows} acknowledged`);
  }
}

function checkExact(db: Db, got: Content, want: number, when: string): void {
  checkShape(db, got, when);
  if (got.count !== want) throw new Violation(`${db.name} ${when}: ${got.count} rows, expected ${want} (acknowledged)`);
}

/** Rows the operation adds when it takes effect. */
function rowsOf(kind: OpKind, batch: number): number {
  return kind === "insert" ? 1 : kind === "tx-commit" ? 2 : kind === "batch" ? batch : 0;
}

async function transaction(c: Client, db: Db, commit: boolean): Promise<void> {
  const tx = await c.transaction("write");
  try {
    await tx.execute(insert(db, db.rows + 1));
    await tx.execute(insert(db, db.rows + 2));
    checkExact(db, await readContent(tx, db), db.rows + 2, "inside a transaction after two inserts");
    if (commit) await tx.commit();
    else await tx.rollback();
  } finally {
    tx.close();
  }
}

async function runOp(kind: OpKind, db: Db, batch: number): Promise<void> {
  const c = clientFor(db);
  switch (kind) {
    case "insert":
      await c.execute(insert(db, db.rows + 1));
      return;
    case "read":
      checkExact(db, await readContent(c, db), db.rows, "read");
      return;
    case "tx-commit":
    case "tx-rollback":
      return transaction(c, db, kind === "tx-commit");
    case "batch":
      await c.batch(Array.from({ length: batch }, (_, i) => insert(db, db.rows + 1 + i)), "write");
      return;
    case "hibernate": {
      const r = await admin("POST", `/v1/databases/${db.name}/hibernate`);
      if (typeof r?.hibernated !== "boolean") throw new Violation(`hibernate ${db.name}: unexpected answer ${JSON.stringify(r)}`);
      return;
    }
    case "snapshot": {
      const r = await admin("POST", `/v1/databases/${db.name}/snapshot`);
      if (typeof r?.image?.seq !== "number") throw new Violation(`snapshot ${db.name}: unexpected answer ${JSON.stringify(r)}`);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Workers

const run = {
  stopped: false,
  paused: false,
  /** Incremented at each kill, before the signal: an operation that started in an older epoch was in flight at a kill. */
  epoch: 0,
  inFlight: 0,
  resumed: Promise.resolve(),
  resume: () => {},
  idle: undefined as (() => void) | undefined,
};

function pickOp(): OpKind {
  const total = OP_KINDS.reduce((s, k) => s + OP_WEIGHTS[k], 0);
  let x = random() * total;
  for (const k of OP_KINDS) if ((x -= OP_WEIGHTS[k]) < 0) return k;
  return "read";
}

/** A free database: 80% from the hot set, else any; undefined when none was free in a few tries. */
function pickDb(): Db | undefined {
  for (let i = 0; i < 16; i++) {
    const db = dbs[random() < 0.8 ? Math.floor(random() * hotCount) : Math.floor(random() * dbs.length)]!;
    if (!db.busy && db.unresolved === undefined) return db;
  }
  return undefined;
}

/** Runs one operation and updates the model from its outcome. */
async function attempt(kind: OpKind, db: Db): Promise<void> {
  const batch = 2 + Math.floor(random() * 4);
  const rows = rowsOf(kind, batch);
  const epoch = run.epoch;
  try {
    await runOp(kind, db, batch);
    db.rows += rows;
    ops[kind].ok++;
  } catch (e) {
    if (e instanceof Violation) fail(e.message);
    const c = classify(e);
    if (c.kind === "shed") {
      // A shed operation changed nothing: the next read of this database checks that.
      ops[kind].shed++;
      shedCodes.set(c.code, (shedCodes.get(c.code) ?? 0) + 1);
    } else if (c.kind === "transport" && run.epoch !== epoch) {
      db.unresolved = { op: kind, rows };
      ops[kind].atKill++;
    } else if (c.kind === "timeout") {
      db.unresolved = { op: kind, rows };
      ops[kind].timeouts++;
    } else {
      fail(`${kind} on ${db.name} failed while the server was up (${db.rows} rows acknowledged): ${describe(e)}`);
    }
  }
}

async function worker(): Promise<void> {
  while (!run.stopped) {
    if (run.paused) {
      await run.resumed;
      continue;
    }
    const db = pickDb();
    if (!db) {
      await sleep(1);
      continue;
    }
    db.busy = true;
    run.inFlight++;
    try {
      await attempt(pickOp(), db);
    } finally {
      db.busy = false;
      if (--run.inFlight === 0) run.idle?.();
    }
  }
}

function pause(): void {
  run.paused = true;
  run.resumed = new Promise((r) => (run.resume = r));
}

function resume(): void {
  run.paused = false;
  run.resume();
}

async function untilIdle(): Promise<void> {
  if (run.inFlight === 0) return;
  await new Promise<void>((r) => (run.idle = r));
  run.idle = undefined;
}

// ---------------------------------------------------------------------------------------------
// Setup, verification, paging figures

/** Runs fn over items with at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function createDatabases(): Promise<void> {
  const t0 = performance.now();
  let done = 0;
  await eachLimited(dbs, 4, async (db) => {
    await retrying(`creating ${db.name}`, () => admin("POST", "/v1/databases", { name: db.name }));
    await retrying(`creating table t in ${db.name}`, () => clientFor(db).execute("CREATE TABLE t(id INTEGER PRIMARY KEY, db TEXT, n INTEGER)"));
    if (++done % 100 === 0 || done === dbs.length) progress(`created ${done}/${dbs.length} databases (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  });
}

interface Verified {
  dbs: number;
  integrity: number;
  /** Writes whose outcome was unknown (in flight at a kill, or timed out): how many took effect, how many not. */
  tookEffect: number;
  didNot: number;
}

/**
 * Settles one database against what was read: exactly the acknowledged rows, or, with an operation
 * unresolved, those plus none or all of its rows. Returns whether the unresolved write took effect.
 */
function settle(db: Db, got: Content, when: string): boolean | undefined {
  const u = db.unresolved;
  if (u === undefined || u.rows === 0) checkExact(db, got, db.rows, when);
  else {
    checkShape(db, got, when);
    if (got.count !== db.rows && got.count !== db.rows + u.rows) {
      throw new Violation(`${db.name} ${when}: ${got.count} rows; ${db.rows} acknowledged and a ${u.op} of ${u.rows} rows unresolved, so expected ${db.rows} or ${db.rows + u.rows} (part of an operation took effect, or rows were lost)`);
    }
  }
  const applied = u === undefined || u.rows === 0 ? undefined : got.count > db.rows;
  db.rows = got.count;
  db.unresolved = undefined;
  return applied;
}

async function integrityCheck(sample: Iterable<Db>, when: string): Promise<void> {
  await eachLimited([...sample], 4, async (db) => {
    const rs = await retrying(`integrity_check of ${db.name}`, () => clientFor(db).execute("PRAGMA integrity_check"));
    const verdict = rs.rows.map((r) => String(r[0])).join("; ");
    if (verdict !== "ok") fail(`${db.name} ${when}: PRAGMA integrity_check says ${verdict}`);
  });
}

/** Reads and settles every database; PRAGMA integrity_check on those that had an operation unresolved and on a random sample. */
async function verifyAll(when: string): Promise<Verified> {
  const sample = new Set<Db>();
  const v: Verified = { dbs: 0, integrity: 0, tookEffect: 0, didNot: 0 };
  await eachLimited(dbs, 8, async (db) => {
    const got = await retrying(`reading ${db.name} ${when}`, () => readContent(clientFor(db), db));
    if (db.unresolved !== undefined) sample.add(db);
    let applied: boolean | undefined;
    try {
      applied = settle(db, got, when);
    } catch (e) {
      fail((e as Error).message);
    }
    if (applied === true) v.tookEffect++;
    if (applied === false) v.didNot++;
    v.dbs++;
  });
  const want = Math.min(dbs.length, sample.size + INTEGRITY_SAMPLE);
  while (sample.size < want) sample.add(dbs[Math.floor(random() * dbs.length)]!);
  await integrityCheck(sample, when);
  v.integrity = sample.size;
  return v;
}

interface EpcFigures {
  budget: number;
  committed: number;
  peak: number;
  resident: number;
  hibernated: number;
  evictions: number;
  wakes: number;
  wakeFailures: number;
  wakeP50: number;
  wakeP99: number;
}

async function epcFigures(): Promise<EpcFigures> {
  const e = await retrying("GET /v1/platform/epc", () => admin("GET", "/v1/platform/epc"));
  const p = e.paging ?? {};
  return {
    budget: e.budget,
    committed: e.committed,
    peak: e.peak,
    resident: p.resident ?? 0,
    hibernated: p.hibernated ?? 0,
    evictions: p.evictions ?? 0,
    wakes: p.wakes ?? 0,
    wakeFailures: p.wakeFailures ?? 0,
    wakeP50: p.wakeMs?.p50 ?? NaN,
    wakeP99: p.wakeMs?.p99 ?? NaN,
  };
}

// ---------------------------------------------------------------------------------------------
// Phases: one per server lifetime, ended by a kill -9 or by the end

interface Phase {
  n: number;
  seconds: number;
  ok: number;
  shed: number;
  atKill: number;
  timeouts: number;
  end: string;
  verified: Verified | undefined;
  epc: EpcFigures;
}
const phases: Phase[] = [];

function totals(): Counts {
  const t = zero();
  for (const k of OP_KINDS) for (const f of ["ok", "shed", "atKill", "timeouts"] as const) t[f] += ops[k][f];
  return t;
}

let phaseStart = totals();

function endPhase(seconds: number, end: string, epc: EpcFigures, verified: Verified | undefined): Phase {
  const t = totals();
  const p: Phase = { n: phases.length + 1, seconds, ok: t.ok - phaseStart.ok, shed: t.shed - phaseStart.shed, atKill: t.atKill - phaseStart.atKill, timeouts: t.timeouts - phaseStart.timeouts, end, verified, epc };
  phaseStart = t;
  phases.push(p);
  return p;
}

/** Kill -9 while the workers run, restart on the same directory, verify every database. */
async function killAndVerify(): Promise<Verified> {
  pause();
  run.epoch++;
  expectExit = true;
  await up().stop("SIGKILL");
  await untilIdle();
  closeClients();
  const inFlight = dbs.filter((d) => d.unresolved !== undefined).length;
  const t0 = performance.now();
  await start();
  const restartMs = performance.now() - t0;
  const r = await verifyAll(`after kill -9 #${run.epoch}`);
  progress(
    `kill -9 #${run.epoch}: restarted in ${(restartMs / 1000).toFixed(1)} s; ${r.dbs} databases verified (${inFlight} had an operation in flight; ` +
      `writes in flight: ${r.tookEffect} took effect whole, ${r.didNot} not at all), ${r.integrity} integrity-checked (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  resume();
  return r;
}

/** Runs the workers for OPTS.seconds of load, killing the server every OPTS.killEvery seconds. */
async function soak(): Promise<void> {
  const workers = Array.from({ length: OPTS.clients }, () => worker());
  const total = OPTS.seconds * 1000;
  let worked = 0;
  for (;;) {
    const slice = OPTS.killEvery > 0 ? Math.min(OPTS.killEvery * 1000, total - worked) : total - worked;
    const t0 = performance.now();
    await sleep(slice);
    if (worked + (performance.now() - t0) >= total - 1) {
      run.stopped = true;
      await Promise.all(workers);
      printPhases([endPhase((performance.now() - t0) / 1000, "end", await epcFigures(), undefined)]);
      return;
    }
    const epc = await epcFigures();
    const loadMs = performance.now() - t0;
    worked += loadMs;
    printPhases([endPhase(loadMs / 1000, "kill -9", epc, await killAndVerify())]);
  }
}

// ---------------------------------------------------------------------------------------------
// Tables

/** A Markdown table whose columns from `left` on are right-aligned (numbers). */
const table = (header: string[], rows: string[][], left: number): string => markdownTable(header, rows, (c) => c >= left);

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(x >= 10 ? 1 : 2) : "-");
const mib = (b: number): string => (b / (1024 * 1024)).toFixed(1);

/** One row per server lifetime; the paging figures are that server process's, read just before it ended. */
function printPhases(ps: Phase[]): void {
  const header = ["phase", "ended by", "seconds", "ops ok", "shed", "in flight at kill", "timeouts", "verified", "integrity", "unsettled writes: whole / none", "wakes", "evictions", "wake p50 / p99 ms", "resident / hibernated", "EPC MiB committed / peak / budget"];
  const rows = ps.map((p) => [
    String(p.n),
    p.end,
    p.seconds.toFixed(1),
    String(p.ok),
    String(p.shed),
    String(p.atKill),
    String(p.timeouts),
    p.verified ? String(p.verified.dbs) : "-",
    p.verified ? String(p.verified.integrity) : "-",
    p.verified ? `${p.verified.tookEffect} / ${p.verified.didNot}` : "-",
    String(p.epc.wakes),
    String(p.epc.evictions),
    `${ms(p.epc.wakeP50)} / ${ms(p.epc.wakeP99)}`,
    `${p.epc.resident} / ${p.epc.hibernated}`,
    `${mib(p.epc.committed)} / ${mib(p.epc.peak)} / ${mib(p.epc.budget)}`,
  ]);
  process.stdout.write(`${table(header, rows, 2)}\n\n`);
}

function printOps(): void {
  const row = (name: string, c: Counts): string[] => [name, String(c.ok), String(c.shed), String(c.atKill), String(c.timeouts)];
  const rows = OP_KINDS.map((k) => row(k, ops[k]));
  rows.push(row("all", totals()));
  process.stdout.write(`${table(["operation", "ok", "load-shed", "in flight at kill", "client timeouts"], rows, 1)}\n\n`);
  const codes = [...shedCodes.entries()].sort((a, b) => b[1] - a[1]).map(([c, n]) => [c, String(n)]);
  process.stdout.write(`${table(["load-shed answer (with the soak's own retries)", "count"], codes.length ? codes : [["(none)", "0"]], 1)}\n\n`);
}

function printSummary(seconds: number, final: Verified): void {
  process.stdout.write(`## soak:paging: ${OPTS.dbs} databases, EPC ${OPTS.epc}, ${OPTS.clients} clients, ${seconds.toFixed(1)} s of load, kill -9 every ${OPTS.killEvery || "never"} s, seed ${OPTS.seed}\n\n`);
  printOps();
  printPhases(phases);
  const sum = (f: (p: Phase) => number): number => phases.reduce((s, p) => s + f(p), 0);
  const t = totals();
  const rows = [
    ["seconds of load", seconds.toFixed(1)],
    ["operations ok / load-shed / client timeouts", `${t.ok} / ${t.shed} / ${t.timeouts}`],
    ["kill -9", String(phases.filter((p) => p.end === "kill -9").length)],
    ["databases verified after kills", String(sum((p) => p.verified?.dbs ?? 0))],
    ["writes in flight at kills: took effect whole / not at all", `${sum((p) => p.verified?.tookEffect ?? 0)} / ${sum((p) => p.verified?.didNot ?? 0)}`],
    ["databases verified after the graceful stop and restart", `${final.dbs} (integrity-checked ${final.integrity})`],
    ["wakes / evictions / wake failures (all phases)", `${sum((p) => p.epc.wakes)} / ${sum((p) => p.epc.evictions)} / ${sum((p) => p.epc.wakeFailures)}`],
  ];
  process.stdout.write(`${table(["total", "value"], rows, 1)}\n\n`);
}

// ---------------------------------------------------------------------------------------------
// Main

async function stopGracefully(when: string): Promise<void> {
  expectExit = true;
  const code = await up().stop("SIGTERM");
  if (code !== 0) fail(`the server exited with ${code} on SIGTERM ${when}`);
}

async function main(): Promise<void> {
  progress(`seed ${OPTS.seed}; ${OPTS.dbs} databases, EPC ${OPTS.epc}, ${OPTS.clients} clients, ${OPTS.seconds} s, kill -9 every ${OPTS.killEvery || "never"} s; dir ${DIR}`);
  await start();
  if (!adminToken) fail("the server printed no admin token");
  await createDatabases();
  phaseStart = totals();
  const t0 = performance.now();
  await soak();
  const seconds = phases.reduce((s, p) => s + p.seconds, 0);
  progress(`load done after ${((performance.now() - t0) / 1000).toFixed(1)} s; stopping the server gracefully, restarting, verifying every database`);
  closeClients();
  await stopGracefully("after the load");
  await start();
  const finalVerified = await verifyAll("after a graceful stop and restart");
  closeClients();
  await stopGracefully("at the end");
  printSummary(seconds, finalVerified);
  if (OPTS.dir === undefined) fs.rmSync(DIR, { recursive: true, force: true });
  process.stdout.write("PASS\n");
}

main().catch((e: unknown) => fail(`${describe(e)}${e instanceof Error && e.stack ? `\n${e.stack}` : ""}`, "FAILED (unexpected error)"));
