import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { Database, SelkieError, SqliteError, UsageError } from "../../runtime/index.js";
import { tempDir, openDb } from "../helpers.js";

const fresh = (name = "t.db") => openDb(path.join(tempDir(), name));

test("exec creates tables and query returns rows as objects", () => {
  const db = fresh();
  db.exec("CREATE TABLE t(a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two');");
  assert.deepEqual(db.query("SELECT a, b FROM t ORDER BY a"), [{ a: 1, b: "one" }, { a: 2, b: "two" }]);
  db.close();
});

test("positional, numbered and named parameters bind the same values", () => {
  const db = fresh();
  db.exec("CREATE TABLE t(a, b)");
  db.run("INSERT INTO t VALUES (?, ?)", 1, "x");
  db.run("INSERT INTO t VALUES (?, ?)", [2, "y"]);
  db.run("INSERT INTO t VALUES (?2, ?1)", "z", 3);
  db.run("INSERT INTO t VALUES (:a, @b)", { a: 4, b: "w" });
  db.run("INSERT INTO t VALUES ($a, :b)", { $a: 5, ":b": "v" });
  assert.deepEqual(db.query("SELECT a, b FROM t ORDER BY a").map((r) => [r.a, r.b]), [[1, "x"], [2, "y"], [3, "z"], [4, "w"], [5, "v"]]);
  db.close();
});

test("every SQLite value type round-trips, integers beyond 2^53 as bigint", () => {
  const db = fresh();
  db.exec("CREATE TABLE v(x)");
  const values = [null, 0, -1, 42, 2 ** 53 - 1, -(2 ** 53 - 1), 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n, 1.5, -0.25, 1e300, "", "héllo ✓ 🦭", "a\u0000b", new Uint8Array([]), new Uint8Array([0, 1, 2, 255])];
  const ins = db.prepare("INSERT INTO v VALUES (?)");
  for (const v of values) ins.run(v);
  const out = db.prepare("SELECT x, typeof(x) AS t FROM v ORDER BY rowid").all();
  assert.equal(out.length, values.length);
  out.forEach((r, i) => {
    const v = values[i];
    if (v instanceof Uint8Array) {
      assert.equal(r.t, "blob");
      assert.deepEqual([...(r.x as Uint8Array)], [...v]);
    } else {
      assert.deepEqual(r.x, v, `value ${i}`);
    }
  });
  assert.equal(out[3]!.t, "integer", "safe integers bind as INTEGER");
  assert.equal(out[9]!.t, "real");
  assert.equal(db.query("SELECT 9007199254740993 AS v")[0]!.v, 9007199254740993n);
  assert.equal(db.query("SELECT ? AS b", true)[0]!.b, 1);
  db.close();
});

test("binding an unsupported type or an out-of-range bigint is a UsageError", () => {
  const db = fresh();
  assert.throws(() => db.query("SELECT ?", { a: 1 } as never), UsageError);
  assert.throws(() => db.query("SELECT ?", [new Date()] as never), (e: unknown) => e instanceof UsageError && e.code === "BIND_BAD_TYPE");
  assert.throws(() => db.query("SELECT ?", 2n ** 64n), (e: unknown) => e instanceof UsageError && e.code === "BIND_OUT_OF_RANGE");
  db.close();
});

test("wrong parameter counts and missing named values are refused with a clear error", () => {
  const db = fresh();
  assert.throws(() => db.query("SELECT ?, ?", 1), (e: unknown) => e instanceof UsageError && e.code === "BIND_COUNT_MISMATCH" && /takes 2 parameters but 1 was given/.test(e.message));
  assert.throws(() => db.query("SELECT ?", 1, 2), { code: "BIND_COUNT_MISMATCH" });
  assert.throws(() => db.query("SELECT :a, :b", { a: 1 }), (e: unknown) => e instanceof UsageError && e.code === "BIND_MISSING_NAMED" && e.message.includes(":b"));
  assert.deepEqual(db.query("SELECT 1 AS one"), [{ one: 1 }], "still usable");
  db.close();
});

test("SQLite errors carry the primary and extended code and the message", () => {
  const db = fresh();
  db.exec("CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)");
  db.run("INSERT INTO u(name) VALUES ('a')");
  assert.throws(() => db.run("INSERT INTO u(name) VALUES ('a')"), (e: unknown) => {
    assert.ok(e instanceof SqliteError);
    assert.equal(e.code, "SQLITE_CONSTRAINT_UNIQUE");
    assert.equal(e.primaryCode, 19);
    assert.equal(e.extendedCode, 2067);
    assert.match(e.message, /UNIQUE constraint failed: u.name/);
    return true;
  });
  assert.throws(() => db.run("INSERT INTO u(name) VALUES (NULL)"), { code: "SQLITE_CONSTRAINT_NOTNULL" });
  assert.throws(() => db.exec("SELEC 1"), (e: unknown) => e instanceof SqliteError && e.code === "SQLITE_ERROR" && /syntax error/.test(e.message));
  assert.throws(() => db.query("SELECT * FROM nope"), /no such table: nope/);
  assert.equal(db.query("SELECT count(*) AS n FROM u")[0]!.n, 1, "the connection stays usable and nothing was lost");
  db.close();
});

