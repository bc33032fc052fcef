/**
 * `npm run bench:server` (node dist/tools/bench/server.js [--seconds S] [--clients C] [--rows N]):
 * requests per second and p50/p99 latency of point reads and single-row writes through
 * @libsql/client against `selkie serve`, and of the same operations against better-sqlite3 behind a
 * minimal node:http JSON endpoint (server-baseline.ts), in the same run, loopback only. Each server
 * runs in its own process; the clients run in this one. Target: Selkie at >= 70% of the baseline's
 * throughput. @libsql/client runs over http:// (where it speaks Hrana 3 in protobuf, v3-protobuf)
 * and over ws:// (hrana3-protobuf); two more rows drive selkie serve with plain fetch and
 * hand-built Hrana JSON (v2 pipeline) and protobuf (v3-protobuf pipeline), for reference (the
 * client side's share of the cost). Then the tenant rows (server-tenants.ts): point
 * reads on tenant A while tenant B runs a 10 s statement beside the unloaded row, and mixed traffic
 * on 4 tenants with --workers 0, 1, 2. A benchmark, not a test: exit 0 whether or not the target is met, 1 if a request failed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

interface BsStatement {
  get(...a: unknown[]): unknown;
  run(...a: unknown[]): { changes: number };
}
interface BsDb {
  exec(sql: string): void;
  prepare(sql: string): BsStatement;
  transaction(fn: () => void): () => void;
  close(): void;
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => BsDb;
import { createClient, type Client } from "@libsql/client";
import protobuf from "protobufjs";
import { HRANA_HTTP_PROTO, HRANA_PROTO } from "../../runtime/host/server/hrana/proto-schema.js";
import { tenantRows } from "./server-tenants.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..", "..");
const CLI = path.join(REPO, "dist", "runtime", "host", "cli", "main.js");
const TARGET = 0.7;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    process.stderr.write(`${name} takes a positive number\n`);
    process.exit(2);
  }
  return v;
}
const SECONDS = arg("--seconds", 5);
const CLIENTS = arg("--clients", 8);
const ROWS = arg("--rows", 1000);
/** Phases alternate between the servers in this many rounds, so drift in machine load hits all alike. */
const ROUNDS = arg("--rounds", 4);

interface Phase {
  ops: number;
  failures: number;
  lat: number[];
}

type Op = (client: number, i: number) => Promise<void>;

/** Drives `op` from CLIENTS concurrent loops for `ms`, adding to `into`. */
async function drive(op: Op, ms: number, into: Phase): Promise<void> {
  const lat = into.lat;
  let failures = 0;
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; Date.now() < end; i++) {
        const t0 = performance.now();
        try {
          await op(c, i);
          lat.push(performance.now() - t0);
        } catch (e) {
          if (failures++ === 0) process.stderr.write(`first failure: ${(e as Error).message}\n`);
        }
      }
    }),
  );
  into.ops = lat.length;
  into.failures += failures;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

