/**
 * UNTRUSTED (UI). `selkie serve` (the HTTP server) and `selkie token create|list|revoke`.
 *
 * A server's directory holds `platform/` (the emulated CPU whose keys seal every database, created
 * on first start), `databases/NAME.db` and `tokens.json` (hashed tokens, 0600).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import * as fs from "node:fs";
import { createSecureContext as tlsContext } from "node:tls";
import * as path from "node:path";
import { pino } from "pino";
import { Platform } from "../../platform/platform.js";
import { readCaCertificate } from "../../platform/ca.js";
import type { Certificate } from "../../platform/cert.js";
import { parseSize } from "../../enclave/manifest.js";
import { serve } from "../server/serve.js";
import { TokenStore, type TokenScope } from "../server/tokens.js";
import { acquireServeLock, releaseServeLock } from "../server/serve-lock.js";
import { DEFAULT_LIMITS, type Limits } from "../server/limits.js";
import { checkDbName } from "../server/registry.js";
import { HttpError } from "../server/errors.js";
import { UsageError } from "../../errors.js";
import type { Permission } from "../../enclave/abi.js";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import { startShutdownWatchdog } from "../server/watchdog.js";

type Run = (fn: () => Promise<number> | number) => Promise<void>;

const positiveInt = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive integer`);
  return n;
};
const workerCount = (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0 || n > 64) throw new InvalidArgumentError("--workers must be an integer from 0 to 64");
  return n;
};
const size = (what: string) => (v: string): number => {
  try {
    return parseSize(v, what);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const port = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("port must be 0..65535 (0: any free port)");
  return n;
};

interface ServeFlags {
  dir: string;
  port: number;
  host: string;
  tlsCert?: string;
  tlsKey?: string;
  epc?: string;
  platform?: string;
  dbEpc?: string;
  maxBody?: number;
  maxSql?: number;
  maxRows?: number;
  maxResponseBytes?: number;
  requestTimeout?: number;
  maxConcurrent?: number;
  maxStreams?: number;
  streamIdle?: number;
  maxTransaction?: number;
  maxReadTransaction?: number;
  connectionsPerDb?: number;
  busyTimeout?: number;
  metricsPublic?: boolean;
  allowClock?: boolean;
  allowRandom?: boolean;
  allowNet?: boolean;
  fleetCa?: string;
  advertise?: string;
  allowDevCa?: boolean;
  logLevel: string;
  shutdownTimeout: number;
  workers: number;
}

export function registerServeCommands(program: Command, run: Run): void {
  program
    .command("serve")
    .summary("serve databases over HTTP (libSQL's Hrana protocol), with a management API and metrics")
    .description(
      "Hosts the sealed databases in DIR/databases behind an HTTP API: SQL over HTTP that @libsql/client\n" +
        "speaks (url http://HOST:PORT/db/NAME/), the management API under /v1, Prometheus /metrics.\n" +
        "Nothing is open without a token: on first start an admin token is created and printed once\n" +
        "(see `selkie token`). Logs are NDJSON on stdout; SIGINT/SIGTERM shut down gracefully.\n" +
        "Custom enclaves (POST /v1/enclaves, signed with `selkie enclave sign`) get only the permissions\n" +
        "their signed manifest requests and the --allow-… flags grant; nothing is granted by default.",
    )
    .requiredOption("--dir <dir>", "the server's directory (platform/, databases/, tokens.json); created when missing")
    .addOption(new Option("--port <port>", "TCP port (0: any free port)").argParser(port).default(7700))
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--tls-cert <file>", "serve HTTPS with this PEM certificate chain (with --tls-key): https:// and libsql:// URLs")
    .option("--tls-key <file>", "the PEM private key of --tls-cert")
    .option("--epc <size>", "the platform's EPC budget when it is created, e.g. 256MiB (default 93.5MiB)")
    .option("--platform <dir>", "the platform directory (default DIR/platform, created on first start)")
    .option("--db-epc <size>", "each database enclave's EPC size (default: the SQLite manifest's)")
    .addOption(new Option("--max-body <size>", `largest request body (default ${DEFAULT_LIMITS.maxBodyBytes} bytes)`).argParser(size("--max-body")))
    .addOption(new Option("--max-sql <size>", `longest SQL text (default ${DEFAULT_LIMITS.maxSqlBytes} bytes)`).argParser(size("--max-sql")))
    .addOption(new Option("--max-rows <n>", `most rows one statement may return (default ${DEFAULT_LIMITS.maxRows})`).argParser(positiveInt("--max-rows")))
    .addOption(new Option("--max-response-bytes <size>", `largest response to one request (default ${DEFAULT_LIMITS.maxResponseBytes} bytes)`).argParser(size("--max-response-bytes")))
    .addOption(new Option("--request-timeout <ms>", `request time limit (default ${DEFAULT_LIMITS.requestTimeoutMs})`).argParser(positiveInt("--request-timeout")))
    .addOption(new Option("--max-concurrent <n>", `requests queued per database (default ${DEFAULT_LIMITS.maxConcurrentPerDb})`).argParser(positiveInt("--max-concurrent")))
    .addOption(new Option("--max-streams <n>", `open Hrana streams (default ${DEFAULT_LIMITS.maxStreams})`).argParser(positiveInt("--max-streams")))
    .addOption(new Option("--stream-idle <ms>", `idle time before a stream expires (default ${DEFAULT_LIMITS.streamIdleMs})`).argParser(positiveInt("--stream-idle")))
    .addOption(new Option("--max-transaction <ms>", `longest life of an interactive transaction, rolled back at it (default ${DEFAULT_LIMITS.maxTransactionMs})`).argParser(positiveInt("--max-transaction")))
    .addOption(new Option("--max-read-transaction <ms>", `the same for read-only tokens (default ${DEFAULT_LIMITS.readOnlyTransactionMs})`).argParser(positiveInt("--max-read-transaction")))
    .addOption(new Option("--connections-per-db <n>", `SQLite connections (enclaves) per database, so streams in transactions do not wait for each other (default ${DEFAULT_LIMITS.connectionsPerDb})`).argParser(positiveInt("--connections-per-db")))
    .addOption(new Option("--busy-timeout <ms>", `how long a write waits for another stream's write transaction before SQLITE_BUSY (default ${DEFAULT_LIMITS.busyTimeoutMs})`).argParser(positiveInt("--busy-timeout")))
    .addOption(new Option("--workers <n>", "worker threads that run the databases' SQL, so one tenant's long statement holds no other (0: on the main thread)").argParser(workerCount).default(2))
    .option("--metrics-public", "serve /metrics without a token")
    .option("--allow-clock", "custom enclaves whose signed manifest requests \"clock\" may read the wall clock (denied by default)")
    .option("--allow-random", "custom enclaves whose signed manifest requests \"random\" may get randomness (denied by default)")
    .option("--allow-net", "custom enclaves whose signed manifest requests \"net\" may use the network (denied by default)")
    .option("--fleet-ca <file>", "accept live migrations from peers whose platforms this CA certificate (CADIR/ca.cert) certified, over the attested channel at /v1/migration/channel")
    .option("--allow-dev-ca", "with --fleet-ca: also accept a development CA and the peers it certifies (never in production)")
    .option("--advertise <url>", "with --fleet-ca: the URL peers reach this server at, told to migration destinations so they can ask for an outcome after a crash (default: the URL it listens on)")
    .addOption(new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error", "silent"]).default("info"))
    .addOption(new Option("--shutdown-timeout <ms>", "how long shutdown waits for in-flight requests").argParser(positiveInt("--shutdown-timeout")).default(10_000))
    .action(async (flags: ServeFlags) => {
      await run(() => serveCommand(flags));
    });

  const token = program.command("token").summary("create, list and revoke the tokens of a `selkie serve` directory");
  token
    .command("create")
    .description("Creates a token and prints it on stdout (once: only its hash is stored). --admin for the\nmanagement API and every database; else --db NAME, read-write unless --read-only.")
    .requiredOption("--dir <dir>", "the server's directory")
    .option("--admin", "an admin token")
    .option("--db <name>", "the database the token is for")
    .option("--read-only", "allow only statements that do not write")
    .action(async (o: { dir: string; admin?: boolean; db?: string; readOnly?: boolean }) => {
      await run(() => {
        if (o.admin && (o.db || o.readOnly)) throw new UsageError("BAD_TOKEN_SCOPE", "an admin token has no --db or --read-only");
        if (!o.admin && !o.db) throw new UsageError("BAD_TOKEN_SCOPE", "give --admin, or --db NAME for a database token");
        const db = o.db === undefined ? null : checkName(o.db);
        const scope: TokenScope = o.admin ? "admin" : o.readOnly ? "read-only" : "read-write";
        const { record, token: secret } = new TokenStore(o.dir).create(scope, db);
        process.stderr.write(`created ${scope} token ${record.id}${db ? ` for database ${db}` : ""} (shown once; pass it as the client's authToken)\n`);
        process.stdout.write(`${secret}\n`);
        return EXIT_OK;
      });
    });
  token
    .command("list")
    .description("Lists token ids, scopes and databases (never the tokens).")
    .requiredOption("--dir <dir>", "the server's directory")
    .option("--json", "JSON output")
    .action(async (o: { dir: string; json?: boolean }) => {
      await run(() => {
        const list = new TokenStore(o.dir).list().map(({ hash: _h, ...r }) => r);
        if (o.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else for (const r of list) process.stdout.write(`${r.id}\t${r.scope}\t${r.db ?? "*"}\t${r.createdAt}\n`);
        return EXIT_OK;
      });
    });
  token
    .command("revoke")
    .description("Revokes a token by id (effective at once on a running server).")
    .argument("<id>", "token id (from `selkie token list`)")
    .requiredOption("--dir <dir>", "the server's directory")
    .action(async (id: string, o: { dir: string }) => {
      await run(() => {
        if (!new TokenStore(o.dir).revoke(id)) {
          process.stderr.write(`no token with id ${id}\n`);
          return EXIT_USAGE;
        }
        process.stderr.write(`revoked ${id}\n`);
        return EXIT_OK;
      });
    });
}

function checkName(name: string): string {
  try {
    return checkDbName(name);
  } catch (e) {
    throw new UsageError("BAD_DB_NAME", (e as HttpError).message);
  }
}

/** The PEM files of --tls-cert / --tls-key, both or neither. */
function readTls(f: ServeFlags): { cert: Buffer; key: Buffer } | undefined {
  if (f.tlsCert === undefined && f.tlsKey === undefined) return undefined;
  if (f.tlsCert === undefined || f.tlsKey === undefined) throw new UsageError("TLS_INCOMPLETE", "--tls-cert and --tls-key go together: give the certificate chain and its private key");
  const read = (file: string, flag: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new UsageError("TLS_FILE", `${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)}); give a readable PEM file`);
    }
  };
  const pair = { cert: read(f.tlsCert, "--tls-cert"), key: read(f.tlsKey, "--tls-key") };
  try {
    tlsContext(pair);
  } catch (e) {
    throw new UsageError("TLS_BAD_PEM", `--tls-cert ${f.tlsCert} / --tls-key ${f.tlsKey}: not a usable PEM certificate and matching private key (${(e as Error).message})`);
  }
  return pair;
}

