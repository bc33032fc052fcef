/**
 * UNTRUSTED (UI). The second half of `selkie demo`: live migration, the reason Selkie exists. Two
 * peers on loopback, each with its own platform, both certified by one fleet CA; a database under a
 * live write workload moves from edge-a to edge-b; every acknowledged write is checked on edge-b;
 * then a fork attempt (edge-a restarted from a backup of its folder) and a rollback attempt (an
 * older copy of the database's files put back on edge-b) are shown refused. Everything lives in a
 * temporary folder that is removed at the end.
 *
 * It talks to the servers as any client would: Hrana over HTTP with fetch, and the management API.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CertificateAuthority, Platform } from "../../platform/index.js";
import { serve, type RunningServer } from "../server/serve.js";
import { TokenStore } from "../server/tokens.js";
import { formatBytes } from "../../enclave/manifest.js";

interface Edge {
  name: string;
  dir: string;
  platformDir: string;
  platform: Platform;
  server: RunningServer;
  admin: string;
}

/** One statement over Hrana 2 (what @libsql/client sends for execute). */
async function execute(base: string, token: string, sql: string, args: unknown[] = []): Promise<{ ok: boolean; rows: unknown[][]; error?: string }> {
  const res = await fetch(`${base}/v2/pipeline`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ baton: null, requests: [{ type: "execute", stmt: { sql, args: args.map((a) => (typeof a === "number" ? { type: "integer", value: String(a) } : { type: "text", value: String(a) })) } }, { type: "close" }] }),
  });
  const body = (await res.json()) as { message?: string; code?: string; results?: Array<{ type: string; response?: { result: { rows: Array<Array<{ value?: string }>> } }; error?: { message: string; code?: string } }> };
  const r = body.results?.[0];
  if (!res.ok || r === undefined) return { ok: false, rows: [], error: `${body.code ?? res.status}: ${body.message ?? ""}` };
  if (r.type !== "ok") return { ok: false, rows: [], error: `${r.error?.code ?? "ERROR"}: ${r.error?.message ?? ""}` };
  return { ok: true, rows: r.response!.result.rows.map((row) => row.map((c) => c.value ?? null)) };
}

