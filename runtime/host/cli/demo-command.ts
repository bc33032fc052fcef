/**
 * `selkie demo`: the tour. Creates a database inside a SQLite enclave, writes and queries it, shows
 * what crossed the enclave boundary, and how an error and a rollback behave; then (migration-demo.ts)
 * migrates a database between two peers under a live write load and shows a fork and a rollback
 * refused.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { Database } from "../../sql/database.js";
import { defaultPlatformDir, openDefaultPlatform } from "../default-platform.js";
import type { Platform } from "../../platform/platform.js";
import { formatBytes } from "../../enclave/manifest.js";
import { EXIT_OK, EXIT_OTHER } from "./exit-codes.js";
import { formatRows } from "./format.js";
import { migrationDemo } from "./migration-demo.js";

export function registerDemoCommand(program: Command, run: (fn: () => Promise<number> | number) => Promise<void>): void {
  program
    .command("demo")
    .summary("create a database inside an enclave, write and query it, and show what happened")
    .option("--db <file>", "database file to (re)create", path.join(".selkie-demo", "demo.db"))
    .option("--platform <dir>", "the platform whose keys seal the database (default: $SELKIE_HOME or ~/.selkie, created on first use)")
    .option("--no-migration", "skip the second half: two peers on loopback and a live migration between them")
    .action(async (opts: { db: string; platform?: string; migration: boolean }) => {
      await run(async () => {
        const say = (s: string) => process.stdout.write(s + "\n");
        const platform = await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), (d) => say(`0. Created a development platform (emulated SGX CPU: root secrets, counters, dev CA) in ${d}`));
        try {
          demo(opts.db, platform, say);
        } finally {
          platform.close();
        }
        if (!opts.migration) return EXIT_OK;
        return (await migrationDemo(say)) ? EXIT_OK : EXIT_OTHER;
      });
    });
}

export function demo(file: string, platform: Platform, say: (s: string) => void): number {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  for (const f of [file, `${file}.log`, `${file}-journal`]) fs.rmSync(f, { force: true });

  const t0 = performance.now();
  const db = new Database(file, { platform });
  const e = db.enclave;
  say(`1. Launched a SQLite ${e.sqliteVersion} enclave for ${path.resolve(file)}`);
  say(`   mrenclave ${e.mrenclave}`);
  say(`   memory ${formatBytes(e.committedBytes)} committed of a ${formatBytes(e.epcBytes)} EPC cap; permissions: ${e.permissions.join(", ")}`);
  say(`   (${(performance.now() - t0).toFixed(1)} ms; every file operation of SQLite is an ocall to the runtime)`);

  db.exec(`CREATE TABLE sightings (id INTEGER PRIMARY KEY, place TEXT NOT NULL, seals INTEGER, seen_at TEXT DEFAULT (datetime('now')), photo BLOB);
           CREATE INDEX sightings_place ON sightings(place);`);
  const insert = db.prepare("INSERT INTO sightings (place, seals, photo) VALUES (:place, :seals, :photo)");
  const places = ["Orkney", "Shetland", "Skellig Michael", "Faroe", "Orkney", "Blasket", "Shetland"];
  const t1 = performance.now();
  db.transaction(() => {
    places.forEach((place, i) => insert.run({ place, seals: 3 + ((i * 7) % 11), photo: new Uint8Array([0x53, 0x45, 0x4c, i]) }));
  })();
  say(`2. Created a table and inserted ${places.length} rows in one transaction (${(performance.now() - t1).toFixed(1)} ms, committed with fsync)`);

  const stmt = db.prepare("SELECT place, count(*) AS visits, sum(seals) AS seals FROM sightings GROUP BY place ORDER BY seals DESC");
  say("3. Queried it:");
  say(formatRows("table", stmt.columns(), stmt.values()).trimEnd().replace(/^/gm, "   "));

  try {
    db.run("INSERT INTO sightings (place) VALUES (NULL)");
  } catch (err) {
    const c = err as { code: string; message: string };
    say(`4. A bad insert was refused with a typed error: ${c.code}: ${c.message}`);
  }
  try {
    db.transaction(() => {
      db.run("DELETE FROM sightings");
      throw new Error("changed my mind");
    })();
  } catch {
    /* expected */
  }
  const left = db.query<{ n: number }>("SELECT count(*) AS n FROM sightings")[0]!.n;
  say(`5. A transaction that threw was rolled back: still ${left} rows`);
  const big = db.query<{ v: bigint }>("SELECT 9007199254740993 AS v")[0]!.v;
  say(`6. Integers beyond 2^53 come back exact as bigint: ${big}n`);
  const committed = db.enclave.committedBytes;
  const t2 = performance.now();
  if (db.hibernate()) {
    const slept = performance.now() - t2;
    const t3 = performance.now();
    const again = db.query<{ n: number }>("SELECT count(*) AS n FROM sightings")[0]!.n;
    const woke = performance.now() - t3;
    say(`7. Hibernated the enclave as EPC paging does: its ${formatBytes(committed)} of memory and its globals sealed into a ${formatBytes(db.paging.lastImageBytes)} image, EPC released (${slept.toFixed(1)} ms)`);
    say(`   The next query woke it where it was and answered ${again} rows (${woke.toFixed(1)} ms, wake included)`);
  }
  db.close();

  const size = fs.statSync(file).size + fs.statSync(`${file}.log`).size;
  const disk = Buffer.concat([fs.readFileSync(file), fs.readFileSync(`${file}.log`)]);
  const leaked = ["Orkney", "Shetland", "sightings", "SQLite format 3"].filter((m) => disk.includes(m));
  say(`8. Closed. On disk: ${file} and ${file}.log, ${formatBytes(size)} of AES-256-GCM sealed blocks and table records.`);
  say(`   Searched them for "Orkney", "Shetland", "sightings" and SQLite's file header: ${leaked.length === 0 ? "none found" : "FOUND " + leaked.join(", ")}.`);
  say(`   Open it again with:  npx selkie sql ${file}`);
  return EXIT_OK;
}
