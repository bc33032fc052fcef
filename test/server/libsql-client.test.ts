/**
 * The unmodified @libsql/client against a spawned `selkie serve`: every result is compared with the
 * same statements run through the local Database API.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { createClient, type Client, type InArgs } from "@libsql/client";
import { openDb, tempDir } from "../helpers.js";
import { SqliteError, sqliteCodeName, type Database } from "../../runtime/index.js";
import { api, createDb, norm, startServer, type ServerProc } from "./harness.js";

type Outcome = { cols: string[]; rows: unknown[]; changes?: number } | { error: string };

function local(db: Database, sql: string, args: InArgs = []): Outcome {
  try {
    const st = db.prepare(sql);
    try {
      const cols = st.columns();
      const a = (Array.isArray(args) ? args : [args]) as [];
      if (cols.length > 0) return { cols: st.columns(), rows: norm(st.values(...a)) as unknown[] };
      const r = st.run(...a);
      return { cols: [], rows: [], changes: r.changes };
    } finally {
      st.finalize();
    }
  } catch (e) {
    // The wire carries SQLite's primary code (as sqld does) and sqld's code for a multi-statement text.
    if (e instanceof SqliteError) return { error: sqliteCodeName(e.primaryCode) };
    const code = (e as { code: string }).code;
    return { error: code === "MULTIPLE_STATEMENTS" ? "SQL_MANY_STATEMENTS" : code };
  }
}

async function remote(c: Client, sql: string, args: InArgs = []): Promise<Outcome> {
  try {
    const rs = await c.execute({ sql, args });
    const rows = rs.rows.map((r) => norm(Array.prototype.slice.call(r)));
    return rs.columns.length > 0 ? { cols: rs.columns, rows } : { cols: [], rows: [], changes: rs.rowsAffected };
  } catch (e) {
    return { error: (e as { code: string }).code };
  }
}

for (const scheme of ["http", "ws"] as const) describe(`@libsql/client against selkie serve (${scheme}://)`, () => {
  let s: ServerProc;
  /** The server's URL in this suite's scheme. */
  const base = (): string => s.url.replace(/^http/, scheme);
  let c: Client;
  let db: Database;
  const same = async (sql: string, args: InArgs = []): Promise<Outcome> => {
    const want = local(db, sql, args);
    const got = await remote(c, sql, args);
    assert.deepEqual(got, want, `${sql} ${JSON.stringify(args, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`);
    return got;
  };

  before(async () => {
    s = await startServer();
    await createDb(s, "app");
    c = createClient({ url: `${base()}/db/app/`, authToken: s.adminToken!, intMode: "bigint" });
    db = openDb(path.join(tempDir(), "local.db"));
  });
  after(async () => {
    c?.close();
    db?.close();
    assert.equal(await s?.stop(), 0);
  });

  it("executes statements with the same results as the local API", async () => {
    await same("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL, data BLOB)");
    await same("INSERT INTO t(name, score, data) VALUES (?, ?, ?)", ["ann", 1.5, new Uint8Array([1, 2, 3])]);
    await same("INSERT INTO t(name, score) VALUES ('bob', 2), ('cy', -0.25)");
    await same("SELECT * FROM t ORDER BY id");
    await same("UPDATE t SET score = score * 2 WHERE score > 0");
    await same("SELECT name, score FROM t WHERE score > ? ORDER BY name", [0]);
    await same("INSERT INTO t(name) VALUES ('dee') RETURNING id, name");
    await same("DELETE FROM t WHERE name = 'dee'");
    await same("SELECT count(*) AS n, sum(score) AS s FROM t");
  });

  it("round-trips every value type", async () => {
    await same("SELECT 1, -1, 0, 9007199254740993, -9223372036854775808, 9223372036854775807");
    await same("SELECT 1.5, -0.25, 1e300, 2.0, 5e-324");
    await same("SELECT 'text', '', 'héllo ✓ 😀', x'00ff10', x'', NULL");
    await same("SELECT ?, ?, ?, ?, ?, ?, ?", [null, 42, 3.25, "s", new Uint8Array([0, 1, 255]), 2n ** 62n, -(2n ** 63n)]);
    await same("SELECT typeof(?), typeof(?), typeof(?), typeof(?)", [1n, "x", null, new Uint8Array(0)]);
    await same("SELECT :a, @b, $c", { a: 1, b: "x", c: null });
    await same("SELECT ?1, ?2, ?1", [7, "y"]);
    await same("CREATE TABLE v(x)");
    await same("INSERT INTO v VALUES (?), (?), (?), (?), (?)", [123456789012345678n, 0.1, "t", new Uint8Array([9]), null]);
    await same("SELECT x, typeof(x) FROM v ORDER BY rowid");
  });

  it("reports errors with SQLite's primary codes, as sqld does", async () => {
    const e1 = await same("INSERT INTO t(name) VALUES ('ann')");
    assert.deepEqual(e1, { error: "SQLITE_CONSTRAINT" });
    assert.deepEqual(await same("SELEC 1"), { error: "SQLITE_ERROR" });
    assert.deepEqual(await same("SELECT * FROM nowhere"), { error: "SQLITE_ERROR" });
    assert.deepEqual(await same("SELECT ?", [1, 2]), { error: "BIND_COUNT_MISMATCH" });
    assert.deepEqual(await same("SELECT 1; SELECT 2"), { error: "SQL_MANY_STATEMENTS" });
    // The server keeps serving after errors.
    await same("SELECT count(*) FROM t");
  });

  it("runs a batch in one transaction, and rolls all of it back when a statement fails", async () => {
    const rs = await c.batch(["INSERT INTO t(name) VALUES ('b1')", { sql: "INSERT INTO t(name) VALUES (?)", args: ["b2"] }, "SELECT count(*) FROM t WHERE name LIKE 'b_'"], "write");
    assert.equal(rs.length, 3);
    assert.deepEqual(norm(Array.prototype.slice.call(rs[2]!.rows[0])), [2n]);
    db.transaction(() => {
      db.run("INSERT INTO t(name) VALUES ('b1')");
      db.run("INSERT INTO t(name) VALUES (?)", "b2");
    })();
    await assert.rejects(c.batch(["INSERT INTO t(name) VALUES ('b3')", "INSERT INTO t(name) VALUES ('ann')", "INSERT INTO t(name) VALUES ('b4')"], "write"), (e: { code: string }) => e.code === "SQLITE_CONSTRAINT");
    await same("SELECT name FROM t WHERE name LIKE 'b_' ORDER BY name");
    const read = await c.batch(["SELECT 1", "SELECT 2"], "read");
    assert.equal(read.length, 2);
  });

  it("runs an interactive transaction and rolls it back", async () => {
    const before = await same("SELECT count(*) FROM t");
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t(name) VALUES ('tx1')");
    const inside = await tx.execute("SELECT count(*) AS n FROM t");
    assert.equal(inside.rows[0]!.n, (before as { rows: bigint[][] }).rows[0]![0]! + 1n);
    await tx.rollback();
    tx.close();
    await same("SELECT count(*) FROM t");
    await same("SELECT count(*) FROM t WHERE name = 'tx1'");
  });

  it("commits an interactive transaction while other clients wait for it", async () => {
    const c2 = createClient({ url: `${base()}/db/app/`, authToken: s.adminToken!, intMode: "bigint" });
    try {
      const tx = await c.transaction("write");
      await tx.execute("INSERT INTO t(name) VALUES ('tx2')");
      let done = false;
      const other = c2.execute("INSERT INTO t(name) VALUES ('other')").then(() => (done = true));
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(done, false, "a write from another stream ran inside the open transaction");
      await tx.execute("UPDATE t SET score = 99 WHERE name = 'tx2'");
      await tx.commit();
      await other;
      db.run("INSERT INTO t(name) VALUES ('tx2')");
      db.run("UPDATE t SET score = 99 WHERE name = 'tx2'");
      db.run("INSERT INTO t(name) VALUES ('other')");
      await same("SELECT name, score FROM t ORDER BY id");
    } finally {
      c2.close();
    }
  });

  it("group-commits concurrent writes with per-statement results, as if each ran alone", async () => {
    await c.execute("CREATE TABLE g(k INTEGER PRIMARY KEY, v TEXT)");
    db.exec("CREATE TABLE g(k INTEGER PRIMARY KEY, v TEXT)");
    const clients = Array.from({ length: 6 }, () => createClient({ url: `${base()}/db/app/`, authToken: s.adminToken!, intMode: "bigint" }));
    try {
      // 60 inserts from 6 clients at once; every key is inserted twice, so half fail.
      const outcomes = await Promise.all(
        Array.from({ length: 60 }, (_, i) => remote(clients[i % 6]!, "INSERT INTO g VALUES (?, ?)", [i % 30, `v${i}`])),
      );
      const ok = outcomes.filter((o) => "changes" in o && o.changes === 1).length;
      const dup = outcomes.filter((o) => "error" in o && o.error === "SQLITE_CONSTRAINT").length;
      assert.equal(ok, 30);
      assert.equal(dup, 30);
      const rs = await c.execute("SELECT count(*) AS n, count(DISTINCT k) AS d FROM g");
      assert.deepEqual([rs.rows[0]!.n, rs.rows[0]!.d], [30n, 30n]);
      const m = await api(s, s.adminToken, "GET", "/metrics");
      const groups = Number(/^selkie_group_commits (\d+)/m.exec(m.text)![1]);
      const jobs = Number(/^selkie_group_commit_requests (\d+)/m.exec(m.text)![1]);
      // Whether writes shared a commit depends on timing: reported, not asserted.
      console.log(`group commit: ${jobs} requests in ${groups} grouped commits`);
    } finally {
      for (const x of clients) x.close();
    }
  });

  it("runs executeMultiple and migrate", async () => {
    await c.executeMultiple("CREATE TABLE m(x); INSERT INTO m VALUES (1); INSERT INTO m VALUES (2);");
    db.exec("CREATE TABLE m(x); INSERT INTO m VALUES (1); INSERT INTO m VALUES (2);");
    await same("SELECT * FROM m");
  });

  it("addresses a database by URL path or by a token limited to it", async () => {
    const r = await api(s, s.adminToken, "POST", "/v1/tokens", { scope: "read-write", db: "app" });
    assert.equal(r.status, 201);
    const byToken = createClient({ url: base(), authToken: r.json.token, intMode: "bigint" });
    try {
      const rs = await byToken.execute("SELECT count(*) AS n FROM m");
      assert.equal(rs.rows[0]!.n, 2n);
    } finally {
      byToken.close();
    }
    const admin = createClient({ url: base(), authToken: s.adminToken! });
    await assert.rejects(admin.execute("SELECT 1"), (e: Error) => /NO_DATABASE|database in the URL/.test(e.message));
    admin.close();
  });
});

