/**
 * UNTRUSTED (UI). `selkie migrate NAME --to PEER_URL --server URL --token T`: live-migrates a
 * database that a running `selkie serve` hosts to another `selkie serve` (the peer), through the
 * server's `POST /v1/databases/NAME/migrate` (runtime/host/server/migration-routes.ts). While it
 * runs, a progress bar on a terminal (phase, bytes, round, rate) from GET /v1/migrations; at the end
 * one line, or with --json the statistics (like podman's --print-stats).
 *
 * Exit codes (MIGRATE_EXIT_CODES_HELP): one per failure class, so scripts can tell a refusal that
 * changed nothing from a peer that went away.
 */
import { Command, Option } from "commander";
import cliProgress from "cli-progress";
import { SelkieError, UsageError } from "../../errors.js";
import { formatBytes } from "../../enclave/manifest.js";
import { EXIT_OK, EXIT_OTHER, EXIT_USAGE } from "./exit-codes.js";

type Run = (fn: () => Promise<number> | number) => Promise<void>;

/** The destination refused before anything moved (name taken, no EPC or disk room, policy). */
export const EXIT_MIGRATE_REFUSED = 10;
/** The attested channel could not be set up (peer unreachable, quote or CA refused). */
export const EXIT_MIGRATE_ATTESTATION = 11;
/** A transaction stayed open past the wait (retry, or --rollback-open-transaction). */
export const EXIT_MIGRATE_TRANSACTION_OPEN = 12;
/** The transfer failed part-way (peer lost, corrupt transfer, aborted): the database serves here. */
export const EXIT_MIGRATE_ABORTED = 13;
/** Nothing to migrate here: no such database, it moved already, a migration of it is running. */
export const EXIT_MIGRATE_NOT_HERE = 14;

export const MIGRATE_EXIT_CODES_HELP = `Exit codes:
  0  migrated: the peer serves the database; this server forwards its clients there
  2  wrong usage (bad URL, missing option)
  6  the server could not be asked (unreachable, token refused) or another error
 10  the destination refused before anything moved (its reason is printed); nothing changed
 11  the attested channel to the peer failed (unreachable, quote, CA or policy refused); nothing changed
 12  a transaction stayed open past --wait; nothing changed (retry, or --rollback-open-transaction)
 13  the transfer failed part-way (peer lost, corrupt or aborted); the database serves here as before
 14  no such database here, it moved already, or a migration of it is running`;

/** A migration refused or failed, with the server's code: exit code by class. */
export class MigrateError extends SelkieError {
  constructor(
    code: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(code, message);
  }
}

export function exitCodeForMigrate(code: string): number {
  if (code === "MIGRATION_REFUSED" || code === "MIGRATION_POLICY" || code === "MIGRATION_NAME_TAKEN" || code === "MIGRATION_NO_EPC" || code === "MIGRATION_NO_DISK") return EXIT_MIGRATE_REFUSED;
  if (code.startsWith("CHANNEL_") || code === "MIGRATION_NOT_CONFIGURED") return EXIT_MIGRATE_ATTESTATION;
  if (code === "MIGRATION_TRANSACTION_OPEN") return EXIT_MIGRATE_TRANSACTION_OPEN;
  if (code === "DB_NOT_FOUND" || code === "DB_MOVED" || code === "MIGRATION_IN_PROGRESS" || code === "MIGRATION_MOVED" || code === "MIGRATION_NO_SUCH_DATABASE") return EXIT_MIGRATE_NOT_HERE;
  if (code === "BAD_PEER_URL" || code === "MIGRATION_TO_SELF" || code === "BAD_REQUEST" || code === "BAD_DB_NAME") return EXIT_USAGE;
  if (code.startsWith("MIGRATION_")) return EXIT_MIGRATE_ABORTED;
  return EXIT_OTHER;
}

export interface MigrateOutcome {
  name: string;
  to: string;
  stats: {
    mid: string;
    totalMs: number;
    frozenMs: number;
    attestMs: number;
    rounds: number;
    bytes: { precopy: number; final: number };
    slotsResent: number;
  };
}

function baseUrl(server: string): string {
  try {
    const u = new URL(server);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http");
    return u.origin;
  } catch {
    throw new UsageError("BAD_URL", `--server must be the server's http(s) URL, e.g. http://127.0.0.1:7700 (got ${JSON.stringify(server)})`);
  }
}

