/**
 * The migration protocol (runtime/migration/protocol/PROTOCOL.md) between two real platforms over a
 * real loopback socket: a round trip, the destination's fenced copy, and every refusal before
 * anything moves (nothing changed afterwards).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Database, DatabaseSource, MigrationError, SelkieError, acceptMigration, migrateOut, type MigrationChannel, type MigrationSource } from "../../runtime/index.js";
import { Platform } from "../../runtime/platform/platform.js";
import { NodeFileLayer } from "../../runtime/host/files.js";
import { PageStore } from "../../runtime/storage/page-store.js";
import { sqliteTrust } from "../../runtime/migration/protocol/store-trust.js";
import { tempDir } from "../helpers.js";
import { closeAllPlain, connectPlain, listenPlain } from "./plain-channel.js";

// Refused migrations can leave a channel open: end them all, or the test process never exits.
after(closeAllPlain);
import { freePort } from "./harness.js";

const src = await Platform.create(tempDir("selkie-mig-src-"));
const dst = await Platform.create(tempDir("selkie-mig-dst-"));

interface Env {
  srcData: string;
  dstData: string;
  db: Database | undefined;
  source: MigrationSource;
  file: string;
}

function setup(rows = 50): Env {
  const srcData = tempDir("selkie-mig-a-");
  const dstData = tempDir("selkie-mig-b-");
  const file = path.join(srcData, "orders.db");
  const env: Env = { srcData, dstData, db: new Database(file, { platform: src, paging: false }), file, source: undefined as never };
  env.db!.exec("CREATE TABLE t(n INTEGER PRIMARY KEY, pad TEXT)");
  for (let i = 1; i <= rows; i++) env.db!.run("INSERT INTO t VALUES (?, ?)", i, "y".repeat(300));
  env.source = {
    async freeze() {
      env.db?.close();
      env.db = undefined;
    },
    async resume() {
      env.db = new Database(file, { platform: src, paging: false });
    },
    metadata: () => ({ tokens: ["t1"] }),
  };
  return env;
}

/** A destination listening on loopback that runs acceptMigration with `opts` for each connection. */
async function destination(env: Env, opts: Partial<Parameters<typeof acceptMigration>[0]> = {}): Promise<{ port: number; results: Array<Promise<unknown>>; server: net.Server }> {
  const port = await freePort();
  const results: Array<Promise<unknown>> = [];
  const server = await listenPlain(port, dst.platformId, (ch) => {
    const p = acceptMigration({ platform: dst, dataDir: env.dstData, channel: ch, timeoutMs: 5_000, ...opts });
    p.catch(() => undefined);
    results.push(p);
  });
  return { port, results, server };
}

async function migrate(env: Env, port: number, wrap?: (ch: MigrationChannel) => MigrationChannel) {
  const ch = await connectPlain(port, "source", src.platformId);
  return migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: wrap ? wrap(ch) : ch, source: env.source, sourceAddress: "127.0.0.1:1", to: `127.0.0.1:${port}`, timeoutMs: 5_000 });
}