async function api(e: Edge, method: string, route: string, body?: unknown): Promise<any> {
  const res = await fetch(`${e.server.url}${route}`, { method, headers: { authorization: `Bearer ${e.admin}`, "content-type": "application/json" }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return { status: res.status, ...((await res.json()) as object) };
}

async function startEdge(name: string, base: string, ca: CertificateAuthority, platformDir?: string, dir?: string): Promise<Edge> {
  const pDir = platformDir ?? path.join(base, `${name}-platform`);
  const platform = fs.existsSync(pDir) ? await Platform.open(pDir) : await Platform.create(pDir, { ca });
  const d = dir ?? path.join(base, name);
  const tokens = new TokenStore(d);
  const admin = tokens.create("admin", null).token;
  const server = await serve({ dir: d, platform, port: 0, workers: 1, migration: { fleetCa: ca.certificate } });
  return { name, dir: d, platformDir: pDir, platform, server, admin };
}

async function stopEdge(e: Edge): Promise<void> {
  await e.server.close({ timeoutMs: 2_000 });
  e.platform.close();
}

export async function migrationDemo(say: (s: string) => void): Promise<boolean> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-demo-migration-"));
  const edges: Edge[] = [];
  try {
    say("");
    say("Live migration: no fork, no rollback, no lost commit");
    const ca = CertificateAuthority.create(path.join(base, "fleet-ca"), { dev: false });
    const a = await startEdge("edge-a", base, ca);
    const b = await startEdge("edge-b", base, ca);
    edges.push(a, b);
    say(`9. Two peers on loopback, each with its own platform (emulated SGX CPU), both certified by one fleet CA:`);
    say(`   edge-a ${a.server.url} (platform ${a.platform.platformId.slice(0, 16)}), edge-b ${b.server.url} (platform ${b.platform.platformId.slice(0, 16)})`);

    await api(a, "POST", "/v1/databases", { name: "seals" });
    const token = (await api(a, "POST", "/v1/tokens", { scope: "read-write", db: "seals" })).token as string;
    await execute(a.server.url, token, "CREATE TABLE sightings (id INTEGER PRIMARY KEY, place TEXT)");
    await execute(a.server.url, token, "INSERT INTO sightings (id, place) SELECT value, 'Orkney' FROM json_each(?)", [JSON.stringify(Array.from({ length: 2000 }, (_, i) => 1_000_000 + i))]);
    const backup = path.join(base, "edge-a-backup");
    // What a hostile operator keeps for later. (Lock files are left out: they name this very process,
    // where a restart by another process would find them stale.)
    fs.cpSync(a.dir, backup, { recursive: true, filter: (f) => !f.endsWith(".lock") });

    // A client writes through edge-a's URL the whole time, one acknowledged insert after another.
    const acked: number[] = [];
    const failed: string[] = [];
    let stop = false;
    let lastAck = performance.now();
    let worstGap = 0;
    const writer = (async () => {
      for (let n = 1; !stop; n++) {
        const r = await execute(a.server.url, token, "INSERT INTO sightings (id, place) VALUES (?, ?)", [n, "Shetland"]);
        if (r.ok) {
          const now = performance.now();
          worstGap = Math.max(worstGap, now - lastAck);
          lastAck = now;
          acked.push(n);
        } else failed.push(r.error ?? "?");
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    say(`10. A client writes rows through edge-a's URL without pause (${acked.length} acknowledged so far); edge-a migrates "seals" to edge-b:`);
    let lastPhase = "";
    const watch = setInterval(() => {
      api(a, "GET", "/v1/migrations").then(
        (m: { running?: Array<{ phase: string; bytes: number; round: number }> }) => {
          const r = m.running?.[0];
          if (r && r.phase !== lastPhase) {
            lastPhase = r.phase;
            say(`    ${r.phase.padEnd(9)} round ${r.round}, ${formatBytes(r.bytes)} sent`);
          }
        },
        () => undefined,
      );
    }, 20);
    worstGap = 0;
    const m = await api(a, "POST", "/v1/databases/seals/migrate", { to: b.server.url });
    clearInterval(watch);
    if (m.status !== 200) {
      say(`   the migration failed: ${m.code}: ${m.message}`);
      stop = true;
      await writer;
      return false;
    }
    const s = m.stats as { totalMs: number; frozenMs: number; attestMs: number; rounds: number; bytes: { precopy: number; final: number } };
    say(`    mutual attestation (TLS 1.3, nonce-bound quotes both ways) ${s.attestMs.toFixed(0)} ms, then committed in ${s.totalMs.toFixed(0)} ms:`);
    say(`    ${s.rounds} rounds, ${formatBytes(s.bytes.precopy)} pre-copied while serving, ${formatBytes(s.bytes.final)} sent frozen, frozen ${s.frozenMs.toFixed(0)} ms`);
    say(`    (the sealed pages travel as the ciphertext they are; the data key only inside the attested channel, re-sealed by edge-b)`);
    await new Promise((r) => setTimeout(r, 300)); // the client keeps its old URL: edge-a forwards
    stop = true;
    await writer;
    const onB = await execute(b.server.url, token, "SELECT id FROM sightings WHERE place = 'Shetland'");
    const have = new Set(onB.rows.map((r) => Number(r[0])));
    const lost = acked.filter((n) => !have.has(n));
    say(`11. ${acked.length} writes acknowledged, ${failed.length} failed; edge-b has ${lost.length === 0 ? "every one of them" : `all but ${lost.length}: LOST ${lost.slice(0, 5).join(", ")}`}.`);
    say(`    The longest pause the writer saw: ${worstGap.toFixed(0)} ms. The database token moved with it; edge-a forwards clients that keep its URL.`);

    // Fork: edge-a restarted from the backup of its folder taken before the migration.
    await stopEdge(a);
    edges.splice(edges.indexOf(a), 1);
    fs.rmSync(a.dir, { recursive: true, force: true });
    fs.cpSync(backup, a.dir, { recursive: true });
    const a2 = await startEdge("edge-a", base, ca, a.platformDir, a.dir);
    edges.push(a2);
    const fork = await execute(a2.server.url, token, "SELECT count(*) FROM sightings");
    say(`12. Fork attempt: edge-a restarted from a backup of its whole folder, taken before the migration. It answers:`);
    say(`    ${fork.ok ? `FORKED: it served ${String(fork.rows[0]?.[0])} rows` : fork.error}`);
    say(`    (its monotonic counter was destroyed at the commit point, so no copy of its files opens again)`);

    // Rollback: an older copy of the database's files put back on edge-b.
    const bFile = path.join(b.dir, "databases", "seals.db");
    const old = path.join(base, "edge-b-old");
    fs.mkdirSync(old);
    fs.copyFileSync(bFile, path.join(old, "seals.db"));
    fs.copyFileSync(`${bFile}.log`, path.join(old, "seals.db.log"));
    await execute(b.server.url, token, "DELETE FROM sightings WHERE place = 'Orkney'");
    await stopEdge(b);
    edges.splice(edges.indexOf(b), 1);
    fs.copyFileSync(path.join(old, "seals.db"), bFile);
    fs.copyFileSync(path.join(old, "seals.db.log"), `${bFile}.log`);
    const b2 = await startEdge("edge-b", base, ca, b.platformDir, b.dir);
    edges.push(b2);
    const rollback = await execute(b2.server.url, token, "SELECT count(*) FROM sightings");
    say(`13. Rollback attempt: edge-b's files replaced by a copy taken before a DELETE it acknowledged. It answers:`);
    say(`    ${rollback.ok ? `ROLLED BACK: it served ${String(rollback.rows[0]?.[0])} rows` : rollback.error}`);
    return lost.length === 0 && failed.length === 0 && !fork.ok && !rollback.ok;
  } finally {
    for (const e of edges) await stopEdge(e).catch(() => undefined);
    fs.rmSync(base, { recursive: true, force: true });
    say(`14. Stopped both peers and removed ${base}.`);
  }
}
