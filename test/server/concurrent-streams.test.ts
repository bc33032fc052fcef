/**
 * Concurrent Hrana streams isolated like sqld's (runtime/host/server/hrana/ISOLATION.md), with the
 * unmodified @libsql/client against a spawned `selkie serve`, over http:// and ws://.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient, type Client } from "@libsql/client";
import { api, createDb, startServer, type ServerProc } from "./harness.js";

const BUSY_MS = 1500;
const codeOf = (e: unknown): string => (e as { code?: string }).code ?? String(e);
const count = async (c: Client, where = "1"): Promise<number> => Number((await c.execute(`SELECT count(*) AS n FROM t WHERE ${where}`)).rows[0]!.n);

for (const scheme of ["http", "ws"] as const) describe(`concurrent streams (${scheme}://)`, () => {
  let s: ServerProc;
  const clients: Client[] = [];
  const client = (): Client => {
    const c = createClient({ url: `${s.url.replace(/^http/, scheme)}/db/app/`, authToken: s.adminToken!, intMode: "number" });
    clients.push(c);
    return c;
  };

  before(async () => {
    s = await startServer({ args: ["--busy-timeout", String(BUSY_MS)] });
    await createDb(s, "app");
    await client().execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)");
  });
  after(async () => {
    for (const c of clients) c.close();
    assert.equal(await s?.stop(), 0);
  });

  it("a reader gets the committed data at once while another stream holds a write transaction", async () => {
    const [w, r] = [client(), client()];
    const base = await count(r);
    const tx = await w.transaction("write");
    await tx.execute("INSERT INTO t(who) VALUES ('tx-a')");
    const t0 = Date.now();
    assert.equal(await count(r), base, "the reader sees the last commit, not the open transaction's write");
    assert.ok(Date.now() - t0 < BUSY_MS, `the read waited ${Date.now() - t0} ms`);
    await tx.commit();
    assert.equal(await count(r), base + 1);
  });

  it("an autocommit write waits for the other stream's write transaction, then gets a typed SQLITE_BUSY, and neither stream is killed", async () => {
    const [w, o] = [client(), client()];
    const tx = await w.transaction("write");
    await tx.execute("INSERT INTO t(who) VALUES ('tx-b')");
    const t0 = Date.now();
    const err = await o.execute("INSERT INTO t(who) VALUES ('busy-b')").then(
      () => assert.fail("the write ran inside another stream's transaction"),
      (e: unknown) => e,
    );
    const waited = Date.now() - t0;
    assert.equal(codeOf(err), "SQLITE_BUSY");
    assert.match(String((err as Error).message), /another stream holds a write transaction.*[Rr]etry/);
    assert.ok(waited >= BUSY_MS - 50 && waited < BUSY_MS + 3000, `waited ${waited} ms`);
    // The transaction's stream lives on, and the busy client's next statements work.
    await tx.execute("UPDATE t SET who = 'tx-b2' WHERE who = 'tx-b'");
    await tx.commit();
    assert.equal(await count(o, "who = 'tx-b2'"), 1);
    assert.equal(await count(o, "who = 'busy-b'"), 0);
    await o.execute("INSERT INTO t(who) VALUES ('after-b')");
    assert.equal(await count(w, "who = 'after-b'"), 1);
  });

  it("a waiting autocommit write succeeds as soon as the other stream commits", async () => {
    const [w, o] = [client(), client()];
    const tx = await w.transaction("write");
    await tx.execute("INSERT INTO t(who) VALUES ('tx-c')");
    let done = false;
    const other = o.execute("INSERT INTO t(who) VALUES ('waited-c')").then(() => (done = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(done, false, "the write ran inside another stream's transaction");
    await tx.commit();
    await other;
    assert.equal(await count(o, "who IN ('tx-c', 'waited-c')"), 2);
  });

  it("a write batch (BEGIN IMMEDIATE ... COMMIT) waits for the other stream's write transaction, then commits whole", async () => {
    const [w, o] = [client(), client()];
    const tx = await w.transaction("write");
    await tx.execute("INSERT INTO t(who) VALUES ('tx-d')");
    let done = false;
    const batch = o.batch(["INSERT INTO t(who) VALUES ('wbatch-d1')", "INSERT INTO t(who) VALUES ('wbatch-d2')"], "write").then(() => (done = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(done, false, "the batch ran beside another stream's write transaction");
    await tx.commit();
    await batch;
    assert.equal(await count(o, "who IN ('tx-d', 'wbatch-d1', 'wbatch-d2')"), 3);
    assert.equal((await o.execute("SELECT count(*) AS n FROM t WHERE who = 'wbatch-d1'")).rows[0]!.n, 1, "the batch ran once");
  });

  it("a read transaction sees one snapshot while another stream commits, and does not hold the writer up", async () => {
    const [w, r] = [client(), client()];
    const rtx = await r.transaction("read");
    const n = Number((await rtx.execute("SELECT count(*) AS n FROM t")).rows[0]!.n);
    const t0 = Date.now();
    await w.execute("INSERT INTO t(who) VALUES ('during-read')");
    await w.batch(["INSERT INTO t(who) VALUES ('batch-1')", "INSERT INTO t(who) VALUES ('batch-2')"], "write");
    assert.ok(Date.now() - t0 < BUSY_MS, `the writer waited ${Date.now() - t0} ms for the reader`);
    assert.equal(Number((await rtx.execute("SELECT count(*) AS n FROM t")).rows[0]!.n), n, "the read transaction saw a later commit");
    assert.equal((await rtx.execute("SELECT count(*) AS n FROM t WHERE who LIKE 'batch-%'")).rows[0]!.n, 0);
    await rtx.commit();
    assert.equal(await count(r), n + 3);
  });

  it("a transaction that read and then writes after another stream committed gets SQLITE_BUSY at once, and can be retried", async () => {
    const [a, b] = [client(), client()];
    const tx = await a.transaction("deferred");
    const n = Number((await tx.execute("SELECT count(*) AS n FROM t")).rows[0]!.n);
    await b.execute("INSERT INTO t(who) VALUES ('b-commit')");
    const t0 = Date.now();
    await assert.rejects(tx.execute("INSERT INTO t(who) VALUES ('stale')"), (e: unknown) => codeOf(e) === "SQLITE_BUSY" && /snapshot conflict/.test(String((e as Error).message)));
    assert.ok(Date.now() - t0 < BUSY_MS, "a stale snapshot is not waited on");
    await tx.rollback();
    const again = await a.transaction("deferred");
    assert.equal(Number((await again.execute("SELECT count(*) AS n FROM t")).rows[0]!.n), n + 1);
    await again.execute("INSERT INTO t(who) VALUES ('retried')");
    await again.commit();
    assert.equal(await count(b, "who IN ('stale', 'retried')"), 1);
  });

  it("opened more connections as streams overlapped, each an enclave metered in the EPC", async () => {
    const info = await api(s, s.adminToken, "GET", "/v1/databases/app");
    assert.equal(info.status, 200);
    assert.ok(info.json.connections >= 2, `connections: ${String(info.json.connections)}`);
    const epc = await api(s, s.adminToken, "GET", "/v1/platform/epc");
    const leases = (epc.json.enclaves as Array<{ id: string; committed: number }>).filter((e) => e.id.endsWith("/app.db"));
    assert.equal(leases.length, info.json.connections, "one EPC lease per connection");
    assert.ok(leases.every((e) => e.committed > 0));
    assert.ok(epc.json.committed >= leases.reduce((a, e) => a + e.committed, 0));
  });
});

describe("concurrent streams under load, then kill -9", () => {
  it("loses no acknowledged write while writers contend with a long write transaction and readers", async () => {
    const s = await startServer({ args: ["--busy-timeout", "300"] });
    const clients: Client[] = [];
    const mk = (scheme: "http" | "ws"): Client => {
      const c = createClient({ url: `${s.url.replace(/^http/, scheme)}/db/app/`, authToken: s.adminToken!, intMode: "number" });
      clients.push(c);
      return c;
    };
    const acked: string[] = [];
    try {
      await createDb(s, "app");
      const owner = mk("http");
      await owner.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT UNIQUE)");
      const tx = await mk("ws").transaction("write");
      await tx.execute("INSERT INTO t(who) VALUES ('long-tx')");
      const writers = Array.from({ length: 4 }, (_, i) => mk(i % 2 ? "ws" : "http"));
      const reader = mk("http");
      let busy = 0;
      let reads = 0;
      let readsDuringTx = 0;
      let committing = false;
      const stop = Date.now() + 2000;
      const work = writers.map(async (c, i) => {
        for (let k = 0; Date.now() < stop; k++) {
          const who = `w${i}-${k}`;
          try {
            await c.execute({ sql: "INSERT INTO t(who) VALUES (?)", args: [who] });
            acked.push(who);
          } catch (e) {
            if (codeOf(e) !== "SQLITE_BUSY") throw e;
            busy++;
          }
        }
      });
      const readLoop = (async () => {
        while (Date.now() < stop) {
          await reader.execute("SELECT count(*) FROM t");
          reads++;
          if (!committing) readsDuringTx++;
        }
      })();
      setTimeout(() => {
        committing = true;
        void tx.commit().then(() => acked.push("long-tx"));
      }, 1200);
      await Promise.all([...work, readLoop]);
      assert.ok(acked.includes("long-tx"), "the long transaction's stream was not killed");
      assert.ok(busy > 0, "some writes waited out the busy timeout while the transaction was open");
      assert.ok(acked.length > 1, `acknowledged writes: ${acked.length}`);
      assert.ok(readsDuringTx > 0 && reads > 1, `reads: ${reads}, ${readsDuringTx} of them while the transaction was open`);
    } finally {
      for (const c of clients) c.close();
      await s.stop("SIGKILL");
    }
    const again = await startServer({ dir: s.dir });
    try {
      const c = createClient({ url: `${again.url}/db/app/`, authToken: s.adminToken!, intMode: "number" });
      const rows = (await c.execute("SELECT who FROM t")).rows.map((r) => String(r.who));
      c.close();
      const have = new Set(rows);
      assert.deepEqual(acked.filter((w) => !have.has(w)), [], "acknowledged writes lost after kill -9");
    } finally {
      assert.equal(await again.stop(), 0);
    }
  });
});
