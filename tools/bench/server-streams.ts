/**
 * `npm run bench:streams` (node dist/tools/bench/server-streams.js [--seconds S] [--clients C]):
 * concurrent Hrana streams (runtime/host/server/hrana/ISOLATION.md) through @libsql/client against
 * `selkie serve`, with `--connections-per-db 1` (one connection: every stream waits for another's
 * transaction, the behaviour before) beside the default 4, in the same run, loopback only:
 *  - point reads, nothing else running (what the connections and read views cost when unused);
 *  - point reads while another stream holds an open write transaction for the whole phase;
 *  - single-row writes, nothing else running;
 *  - the EPC an extra connection takes (committed bytes of the platform before and after).
 * A benchmark, not a test: exit 0 whatever the figures, 1 if a request failed unexpectedly.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@libsql/client";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, "..", "..", "runtime", "host", "cli", "main.js");

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i < 0 ? def : Number(process.argv[i + 1]);
}
const SECONDS = arg("--seconds", 3);
const CLIENTS = arg("--clients", 8);
const ROWS = 1000;

interface Phase {
  ops: number;
  busy: number;
  lat: number[];
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function drive(clients: Client[], ms: number, op: (c: Client, i: number) => Promise<unknown>): Promise<Phase> {
  const out: Phase = { ops: 0, busy: 0, lat: [] };
  const stop = Date.now() + ms;
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < stop) {
        const t = performance.now();
        try {
          await op(c, out.ops);
          out.ops++;
          out.lat.push(performance.now() - t);
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== "SQLITE_BUSY" && code !== "REQUEST_TIMEOUT") throw e;
          out.busy++;
        }
      }
    }),
  );
  return out;
}

async function serve(dir: string, conns: number): Promise<{ url: string; token: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [CLI, "serve", "--dir", dir, "--port", "0", "--log-level", "warn", "--connections-per-db", String(conns), "--request-timeout", String(SECONDS * 1000 + 2000)], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    proc.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      const r = /listening on (http:\/\/\S+) [\s\S]*admin token[^\n]*\n\s+(sk_\S+)[\s\S]*connect:/.exec(err);
      if (r) resolve(r);
    });
    proc.once("exit", (code) => reject(new Error(`selkie serve exited with ${code}: ${err}`)));
  });
  return { url: m[1]!, token: m[2]!, proc };
}

async function epcCommitted(url: string, token: string): Promise<number> {
  const r = (await (await fetch(`${url}/v1/platform/epc`, { headers: { authorization: `Bearer ${token}` } })).json()) as { committed: number };
  return r.committed;
}

function row(name: string, conns: number, p: Phase, ms: number): string {
  return `| ${name} | ${conns} | ${Math.round((p.ops / ms) * 1000)} | ${pct(p.lat, 50).toFixed(1)} | ${pct(p.lat, 99).toFixed(1)} | ${p.busy} |`;
}

async function run(conns: number, tmp: string): Promise<string[]> {
  const dir = path.join(tmp, `c${conns}`);
  const s = await serve(dir, conns);
  const rows: string[] = [];
  try {
    const created = await fetch(`${s.url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "app" }) });
    if (created.status !== 201) throw new Error(`create: ${created.status}`);
    const mk = (): Client => createClient({ url: `${s.url}/db/app/`, authToken: s.token, intMode: "number" });
    const setup = mk();
    await setup.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)");
    await setup.batch(Array.from({ length: ROWS }, (_, i) => ({ sql: "INSERT INTO kv VALUES (?, ?)", args: [i, `value-${i}`] })), "write");
    const clients = Array.from({ length: CLIENTS }, mk);
    const ms = SECONDS * 1000;
    const read = (c: Client, i: number) => c.execute({ sql: "SELECT v FROM kv WHERE id = ?", args: [(i * 7919) % ROWS] });
    await drive(clients, 500, read); // warm-up
    rows.push(row("point reads, idle", conns, await drive(clients, ms, read), ms));
    const before = await epcCommitted(s.url, s.token);
    const holder = mk();
    const tx = await holder.transaction("write");
    await tx.execute("UPDATE kv SET v = 'held' WHERE id = 0");
    const during = drive(clients, ms, read);
    const held = await during.finally(() => tx.commit());
    rows.push(row("point reads, another stream in a write transaction", conns, held, ms));
    const after = await epcCommitted(s.url, s.token);
    const info = (await (await fetch(`${s.url}/v1/databases/app`, { headers: { authorization: `Bearer ${s.token}` } })).json()) as { connections: number; enclave: { committedBytes: number } };
    let n = ROWS;
    rows.push(row("single-row writes, idle", conns, await drive(clients, ms, (c) => c.execute({ sql: "INSERT INTO kv VALUES (?, 'w')", args: [n++] })), ms));
    rows.push(`| (EPC) connections ${info.connections}, primary enclave ${(info.enclave.committedBytes / 2 ** 20).toFixed(2)} MiB, platform committed ${(before / 2 ** 20).toFixed(2)} -> ${(after / 2 ** 20).toFixed(2)} MiB | ${conns} | | | | |`);
    for (const c of [...clients, holder, setup]) c.close();
  } finally {
    s.proc.kill("SIGTERM");
    await new Promise((r) => s.proc.once("exit", r));
  }
  return rows;
}

async function main(): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-bench-streams-"));
  try {
    const out = ["| phase | connections per db | ops/s | p50 ms | p99 ms | busy/timeouts |", "|---|---|---|---|---|---|"];
    for (const conns of [1, 4]) out.push(...(await run(conns, tmp)));
    process.stdout.write(`${out.join("\n")}\n\n${SECONDS} s per phase, ${CLIENTS} clients, @libsql/client over http, node ${process.version}, ${os.cpus().length} cores\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

process.exit(await main());