/** Asks the server at `server` to migrate `name` to `to`; `onProgress` gets GET /v1/migrations' entry while it runs. */
export async function migrateViaServer(
  server: string,
  token: string,
  name: string,
  to: string,
  o: { waitMs?: number; rollbackOpenTransaction?: boolean; onProgress?: (p: { phase: string; bytes: number; diskBytes: number; round: number; elapsedMs: number }) => void } = {},
): Promise<MigrateOutcome> {
  const base = baseUrl(server);
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  let polling = true;
  const poll = (async () => {
    while (polling && o.onProgress) {
      await new Promise((r) => setTimeout(r, 150));
      try {
        const r = await fetch(`${base}/v1/migrations`, { headers, signal: AbortSignal.timeout(5_000) });
        const body = (await r.json()) as { running?: Array<{ name: string; role: string; phase: string; bytes: number; diskBytes: number; round: number; elapsedMs: number }> };
        const m = body.running?.find((x) => x.name === name && x.role === "source");
        if (m && polling) o.onProgress(m);
      } catch {
        // progress is best effort; the migration's own answer decides
      }
    }
  })();
  let res: Response;
  try {
    res = await fetch(`${base}/v1/databases/${encodeURIComponent(name)}/migrate`, {
      method: "POST",
      headers,
      body: JSON.stringify({ to, ...(o.waitMs !== undefined ? { waitMs: o.waitMs } : {}), ...(o.rollbackOpenTransaction ? { rollbackOpenTransaction: true } : {}) }),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new MigrateError("SERVER_UNREACHABLE", `cannot reach ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, EXIT_OTHER);
  } finally {
    polling = false;
  }
  await poll;
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    throw new MigrateError("SERVER_BAD_RESPONSE", `${base} answered ${res.status} with a body that is not JSON (is it a selkie server?)`, EXIT_OTHER);
  }
  if (res.status === 401 || res.status === 403) throw new MigrateError("SERVER_UNAUTHORIZED", `${base} refused the token (${res.status}): \`selkie migrate\` needs an admin token of that server`, EXIT_OTHER);
  if (!res.ok) {
    const code = typeof body?.code === "string" ? body.code : "SERVER_ERROR";
    const peer = res.headers.get("x-selkie-peer-code");
    throw new MigrateError(code, `${String(body?.message ?? text)}${peer ? ` [destination: ${peer}]` : ""}`, exitCodeForMigrate(peer ?? code));
  }
  return body as MigrateOutcome;
}

function progressBar(stream: NodeJS.WriteStream): { update(p: { phase: string; bytes: number; diskBytes: number; round: number; elapsedMs: number }): void; stop(): void } {
  if (stream.isTTY !== true || process.env.TERM === "dumb") return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream, format: "{phase} [{bar}] {percentage}% {done}/{total} round {round} {rate}/s", hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      const total = Math.max(p.diskBytes, p.bytes, 1);
      const payload = { phase: p.phase.padEnd(9), done: formatBytes(p.bytes), total: formatBytes(total), round: p.round, rate: formatBytes(p.elapsedMs > 0 ? Math.round((p.bytes * 1000) / p.elapsedMs) : 0) };
      if (!started) {
        bar.start(total, p.bytes, payload);
        started = true;
      }
      bar.setTotal(total);
      bar.update(Math.min(p.bytes, total), payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

export function registerMigrateCommand(program: Command, run: Run): void {
  program
    .command("migrate")
    .summary("live-migrate a served database to another selkie serve (attested, crash-safe)")
    .description(
      "Moves database NAME, served by the selkie serve at --server, to the selkie serve at --to while clients keep using it. " +
        "The two servers attest each other (both started with --fleet-ca naming the CA that certified their platforms), " +
        "the sealed pages travel in pre-copy rounds while the database serves, then it freezes for the last delta and a two-phase commit: " +
        "afterwards only the peer serves it, the source forwards its clients (the old URL keeps working) and even a backup of the source's folder no longer opens. " +
        "Needs an admin token of the source server.",
    )
    .argument("<name>", "the database's name on the source server")
    .requiredOption("--to <url>", "the destination's selkie serve URL, e.g. https://edge-b:7700")
    .requiredOption("--server <url>", "the source's selkie serve URL, as it printed it, e.g. http://127.0.0.1:7700")
    .addOption(new Option("--token <token>", "an admin token of the source server").env("SELKIE_TOKEN"))
    .option("--wait <ms>", "how long the freeze waits for an open transaction to end", "2000")
    .option("--rollback-open-transaction", "roll back a transaction still open after --wait instead of refusing (its client sees its transaction fail)")
    .option("--json", "print the statistics as JSON: {name, to, stats: {mid, totalMs, frozenMs, attestMs, rounds, bytes: {precopy, final}, slotsResent}}")
    .addHelpText("after", `\n${MIGRATE_EXIT_CODES_HELP}`)
    .action((name: string, o: { to: string; server: string; token?: string; wait: string; rollbackOpenTransaction?: boolean; json?: boolean }) =>
      run(async () => {
        if (!o.token) throw new UsageError("TOKEN_REQUIRED", "give an admin token of the source server: --token T or SELKIE_TOKEN");
        const waitMs = Number(o.wait);
        if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 600_000) throw new UsageError("BAD_WAIT", "--wait is milliseconds, 0 to 600000");
        const bar = o.json ? { update() {}, stop() {} } : progressBar(process.stderr);
        let r: MigrateOutcome;
        try {
          r = await migrateViaServer(o.server, o.token, name, o.to, { waitMs, rollbackOpenTransaction: o.rollbackOpenTransaction === true, onProgress: (p) => bar.update(p) });
        } catch (e) {
          bar.stop();
          if (e instanceof MigrateError) {
            process.stderr.write(`Error [${e.code}]: ${e.message}\n`);
            return e.exitCode;
          }
          throw e;
        }
        bar.stop();
        const s = r.stats;
        if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else {
          process.stdout.write(
            `migrated ${r.name} to ${r.to} in ${s.totalMs.toFixed(0)} ms (frozen ${s.frozenMs.toFixed(0)} ms, attestation ${s.attestMs.toFixed(0)} ms, ` +
              `${s.rounds} rounds, ${formatBytes(s.bytes.precopy + s.bytes.final)} sent: ${formatBytes(s.bytes.precopy)} pre-copy, ${formatBytes(s.bytes.final)} frozen)\n`,
          );
        }
        return EXIT_OK;
      }),
    );
}
