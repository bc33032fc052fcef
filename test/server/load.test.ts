/**
 * Bounded loopback load on a spawned `selkie serve`: concurrent @libsql/client clients mixing reads
 * and writes for a fixed time (no failed request, no lost acknowledged write; latency and throughput
 * printed), then graceful shutdown under load and a restart that finds every acknowledged write.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient, type Client } from "@libsql/client";
import { createDb, startServer } from "./harness.js";

const CLIENTS = 8;
const LOAD_MS = 3_000;

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const fmt = (ms: number): string => `${ms.toFixed(2)} ms`;

describe("selkie serve under load", () => {
  it(`serves ${CLIENTS} concurrent clients for ${LOAD_MS / 1000} s with no failure and no lost write`, async () => {
    const s = await startServer();
    const clients: Client[] = [];
    try {
      await createDb(s, "load");
      const url = `${s.url}/db/load/`;
      for (let i = 0; i < CLIENTS; i++) clients.push(createClient({ url, authToken: s.adminToken! }));
      await clients[0]!.execute("CREATE TABLE w(id TEXT PRIMARY KEY, client INTEGER, n INTEGER, pad TEXT)");
      const acked = new Set<string>();
      const reads: number[] = [];
      const writes: number[] = [];
      const failures: string[] = [];
      const end = Date.now() + LOAD_MS;
      await Promise.all(
        clients.map(async (c, ci) => {
          let n = 0;
          let mine = 0;
          while (Date.now() < end) {
            const t0 = performance.now();
            try {
              if (n % 2 === 0) {
                const id = `${ci}-${n}`;
                await c.execute({ sql: "INSERT INTO w VALUES (?, ?, ?, ?)", args: [id, ci, n, "x".repeat(64)] });
                writes.push(performance.now() - t0);
                acked.add(id);
                mine++;
              } else {
                const rs = await c.execute({ sql: "SELECT count(*) AS k FROM w WHERE client = ?", args: [ci] });
                reads.push(performance.now() - t0);
                if (Number(rs.rows[0]!.k) !== mine) failures.push(`client ${ci} read ${String(rs.rows[0]!.k)} of its rows, wrote ${mine}`);
              }
            } catch (e) {
              failures.push(`client ${ci}: ${(e as Error).message}`);
            }
            n++;
          }
        }),
      );
      const total = reads.length + writes.length;
      console.log(
        `load: ${CLIENTS} clients, ${LOAD_MS} ms: ${total} requests (${Math.round(total / (LOAD_MS / 1000))}/s); ` +
          `reads ${reads.length} p50 ${fmt(pct(reads, 50))} p99 ${fmt(pct(reads, 99))}; writes ${writes.length} p50 ${fmt(pct(writes, 50))} p99 ${fmt(pct(writes, 99))}`,
      );
      assert.deepEqual(failures, []);
      assert.ok(writes.length > 50, `only ${writes.length} writes in ${LOAD_MS} ms`);
      const rs = await clients[0]!.execute("SELECT id FROM w");
      const present = new Set(rs.rows.map((r) => r.id as string));
      for (const id of acked) assert.ok(present.has(id), `acknowledged write ${id} is missing`);
      assert.equal(present.size, acked.size);
    } finally {
      for (const c of clients) c.close();
      assert.equal(await s.stop(), 0);
    }
  });

  it("shuts down gracefully under load; after a restart every acknowledged write is present", async () => {
    const s = await startServer();
    const token = s.adminToken!;
    await createDb(s, "load");
    const url = `${s.url}/db/load/`;
    const setup = createClient({ url, authToken: token });
    await setup.execute("CREATE TABLE w(id TEXT PRIMARY KEY, v INTEGER)");
    setup.close();
    const acked = new Set<string>();
    const clientErrors: string[] = [];
    const clients = Array.from({ length: 6 }, () => createClient({ url, authToken: token }));
    const deadline = Date.now() + 8_000;
    let stopAt = 0;
    const loops = clients.map(async (c, ci) => {
      for (let n = 0; Date.now() < deadline; n++) {
        const id = `${ci}-${n}`;
        try {
          if (n % 3 === 2) {
            // An interactive transaction: its commit is the acknowledgement.
            const tx = await c.transaction("write");
            await tx.execute({ sql: "INSERT INTO w VALUES (?, ?)", args: [id, n] });
            await tx.commit();
          } else {
            await c.execute({ sql: "INSERT INTO w VALUES (?, ?)", args: [id, n] });
          }
          acked.add(id);
        } catch (e) {
          if (stopAt === 0) clientErrors.push((e as Error).message);
          return; // the server is going away: stop this client
        }
      }
    });
    await new Promise((r) => setTimeout(r, 800));
    stopAt = Date.now();
    const code = await s.stop("SIGTERM");
    await Promise.all(loops);
    for (const c of clients) c.close();
    assert.equal(code, 0, s.stderr());
    assert.deepEqual(clientErrors, [], "requests failed before the shutdown began");
    assert.ok(acked.size > 10, `only ${acked.size} writes acknowledged`);
    assert.match(s.stdout(), /"event":"shutdown"/);
    assert.match(s.stdout(), /"event":"stopped"/);

    const again = await startServer({ dir: s.dir });
    try {
      assert.equal(again.adminToken, undefined, "a second admin token was created");
      const c = createClient({ url: `${again.url}/db/load/`, authToken: token });
      const rs = await c.execute("SELECT id FROM w");
      c.close();
      const present = new Set(rs.rows.map((r) => r.id as string));
      const lost = [...acked].filter((id) => !present.has(id));
      assert.deepEqual(lost, [], "acknowledged writes were lost");
      console.log(`shutdown under load: ${acked.size} acknowledged writes, all present after restart (${present.size} rows)`);
    } finally {
      assert.equal(await again.stop(), 0);
    }
  });
});
