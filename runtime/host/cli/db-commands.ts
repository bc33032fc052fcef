/**
 * `selkie db export` / `selkie db import`: move a database between sealed and plain SQLite form.
 * Export is an explicit, logged act: the plaintext leaves the enclave.
 * `selkie db rename`: a sealed database is bound to its file name (runtime/storage/FORMAT.md "Names"),
 * so renaming is an explicit, logged operation too.
 */
import * as fs from "node:fs";
import type { Command } from "commander";
import { Database } from "../../sql/database.js";
import { formatBytes } from "../../enclave/manifest.js";
import { defaultPlatformDir, openDefaultPlatform } from "../default-platform.js";
import { EXIT_OK } from "./exit-codes.js";
import { StorageError } from "../../storage/errors.js";
import { progressBar } from "./progress.js";

type Run = (fn: () => Promise<number> | number) => Promise<void>;

export function registerDbCommands(program: Command, run: Run): void {
  const db = program.command("db").summary("export a sealed database to plain SQLite, or import one");
  db.command("export")
    .description("Writes the sealed database DB as a plain SQLite file OUT (which must not exist), checked with\nPRAGMA integrity_check. The plaintext leaves the enclave: this is logged to stderr.")
    .argument("<db>", "sealed database")
    .argument("<out>", "plain SQLite file to create")
    .option("--platform <dir>", "the platform that sealed the database (default: $SELKIE_HOME or ~/.selkie)")
    .action(async (file: string, out: string, opts: { platform?: string }) => {
      await run(async () => {
        if (!fs.existsSync(file)) throw new StorageError("STORAGE_MISSING_FILE", `${file} does not exist: nothing to export (check the path)`, file);
        const platform = await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), { forDatabase: file, create: false });
        try {
          const d = new Database(file, { platform, readonly: true, create: false }); // beside a writer process too
          try {
            process.stderr.write(`selkie: EXPORT: writing the plaintext of ${d.path} to ${out}, outside the enclave (${new Date().toISOString()}, pid ${process.pid})\n`);
            const bar = progressBar("export");
            let bytes: number;
            try {
              ({ bytes } = d.exportPlain(out, (done, total) => bar.update(done, total)));
            } finally {
              bar.stop();
            }
            process.stdout.write(`exported ${formatBytes(bytes)} to ${out} (plain SQLite; integrity_check ok)\n`);
          } finally {
            d.close();
          }
        } finally {
          platform.close();
        }
        return EXIT_OK;
      });
    });
  db.command("import")
    .description("Seals the plain SQLite file SRC (checked with PRAGMA integrity_check) into a new database DB.\nSRC is left as it is: delete it yourself once you trust the import.")
    .argument("<src>", "plain SQLite file")
    .argument("<db>", "new sealed database to create")
    .option("--platform <dir>", "the platform that will seal the database (default: $SELKIE_HOME or ~/.selkie, created on first use)")
    .action(async (src: string, file: string, opts: { platform?: string }) => {
      await run(async () => {
        const platform = await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), { forDatabase: file, onCreate: (d) => process.stderr.write(`selkie: created a development platform in ${d}\n`) });
        try {
          const bar = progressBar("import");
          let d: Database;
          try {
            d = Database.importPlain(src, file, { platform }, (done, total) => bar.update(done, total));
          } finally {
            bar.stop();
          }
          const tables = d.query<{ n: number }>("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'")[0]!.n;
          d.close();
          process.stdout.write(`imported ${src} into sealed database ${file} (${tables} tables; integrity_check ok)\n`);
        } finally {
          platform.close();
        }
        return EXIT_OK;
      });
    });
  db.command("rename")
    .description("Renames the sealed database OLD to NEW (its files OLD and OLD.log become NEW and NEW.log).\nA sealed database is bound to its name: renaming its files by hand makes it refuse to open\n(STORAGE_WRONG_NAME). Crash-safe: after an interruption, run the same command again.")
    .argument("<old>", "sealed database")
    .argument("<new>", "its new name (must not exist)")
    .option("--platform <dir>", "the platform that sealed the database (default: $SELKIE_HOME or ~/.selkie)")
    .action(async (from: string, to: string, opts: { platform?: string }) => {
      await run(async () => {
        const platform = await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), { create: false });
        try {
          process.stderr.write(`selkie: RENAME: sealed database ${from} -> ${to} (${new Date().toISOString()}, pid ${process.pid})\n`);
          if (!fs.existsSync(from) && fs.existsSync(`${from}.log`) && fs.existsSync(to) && fs.existsSync(`${to}.log`)) {
            // An interrupted rename got as far as moving the slot file: check NEW, drop the old log.
            new Database(to, { platform, create: false }).close();
            fs.rmSync(`${from}.log`);
          } else {
            new Database(from, { platform, create: false }).renameTo(to);
          }
          process.stdout.write(`renamed ${from} to ${to}\n`);
        } finally {
          platform.close();
        }
        return EXIT_OK;
      });
    });
  db.command("upgrade")
    .description("Upgrades the sealed database DB from store format 1 to format 2 in place (runtime/storage/FORMAT.md).\nEvery block is authenticated and copied; the old format's counter is then destroyed, so copies of the\nold files no longer open. Run it again if it was interrupted.")
    .argument("<db>", "sealed database in format 1")
    .option("--platform <dir>", "the platform that sealed the database (default: $SELKIE_HOME or ~/.selkie)")
    .option("--epc <size>", "the EPC cap the database was opened with, if not the default")
    .action(async (file: string, opts: { platform?: string; epc?: string }) => {
      await run(async () => {
        const platform = await openDefaultPlatform(opts.platform ?? defaultPlatformDir(), { create: false });
        try {
          process.stderr.write(`selkie: UPGRADE: sealed database ${file} to store format 2 (${new Date().toISOString()}, pid ${process.pid})\n`);
          const bytes = Database.upgradeStore(file, { platform, ...(opts.epc !== undefined ? { epc: opts.epc } : {}) });
          process.stdout.write(`upgraded ${file} to store format 2 (${formatBytes(bytes)} copied)\n`);
        } finally {
          platform.close();
        }
        return EXIT_OK;
      });
    });
}
