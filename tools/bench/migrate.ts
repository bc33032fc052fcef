/**
 * `npm run bench:migrate` (node dist/tools/bench/migrate.js [--sizes 16,64,256] [--big]
 * [--migrations N] [--repeat R] [--quick] [--json]): what a live migration of a sealed database
 * costs, beside the insecure baseline of the same run (tools/bench/README.md, "Migration").
 *
 * Per database size:
 *  - total time, R times each, alternating: Selkie (connectAttested + migrateOut + acceptMigration
 *    between two platforms of one fleet CA, then the database opened where it arrived and its rows
 *    counted) vs the baseline (a plain SQLite file with the same rows stopped, copied over TLS 1.3 on
 *    127.0.0.1, fsynced, reopened with better-sqlite3 and counted). Medians; ratio target <= 1.05x.
 *  - bytes sent vs the database's size, pre-copy rounds, attestation time, frozen time.
 *  - downtime seen by a client: N migrations back and forth under a write load (migrate-load.ts),
 *    p50 and p99 of the gap between acknowledged writes around each freeze (targets 5 ms, 20 ms);
 *    then every acknowledged write is checked on the final owner.
 * Exit code 1 when an acknowledged write is missing or a run fails, 0 otherwise (targets missed are
 * reported, not failed: it is a benchmark).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Database } from "../../runtime/index.js";
import { markdownTable } from "../table.js";
import { buildPlain, copyOverTls } from "./migrate-baseline.js";
import { quantile, serveAt, WriteLoad, type Owner } from "./migrate-load.js";
import { makePeers, move, openAt, tempDir, type Peer, type Peers } from "./migrate-peers.js";

const PAD = 1000;
const ROW_BYTES = 1036; // a 1,000-byte blob row: about 3 rows per 4 KiB page
const MIB = 1024 * 1024;

interface Args {
  sizes: number[];
  migrations: number;
  repeat: number;
  json: boolean;
  quick: boolean;
}

function parseArgs(argv: string[]): Args {
  const val = (k: string): string | undefined => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes("--quick");
  const sizes = val("--sizes")?.split(",").map(Number) ?? (quick ? [1, 4] : [16, 64, 256, ...(argv.includes("--big") ? [1024] : [])]);
  if (sizes.some((s) => !(s > 0))) throw new Error("--sizes takes MiB values separated by commas, e.g. --sizes 16,64");
  const migrations = Number(val("--migrations") ?? (quick ? 3 : 20));
  const repeat = Number(val("--repeat") ?? (quick ? 1 : 3));
  if (!(migrations >= 1) || !(repeat >= 1)) throw new Error("--migrations and --repeat take a positive number");
  return { sizes, migrations, repeat, json: argv.includes("--json"), quick };
}

export interface SizeResult {
  mib: number;
  rows: number;
  selkieBytes: number;
  plainBytes: number;
  baselineMs: number[];
  selkieMs: number[];
  ratio: number;
  bytesSent: number[];
  rounds: number[];
  attestMs: number[];
  frozenMs: number[];
  slotsResent: number[];
  load: {
    migrations: number;
    downtimeMs: number[];
    frozenMs: number[];
    rounds: number[];
    acked: number;
    ackedPresent: number;
    failed: string[];
  };
}

const median = (xs: number[]): number => quantile(xs, 0.5);
const other = (p: Pick<Peers, "a" | "b">, x: Peer): Peer => (x === p.a ? p.b : p.a);
const fileBytes = (dir: string, name: string): number => fs.statSync(path.join(dir, name)).size + fs.statSync(path.join(dir, `${name}.log`)).size;

function buildSealed(peer: Peer, name: string, rows: number): Database {
  const db = openAt(peer, name, true);
  db.exec("CREATE TABLE t(n INTEGER PRIMARY KEY, pad BLOB); CREATE TABLE w(id INTEGER PRIMARY KEY)");
  const ins = db.prepare("INSERT INTO t VALUES (?, randomblob(?))");
  for (let i = 0; i < rows; i += 2000) {
    db.transaction(() => {
      for (let j = i; j < Math.min(rows, i + 2000); j++) ins.run(j, PAD);
    })();
  }
  return db;
}

async function timedRuns(peers: Peers, args: Args, r: SizeResult, name: string, plain: string, start: Owner): Promise<Owner> {
  let owner = start;
  for (let i = 0; i < args.repeat; i++) {
    const copy = `${plain}.copy`;
    const b = await copyOverTls(plain, copy);
    if (b.rows !== r.rows) throw new Error(`baseline copy has ${b.rows} rows, expected ${r.rows}`);
    fs.rmSync(copy);
    r.baselineMs.push(b.totalMs);
    const to = other(peers, owner.peer);
    const t0 = performance.now();
    const m = await move(peers, owner.peer, to, name, owner.src);
    const a = await m.accepted;
    if (a.state !== "done") throw new Error(`the destination ended in ${a.state}`);
    const db = openAt(to, name);
    const n = Number(db.query<{ c: number }>("SELECT count(*) AS c FROM t")[0]!.c);
    r.selkieMs.push(performance.now() - t0);
    if (n !== r.rows) throw new Error(`the migrated database has ${n} rows, expected ${r.rows}`);
    r.bytesSent.push(m.stats.bytes.precopy + m.stats.bytes.final);
    r.rounds.push(m.stats.rounds);
    r.attestMs.push(m.attestMs);
    r.frozenMs.push(m.stats.frozenMs);
    r.slotsResent.push(m.stats.slotsResent);
    owner = serveAt(to, name, db);
  }
  return owner;
}

async function underLoad(peers: Peers, args: Args, r: SizeResult, name: string, start: Owner): Promise<Owner> {
  const load = new WriteLoad(start);
  load.start();
  const freezes: number[] = [];
  await new Promise((res) => setTimeout(res, 50));
  for (let i = 0; i < args.migrations; i++) {
    const from = load.owner.peer;
    const to = other(peers, from);
    const timed = load.timedSource();
    let next: Promise<Owner> | undefined;
    try {
      const m = await move(peers, from, to, name, timed.source, (acc) => {
        next = acc.then(() => serveAt(to, name));
        next.catch(() => undefined);
        load.next = next;
      });
      await next;
      r.load.frozenMs.push(m.stats.frozenMs);
      r.load.rounds.push(m.stats.rounds);
      freezes.push(timed.frozeAt());
    } catch (e) {
      load.next = undefined;
      r.load.failed.push(`${from.label}->${to.label}: ${(e as Error).message}`);
    }
    await new Promise((res) => setTimeout(res, 30)); // writes on the new owner before the next move
  }
  await load.stop();
  r.load.migrations = freezes.length;
  r.load.downtimeMs = freezes.map((t) => load.gapAround(t));
  const db = load.owner.src.database!;
  const present = new Set(db.query<{ id: number }>("SELECT id FROM w").map((x) => Number(x.id)));
  r.load.acked = load.acked.length;
  r.load.ackedPresent = load.acked.filter((id) => present.has(id)).length;
  return load.owner;
}

async function runSize(peers: Peers, args: Args, mib: number): Promise<SizeResult> {
  const rows = Math.max(1, Math.round((mib * MIB) / ROW_BYTES));
  const name = `bench${mib}.db`;
  const db = buildSealed(peers.a, name, rows);
  const plainDir = tempDir("selkie-benchmig-plain-");
  const plain = path.join(plainDir, "plain.db");
  buildPlain(plain, rows, PAD);
  const r: SizeResult = {
    mib,
    rows,
    selkieBytes: fileBytes(peers.a.dataDir, name),
    plainBytes: fs.statSync(plain).size,
    baselineMs: [],
    selkieMs: [],
    ratio: NaN,
    bytesSent: [],
    rounds: [],
    attestMs: [],
    frozenMs: [],
    slotsResent: [],
    load: { migrations: 0, downtimeMs: [], frozenMs: [], rounds: [], acked: 0, ackedPresent: 0, failed: [] },
  };
  try {
    let owner = await timedRuns(peers, args, r, name, plain, serveAt(peers.a, name, db));
    r.ratio = median(r.selkieMs) / median(r.baselineMs);
    owner = await underLoad(peers, args, r, name, owner);
    owner.src.database?.close();
    for (const p of [peers.a, peers.b]) for (const f of [name, `${name}.log`]) fs.rmSync(path.join(p.dataDir, f), { force: true });
  } finally {
    fs.rmSync(plainDir, { recursive: true, force: true });
  }
  return r;
}

const f0 = (x: number): string => (Number.isNaN(x) ? "-" : x.toFixed(0));
const f1 = (x: number): string => (Number.isNaN(x) ? "-" : x.toFixed(1));

const ROWS: [string, (r: SizeResult) => string][] = [
  ["database size, Selkie files / plain file (MiB)", (r) => `${f1(r.selkieBytes / MIB)} / ${f1(r.plainBytes / MIB)}`],
  ["baseline: stop, copy over TLS 1.3, reopen (ms, median)", (r) => f0(median(r.baselineMs))],
  ["Selkie: attested migration, reopen (ms, median)", (r) => f0(median(r.selkieMs))],
  ["ratio Selkie / baseline (target <= 1.05x)", (r) => `${r.ratio.toFixed(2)}x`],
  ["bytes sent / database size", (r) => `${(median(r.bytesSent) / r.selkieBytes).toFixed(2)}x`],
  ["pre-copy rounds (incl. the frozen one)", (r) => String(median(r.rounds))],
  ["attestation, channel handshake (ms, median)", (r) => f1(median(r.attestMs))],
  ["frozen time, stats.frozenMs, idle (ms, median)", (r) => f1(median(r.frozenMs))],
  ["migrations under write load (ok / asked)", (r) => `${r.load.migrations} / ${r.load.migrations + r.load.failed.length}`],
  ["client downtime p50 (ms, target <= 5)", (r) => f1(quantile(r.load.downtimeMs, 0.5))],
  ["client downtime p99 (ms, target <= 20)", (r) => f1(quantile(r.load.downtimeMs, 0.99))],
  ["frozen time under load p50 / p99 (ms)", (r) => `${f1(quantile(r.load.frozenMs, 0.5))} / ${f1(quantile(r.load.frozenMs, 0.99))}`],
  ["pre-copy rounds under load (max)", (r) => String(Math.max(0, ...r.load.rounds))],
  ["acknowledged writes present at the end", (r) => `${r.load.ackedPresent} / ${r.load.acked}`],
];
/** The table's row labels, in order (the bench's test checks each is printed). */
export const ROW_LABELS = ROWS.map(([label]) => label);