/** The CA certificate of --fleet-ca, checked; --allow-dev-ca only with it. */
function readFleetCa(f: ServeFlags): Certificate | undefined {
  if (f.fleetCa === undefined) {
    if (f.allowDevCa) throw new UsageError("FLEET_CA_REQUIRED", "--allow-dev-ca goes with --fleet-ca FILE: give the CA certificate the peers' platforms are certified by");
    return undefined;
  }
  let ca: Certificate;
  try {
    ca = readCaCertificate(f.fleetCa);
  } catch (e) {
    throw new UsageError("FLEET_CA_BAD", `--fleet-ca ${f.fleetCa}: ${(e as Error).message}; give a CA certificate file (CADIR/ca.cert of \`selkie ca init\`)`);
  }
  if (ca.dev && !f.allowDevCa) {
    throw new UsageError("FLEET_CA_DEV", `--fleet-ca ${f.fleetCa} is a development CA: peers it certifies are refused unless you also pass --allow-dev-ca (never in production)`);
  }
  return ca;
}

async function serveCommand(f: ServeFlags): Promise<number> {
  const tls = readTls(f);
  const fleetCa = readFleetCa(f);
  const dir = path.resolve(f.dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  acquireServeLock(dir);
  const logger = pino({ level: f.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  const platformDir = path.resolve(f.platform ?? path.join(dir, "platform"));
  let platform: Platform;
  if (Platform.exists(platformDir)) {
    platform = await Platform.open(platformDir);
    if (f.epc !== undefined && parseSize(f.epc, "--epc") !== platform.epcBytes) {
      logger.warn({ platform: platformDir, epcBytes: platform.epcBytes }, "--epc applies when the platform is created; this platform keeps its budget");
    }
  } else {
    platform = await Platform.create(platformDir, f.epc !== undefined ? { epc: f.epc } : {});
    logger.info({ event: "platform_created", platform: platformDir, epcBytes: platform.epcBytes }, "created a development platform (its keys seal every database: keep it)");
  }
  const limits: Partial<Limits> = {
    ...(f.maxBody !== undefined ? { maxBodyBytes: f.maxBody } : {}),
    ...(f.maxSql !== undefined ? { maxSqlBytes: f.maxSql } : {}),
    ...(f.maxRows !== undefined ? { maxRows: f.maxRows } : {}),
    ...(f.maxResponseBytes !== undefined ? { maxResponseBytes: f.maxResponseBytes } : {}),
    ...(f.requestTimeout !== undefined ? { requestTimeoutMs: f.requestTimeout } : {}),
    ...(f.maxConcurrent !== undefined ? { maxConcurrentPerDb: f.maxConcurrent } : {}),
    ...(f.maxStreams !== undefined ? { maxStreams: f.maxStreams } : {}),
    ...(f.streamIdle !== undefined ? { streamIdleMs: f.streamIdle } : {}),
    ...(f.maxTransaction !== undefined ? { maxTransactionMs: f.maxTransaction } : {}),
    ...(f.maxReadTransaction !== undefined ? { readOnlyTransactionMs: f.maxReadTransaction } : {}),
    ...(f.connectionsPerDb !== undefined ? { connectionsPerDb: f.connectionsPerDb } : {}),
    ...(f.busyTimeout !== undefined ? { busyTimeoutMs: f.busyTimeout } : {}),
  };
  const grants: Permission[] = [...(f.allowClock ? ["clock" as const] : []), ...(f.allowRandom ? ["random" as const] : []), ...(f.allowNet ? ["net" as const] : [])];
  let server;
  try {
    server = await serve({
      dir,
      platform,
      port: f.port,
      host: f.host,
      ...(tls ? { tls } : {}),
      limits,
      logger,
      metricsPublic: f.metricsPublic === true,
      grants,
      ...(f.dbEpc !== undefined ? { epc: f.dbEpc } : {}),
      migration: { ...(fleetCa ? { fleetCa } : {}), allowDevCa: f.allowDevCa === true, ...(f.advertise !== undefined ? { advertise: f.advertise } : {}) },
      workers: f.workers,
    });
  } catch (e) {
    platform.close();
    releaseServeLock(dir);
    throw e;
  }
  if (fleetCa !== undefined && platform.caId !== fleetCa.subjectId.toString("hex")) {
    logger.warn({ event: "fleet_ca_mismatch", platformCa: platform.caId, fleetCa: fleetCa.subjectId.toString("hex") }, "this platform is not certified by the --fleet-ca: peers of that fleet will refuse it (certify it with `selkie ca issue` and `selkie ca install`)");
  }
  // The first admin token is made only once the server listens: a start that fails (a busy port)
  // must not leave a token nobody was shown.
  const tokens = server.handler.context.tokens;
  let firstAdmin: string | undefined;
  if (!tokens.hasAdmin()) firstAdmin = tokens.create("admin", null).token;
  logger.info({ event: "listening", url: server.url, dir, workers: f.workers, platform: platform.platformId, epcBudget: platform.epcBytes, grants }, "selkie serve is listening");
  const lines = [
    `selkie: listening on ${server.url} (data in ${dir})`,
    firstAdmin
      ? `selkie: admin token (shown once, stored hashed in ${tokens.file}):\n  ${firstAdmin}`
      : `selkie: authenticate with a token from \`selkie token create --dir ${f.dir} ...\` (admin tokens exist already)`,
    `selkie: create a database:  curl -X POST -H "Authorization: Bearer $TOKEN" -d '{"name":"app"}' ${server.url}/v1/databases`,
    `selkie: connect:            createClient({ url: "${server.url}/db/app/", authToken: TOKEN })   // @libsql/client`,
  ];
  // Stops the process if the graceful shutdown cannot finish in time (a statement still running).
  const watchdog = startShutdownWatchdog(f.shutdownTimeout + 2_000);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      logger.info({ event: "shutdown", signal, inFlight: server.handler.inFlight }, "shutting down: finishing in-flight requests, closing databases");
      server
        .close({ timeoutMs: f.shutdownTimeout })
        .catch((e: unknown) => logger.error({ err: (e as Error).message }, "error while closing databases"))
        .finally(() => {
          platform.close();
          releaseServeLock(dir);
          logger.info({ event: "stopped" }, "stopped");
          logger.flush();
          watchdog.stop();
          resolve();
        });
    };
    const onInt = (): void => stop("SIGINT");
    const onTerm = (): void => stop("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    // Announced only once a signal stops the server cleanly (lock released, databases closed).
    process.stderr.write(`${lines.join("\n")}\n`);
  });
  return EXIT_OK;
}
