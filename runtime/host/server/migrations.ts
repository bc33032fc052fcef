/**
 * UNTRUSTED (server). Live migration in `selkie serve` (runtime/migration/protocol/PROTOCOL.md over
 * the attested channel of runtime/migration/channel/CHANNEL.md): this server as a source
 * (`POST /v1/databases/NAME/migrate`, `selkie migrate`), as a destination (attested channels at
 * /v1/migration/channel), recovery of unfinished migrations at start and every second while any is
 * unsettled, and what /v1/migrations, `selkie ps` and /metrics show.
 *
 * Per database name, on the main thread:
 *   (none) --migrate--> OUT (serving; pre-copy) --freeze (engine, freeze.ts) then hold--> OUT frozen
 *     --commit--> forwarding recorded, hold released as moved (held requests are forwarded)
 *     --abort--> hold released, engine thawed: serving again
 *   (none) --offer admitted--> IN (held: requests for it wait) --done--> tokens adopted, forwarding
 *     entry removed, hold released: served here  |  --refused/aborted--> released (not here)
 *     --in doubt--> held until recovery settles it
 *
 * Invariants:
 *  1. A request reaches the engine for a frozen or incoming database only once its hold is released;
 *     the main thread's hold stands even if the worker hosting the database is replaced meanwhile.
 *  2. The forwarding entry of a moved database is durable before any held request is released, and
 *     it is removed before a database that came back is served again.
 *  3. Nothing here decides an outcome: the protocol's journals and counters do (recovery.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { connectAttested, type ChannelOptions } from "../../migration/channel/index.js";
import type { MigrationChannel } from "../../migration/channel-api.js";
import { normalizePeerUrl } from "../../migration/forwarding/table.js";
import { migrateOut, movedTo, recoverMigrations, serveMigrationPeer, pendingMigrations, MigrationError, type MigrationProgress, type MigrationSource, type MigrationStats, type Recovered } from "../../migration/protocol/index.js";
import { listJournals } from "../../migration/protocol/journal.js";
import { parseSize } from "../../enclave/manifest.js";
import { SelkieError } from "../../errors.js";
import { badRequest, HttpError, notFound } from "./errors.js";
import { FreezeGate } from "./freeze.js";
import type { ServerContext } from "./handler.js";
import type { MigrationServeOptions } from "./migration-endpoint.js";
import { DB_NAME_RE } from "./registry.js";
import { sqliteQuoter } from "./management.js";

export interface MigrationRecord {
  mid: string;
  name: string;
  role: "source" | "destination";
  /** The other side: the destination's URL, or the source's address. */
  peer: string;
  phase: MigrationProgress["phase"] | "attesting" | "receiving" | "done" | "in-doubt" | "failed";
  startedAt: string;
  round: number;
  bytes: number;
  diskBytes: number;
  elapsedMs: number;
  error?: { code: string; message: string };
}

export interface MigrateRequest {
  to: string;
  waitMs?: number;
  rollbackOpenTransaction?: boolean;
}

export interface MigrateResult {
  name: string;
  to: string;
  stats: MigrationStats & { attestMs: number };
}

const RECENT = 32;
const dbFile = (name: string): string => `${name}.db`;

export class ServerMigrations {
  readonly #ctx: ServerContext;
  readonly #opts: MigrationServeOptions;
  readonly #running = new Map<string, MigrationRecord & { t0: number }>();
  readonly #recent: MigrationRecord[] = [];
  readonly #holds = new Map<string, FreezeGate>();
  #settled: Array<() => void> = [];
  #settling: Promise<Recovered[]> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** This server's own URL, given to destinations so they can ask for an outcome (set by serve()). */
  sourceAddress = "";

  constructor(ctx: ServerContext, opts: MigrationServeOptions | undefined) {
    this.#ctx = ctx;
    this.#opts = opts ?? {};
  }

  get configured(): boolean {
    return this.#opts.fleetCa !== undefined;
  }

  #channelOptions(): ChannelOptions {
    if (this.#opts.fleetCa === undefined) {
      throw new HttpError(503, "MIGRATION_NOT_CONFIGURED", "this server takes part in no migration: start selkie serve with --fleet-ca FILE (the CA that certified the peers' platforms)");
    }
    return { ...this.#opts.channel, services: sqliteQuoter(this.#ctx.platform), fleetCa: this.#opts.fleetCa, allowDevCa: this.#opts.allowDevCa === true };
  }

