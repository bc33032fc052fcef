/**
 * TRUSTED (it handles the data key). The source side of a migration: migrateOut() (PROTOCOL.md).
 *
 * State machine (PROTOCOL.md §6; journal states in capitals, the others in memory):
 *   IDLE --offer--> OFFERED --admit--> PRECOPY --small delta--> FROZEN (journal, freeze(), final)
 *   FROZEN --prepared--> COMMITTING (journal) --destroy counter = COMMIT POINT--> files removed,
 *     `commit` sent --> MOVED (journal: the tombstone)
 *   OFFERED..FROZEN --refuse / abort / lost / bad message--> ABORTED (journal when FROZEN was), resume()
 *
 * Invariants:
 *  1. The source serves until freeze(); after the commit point it never serves again (its counter is
 *     gone, so even a backup of its files opens as STORAGE_DELETED).
 *  2. COMMITTING is durable before the commit point; `commit` is sent only after it.
 *  3. The data key is read only after the freeze and leaves only in `final`, over the attested channel.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { syncDirectory } from "../../host/files.js";
import type { Platform } from "../../platform/platform.js";
import { exportStoreKey } from "../../storage/transfer.js";
import type { MigrationChannel } from "../channel-api.js";
import { crashPoint } from "./crash-points.js";
import { MigrationError } from "./errors.js";
import { listJournals, writeJournal, type SourceJournal } from "./journal.js";
import { expect, peerAborted, PROTOCOL_VERSION, send } from "./messages.js";
import { fileSha256, SentState, type Chunk } from "./source-files.js";
import { sqliteTrust } from "./store-trust.js";
import { active } from "./active.js";

/** What the host serving the database provides: a quiescent point and a way back. */
export interface MigrationSource {
  /**
   * Waits for statements in flight, holds new requests (bounded), waits up to `waitMs` for an open
   * transaction (then rolls it back when `rollbackOpenTransaction`, else throws
   * MIGRATION_TRANSACTION_OPEN), then closes the database: its files are quiescent.
   */
  freeze(opts: { waitMs: number; rollbackOpenTransaction: boolean }): Promise<void>;
  /** After an abort: reopen and serve again. */
  resume(): Promise<void>;
  /** After the commit: tell waiting requests where the database lives now. */
  moved?(to: string): void;
  /** Metadata that travels with the database (tokens, options): an opaque map. */
  metadata?(): Record<string, unknown>;
}

export interface MigrateOutOptions {
  platform: Platform;
  /** The data folder holding the database NAME and NAME.log. */
  dataDir: string;
  name: string;
  channel: MigrationChannel;
  source: MigrationSource;
  /** Where the destination reaches this source to ask for the outcome (PROTOCOL.md `offer`). */
  sourceAddress: string;
  /** The destination's address, kept in the tombstone for redirects. */
  to: string;
  /** EPC the database's enclave needs at the destination (default 64 MiB). */
  epcBytes?: number;
  smallDeltaBytes?: number;
  maxRounds?: number;
  /** How long to wait for each answer of the destination (default 30 s). */
  timeoutMs?: number;
  transactionWaitMs?: number;
  rollbackOpenTransaction?: boolean;
  /** Called as the migration moves on (phase changes, each chunk sent): progress bars, /v1/migrations. */
  onProgress?: (p: MigrationProgress) => void;
}

/** Where a running migration is (PROTOCOL.md §9). `bytes` counts data sent so far, of `diskBytes` at the offer. */
export interface MigrationProgress {
  mid: string;
  phase: "offer" | "precopy" | "frozen" | "prepared" | "committed";
  round: number;
  bytes: number;
  diskBytes: number;
}

export interface MigrationStats {
  mid: string;
  totalMs: number;
  frozenMs: number;
  rounds: number;
  bytes: { precopy: number; final: number };
  slotsResent: number;
}

/** The source's refusals before anything moves (PROTOCOL.md §3). */
export function checkSource(dataDir: string, name: string): void {
  const file = path.join(dataDir, name);
  for (const j of listJournals(dataDir, "source")) {
    if (j.name !== name) continue;
    if (j.state === "MOVED") throw new MigrationError("MIGRATION_MOVED", `${name} was migrated to ${(j as SourceJournal).to}; it no longer lives here`);
  }
  if (active.names.has(`${dataDir}\0${name}`)) throw new MigrationError("MIGRATION_IN_PROGRESS", `${name} is already being migrated; wait for that migration to end`);
  if (!fs.existsSync(`${file}.log`) || !fs.existsSync(file)) {
    throw new MigrationError("MIGRATION_NO_SUCH_DATABASE", `there is no database ${name} in ${dataDir}; check the name (selkie ps lists served databases)`);
  }
}