export function table(results: SizeResult[]): string {
  return markdownTable(
    ["", ...results.map((r) => `${r.mib} MiB`)],
    ROWS.map(([label, cell]) => [label, ...results.map(cell)]),
    (c) => c > 0,
  );
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const peers = await makePeers();
  const results: SizeResult[] = [];
  try {
    for (const mib of args.sizes) {
      if (!args.json) process.stderr.write(`[bench:migrate] ${mib} MiB: building, ${args.repeat} timed run(s), ${args.migrations} migrations under load\n`);
      results.push(await runSize(peers, args, mib));
    }
  } finally {
    peers.close();
  }
  const lost = results.some((r) => r.load.ackedPresent !== r.load.acked || r.load.acked === 0);
  const failed = results.flatMap((r) => r.load.failed);
  const machine = { cores: os.cpus().length, loadavg: os.loadavg(), node: process.version };
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ machine, results, table: table(results), rows: ROW_LABELS }, null, 2)}\n`);
  } else {
    const out = [
      `migration of a sealed database between two platforms in one process, over the attested channel (HTTP upgrade + TLS 1.3, 127.0.0.1);`,
      `baseline: the same rows in a plain SQLite file (better-sqlite3), stopped, copied over a TLS 1.3 socket on 127.0.0.1, fsynced, reopened.`,
      `${machine.cores} cores, load average ${machine.loadavg.map((x) => x.toFixed(2)).join(" ")}, Node ${machine.node}`,
      "",
      table(results),
      ...failed.map((f) => `failed migration: ${f}`),
    ];
    process.stdout.write(`${out.join("\n")}\n`);
  }
  return lost || failed.length > 0 ? 1 : 0;
}

process.exitCode = await main();
