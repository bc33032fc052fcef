/**
 * EPC paging of SQLite enclaves (runtime/enclave/snapshot/pager.ts, Database's hibernate/wake):
 * hibernating and waking at random points changes no result; hundreds of databases share an EPC
 * far smaller than their sum and all answer correctly without resident memory passing the budget;
 * a tampered paging image is refused and costs nothing committed; a wake that cannot fit is refused
 * and leaves the database intact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database, Platform } from "../../runtime/index.js";
import { SelkieError } from "../../runtime/errors.js";
import { openDb, rng, tempDir } from "../helpers.js";
import { outcome, workload } from "./workload.js";

const MiB = 1024 * 1024;

for (const seed of [21, 22, 23]) {
  test(`seeded workload ${seed} with hibernations at random points gives exactly the results of an uninterrupted run`, () => {
    const dir = tempDir();
    const ref = openDb(path.join(dir, "ref.db"), { paging: false });
    const sub = openDb(path.join(dir, "sub.db"));
    const r = rng(seed * 7919);
    let slept = 0;
    let refusedWhileLocked = 0;
    try {
      // A statement prepared before any hibernation, reused across all of them.
      const countRef = () => ref.prepare("SELECT count(*) AS n FROM sqlite_schema");
      const held = sub.prepare("SELECT count(*) AS n FROM sqlite_schema");
      const heldRef = countRef();
      workload(seed, 400).forEach((s, i) => {
        if (r() < 0.35) {
          const before = sub.paging.hibernations;
          if (sub.hibernate()) {
            slept++;
            assert.equal(sub.paging.state, "hibernated");
            assert.equal(sub.enclave.committedBytes, 0, "a hibernated enclave holds no memory");
            assert.equal(sub.paging.hibernations, before + 1);
          }
        }
        if (r() < 0.1) {
          // An open read statement holds a lock: the enclave is not idle and must not be hibernated.
          const it = sub.prepare("SELECT 1 AS x UNION ALL SELECT 2").iterate();
          it.next();
          if (!sub.hibernate()) refusedWhileLocked++;
          it.return?.(undefined);
        }
        assert.equal(outcome(sub, s), outcome(ref, s), `seed ${seed}, step ${i}: ${s.sql}`);
        if (i % 50 === 0) assert.deepEqual(held.get(), heldRef.get());
      });
      assert.ok(slept >= 40, `hibernated ${slept} times`);
      assert.ok(sub.paging.wakes >= slept - 1, "every hibernation was followed by a wake on the next call");
      assert.ok(refusedWhileLocked > 0, "hibernation was refused while a statement held a lock");
      assert.deepEqual(sub.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
    } finally {
      ref.close();
      sub.close();
    }
  });
}

test("200 SQLite enclaves under a 32 MiB EPC all answer correctly under random access; resident memory never passes the budget", async () => {
  const platform = await Platform.create(tempDir("selkie-epc32-"), { epc: "32MiB" });
  const dir = tempDir();
  const N = 200;
  const dbs: Database[] = [];
  const model: { rows: number; sum: number }[] = [];
  const budget = platform.epc.budget;
  const checkBudget = (when: string) => {
    const resident = dbs.reduce((a, d) => a + d.enclave.committedBytes, 0);
    assert.ok(resident <= budget, `${when}: ${resident} bytes resident > budget ${budget}`);
    assert.ok(platform.epc.committed <= budget);
  };
  try {
    for (let i = 0; i < N; i++) {
      const db = new Database(path.join(dir, `db${i}.db`), { platform });
      db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, s TEXT)");
      dbs.push(db);
      model.push({ rows: 0, sum: 0 });
      checkBudget(`after opening ${i + 1}`);
    }
    assert.ok(N * dbs[0]!.paging.lastImageBytes >= 0);
    const r = rng(4242);
    for (let op = 0; op < 2000; op++) {
      // Skewed access: a hot set and a long tail, as an edge host sees.
      const i = r() < 0.6 ? Math.floor(r() * 20) : Math.floor(r() * N);
      const db = dbs[i]!;
      const m = model[i]!;
      if (r() < 0.5) {
        const v = Math.floor(r() * 1000);
        db.run("INSERT INTO t(v, s) VALUES (?, ?)", v, `row ${m.rows} of db ${i}`);
        m.rows++;
        m.sum += v;
      } else {
        const got = db.query<{ n: number; s: number | null }>("SELECT count(*) AS n, sum(v) AS s FROM t")[0]!;
        assert.deepEqual(got, { n: m.rows, s: m.rows === 0 ? null : m.sum }, `db ${i} at op ${op}`);
      }
      if (op % 100 === 0) checkBudget(`op ${op}`);
    }
    const stats = dbs.reduce((a, d) => ({ h: a.h + d.paging.hibernations, w: a.w + d.paging.wakes }), { h: 0, w: 0 });
    assert.ok(stats.h > N, `evictions happened (${stats.h})`);
    assert.ok(stats.w > N / 2, `wakes happened (${stats.w})`);
    const resident = dbs.filter((d) => d.paging.state === "running").length;
    assert.ok(resident < N / 4, `only a fraction is resident (${resident} of ${N})`);
    // Every database, in full, once more.
    dbs.forEach((db, i) => assert.deepEqual(db.query("SELECT count(*) AS n FROM t"), [{ n: model[i]!.rows }]));
    checkBudget("at the end");
  } finally {
    for (const db of dbs) db.close();
    platform.close();
  }
});

test("a tampered paging image is refused with a typed error; the database boots afresh and loses no commit", async () => {
  const platform = await Platform.create(tempDir("selkie-page-tamper-"));
  const db = new Database(path.join(tempDir(), "t.db"), { platform });
  try {
    db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)");
    const st = db.prepare("SELECT sum(x) AS s FROM t");
    assert.ok(db.hibernate());
    const files = listFiles(path.join(platform.dir, "paging")).filter((f) => fs.statSync(f).size > 4096);
    assert.ok(files.length >= 1, "the paging image is on disk");
    const f = files.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    const bytes = fs.readFileSync(f);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    fs.writeFileSync(f, bytes);
    assert.throws(() => db.query("SELECT sum(x) AS s FROM t"), (e: unknown) => e instanceof SelkieError && e.code === "IMAGE_TAMPERED");
    assert.equal(db.paging.state, "running", "booted afresh");
    assert.deepEqual(db.query("SELECT sum(x) AS s FROM t"), [{ s: 6 }], "every commit is still there");
    assert.deepEqual(st.get(), { s: 6 }, "an old statement re-prepares itself");
    db.run("INSERT INTO t VALUES (4)");
    assert.ok(db.hibernate());
    assert.deepEqual(db.query("SELECT sum(x) AS s FROM t"), [{ s: 10 }], "paging works again after the fresh boot");
  } finally {
    db.close();
    platform.close();
  }
});

test("a wake that cannot fit even after evicting every idle enclave is refused, and the database stays intact", async () => {
  const platform = await Platform.create(tempDir("selkie-page-refuse-"), { epc: "8MiB" });
  const dir = tempDir();
  const big = new Database(path.join(dir, "big.db"), { platform });
  const others: Database[] = [];
  const iters: Iterator<unknown>[] = [];
  try {
    // Grow big's memory to ~5 MiB with a large page cache full of rows.
    big.exec("PRAGMA cache_size=-8000; CREATE TABLE t(x BLOB)");
    big.transaction(() => {
      for (let i = 0; i < 1200; i++) big.run("INSERT INTO t VALUES (randomblob(3000))");
    })();
    big.query("SELECT count(*) FROM t WHERE length(x) = 3000");
    const bigBytes = big.enclave.committedBytes;
    assert.ok(bigBytes > 4 * MiB, `big holds ${bigBytes} bytes`);
    assert.ok(big.hibernate());
    // Other databases fill the EPC and stay busy: each holds a read lock (an open iterator).
    for (let i = 0; i < 6; i++) {
      let db: Database;
      try {
        db = new Database(path.join(dir, `o${i}.db`), { platform });
      } catch {
        break;
      }
      others.push(db);
      db.exec("CREATE TABLE IF NOT EXISTS u(y); INSERT INTO u VALUES (1), (2)");
      const it = db.prepare("SELECT y FROM u").iterate();
      it.next();
      iters.push(it);
      if (platform.epc.free < bigBytes - 2 * MiB) break;
    }
    assert.ok(platform.epc.free < bigBytes, `the EPC is full of busy enclaves (${platform.epc.free} bytes free)`);
    assert.throws(() => big.query("SELECT count(*) AS n FROM t"), (e: unknown) => e instanceof SelkieError && e.code === "EPC_ADMISSION_REFUSED" && /needs/.test(e.message));
    assert.equal(big.paging.state, "hibernated", "still hibernated, image intact");
    for (const it of iters) it.return?.(undefined);
    assert.deepEqual(big.query("SELECT count(*) AS n FROM t"), [{ n: 1200 }], "wakes once the others are idle (they are evicted)");
    assert.ok(others.some((o) => o.paging.state === "hibernated"), "idle enclaves were evicted to make room");
  } finally {
    for (const o of others) o.close();
    big.close();
    platform.close();
  }
});

test("a database without paging is never hibernated and the EPC refuses it instead", async () => {
  const platform = await Platform.create(tempDir("selkie-page-off-"), { epc: "4MiB" });
  const dir = tempDir();
  const a = new Database(path.join(dir, "a.db"), { platform, paging: false });
  try {
    assert.equal(a.hibernate(), false);
    const opened: Database[] = [];
    assert.throws(() => {
      for (let i = 0; i < 10; i++) opened.push(new Database(path.join(dir, `b${i}.db`), { platform, paging: false }));
    }, (e: unknown) => e instanceof SelkieError && e.code === "EPC_ADMISSION_REFUSED");
    for (const o of opened) o.close();
    assert.equal(a.paging.state, "running");
  } finally {
    a.close();
    platform.close();
  }
});

function listFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