export async function migrateOut(o: MigrateOutOptions): Promise<MigrationStats> {
  const t0 = performance.now();
  const { dataDir, name, channel: ch } = o;
  const timeout = o.timeoutMs ?? 30_000;
  checkSource(dataDir, name);
  if (ch.peer.platformId === o.platform.platformId) {
    throw new MigrationError("MIGRATION_TO_SELF", `the destination is this platform (${o.platform.platformId}); migrate to another peer`);
  }
  const mid = randomBytes(16).toString("hex");
  const key = `${dataDir}\0${name}`;
  active.names.add(key);
  active.mids.set(mid, { committed: false });
  const slotsPath = path.join(dataDir, name);
  const logPath = `${slotsPath}.log`;
  const sent = new SentState();
  const stats: MigrationStats = { mid, totalMs: 0, frozenMs: 0, rounds: 0, bytes: { precopy: 0, final: 0 }, slotsResent: 0 };
  let frozen = false;
  let journaled = false;
  let committing = false;
  let tFreeze = 0;
  let counterId = "";
  const sendRound = async (round: number): Promise<number> => {
    const d = sent.delta(slotsPath, logPath, round === 0);
    for (const c of d.chunks) await sendChunk(c, round);
    await send(ch, { type: "round", mid, round, slotsLength: d.slotsLength, logLength: d.logLength, bytes: d.bytes });
    return d.bytes;
  };
  let phase: MigrationProgress["phase"] = "offer";
  let sentBytes = 0;
  let diskBytes = 0;
  let round = 0;
  const progress = (p?: MigrationProgress["phase"]): void => {
    if (p !== undefined) phase = p;
    o.onProgress?.({ mid, phase, round, bytes: sentBytes, diskBytes });
  };
  const sendChunk = async (c: Chunk, r: number): Promise<void> => {
    await send(ch, { type: "data", mid, round: r, file: c.file, offset: c.offset, bytes: c.bytes, reset: c.reset });
    sentBytes += c.bytes.length;
    progress();
  };
  try {
    diskBytes = fs.statSync(slotsPath).size + fs.statSync(logPath).size;
    progress("offer");
    await send(ch, { type: "offer", v: PROTOCOL_VERSION, mid, name, kind: "database", diskBytes, epcBytes: o.epcBytes ?? 64 * 1024 * 1024, sourceAddress: o.sourceAddress });
    crashPoint("source:after-offer", ch);
    const answer = await expect(ch, mid, ["admit", "refuse"], timeout);
    if (answer.type === "refuse") {
      const code = typeof answer["code"] === "string" ? answer["code"] : "MIGRATION_REFUSED";
      throw new MigrationError("MIGRATION_REFUSED", `the destination refused ${name}: ${String(answer["message"] ?? code)}`, { peerCode: code });
    }
    if (answer.type === "abort") throw peerAborted(answer);
    // Pre-copy rounds while the database keeps serving.
    progress("precopy");
    for (;;) {
      const b = await sendRound(round);
      stats.bytes.precopy += b;
      round++;
      if (round === 1) crashPoint("source:after-round-0", ch);
      if (b <= (o.smallDeltaBytes ?? 256 * 1024) || round >= (o.maxRounds ?? 8)) break;
    }
    // Freeze at a quiescent point.
    counterId = exportStoreKey(sqliteTrust(o.platform), fs.readFileSync(logPath), logPath).counterId;
    writeJournal(dataDir, { format: 1, role: "source", mid, state: "FROZEN", name, counterId, to: o.to });
    journaled = true;
    crashPoint("source:after-frozen-journal", ch);
    tFreeze = performance.now();
    await o.source.freeze({ waitMs: o.transactionWaitMs ?? 2_000, rollbackOpenTransaction: o.rollbackOpenTransaction === true });
    frozen = true;
    progress("frozen");
    stats.bytes.final = await sendRound(round);
    stats.rounds = round + 1;
    const log = fs.readFileSync(logPath);
    const k = exportStoreKey(sqliteTrust(o.platform), log, logPath);
    const slotsLength = fs.statSync(slotsPath).size;
    await send(ch, {
      type: "final",
      mid,
      round,
      slotsLength,
      logLength: log.length,
      slotsSha256: fileSha256(slotsPath),
      logSha256: fileSha256(logPath),
      key: k.key,
      dbId: k.dbId,
      counter: k.counter,
      sourceCounterId: k.counterId,
      meta: o.source.metadata?.() ?? {},
    });
    k.key.fill(0);
    crashPoint("source:after-final", ch);
    const vote = await expect(ch, mid, ["prepared"], timeout);
    if (vote.type === "abort") throw peerAborted(vote);
    crashPoint("source:after-prepared", ch);
    progress("prepared");
    // Decision: COMMITTING is durable before the commit point.
    committing = true;
    writeJournal(dataDir, { format: 1, role: "source", mid, state: "COMMITTING", name, counterId, to: o.to });
    crashPoint("source:after-committing-journal", ch);
    const decided: SourceJournal = { format: 1, role: "source", mid, state: "COMMITTING", name, counterId, to: o.to };
    destroySourceCounter(o.platform, counterId); // THE COMMIT POINT
    crashPoint("source:after-counter-destroyed", ch);
    active.mids.get(mid)!.committed = true;
    progress("committed");
    o.source.moved?.(o.to);
    // `commit` goes first: the destination serves as soon as it has it. Removing the files (which
    // no longer open: their counter is gone) and the tombstone follow (finishCommit, idempotent).
    const sentCommit = send(ch, { type: "commit", mid }).then(
      () => crashPoint("source:after-commit-sent", ch),
      () => undefined, // the destination learns the outcome by asking (PROTOCOL.md §5)
    );
    await sentCommit;
    stats.frozenMs = performance.now() - tFreeze;
    finishCommit(o.platform, dataDir, decided);
    // The destination's `done` is informational; recovery settles a lost one.
    if (!ch.closed) await expect(ch, mid, ["done"], timeout).catch(() => undefined);
    stats.totalMs = performance.now() - t0;
    stats.slotsResent = sent.slotsResent;
    return stats;
  } catch (e) {
    if (committing) throw e; // past the decision: recovery completes it
    if (journaled) writeJournal(dataDir, { format: 1, role: "source", mid, state: "ABORTED", name, counterId, to: o.to });
    if (!ch.closed) await ch.send({ type: "abort", mid, code: (e as MigrationError).code ?? "MIGRATION_ABORTED", message: (e as Error).message }).catch(() => undefined);
    if (frozen) await o.source.resume();
    throw e instanceof MigrationError ? e : new MigrationError("MIGRATION_ABORTED", `the migration of ${name} was aborted (${(e as Error).message}); the database stays here and serves`, { cause: e });
  } finally {
    active.names.delete(key);
    active.mids.delete(mid);
    ch.close();
  }
}

/**
 * From a durable COMMITTING: destroys the counter (the commit point; done already when it is
 * gone), removes the database's files, records MOVED. Idempotent (recovery runs it again).
 */
export function finishCommit(platform: Platform, dataDir: string, j: SourceJournal, afterDestroy?: () => void): void {
  destroySourceCounter(platform, j.counterId);
  afterDestroy?.();
  const file = path.join(dataDir, j.name);
  for (const f of [`${file}.log`, file, `${file}.log.tmp`]) fs.rmSync(f, { force: true });
  syncDirectory(dataDir);
  writeJournal(dataDir, { ...j, state: "MOVED" });
}

/** Destroys the source's counter: the commit point. Done already when it is gone. */
function destroySourceCounter(platform: Platform, counterId: string): void {
  try {
    sqliteTrust(platform).destroyCounter(counterId);
  } catch (e) {
    if ((e as { code?: string }).code !== "COUNTER_NOT_FOUND") throw e;
  }
}

/** Where the database `name` of this data folder went, when it was migrated away. */
export function movedTo(dataDir: string, name: string): string | undefined {
  for (const j of listJournals(dataDir, "source")) if (j.name === name && j.state === "MOVED") return (j as SourceJournal).to;
  return undefined;
}

