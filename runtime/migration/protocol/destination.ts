/**
 * TRUSTED (it handles the data key). The destination side of a migration: acceptMigration()
 * (PROTOCOL.md).
 *
 * State machine (PROTOCOL.md §6; journal states):
 *   IDLE --offer, admission--> RECEIVING --data/round--> RECEIVING --final verified--> PREPARING
 *     (fence counter at c + 2) --header rewritten, fsync--> PREPARED --`prepared` sent
 *   PREPARED --commit / outcome commit--> COMMITTED --fence lifted, files renamed in--> DONE (serves)
 *   RECEIVING..PREPARING --error / abort / lost--> ABORTED (staging removed)
 *   PREPARED --abort / outcome abort--> ABORTED;  --lost--> stays PREPARED (asks `status`)
 *
 * Invariants:
 *  1. PREPARED is durable, with every byte needed to serve, before `prepared` is sent.
 *  2. The staged copy is fenced (its counter is c + 2, its log's last seq c: STORAGE_ROLLBACK) until
 *     the source's COMMIT is known; only liftFence() opens it, and only when the counter reads c + 2.
 *  3. After PREPARED this side never aborts on its own.
 *  4. The data key is written only sealed by this platform.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { NodeFileLayer, syncDirectory } from "../../host/files.js";
import type { Platform } from "../../platform/platform.js";
import { PageStore, SLOT, type StoreTrust } from "../../storage/page-store.js";
import { rehomeLog } from "../../storage/transfer.js";
import type { MigrationChannel, MigrationMessage, PeerInfo } from "../channel-api.js";
import { crashPoint } from "./crash-points.js";
import { MigrationError } from "./errors.js";
import { journalPath, listJournals, migrateDir, stagingDir, writeJournal, type DestinationJournal } from "./journal.js";
import { bad, bytes, expect, num, PROTOCOL_VERSION, send, str } from "./messages.js";
import { createCounterAt, sqliteTrust } from "./store-trust.js";
import { fdSha256 } from "./source-files.js";
import { active } from "./active.js";

export interface Offer {
  readonly mid: string;
  readonly name: string;
  readonly diskBytes: number;
  readonly epcBytes: number;
  readonly sourceAddress: string;
}

export interface AcceptOptions {
  platform: Platform;
  dataDir: string;
  channel: MigrationChannel;
  /** Admission policy beyond the built-in checks: a reason to refuse, or undefined (default: admit). */
  policy?: (offer: Offer, peer: PeerInfo) => string | undefined;
  /** Free EPC bytes for a new enclave (default: the platform's EPC manager's free bytes). */
  epcFree?: () => number;
  /** Free disk bytes of the data folder (default: statfs). */
  diskFree?: () => number;
  timeoutMs?: number;
  /** The first message, when a dispatcher already received it. */
  first?: MigrationMessage;
}

export interface Accepted {
  mid: string;
  name: string;
  meta: Record<string, unknown>;
  /** "done": serving here. "in-doubt": PREPARED, the outcome is not known yet (recovery asks). */
  state: "done" | "in-doubt";
}

const sha = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

function parseOffer(m: MigrationMessage): Offer {
  if (m.type !== "offer") throw bad(`got ${m.type}, expected offer`);
  const name = str(m, "name");
  if (name.includes("/") || name.includes("\\") || name.startsWith(".") || name.includes("\0")) throw bad("offer.name is not a plain file name");
  const mid = str(m, "mid");
  if (!/^[0-9a-f]{32}$/.test(mid)) throw bad("offer.mid must be 32 hex digits");
  return { mid, name, diskBytes: num(m, "diskBytes"), epcBytes: num(m, "epcBytes"), sourceAddress: str(m, "sourceAddress") };
}