function waitLine(p: ChildProcess, stream: "stdout" | "stderr", re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`no ${re} from child in 30 s: ${buf}`)), 30_000);
    p[stream]!.on("data", (c: Buffer) => {
      buf += c.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
}

const rowId = (c: number, i: number): number => ((c * 7919 + i * 104729) % ROWS) + 1;

async function main(): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-bench-server-"));
  const results: Record<string, Record<string, Phase>> = {};
  const ops: Record<string, Record<string, Op>> = {};
  const children: ChildProcess[] = [];
  try {
    // Baseline: better-sqlite3 + node:http.
    const seed = new Database(path.join(tmp, "baseline.db"));
    seed.exec("PRAGMA journal_mode=DELETE; CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)");
    const ins = seed.prepare("INSERT INTO kv VALUES (?, ?)");
    seed.transaction(() => {
      for (let i = 1; i <= ROWS; i++) ins.run(i, `value-${i}`);
    })();
    seed.close();
    const base = spawn(process.execPath, [path.join(HERE, "server-baseline.js"), tmp], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(base);
    const port = Number((await waitLine(base, "stdout", /listening (\d+)/))[1]);
    const post = async (p: string, body: unknown): Promise<void> => {
      const r = await fetch(`http://127.0.0.1:${port}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`${p}: ${r.status}`);
      await r.json();
    };
    ops["better-sqlite3 + node:http"] = {
      "point read": (c, i) => post("/read", { id: rowId(c, i) }),
      "single-row write": (c, i) => post("/write", { id: rowId(c, i), v: `w-${c}-${i}` }),
    };

    // Selkie: selkie serve + @libsql/client.
    const srv = spawn(process.execPath, [CLI, "serve", "--dir", path.join(tmp, "selkie"), "--port", "0", "--log-level", "warn"], { stdio: ["ignore", "ignore", "pipe"] });
    children.push(srv);
    const m = await waitLine(srv, "stderr", /listening on (http:\/\/\S+) [\s\S]*admin token[^\n]*\n\s+(sk_\S+)[\s\S]*connect:/);
    const url = m[1]!;
    const token = m[2]!;
    const cr = await fetch(`${url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ name: "bench" }) });
    if (cr.status !== 201) throw new Error(`create database: ${cr.status} ${await cr.text()}`);
    const clients: Client[] = Array.from({ length: CLIENTS }, () => createClient({ url: `${url}/db/bench/`, authToken: token }));
    const c0 = clients[0]!;
    await c0.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)");
    await c0.execute({ sql: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS}) INSERT INTO kv SELECT i, 'value-' || i FROM n` });
    ops["selkie serve + @libsql/client (http://, protobuf)"] = {
      "point read": async (c, i) => {
        const rs = await clients[c]!.execute({ sql: "SELECT id, v FROM kv WHERE id = ?", args: [rowId(c, i)] });
        if (rs.rows.length !== 1) throw new Error("row missing");
      },
      "single-row write": async (c, i) => {
        const rs = await clients[c]!.execute({ sql: "UPDATE kv SET v = ? WHERE id = ?", args: [`w-${c}-${i}`, rowId(c, i)] });
        if (rs.rowsAffected !== 1) throw new Error("no row updated");
      },
    };
    const wsClients: Client[] = Array.from({ length: CLIENTS }, () => createClient({ url: `${url.replace(/^http/, "ws")}/db/bench/`, authToken: token }));
    ops["selkie serve + @libsql/client (ws://, protobuf)"] = {
      "point read": async (c, i) => {
        const rs = await wsClients[c]!.execute({ sql: "SELECT id, v FROM kv WHERE id = ?", args: [rowId(c, i)] });
        if (rs.rows.length !== 1) throw new Error("row missing");
      },
      "single-row write": async (c, i) => {
        const rs = await wsClients[c]!.execute({ sql: "UPDATE kv SET v = ? WHERE id = ?", args: [`w-${c}-${i}`, rowId(c, i)] });
        if (rs.rowsAffected !== 1) throw new Error("no row updated");
      },
    };
    // For reference: the same server driven by plain fetch with hand-written Hrana JSON, which
    // separates the server's cost from @libsql/client's own.
    const raw = async (sql: string, args: unknown[]): Promise<void> => {
      const r = await fetch(`${url}/db/bench/v2/pipeline`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ baton: null, requests: [{ type: "execute", stmt: { sql, args } }, { type: "close" }] }),
      });
      if (!r.ok) throw new Error(`pipeline: ${r.status}`);
      const j = (await r.json()) as { results: Array<{ type: string }> };
      if (j.results[0]!.type !== "ok") throw new Error(JSON.stringify(j.results[0]));
    };
    const int = (n: number): unknown => ({ type: "integer", value: String(n) });
    ops["selkie serve + fetch (raw Hrana JSON, reference)"] = {
      "point read": (c, i) => raw("SELECT id, v FROM kv WHERE id = ?", [int(rowId(c, i))]),
      "single-row write": (c, i) => raw("UPDATE kv SET v = ? WHERE id = ?", [{ type: "text", value: `r-${c}-${i}` }, int(rowId(c, i))]),
    };
    const root = new protobuf.Root();
    for (const text of [HRANA_PROTO, HRANA_HTTP_PROTO]) protobuf.parse(text, root, { keepCase: true });
    const PReq = root.lookupType("hrana.http.PipelineReqBody");
    const PResp = root.lookupType("hrana.http.PipelineRespBody");
    const rawPb = async (sql: string, args: unknown[]): Promise<void> => {
      const r = await fetch(`${url}/db/bench/v3-protobuf/pipeline`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/x-protobuf" },
        body: Buffer.from(PReq.encode({ requests: [{ execute: { stmt: { sql, args } } }, { close: {} }] }).finish()),
      });
      if (!r.ok) throw new Error(`pipeline: ${r.status}`);
      const m = PResp.decode(new Uint8Array(await r.arrayBuffer())) as unknown as { results: Array<{ result: string }> };
      if (m.results[0]!.result !== "ok") throw new Error(JSON.stringify(m.results[0]));
    };
    ops["selkie serve + fetch (raw Hrana protobuf, reference)"] = {
      "point read": (c, i) => rawPb("SELECT id, v FROM kv WHERE id = ?", [{ integer: rowId(c, i) }]),
      "single-row write": (c, i) => rawPb("UPDATE kv SET v = ? WHERE id = ?", [{ text: `p-${c}-${i}` }, { integer: rowId(c, i) }]),
    };
    for (const e of Object.keys(ops)) results[e] = { "point read": { ops: 0, failures: 0, lat: [] }, "single-row write": { ops: 0, failures: 0, lat: [] } };
    for (let round = 0; round < ROUNDS; round++) {
      for (const op of ["point read", "single-row write"]) {
        for (const e of Object.keys(ops)) await drive(ops[e]![op]!, (SECONDS * 1000) / ROUNDS, results[e]![op]!);
      }
    }
    for (const c of [...clients, ...wsClients]) c.close();
  } finally {
    for (const ch of children) ch.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  // The tenant rows (issue 12), with their own servers.
  const tenantTmp = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-bench-tenants-"));
  let tenants: { lines: string[]; failures: number };
  try {
    tenants = await tenantRows({ cli: CLI, tmp: tenantTmp, clients: CLIENTS, seconds: SECONDS, rows: ROWS });
  } finally {
    fs.rmSync(tenantTmp, { recursive: true, force: true });
  }

  const engines = Object.keys(results);
  const [baseName, selkieName] = engines as [string, string];
  const lines = [
    `bench:server: ${CLIENTS} concurrent clients, ${SECONDS} s per operation and server (in ${ROUNDS} alternating rounds), ${ROWS} rows, loopback; Node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}`,
    "",
    "| operation | server | req/s | p50 ms | p99 ms | vs baseline |",
    "|---|---|---:|---:|---:|---:|",
  ];
  let failures = 0;
  let allMet = true;
  for (const op of ["point read", "single-row write"]) {
    const baseRate = results[baseName]![op]!.ops / SECONDS;
    for (const e of engines) {
      const r = results[e]![op]!;
      failures += r.failures;
      const rate = r.ops / SECONDS;
      const ratio = rate / baseRate;
      if (e === selkieName && ratio < TARGET) allMet = false;
      const mark = e === baseName ? "baseline" : e === selkieName ? `${(ratio * 100).toFixed(0)}% ${ratio >= TARGET ? "PASS" : "FAIL"}` : `${(ratio * 100).toFixed(0)}%`;
      lines.push(`| ${op} | ${e} | ${Math.round(rate)} | ${pct(r.lat, 50).toFixed(2)} | ${pct(r.lat, 99).toFixed(2)} | ${mark} |`);
    }
  }
  lines.push("", `Target: selkie >= ${TARGET * 100}% of the baseline's throughput: ${allMet ? "met" : "NOT met"}. Failed requests: ${failures}.`);
  lines.push(...tenants.lines);
  failures += tenants.failures;
  process.stdout.write(`${lines.join("\n")}\n`);
  fs.mkdirSync(path.join(REPO, "bench-results"), { recursive: true });
  fs.writeFileSync(path.join(REPO, "bench-results", "server.md"), `${lines.join("\n")}\n`);
  return failures > 0 ? 1 : 0;
}

process.exitCode = await main();