async function refused(p: Promise<unknown>, code: string): Promise<MigrationError> {
  const e = await p.then(
    () => assert.fail(`expected ${code}`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof MigrationError, `a MigrationError (got ${String(e)})`);
  assert.equal(e.code, code, e.message);
  return e;
}

function rowsAt(file: string, platform: Platform): number {
  const db = new Database(file, { platform, create: false, paging: false });
  try {
    return Number(db.query<{ c: number }>("SELECT count(*) AS c FROM t")[0]!.c);
  } finally {
    db.close();
  }
}

/** Nothing of a refused migration is left: the source serves its rows, the destination has nothing. */
function assertNothingChanged(env: Env, rows: number): void {
  if (env.db) {
    env.db.close();
    env.db = undefined;
  }
  assert.equal(rowsAt(env.file, src), rows, "the source still serves every row");
  assert.ok(!fs.existsSync(path.join(env.dstData, "orders.db.log")), "the destination has no database");
  const staged = path.join(env.dstData, ".selkie-migrate");
  assert.deepEqual(fs.existsSync(staged) ? fs.readdirSync(staged).filter((f) => !f.endsWith(".json")) : [], [], "no staging folder is left");
}

test("a migrated database serves on the destination with every row, and the source's files, even a backup of them, no longer open", async () => {
  const env = setup(120);
  const backup = tempDir("selkie-mig-backup-");
  fs.cpSync(env.srcData, backup, { recursive: true });
  const d = await destination(env);
  const stats = await migrate(env, d.port);
  const accepted = (await d.results[0]) as { state: string; meta: { tokens: string[] } };
  assert.equal(accepted.state, "done");
  assert.deepEqual(accepted.meta.tokens, ["t1"], "metadata travels");
  assert.ok(stats.rounds >= 1 && stats.bytes.precopy > 0, JSON.stringify(stats));
  assert.equal(rowsAt(path.join(env.dstData, "orders.db"), dst), 120);
  assert.ok(!fs.existsSync(env.file) && !fs.existsSync(`${env.file}.log`), "the source's files are removed");
  // The backup restored over the source's folder: its counter is gone.
  fs.rmSync(path.join(backup, "orders.db.lock"), { force: true }); // this process's own lock, taken with the copy
  fs.cpSync(backup, env.srcData, { recursive: true });
  assert.throws(() => new Database(env.file, { platform: src, create: false, paging: false }), (e: SelkieError) => e.code === "STORAGE_DELETED");
  // Migrating it again is refused: it lives elsewhere now.
  await refused(migrate(env, d.port), "MIGRATION_MOVED");
  d.server.close();
});

test("the destination's staged copy opens only as a rollback before the source commits", async () => {
  const env = setup(10);
  const d = await destination(env);
  let tried = false;
  const wrap = (ch: MigrationChannel): MigrationChannel => ({
    get peer() { return ch.peer; },
    get closed() { return ch.closed; },
    send: (m) => ch.send(m),
    close: (r) => ch.close(r),
    receive: async (t) => {
      const m = await ch.receive(t);
      if (m.type === "prepared") {
        const staged = path.join(env.dstData, ".selkie-migrate", String(m["mid"]), "orders.db");
        const copy = path.join(tempDir("selkie-mig-stolen-"), "orders.db");
        fs.copyFileSync(staged, copy);
        fs.copyFileSync(`${staged}.log`, `${copy}.log`);
        for (const f of [staged, copy]) {
          assert.throws(() => PageStore.open(new NodeFileLayer(), f, sqliteTrust(dst), { readonly: true }), (e: SelkieError) => e.code === "STORAGE_ROLLBACK", f);
        }
        tried = true;
      }
      return m;
    },
  });
  await migrate(env, d.port, wrap);
  await d.results[0];
  d.server.close();
  assert.ok(tried, "the staged copy was tried");
  assert.equal(rowsAt(path.join(env.dstData, "orders.db"), dst), 10);
});

test("migrating a database that does not exist is refused before anything is sent", async () => {
  const env = setup(1);
  const d = await destination(env);
  const ch = await connectPlain(d.port, "source", src.platformId);
  await refused(migrateOut({ platform: src, dataDir: env.srcData, name: "nope.db", channel: ch, source: env.source, sourceAddress: "x:1", to: "y:1" }), "MIGRATION_NO_SUCH_DATABASE");
  ch.close();
  d.server.close();
  assertNothingChanged(env, 1);
});

test("migrating a database to its own platform is refused", async () => {
  const env = setup(1);
  const d = await destination(env);
  const ch = await connectPlain(d.port, "source", src.platformId);
  (ch.peer as { platformId: string }).platformId = src.platformId;
  await refused(migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: ch, source: env.source, sourceAddress: "x:1", to: "y:1" }), "MIGRATION_TO_SELF");
  d.server.close();
  assertNothingChanged(env, 1);
});

test("a second migration of a database already migrating is refused, and the first one's abort changes nothing", async () => {
  const env = setup(3);
  // A destination that takes the offer and never answers.
  const port = await freePort();
  const silent = await listenPlain(port, dst.platformId, () => undefined);
  const ch1 = await connectPlain(port, "source", src.platformId);
  const first = migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: ch1, source: env.source, sourceAddress: "x:1", to: "y:1", timeoutMs: 1_500 });
  first.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  const ch2 = await connectPlain(port, "source", src.platformId);
  await refused(migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: ch2, source: env.source, sourceAddress: "x:1", to: "y:1" }), "MIGRATION_IN_PROGRESS");
  await refused(first, "MIGRATION_PEER_LOST");
  silent.close();
  assertNothingChanged(env, 3);
});

test("a destination that already has a database of that name refuses it, saying so", async () => {
  const env = setup(2);
  fs.writeFileSync(path.join(env.dstData, "orders.db"), "");
  fs.writeFileSync(path.join(env.dstData, "orders.db.log"), "x");
  const d = await destination(env);
  const e = await refused(migrate(env, d.port), "MIGRATION_REFUSED");
  assert.equal(e.peerCode, "MIGRATION_NAME_TAKEN");
  assert.match(e.message, /orders\.db/);
  d.server.close();
  fs.rmSync(path.join(env.dstData, "orders.db.log"));
  assertNothingChanged(env, 2);
});