/** PROTOCOL.md §3: the first failing check as [code, message, missing], or undefined. */
export function admission(o: AcceptOptions, m: MigrationMessage, offer: Offer): [string, string, number | string] | undefined {
  const peer = o.channel.peer;
  if (m["v"] !== PROTOCOL_VERSION || m["kind"] !== "database" || peer.role !== "source") {
    return ["MIGRATION_POLICY", `this destination speaks migration protocol ${PROTOCOL_VERSION} for databases from a source peer`, "protocol"];
  }
  if (peer.platformId === o.platform.platformId) return ["MIGRATION_TO_SELF", "the source is this platform; migrate to another peer", "peer"];
  const why = o.policy?.(offer, peer);
  if (why !== undefined) return ["MIGRATION_POLICY", `the destination's policy refuses this migration: ${why}`, "policy"];
  const file = path.join(o.dataDir, offer.name);
  const busy = listJournals(o.dataDir, "destination").some((j) => j.name === offer.name && j.state !== "ABORTED" && j.state !== "DONE");
  if (fs.existsSync(file) || fs.existsSync(`${file}.log`) || busy) {
    return ["MIGRATION_NAME_TAKEN", `the destination already has a database (or a migration in progress) named ${offer.name}; rename one of them first (selkie db rename)`, offer.name];
  }
  const needDisk = 2 * offer.diskBytes + 1024 * 1024;
  const freeDisk = o.diskFree?.() ?? diskFree(o.dataDir);
  if (freeDisk < needDisk) return ["MIGRATION_NO_DISK", `the destination's data folder has ${freeDisk} bytes free and needs ${needDisk}; free ${needDisk - freeDisk} bytes`, needDisk - freeDisk];
  const freeEpc = o.epcFree?.() ?? o.platform.epc.free;
  if (freeEpc < offer.epcBytes) return ["MIGRATION_NO_EPC", `the destination's EPC has ${freeEpc} bytes free and the database's enclave needs ${offer.epcBytes}; free ${offer.epcBytes - freeEpc} bytes of EPC (close or hibernate enclaves) or raise the budget`, offer.epcBytes - freeEpc];
  return undefined;
}

