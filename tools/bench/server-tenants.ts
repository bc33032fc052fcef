/**
 * The multi-tenant rows of `npm run bench:server` (issue 12): point reads on tenant A unloaded and
 * while tenant B runs a 10 s statement (same server, same run), and mixed traffic on 4 tenants
 * with --workers 0, 1 and 2 (what the second core buys), driven by @libsql/client and by a light
 * client (hand-built Hrana JSON over node:http), each row with the CPU per request of the server's
 * threads and of the clients. Servers are real `selkie serve` processes on loopback; the clients
 * run in the bench process (a process of their own: they share the cores, not a thread, with the
 * server).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { createClient, type Client } from "@libsql/client";

const RUNAWAY = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c";

export interface TenantBenchOptions {
  cli: string;
  tmp: string;
  clients: number;
  seconds: number;
  rows: number;
}

interface Run {
  ops: number;
  failures: number;
  lat: number[];
  ms: number;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

async function drive(n: number, ms: number, op: (c: number, i: number) => Promise<void>): Promise<Run> {
  const lat: number[] = [];
  let failures = 0;
  const t0 = Date.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: n }, async (_, c) => {
      for (let i = 0; Date.now() < end; i++) {
        const t = performance.now();
        try {
          await op(c, i);
          lat.push(performance.now() - t);
        } catch (e) {
          if (failures++ === 0) process.stderr.write(`first failure: ${(e as Error).message}\n`);
        }
      }
    }),
  );
  return { ops: lat.length, failures, lat, ms: Date.now() - t0 };
}

async function startServer(o: TenantBenchOptions, name: string, args: string[]): Promise<{ url: string; token: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [o.cli, "serve", "--dir", path.join(o.tmp, name), "--port", "0", "--log-level", "warn", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`selkie serve did not start: ${buf}`)), 30_000);
    proc.stderr!.on("data", (c: Buffer) => {
      buf += c.toString();
      const r = /listening on (http:\/\/\S+) [\s\S]*admin token[^\n]*\n\s+(sk_\S+)[\s\S]*connect:/.exec(buf);
      if (r) {
        clearTimeout(t);
        resolve(r);
      }
    });
  });
  return { url: m[1]!, token: m[2]!, proc };
}

async function tenant(url: string, token: string, name: string, rows: number, n: number): Promise<Client[]> {
  const r = await fetch(`${url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ name }) });
  if (r.status !== 201) throw new Error(`create ${name}: ${r.status} ${await r.text()}`);
  const clients = Array.from({ length: n }, () => createClient({ url: `${url}/db/${name}/`, authToken: token }));
  await clients[0]!.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)");
  await clients[0]!.execute(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows}) INSERT INTO kv SELECT i, 'value-' || i FROM n`);
  return clients;
}

/** POST a JSON body on a keep-alive agent; the parsed JSON answer (throws on a non-200). */
function postJson(agent: http.Agent, url: string, token: string, body: unknown): Promise<unknown> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": String(data.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode !== 200) return reject(new Error(`${res.statusCode}: ${text.slice(0, 200)}`));
        try {
          resolve(JSON.parse(text));
        } catch (e) {
          reject(e);
        }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}

/** CPU milliseconds of a process's threads: its main thread, its database workers (nice above the main thread's, worker-main.ts), the rest (libuv pool, V8 helpers). Linux only; zeros elsewhere. */
interface ThreadCpu {
  main: number;
  workers: number;
  other: number;
}

function threadCpu(pid: number): ThreadCpu {
  const out: ThreadCpu = { main: 0, workers: 0, other: 0 };
  const stat = (tid: string): string[] | undefined => {
    try {
      const st = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      return st.slice(st.lastIndexOf(")") + 2).split(" ");
    } catch {
      return undefined; // the thread ended, or no /proc
    }
  };
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  const mainNice = Number(stat(String(pid))?.[16] ?? 0);
  // Fields after the command: utime and stime are the 12th and 13th (clock ticks, 100 per second), nice the 17th.
  for (const tid of tids) {
    const f = stat(tid);
    if (!f) continue;
    const ms = (Number(f[11]) + Number(f[12])) * 10;
    if (tid === String(pid)) out.main += ms;
    else if (Number(f[16]) > mainNice) out.workers += ms;
    else out.other += ms;
  }
  return out;
}

const stop = async (p: ChildProcess): Promise<void> => {
  p.kill("SIGTERM");
  await new Promise((r) => p.once("exit", r));
};

const row = (what: string, r: Run, extra = ""): string =>
  `| ${what} | ${Math.round(r.ops / (r.ms / 1000))} | ${pct(r.lat, 50).toFixed(2)} | ${pct(r.lat, 99).toFixed(2)} | ${extra} |`;

