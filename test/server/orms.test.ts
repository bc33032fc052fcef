/**
 * The ORMs that sit on libSQL's client, unmodified, against a spawned `selkie serve`:
 * Drizzle (drizzle-orm/libsql over @libsql/client) and Kysely (@libsql/kysely-libsql, which brings
 * its own older @libsql/client). Each creates a schema, inserts, selects, updates, and runs a
 * transaction that commits and one that rolls back; results are checked, also through raw SQL.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { sqliteTable, integer, text, real } from "drizzle-orm/sqlite-core";
import { eq, asc, sql as dsql } from "drizzle-orm";
import { Kysely, sql as ksql, type Generated } from "kysely";
import { LibsqlDialect } from "@libsql/kysely-libsql";
import { createDb, startServer, type ServerProc } from "./harness.js";

const users = sqliteTable("users", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull(),
  email: text("email").notNull().unique(),
  score: real("score").notNull().default(0),
});

interface KDb {
  pets: { id: Generated<number>; name: string; species: string; age: number | null };
}

describe("ORMs against selkie serve", () => {
  let s: ServerProc;
  before(async () => {
    s = await startServer();
    for (const name of ["drizzle", "kysely", "drizzlews", "kyselyws", "isolation"]) await createDb(s, name);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  for (const scheme of ["http", "ws"] as const) {
    const base = (): string => s.url.replace(/^http/, scheme);
    const suffix = scheme === "ws" ? "ws" : "";
    it(`Drizzle over ${scheme}://: schema, insert, select, update, transactions (commit and rollback)`, async () => {
      const client: Client = createClient({ url: `${base()}/db/drizzle${suffix}/`, authToken: s.adminToken! });
      const db = drizzle(client);
      try {
        await db.run(dsql`CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, score REAL NOT NULL DEFAULT 0)`);
        const inserted = await db
          .insert(users)
          .values([
            { name: "Ada", email: "ada@example.org", score: 1.5 },
            { name: "Grace", email: "grace@example.org" },
          ])
          .returning({ id: users.id, name: users.name });
        assert.deepEqual(inserted, [
          { id: 1, name: "Ada" },
          { id: 2, name: "Grace" },
        ]);
        await db.update(users).set({ score: 9.25 }).where(eq(users.name, "Grace"));
        assert.deepEqual(await db.select().from(users).orderBy(asc(users.id)), [
          { id: 1, name: "Ada", email: "ada@example.org", score: 1.5 },
          { id: 2, name: "Grace", email: "grace@example.org", score: 9.25 },
        ]);

        // A transaction that commits (an interactive one: reads its own writes, through a baton).
        await db.transaction(async (tx) => {
          await tx.insert(users).values({ name: "Edsger", email: "edsger@example.org", score: 3 });
          const [row] = await tx.select({ n: dsql<number>`count(*)` }).from(users);
          assert.equal(row!.n, 3);
          await tx.update(users).set({ score: 4 }).where(eq(users.email, "edsger@example.org"));
        });
        // One that rolls back: explicitly, and by a thrown error (a UNIQUE violation).
        await assert.rejects(
          db.transaction(async (tx) => {
            await tx.insert(users).values({ name: "Temp", email: "temp@example.org" });
            tx.rollback();
          }),
          /Rollback/,
        );
        await assert.rejects(
          db.transaction(async (tx) => {
            await tx.update(users).set({ score: 0 });
            await tx.insert(users).values({ name: "Dup", email: "ada@example.org" });
          }),
          (e: Error & { cause?: Error }) => /UNIQUE constraint failed: users\.email/.test(`${e.message} ${e.cause?.message ?? ""}`),
        );
        assert.deepEqual(await db.select({ name: users.name, score: users.score }).from(users).orderBy(asc(users.id)), [
          { name: "Ada", score: 1.5 },
          { name: "Grace", score: 9.25 },
          { name: "Edsger", score: 4 },
        ]);
        // The same rows, read without the ORM.
        const raw = await client.execute("SELECT name, score FROM users ORDER BY id");
        assert.deepEqual(raw.rows.map((r) => [r.name, r.score]), [["Ada", 1.5], ["Grace", 9.25], ["Edsger", 4]]);
        // Drizzle's batch (one Hrana batch, atomic).
        const [, all] = await db.batch([db.delete(users).where(eq(users.name, "Ada")), db.select({ name: users.name }).from(users).orderBy(asc(users.id))]);
        assert.deepEqual(all, [{ name: "Grace" }, { name: "Edsger" }]);
      } finally {
        client.close();
      }
    });

    it(`Kysely over ${scheme}://: schema, insert, select, update, transactions (commit and rollback)`, async () => {
      const db = new Kysely<KDb>({ dialect: new LibsqlDialect({ url: `${base()}/db/kysely${suffix}/`, authToken: s.adminToken! }) });
      try {
        await db.schema
          .createTable("pets")
          .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("species", "text", (c) => c.notNull())
          .addColumn("age", "integer")
          .execute();
        const ins = await db.insertInto("pets").values({ name: "Rex", species: "dog", age: 3 }).executeTakeFirstOrThrow();
        assert.equal(Number(ins.insertId), 1);
        await db.insertInto("pets").values([{ name: "Tom", species: "cat", age: null }, { name: "Nemo", species: "fish", age: 1 }]).execute();
        const upd = await db.updateTable("pets").set({ age: 7 }).where("name", "=", "Tom").executeTakeFirst();
        assert.equal(Number(upd.numUpdatedRows), 1);
        assert.deepEqual(await db.selectFrom("pets").select(["name", "species", "age"]).orderBy("id").execute(), [
          { name: "Rex", species: "dog", age: 3 },
          { name: "Tom", species: "cat", age: 7 },
          { name: "Nemo", species: "fish", age: 1 },
        ]);

        await db.transaction().execute(async (trx) => {
          await trx.insertInto("pets").values({ name: "Polly", species: "parrot", age: 40 }).execute();
          const { n } = await trx.selectFrom("pets").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
          assert.equal(n, 4);
          await trx.updateTable("pets").set((eb) => ({ age: eb("age", "+", 1) })).where("species", "=", "dog").execute();
        });
        await assert.rejects(
          db.transaction().execute(async (trx) => {
            await trx.deleteFrom("pets").where("species", "=", "fish").execute();
            await trx.insertInto("pets").values({ name: "Rex", species: "dog", age: 1 }).execute(); // UNIQUE
          }),
          /UNIQUE constraint failed: pets\.name/,
        );
        assert.deepEqual(await db.selectFrom("pets").select(["name", "age"]).orderBy("id").execute(), [
          { name: "Rex", age: 4 },
          { name: "Tom", age: 7 },
          { name: "Nemo", age: 1 },
          { name: "Polly", age: 40 },
        ]);
        const { rows } = await ksql<{ n: number }>`SELECT count(*) AS n FROM pets WHERE age > ${2}`.execute(db);
        assert.deepEqual(rows, [{ n: 3 }]);
      } finally {
        await db.destroy();
      }
    });
  }
  it("Drizzle and Kysely side by side: a transaction open on one does not stop the other's reads, and the second writer commits after the first (ISOLATION.md)", async () => {
    const client: Client = createClient({ url: `${s.url}/db/isolation/`, authToken: s.adminToken! });
    const d = drizzle(client);
    const k = new Kysely<KDb>({ dialect: new LibsqlDialect({ url: `${s.url}/db/isolation/`, authToken: s.adminToken! }) });
    try {
      await d.run(dsql`CREATE TABLE pets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, species TEXT NOT NULL, age INTEGER)`);
      await k.insertInto("pets").values({ name: "Rex", species: "dog", age: 3 }).execute();
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let inside!: () => void;
      const opened = new Promise<void>((r) => (inside = r));
      // Drizzle holds a write transaction open...
      const tx = d.transaction(async (t) => {
        await t.run(dsql`INSERT INTO pets (name, species, age) VALUES ('Tom', 'cat', 2)`);
        inside();
        await held;
      });
      await opened;
      // ...Kysely reads the last committed state at once (not Tom, not waiting),
      const t0 = performance.now();
      const names = (await k.selectFrom("pets").select("name").orderBy("id").execute()).map((r) => r.name);
      assert.deepEqual(names, ["Rex"]);
      assert.ok(performance.now() - t0 < 2_000, "the read did not wait for the writer");
      // ...and its own write transaction waits for Drizzle's, then commits.
      const second = k.transaction().execute(async (trx) => {
        await trx.insertInto("pets").values({ name: "Kit", species: "fox", age: 1 }).execute();
      });
      await new Promise((r) => setTimeout(r, 200));
      release();
      await tx;
      await second;
      const all = (await k.selectFrom("pets").select("name").orderBy("id").execute()).map((r) => r.name);
      assert.deepEqual(all, ["Rex", "Tom", "Kit"]);
    } finally {
      client.close();
      await k.destroy();
    }
  });
});