function diskFree(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

export async function acceptMigration(o: AcceptOptions): Promise<Accepted> {
  const ch = o.channel;
  const timeout = o.timeoutMs ?? 30_000;
  let m: MigrationMessage;
  try {
    m = o.first ?? (await ch.receive(timeout));
  } catch (e) {
    throw new MigrationError("MIGRATION_PEER_LOST", `the source closed before its offer (${(e as Error).message})`, { cause: e });
  }
  let offer: Offer;
  try {
    offer = parseOffer(m);
  } catch (e) {
    ch.close(); // not an offer: nothing to answer
    throw e;
  }
  const { mid, name } = offer;
  const refused = admission(o, m, offer);
  if (refused) {
    await send(ch, { type: "refuse", mid, code: refused[0], message: refused[1], missing: refused[2] }).catch(() => undefined);
    ch.close();
    throw new MigrationError(refused[0], refused[1]);
  }
  active.mids.set(mid, { committed: false });
  try {
    return await receive(o, offer);
  } finally {
    active.mids.delete(mid);
  }
}

async function receive(o: AcceptOptions, offer: Offer): Promise<Accepted> {
  const ch = o.channel;
  const timeout = o.timeoutMs ?? 30_000;
  const { mid, name } = offer;
  const stage = stagingDir(o.dataDir, mid);
  const j: DestinationJournal = { format: 1, role: "destination", mid, state: "RECEIVING", name, sourceAddress: offer.sourceAddress };
  sqliteTrust(o.platform); // load the SQLite enclave's identity now, not while the source is frozen
  fs.mkdirSync(stage, { recursive: true, mode: 0o700 });
  syncDirectory(migrateDir(o.dataDir));
  writeJournal(o.dataDir, j);
  const slotsPath = path.join(stage, name);
  const logPath = `${slotsPath}.log`;
  const slots = fs.openSync(slotsPath, "w+", 0o600);
  const log = fs.openSync(logPath, "w+", 0o600);
  let prepared = false;
  // Each pre-copy round's bytes are flushed in the background while the next round arrives, so the
  // fsync in PREPARE (while the source is frozen) only flushes the last delta. Awaited before any
  // fsync or close of these descriptors.
  let flushing: Promise<void> = Promise.resolve();
  const settled = (): Promise<void> => flushing.catch(() => undefined);
  try {
    await send(ch, { type: "admit", mid });
    crashPoint("destination:after-admit", ch);
    let final: MigrationMessage;
    for (;;) {
      const d = await expect(ch, mid, ["data", "round", "final"], timeout);
      if (d.type === "abort") throw new MigrationError("MIGRATION_ABORTED", `the source aborted the migration of ${name}: ${String(d["message"] ?? "")}`);
      if (d.type === "final") {
        final = d;
        break;
      }
      if (d.type === "round") {
        fs.ftruncateSync(slots, num(d, "slotsLength"));
        fs.ftruncateSync(log, num(d, "logLength"));
        flushing = flushing.then(() => fdatasync(slots)).then(() => fdatasync(log));
        flushing.catch(() => undefined); // handled where it is awaited
        if (num(d, "round") === 0) crashPoint("destination:during-receive", ch);
        continue;
      }
      const file = d["file"];
      const offset = num(d, "offset");
      const b = bytes(d, "bytes");
      if (file === "slots") {
        if (offset % SLOT !== 0 || b.length % SLOT !== 0) throw bad("data for the slot file is not slot-aligned");
        fs.writeSync(slots, b, 0, b.length, offset);
      } else if (file === "log") {
        if (d["reset"] === true) fs.ftruncateSync(log, 0);
        fs.writeSync(log, b, 0, b.length, offset);
      } else throw bad("data.file must be slots or log");
    }
    await flushing; // a failed background flush fails the migration before PREPARED
    // Integrity of the whole transfer (PROTOCOL.md §4).
    const slotsLength = num(final, "slotsLength");
    const logLength = num(final, "logLength");
    fs.ftruncateSync(slots, slotsLength);
    fs.ftruncateSync(log, logLength);
    const logBytes = fs.readFileSync(logPath);
    if (!fdSha256(slots).equals(Buffer.from(bytes(final, "slotsSha256"))) || !sha(logBytes).equals(Buffer.from(bytes(final, "logSha256")))) {
      throw new MigrationError("MIGRATION_TRANSFER_CORRUPT", `the transferred files of ${name} do not match the source's digests; the migration was aborted and nothing changed`);
    }
    const key = Buffer.from(bytes(final, "key"));
    const dbId = Buffer.from(bytes(final, "dbId"));
    const c = num(final, "counter");
    const sourceCounterId = str(final, "sourceCounterId");
    const meta = (typeof final["meta"] === "object" && final["meta"] !== null ? final["meta"] : {}) as Record<string, unknown>;
    if (key.length !== 32 || dbId.length !== 16) throw bad("final.key or final.dbId has the wrong length");
    crashPoint("destination:after-final", ch);
    // PREPARE (PROTOCOL.md §5): fence counter, journal, header re-sealed here, fsync, PREPARED.
    const counterId = createCounterAt(o.platform, c + 2);
    Object.assign(j, { state: "PREPARING", counterId, c, sourceCounterId, meta });
    writeJournal(o.dataDir, j);
    crashPoint("destination:after-preparing-journal", ch);
    const rehomed = rehomeLog(sqliteTrust(o.platform), logBytes, logPath, key, dbId, name, counterId);
    key.fill(0);
    fs.ftruncateSync(log, 0);
    fs.writeSync(log, rehomed, 0, rehomed.length, 0);
    fs.fsyncSync(log);
    fs.fsyncSync(slots);
    syncDirectory(stage);
    j.state = "PREPARED";
    writeJournal(o.dataDir, j);
    prepared = true;
    crashPoint("destination:after-prepared-journal", ch);
    await send(ch, { type: "prepared", mid });
    crashPoint("destination:after-prepared-sent", ch);
    let outcome: MigrationMessage;
    try {
      outcome = await expect(ch, mid, ["commit"], timeout);
    } catch (e) {
      if (e instanceof MigrationError && e.code === "MIGRATION_PEER_LOST") return { mid, name, meta, state: "in-doubt" };
      throw e;
    }
    if (outcome.type === "abort") {
      discard(o.dataDir, j);
      throw new MigrationError("MIGRATION_ABORTED", `the source aborted the migration of ${name} after PREPARED: ${String(outcome["message"] ?? "")}; nothing changed here`);
    }
    install(o.platform, o.dataDir, j, ch);
    await send(ch, { type: "done", mid }).catch(() => undefined);
    return { mid, name, meta, state: "done" };
  } catch (e) {
    await settled();
    if (!prepared) {
      await ch.send({ type: "abort", mid, code: (e as MigrationError).code ?? "MIGRATION_ABORTED", message: (e as Error).message }).catch(() => undefined);
      closeQuietly(slots, log);
      discard(o.dataDir, j);
    }
    throw e;
  } finally {
    await settled();
    closeQuietly(slots, log);
    ch.close();
  }
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
}

function closeQuietly(...fds: number[]): void {
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }
}