  /** Incoming databases are held: how many now (authentication waits for their tokens). */
  get incoming(): number {
    let n = 0;
    for (const r of this.#running.values()) if (r.role === "destination") n++;
    return n;
  }

  /** Holds a request for `name` while it is frozen here or on its way in (invariant 1). */
  async hold(name: string, deadline: number): Promise<void> {
    const h = this.#holds.get(name);
    if (h !== undefined) await h.pass(name, deadline);
  }

  /** Waits (bounded) until no incoming migration is running: its tokens may be the ones presented. */
  async settledIncoming(deadline: number): Promise<void> {
    while (this.incoming > 0 && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(0, Math.min(250, deadline - Date.now())));
        this.#settled.push(() => (clearTimeout(t), r()));
      });
    }
  }

  #release(name: string, movedTo?: string): void {
    const h = this.#holds.get(name);
    if (h === undefined) return;
    this.#holds.delete(name);
    h.open(movedTo);
  }

  #finish(name: string, phase: MigrationRecord["phase"], error?: unknown): void {
    const r = this.#running.get(name);
    if (r === undefined) return;
    this.#running.delete(name);
    const { t0, ...rec } = r;
    rec.phase = phase;
    rec.elapsedMs = Math.round(performance.now() - t0);
    if (error !== undefined) rec.error = { code: (error as { code?: string }).code ?? "INTERNAL", message: (error as Error).message };
    this.#recent.unshift(rec);
    this.#recent.length = Math.min(this.#recent.length, RECENT);
    this.#ctx.metrics.migrations.inc({ role: rec.role, result: phase });
    for (const f of this.#settled.splice(0)) f();
  }

  /** GET /v1/migrations: the running ones, then the last few that ended. */
  list(): { running: MigrationRecord[]; recent: MigrationRecord[] } {
    const now = performance.now();
    return { running: [...this.#running.values()].map(({ t0, ...r }) => ({ ...r, elapsedMs: Math.round(now - t0) })), recent: [...this.#recent] };
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** POST /v1/databases/NAME/migrate: this server is the source. Resolves once committed (or throws; the database then serves here). */
  async migrate(name: string, req: MigrateRequest): Promise<MigrateResult> {
    const ctx = this.#ctx;
    let to: string;
    try {
      to = normalizePeerUrl(req.to);
    } catch (e) {
      throw badRequest("BAD_PEER_URL", (e as Error).message);
    }
    const channelOpts = this.#channelOptions();
    const moved = ctx.forwarding.get(name);
    if (moved !== undefined) throw new HttpError(409, "DB_MOVED", `database ${name} moved to ${moved.to} already; migrate it from there`);
    if (!ctx.registry.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them`);
    if (this.#running.has(name)) throw new HttpError(409, "MIGRATION_IN_PROGRESS", `database ${name} is being migrated already; wait for that migration to end (GET /v1/migrations)`);
    if (this.sourceAddress !== "" && normalizePeerUrl(this.sourceAddress) === to) throw new HttpError(400, "MIGRATION_TO_SELF", `${to} is this server; migrate to another peer`);
    const rec = { mid: "", name, role: "source" as const, peer: to, phase: "attesting" as MigrationRecord["phase"], startedAt: new Date().toISOString(), round: 0, bytes: 0, diskBytes: 0, elapsedMs: 0, t0: performance.now() };
    this.#running.set(name, rec);
    let frozen = false;
    const engine = ctx.engine;
    const source: MigrationSource = {
      freeze: async (o) => {
        try {
          await engine.freeze(name, { waitMs: o.waitMs, rollback: o.rollbackOpenTransaction });
        } catch (e) {
          const code = (e as { code?: string }).code;
          throw code?.startsWith("MIGRATION_") ? new MigrationError(code, (e as Error).message) : e;
        }
        this.#holds.set(name, new FreezeGate());
        frozen = true;
      },
      resume: async () => {
        frozen = false;
        this.#release(name);
        await engine.thaw(name);
      },
      moved: (dest) => {
        ctx.forwarding.record(name, dest); // durable before any held request goes on (invariant 2)
        this.#release(name, dest);
        engine.thaw(name, dest).catch(() => undefined);
      },
      metadata: () => ({ tokens: ctx.tokens.forDb(name) }),
    };
    try {
      const t0 = performance.now();
      let ch: MigrationChannel;
      try {
        ch = await connectAttested(to, channelOpts);
      } catch (e) {
        throw new HttpError(502, (e as { code?: string }).code ?? "CHANNEL_CONNECT", `the attested channel to ${to} failed: ${(e as Error).message}`);
      }
      const attestMs = performance.now() - t0;
      const stats = await migrateOut({
        platform: ctx.platform,
        dataDir: ctx.registry.dir,
        name: dbFile(name),
        channel: ch,
        source,
        sourceAddress: this.sourceAddress,
        to,
        epcBytes: this.#epcBytes(),
        transactionWaitMs: req.waitMs ?? 2_000,
        rollbackOpenTransaction: req.rollbackOpenTransaction === true,
        onProgress: (p) => Object.assign(rec, { mid: p.mid, phase: p.phase, round: p.round, bytes: p.bytes, diskBytes: p.diskBytes }),
      });
      ctx.logger.info({ event: "db_migrated", db: name, to, mid: stats.mid, totalMs: Math.round(stats.totalMs), frozenMs: Math.round(stats.frozenMs), rounds: stats.rounds, bytes: stats.bytes }, "database migrated");
      this.#finish(name, "done");
      return { name, to, stats: { ...stats, attestMs } };
    } catch (e) {
      // Past its commit decision migrateOut rethrows without resuming: recovery completes the
      // commit, then records the forwarding and releases the held requests (recover()).
      if (frozen) this.#kick();
      this.#finish(name, "failed", e);
      ctx.logger.warn({ event: "db_migration_failed", db: name, to, code: (e as { code?: string }).code }, (e as Error).message);
      throw migrationHttpError(e);
    }
  }

  #epcBytes(): number {
    const epc = this.#ctx.registry.epc;
    return epc === undefined ? 64 * 1024 * 1024 : parseSize(epc, "epc");
  }

  /** An attested channel arrived (this server is a destination, or a source asked for an outcome). */
  onChannel(ch: MigrationChannel, remoteAddress: string): void {
    const ctx = this.#ctx;
    let name: string | undefined;
    const accepted = serveMigrationPeer(ch, {
      platform: ctx.platform,
      dataDir: ctx.registry.dir,
      timeoutMs: 30_000,
      policy: (offer) => {
        if (!offer.name.endsWith(".db") || !DB_NAME_RE.test(offer.name.slice(0, -3))) return `${JSON.stringify(offer.name)} is not a database name this server serves`;
        const n = offer.name.slice(0, -3);
        if (this.#running.has(n)) return `a migration of ${n} is running on this server`;
        if (ctx.registry.exists(n)) return undefined; // admission refuses it as MIGRATION_NAME_TAKEN
        // A name this server forwards may come back only from where it went (not another database
        // of the same name, which would take over the clients that follow the old URL).
        const fw = ctx.forwarding.get(n);
        if (fw !== undefined && !samePeer(fw.to, offer.sourceAddress)) {
          return `this server forwards ${n} to ${fw.to}; only that peer may migrate it back (or remove the entry: DELETE /v1/forwarding/${n})`;
        }
        name = n;
        this.#holds.set(n, new FreezeGate());
        this.#running.set(n, { mid: offer.mid, name: n, role: "destination", peer: offer.sourceAddress || remoteAddress, phase: "receiving", startedAt: new Date().toISOString(), round: 0, bytes: 0, diskBytes: offer.diskBytes, elapsedMs: 0, t0: performance.now() });
        return undefined;
      },
    });
    accepted.then(
      (a) => {
        if (a === undefined || name === undefined) return; // an outcome query, answered
        if (a.state === "done") {
          this.#arrived(name, a.meta);
          ctx.logger.info({ event: "db_migrated_in", db: name, from: this.#running.get(name)?.peer, mid: a.mid }, "database migrated in");
          this.#finish(name, "done");
        } else {
          ctx.logger.warn({ event: "db_migration_in_doubt", db: name, mid: a.mid }, "migration PREPARED here, outcome unknown: recovery asks the source");
          this.#finish(name, "in-doubt"); // the hold stays until recovery settles it
          this.#kick();
        }
      },
      (e: unknown) => {
        if (name !== undefined) {
          this.#release(name);
          this.#finish(name, "failed", e);
        }
        ctx.logger.warn({ event: "db_migration_in_refused", db: name, peer: remoteAddress, code: (e as { code?: string }).code }, (e as Error).message);
      },
    );
  }

  /** A database is in place here: its tokens adopted, any old forwarding entry removed, then served. */
  #arrived(name: string, meta: Record<string, unknown>): void {
    const ctx = this.#ctx;
    const n = ctx.tokens.adopt(name, meta["tokens"]);
    ctx.forwarding.remove(name);
    this.#release(name);
    if (n > 0) ctx.logger.info({ event: "tokens_adopted", db: name, tokens: n }, "the migrated database's tokens work here");
  }

  /** Settles unfinished migrations (at start, and every second while any is unsettled). */
  recover(): Promise<Recovered[]> {
    this.#settling ??= (async () => {
      const ctx = this.#ctx;
      const dir = ctx.registry.dir;
      const connect = this.configured ? (address: string) => connectAttested(address, this.#channelOptions()) : undefined;
      try {
        const out = await recoverMigrations({ platform: ctx.platform, dataDir: dir, timeoutMs: 5_000, ...(connect ? { connect } : {}) });
        for (const r of out) {
          const name = r.name.endsWith(".db") ? r.name.slice(0, -3) : r.name;
          if (r.action === "installed") this.#arrived(name, r.meta ?? {});
          else if (r.action === "discarded") this.#release(name);
          if (r.action !== "in-doubt" && r.action !== "none") ctx.logger.info({ event: "migration_recovered", db: name, role: r.role, action: r.action, mid: r.mid }, `recovery: ${r.role} ${r.action}`);
        }
        // A source that committed (now, or before a crash) forwards its clients (idempotent).
        for (const j of listJournals(dir, "source")) {
          const name = j.name.slice(0, -3);
          const to = movedTo(dir, j.name);
          if (j.state !== "MOVED" || to === undefined || fs.existsSync(path.join(dir, `${j.name}.log`))) continue;
          if (ctx.forwarding.get(name) === undefined) ctx.forwarding.record(name, to);
          if (this.#holds.has(name)) {
            this.#release(name, to);
            await ctx.engine.thaw(name, to);
          }
        }
        return out;
      } finally {
        this.#settling = undefined;
      }
    })();
    return this.#settling;
  }

  #kick(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      if (!pendingMigrations(this.#ctx.registry.dir)) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        return;
      }
      this.recover().catch((e: unknown) => this.#ctx.logger.warn({ event: "migration_recovery_failed", code: (e as { code?: string }).code }, (e as Error).message));
    }, 1_000);
    this.#timer.unref();
  }

  /** At start: recovery now, and again every second while anything is unsettled. */
  async start(): Promise<Recovered[]> {
    const out = await this.recover();
    if (pendingMigrations(this.#ctx.registry.dir)) this.#kick();
    return out;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const name of [...this.#holds.keys()]) this.#release(name);
  }
}

function samePeer(a: string, b: string): boolean {
  try {
    return normalizePeerUrl(a) === normalizePeerUrl(b);
  } catch {
    return false;
  }
}

/** A migration failure as the management API answers it. */
function migrationHttpError(e: unknown): unknown {
  if (e instanceof HttpError) return e;
  if (e instanceof MigrationError) {
    const status: Record<string, number> = {
      MIGRATION_NO_SUCH_DATABASE: 404,
      MIGRATION_IN_PROGRESS: 409,
      MIGRATION_MOVED: 409,
      MIGRATION_TO_SELF: 400,
      MIGRATION_REFUSED: 409,
      MIGRATION_TRANSACTION_OPEN: 409,
      MIGRATION_PEER_LOST: 502,
      MIGRATION_BAD_MESSAGE: 502,
      MIGRATION_TRANSFER_CORRUPT: 502,
    };
    const peer: Record<string, string> = e.peerCode !== undefined ? { "x-selkie-peer-code": e.peerCode } : {};
    return new HttpError(status[e.code] ?? 500, e.code, e.message, peer);
  }
  if (e instanceof SelkieError && e.code.startsWith("CHANNEL_")) return new HttpError(502, e.code, e.message);
  return e;
}