/** The table lines, and the number of failed requests. */
export async function tenantRows(o: TenantBenchOptions): Promise<{ lines: string[]; failures: number }> {
  const lines = ["", "Tenants (issue 12): @libsql/client, " + o.clients + " clients", "", "| row | req/s | p50 ms | p99 ms | note |", "|---|---:|---:|---:|---|"];
  let failures = 0;
  // 1. Tenant A's point reads, unloaded and while tenant B runs a 10 s statement (--workers 2).
  {
    const s = await startServer(o, "contended", ["--request-timeout", "10000"]);
    try {
      const a = await tenant(s.url, s.token, "a", o.rows, o.clients);
      const b = await tenant(s.url, s.token, "b", 10, 1);
      const read = async (c: number, i: number): Promise<void> => {
        const rs = await a[c]!.execute({ sql: "SELECT v FROM kv WHERE id = ?", args: [((c * 7919 + i * 104729) % o.rows) + 1] });
        if (rs.rows.length !== 1) throw new Error("row missing");
      };
      await drive(o.clients, 1000, read); // warm-up
      const unloaded = await drive(o.clients, o.seconds * 1000, read);
      const t0 = Date.now();
      const long = b[0]!.execute(RUNAWAY).then(() => "finished", (e: unknown) => (e as { code?: string }).code ?? String(e));
      await new Promise((r) => setTimeout(r, 200));
      const loaded = await drive(o.clients, 9000, read);
      const ended = await long;
      const held = ((Date.now() - t0) / 1000).toFixed(1);
      failures += unloaded.failures + loaded.failures;
      lines.push(row("point reads on tenant A, unloaded (--workers 2)", unloaded, "baseline of the next row"));
      lines.push(row("point reads on tenant A while tenant B runs a 10 s statement", loaded, `p99 ${(pct(loaded.lat, 99) / pct(unloaded.lat, 99)).toFixed(2)}x unloaded; B's statement ended ${ended} after ${held} s`));
      for (const c of [...a, ...b]) c.close();
    } finally {
      await stop(s.proc);
    }
  }
  // 2. Mixed traffic on 4 tenants: 80% point reads, 20% single-row writes; with @libsql/client,
  // then with a light client (hand-built Hrana JSON over node:http keep-alive), whose own CPU per
  // request is a fraction of @libsql/client's, so more of the machine is left to the server.
  for (const light of [false, true]) {
    for (const workers of [0, 1, 2]) {
      const s = await startServer(o, `mixed-${light ? "light-" : ""}${workers}`, ["--workers", String(workers)]);
      const agent = new http.Agent({ keepAlive: true, maxSockets: o.clients });
      try {
        const tenants = await Promise.all([0, 1, 2, 3].map((t) => tenant(s.url, s.token, `t${t}`, o.rows, Math.ceil(o.clients / 4))));
        const op = async (c: number, i: number): Promise<void> => {
          const id = ((c * 7919 + i * 104729) % o.rows) + 1;
          const write = i % 5 === 4;
          if (light) {
            const stmt = write ? { sql: "UPDATE kv SET v = ? WHERE id = ?", args: [{ type: "text", value: `w-${c}-${i}` }, { type: "integer", value: String(id) }] } : { sql: "SELECT v FROM kv WHERE id = ?", args: [{ type: "integer", value: String(id) }] };
            const r = (await postJson(agent, `${s.url}/db/t${c % 4}/v2/pipeline`, s.token, { baton: null, requests: [{ type: "execute", stmt }, { type: "close" }] })) as { results: Array<{ type: string; response?: { result: { rows: unknown[]; affected_row_count: number } } }> };
            const res = r.results[0]!;
            if (res.type !== "ok") throw new Error(JSON.stringify(res));
            if (write ? res.response!.result.affected_row_count !== 1 : res.response!.result.rows.length !== 1) throw new Error("wrong result");
            return;
          }
          const cl = tenants[c % 4]![Math.floor(c / 4) % tenants[c % 4]!.length]!;
          if (write) {
            const rs = await cl.execute({ sql: "UPDATE kv SET v = ? WHERE id = ?", args: [`w-${c}-${i}`, id] });
            if (rs.rowsAffected !== 1) throw new Error("no row updated");
          } else {
            const rs = await cl.execute({ sql: "SELECT v FROM kv WHERE id = ?", args: [id] });
            if (rs.rows.length !== 1) throw new Error("row missing");
          }
        };
        await drive(o.clients, 1000, op);
        const cpu0 = threadCpu(s.proc.pid!);
        const client0 = process.cpuUsage();
        const r = await drive(o.clients, o.seconds * 1000, op);
        const client = process.cpuUsage(client0);
        const cpu1 = threadCpu(s.proc.pid!);
        failures += r.failures;
        // CPU per request (µs): where the two cores go. The clients (this process) share the machine.
        const per = (ms: number): string => ((ms * 1000) / Math.max(1, r.ops)).toFixed(0);
        const note = `CPU µs/request: server main ${per(cpu1.main - cpu0.main)}, db workers ${per(cpu1.workers - cpu0.workers)}, server other threads ${per(cpu1.other - cpu0.other)}; clients ${per((client.user + client.system) / 1000)}`;
        lines.push(row(`mixed 4 tenants (80% reads, 20% writes), ${light ? "light client (Hrana JSON, node:http)" : "@libsql/client"}, --workers ${workers}`, r, note));
        for (const t of tenants) for (const c of t) c.close();
      } finally {
        agent.destroy();
        await stop(s.proc);
      }
    }
  }
  return { lines, failures };
}