/** Drops a migration that will not commit here: staging removed, journal ABORTED. */
export function discard(dataDir: string, j: DestinationJournal): void {
  fs.rmSync(stagingDir(dataDir, j.mid), { recursive: true, force: true });
  syncDirectory(migrateDir(dataDir));
  writeJournal(dataDir, { ...j, state: "ABORTED" });
}

/**
 * The source committed: journal COMMITTED, lift the fence, rename the files into the data folder
 * (slot file first, log last), remove staging, journal DONE. Idempotent: recovery runs it again.
 */
export function install(platform: Platform, dataDir: string, j: DestinationJournal, ch?: MigrationChannel): void {
  if (j.state !== "COMMITTED") {
    j.state = "COMMITTED";
    writeJournal(dataDir, j);
  }
  crashPoint("destination:after-committed-journal", ch);
  const stage = stagingDir(dataDir, j.mid);
  const staged = path.join(stage, j.name);
  const file = path.join(dataDir, j.name);
  if (fs.existsSync(`${staged}.log`)) {
    if (fs.existsSync(`${file}.log`)) {
      throw new MigrationError("MIGRATION_NAME_TAKEN", `${file}.log appeared while the migration ${j.mid} was installing; move it away and run recovery again`);
    }
    if (fs.existsSync(staged)) {
      liftFence(platform, staged, j.counterId!, j.c!);
      fs.renameSync(staged, file);
    } // else: a crash after the slot file moved (the fence was lifted before it)
    fs.renameSync(`${staged}.log`, `${file}.log`);
    syncDirectory(dataDir);
  }
  fs.rmSync(stage, { recursive: true, force: true });
  // A database that comes back to a folder it once left: the old tombstones (source journals
  // MOVED) no longer say where it lives, and must not stop it from migrating again.
  for (const s of listJournals(dataDir, "source")) {
    if (s.name === j.name && s.state === "MOVED") fs.rmSync(journalPath(dataDir, s.mid, "source"), { force: true });
  }
  syncDirectory(migrateDir(dataDir));
  j.state = "DONE";
  writeJournal(dataDir, j);
  crashPoint("destination:after-install", ch);
}

/**
 * Opens the fenced store writable through a trust that reports `c` for its counter while the real
 * counter reads exactly c + 2: the store's open epoch (seq c + 2) then matches the counter.
 */
function liftFence(platform: Platform, staged: string, counterId: string, c: number): void {
  const real = sqliteTrust(platform);
  const fenced: StoreTrust = {
    ...real,
    readCounter: (id) => {
      const v = real.readCounter(id);
      return id === counterId && v === c + 2 ? c : v;
    },
  };
  PageStore.open(new NodeFileLayer(), staged, fenced).close();
}