test("a destination without EPC room refuses before any byte moves, naming the shortfall", async () => {
  const env = setup(2);
  const d = await destination(env, { epcFree: () => 1024 * 1024 });
  const e = await refused(migrate(env, d.port), "MIGRATION_REFUSED");
  assert.equal(e.peerCode, "MIGRATION_NO_EPC");
  assert.match(e.message, /EPC/);
  d.server.close();
  assertNothingChanged(env, 2);
});

test("a destination without disk room refuses, naming the bytes to free", async () => {
  const env = setup(2);
  const d = await destination(env, { diskFree: () => 10 });
  const e = await refused(migrate(env, d.port), "MIGRATION_REFUSED");
  assert.equal(e.peerCode, "MIGRATION_NO_DISK");
  assert.match(e.message, /free \d+ bytes/);
  d.server.close();
  assertNothingChanged(env, 2);
});

test("an open transaction that outlasts the freeze's wait aborts the migration and is left intact", async () => {
  const env = setup(5);
  const ds = new DatabaseSource(env.db!, () => new Database(env.file, { platform: src, paging: false }));
  env.db!.exec("BEGIN");
  env.db!.run("INSERT INTO t VALUES (?, ?)", 6, "open");
  const d = await destination(env);
  const ch = await connectPlain(d.port, "source", src.platformId);
  await refused(
    migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: ch, source: ds, sourceAddress: "x:1", to: "y:1", transactionWaitMs: 150, timeoutMs: 5_000 }),
    "MIGRATION_TRANSACTION_OPEN",
  );
  await d.results[0]?.catch(() => undefined);
  d.server.close();
  const db = await ds.use((x) => x);
  assert.ok(db.inTransaction, "the transaction is still open, untouched");
  db.exec("COMMIT");
  env.db = db;
  assertNothingChanged(env, 6);
});

test("asked to, the freeze rolls an open transaction back and the migration commits without it", async () => {
  const env = setup(5);
  const ds = new DatabaseSource(env.db!, () => new Database(env.file, { platform: src, paging: false }));
  env.db!.exec("BEGIN");
  env.db!.run("INSERT INTO t VALUES (?, ?)", 6, "open");
  const d = await destination(env);
  const ch = await connectPlain(d.port, "source", src.platformId);
  await migrateOut({ platform: src, dataDir: env.srcData, name: "orders.db", channel: ch, source: ds, sourceAddress: "x:1", to: "y:1", transactionWaitMs: 100, rollbackOpenTransaction: true });
  await d.results[0];
  d.server.close();
  assert.equal(rowsAt(path.join(env.dstData, "orders.db"), dst), 5, "never half a transaction: the rolled-back row did not travel");
  await assert.rejects(ds.use(() => 1), (e: MigrationError) => e.code === "MIGRATION_MOVED" && /y:1/.test(e.message));
});

test("a database that migrates away and comes back can migrate away again, its rows intact each time", async () => {
  const env = setup(30);
  const d = await destination(env); // A -> B: B listens, A sends
  await migrate(env, d.port);
  assert.equal(((await d.results[0]) as { state: string }).state, "done");
  // B -> A: A listens now, B sends what it received.
  const back = await freePort();
  const results: Array<Promise<unknown>> = [];
  const aServer = await listenPlain(back, src.platformId, (ch) => {
    const p = acceptMigration({ platform: src, dataDir: env.srcData, channel: ch, timeoutMs: 5_000 });
    p.catch(() => undefined);
    results.push(p);
  });
  const bFile = path.join(env.dstData, "orders.db");
  const chBack = await connectPlain(back, "source", dst.platformId);
  await migrateOut({ platform: dst, dataDir: env.dstData, name: "orders.db", channel: chBack, source: { async freeze() {}, async resume() {} }, sourceAddress: "127.0.0.1:1", to: `127.0.0.1:${back}`, timeoutMs: 5_000 });
  assert.equal(((await results[0]) as { state: string }).state, "done");
  assert.ok(!fs.existsSync(bFile), "B gave it up");
  assert.equal(rowsAt(env.file, src), 30, "A serves it again with every row");
  // A -> B again: A's old tombstone no longer stands in the way; B's does not stop it coming back.
  env.source = { async freeze() {}, async resume() {} };
  await migrate(env, d.port);
  assert.equal(((await d.results[1]) as { state: string }).state, "done");
  assert.equal(rowsAt(bFile, dst), 30);
  aServer.close();
  d.server.close();
});