test("prepared statements run, get, iterate and report changes and rowids", () => {
  const db = fresh();
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
  assert.deepEqual(ins.run("a"), { changes: 1, lastInsertRowid: 1 });
  assert.deepEqual(ins.run("b"), { changes: 1, lastInsertRowid: 2 });
  db.run("INSERT INTO t(id, v) VALUES (?, 'big')", 2n ** 60n);
  assert.equal(db.run("INSERT INTO t(v) VALUES ('after')").lastInsertRowid, 2n ** 60n + 1n);
  assert.equal(db.run("UPDATE t SET v = upper(v) WHERE id < 10").changes, 2);
  const sel = db.prepare("SELECT v FROM t WHERE id = ?");
  assert.deepEqual(sel.get(1), { v: "A" });
  assert.equal(sel.get(99), undefined);
  assert.deepEqual(sel.columns(), ["v"]);
  const seen: unknown[] = [];
  for (const row of db.prepare("SELECT id FROM t ORDER BY id").iterate()) {
    seen.push(row.id);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(db.prepare("SELECT id, v FROM t ORDER BY id LIMIT 1").values(), [[1, "A"]]);
  sel.finalize();
  assert.throws(() => sel.get(1), { code: "STATEMENT_FINALIZED" });
  assert.throws(() => db.prepare("SELECT 1; SELECT 2"), { code: "MULTIPLE_STATEMENTS" });
  assert.throws(() => db.prepare("  -- nothing\n"), { code: "EMPTY_STATEMENT" });
  db.close();
});

test("transaction() commits on return, rolls back on throw, and nests with savepoints", () => {
  const db = fresh();
  db.exec("CREATE TABLE t(x)");
  const add = db.transaction((xs: number[]) => {
    for (const x of xs) db.run("INSERT INTO t VALUES (?)", x);
    return xs.length;
  });
  assert.equal(add([1, 2, 3]), 3);
  assert.equal(db.inTransaction, false);
  assert.throws(() => db.transaction(() => {
    db.run("INSERT INTO t VALUES (4)");
    throw new Error("boom");
  })(), /boom/);
  assert.deepEqual(db.query("SELECT x FROM t ORDER BY x").map((r) => r.x), [1, 2, 3]);
  db.transaction(() => {
    db.run("INSERT INTO t VALUES (10)");
    try {
      db.transaction(() => {
        db.run("INSERT INTO t VALUES (11)");
        throw new Error("inner");
      })();
    } catch {
      /* inner rolled back only */
    }
    assert.equal(db.inTransaction, true);
  })();
  assert.deepEqual(db.query("SELECT x FROM t ORDER BY x").map((r) => r.x), [1, 2, 3, 10]);
  assert.throws(() => db.transaction(async () => db.run("INSERT INTO t VALUES (99)"))(), { code: "ASYNC_TRANSACTION" });
  assert.equal(db.query("SELECT count(*) AS n FROM t WHERE x = 99")[0]!.n, 0);
  db.close();
});

test("data survives close and reopen, and a closed database refuses calls", () => {
  const dir = tempDir();
  const file = path.join(dir, "p.db");
  const db = openDb(file);
  db.exec("CREATE TABLE t(x); INSERT INTO t VALUES ('kept')");
  db.close();
  db.close();
  assert.throws(() => db.query("SELECT 1"), { code: "DB_CLOSED" });
  const again = openDb(file, { readonly: true });
  assert.deepEqual(again.query("SELECT x FROM t"), [{ x: "kept" }]);
  assert.throws(() => again.exec("INSERT INTO t VALUES (1)"), { code: "SQLITE_READONLY" });
  again.close();
});

test("opening a missing file without create fails with a typed error naming the path", () => {
  const file = path.join(tempDir(), "missing.db");
  assert.throws(() => openDb(file, { create: false }), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_MISSING_FILE" && e.message.includes(file));
  assert.throws(() => openDb(file, { readonly: true }), { code: "STORAGE_MISSING_FILE" });
  assert.throws(() => openDb(file, { create: false, plain: true }), (e: unknown) => e instanceof SqliteError && e.primaryCode === 14 && e.message.includes(file));
  assert.throws(() => new Database(file), { code: "NO_PLATFORM" });
});

test("two connections in one process see each other's commits and respect locks", () => {
  const file = path.join(tempDir(), "two.db");
  const a = openDb(file);
  const b = openDb(file);
  a.exec("CREATE TABLE t(x)");
  a.run("INSERT INTO t VALUES (1)");
  assert.deepEqual(b.query("SELECT x FROM t"), [{ x: 1 }]);
  a.exec("BEGIN IMMEDIATE");
  a.run("INSERT INTO t VALUES (2)");
  assert.throws(() => b.exec("BEGIN IMMEDIATE"), { code: "SQLITE_BUSY" });
  assert.deepEqual(b.query("SELECT count(*) AS n FROM t"), [{ n: 1 }], "b reads the last commit");
  a.exec("COMMIT");
  assert.deepEqual(b.query("SELECT count(*) AS n FROM t"), [{ n: 2 }]);
  a.close();
  b.close();
});

test("SQL functions that need clock and randomness work with the manifest's grants", () => {
  const db = fresh();
  const r = db.query<{ y: string; r: number }>("SELECT strftime('%Y', 'now') AS y, length(randomblob(16)) AS r")[0]!;
  assert.equal(Number(r.y), new Date().getUTCFullYear());
  assert.equal(r.r, 16);
  db.close();
});

test("a statement describes its parameters and its columns' declared types", () => {
  const db = openDb(path.join(tempDir(), "d.db"));
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL)");
  const st = db.prepare("SELECT id, name, score * 2 AS s FROM t WHERE id > ? AND name = :n");
  assert.deepEqual(st.parameters(), [null, ":n"]);
  assert.deepEqual(st.columns(), ["id", "name", "s"]);
  assert.deepEqual(st.columnTypes(), ["INTEGER", "TEXT", null]);
  assert.equal(st.readonly, true);
  assert.equal(db.prepare("INSERT INTO t(name) VALUES (?)").readonly, false);
  db.close();
});