describe("@libsql/client intMode over http:// and ws://", () => {
  let s: ServerProc;
  before(async () => {
    s = await startServer();
    await createDb(s, "modes");
  });
  after(async () => {
    assert.equal(await s?.stop(), 0);
  });

  for (const scheme of ["http", "ws"] as const) {
    for (const intMode of ["number", "bigint", "string"] as const) {
      it(`${scheme}:// with intMode "${intMode}" reads integers as ${intMode}s and REALs as numbers`, async () => {
        const c = createClient({ url: `${s.url.replace(/^http/, scheme)}/db/modes/`, authToken: s.adminToken!, intMode });
        try {
          const t = `m_${scheme}_${intMode}`;
          await c.execute(`CREATE TABLE ${t}(i INTEGER, r REAL, s TEXT)`);
          await c.execute({ sql: `INSERT INTO ${t} VALUES (?, ?, ?)`, args: [42n, 2.0, "x"] });
          await c.execute({ sql: `INSERT INTO ${t} VALUES (?, ?, ?)`, args: [-7, 0.5, null] });
          const rs = await c.execute(`SELECT i, r, s, typeof(r) AS tr FROM ${t} ORDER BY rowid`);
          const want = { number: [42, -7], bigint: [42n, -7n], string: ["42", "-7"] }[intMode];
          assert.deepEqual(rs.rows.map((r) => r.i), want);
          assert.deepEqual(rs.rows.map((r) => r.r), [2, 0.5]);
          assert.deepEqual(rs.rows.map((r) => r.tr), ["real", "real"]);
          assert.deepEqual(rs.columnTypes, ["INTEGER", "REAL", "TEXT", ""]);
          const [b] = await c.batch([{ sql: `SELECT count(*) AS n FROM ${t} WHERE i > ?`, args: [0] }], "read");
          assert.deepEqual(b!.rows[0]!.n, { number: 1, bigint: 1n, string: "1" }[intMode]);
          const tx = await c.transaction("write");
          await tx.execute(`DELETE FROM ${t}`);
          await tx.rollback();
          assert.equal((await c.execute(`SELECT count(*) AS n FROM ${t}`)).rows.length, 1);
          await assert.rejects(c.execute(`INSERT INTO nowhere VALUES (1)`), (e: { code: string }) => e.code === "SQLITE_ERROR");
        } finally {
          c.close();
        }
      });
    }
  }
});
