/**
 * TRUSTED. Recovery of both sides after a restart (PROTOCOL.md §6 "Crash points and recovery") and
 * the source's answer to a destination's `status` (the outcome rule, §5).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Platform } from "../../platform/platform.js";
import type { MigrationChannel, MigrationMessage } from "../channel-api.js";
import { active } from "./active.js";
import { acceptMigration, discard, install, type AcceptOptions, type Accepted } from "./destination.js";
import { MigrationError } from "./errors.js";
import { listJournals, writeJournal, type DestinationJournal, type SourceJournal } from "./journal.js";
import { expect, send, str } from "./messages.js";
import { finishCommit } from "./source.js";
import { sqliteTrust } from "./store-trust.js";

export type Outcome = "commit" | "abort" | "pending";

export interface RecoveryOptions {
  platform: Platform;
  dataDir: string;
  /** Opens a channel to a source (its `sourceAddress`) to ask for an outcome; without it, PREPARED stays in doubt. */
  connect?: (address: string) => Promise<MigrationChannel>;
  timeoutMs?: number;
}

export interface Recovered {
  mid: string;
  role: "source" | "destination";
  name: string;
  /** What recovery did. */
  action: "aborted" | "committed" | "installed" | "discarded" | "in-doubt" | "none";
  /** For "installed": the host's metadata the source sent with `final` (its journal kept it). */
  meta?: Record<string, unknown>;
}

/** Settles every unfinished migration of this data folder; run it before serving (at open/start). */
export async function recoverMigrations(o: RecoveryOptions): Promise<Recovered[]> {
  const out: Recovered[] = [];
  for (const j of listJournals(o.dataDir, "source") as SourceJournal[]) {
    if (active.mids.has(j.mid)) continue;
    if (j.state === "FROZEN") {
      // Before the commit point (COMMITTING was never written): presumed abort, the source serves.
      if (counterGone(o.platform, j.counterId)) {
        finishCommit(o.platform, o.dataDir, j);
        out.push({ mid: j.mid, role: "source", name: j.name, action: "committed" });
      } else {
        writeJournal(o.dataDir, { ...j, state: "ABORTED" });
        out.push({ mid: j.mid, role: "source", name: j.name, action: "aborted" });
      }
    } else if (j.state === "COMMITTING") {
      finishCommit(o.platform, o.dataDir, j);
      out.push({ mid: j.mid, role: "source", name: j.name, action: "committed" });
    }
  }
  for (const j of listJournals(o.dataDir, "destination") as DestinationJournal[]) {
    if (active.mids.has(j.mid)) continue;
    if (j.state === "RECEIVING" || j.state === "PREPARING") {
      discard(o.dataDir, j);
      out.push({ mid: j.mid, role: "destination", name: j.name, action: "discarded" });
    } else if (j.state === "COMMITTED") {
      install(o.platform, o.dataDir, j);
      out.push({ mid: j.mid, role: "destination", name: j.name, action: "installed", meta: j.meta ?? {} });
    } else if (j.state === "PREPARED") {
      const outcome = o.connect ? await askOutcome(o, j).catch(() => "pending" as const) : "pending";
      if (outcome === "commit") {
        install(o.platform, o.dataDir, j);
        out.push({ mid: j.mid, role: "destination", name: j.name, action: "installed", meta: j.meta ?? {} });
      } else if (outcome === "abort") {
        discard(o.dataDir, j);
        out.push({ mid: j.mid, role: "destination", name: j.name, action: "discarded" });
      } else out.push({ mid: j.mid, role: "destination", name: j.name, action: "in-doubt" });
    }
  }
  return out;
}

async function askOutcome(o: RecoveryOptions, j: DestinationJournal): Promise<Outcome> {
  const ch = await o.connect!(j.sourceAddress);
  try {
    await send(ch, { type: "status", mid: j.mid, sourceCounterId: j.sourceCounterId ?? "" });
    const m = await expect(ch, j.mid, ["outcome"], o.timeoutMs ?? 10_000);
    const v = m["outcome"];
    if (v !== "commit" && v !== "abort" && v !== "pending") throw new MigrationError("MIGRATION_BAD_MESSAGE", "outcome must be commit, abort or pending");
    return v;
  } finally {
    ch.close();
  }
}

function counterGone(platform: Platform, id: string): boolean {
  try {
    sqliteTrust(platform).readCounter(id);
    return false;
  } catch (e) {
    return (e as { code?: string }).code === "COUNTER_NOT_FOUND";
  }
}

/** The outcome rule (PROTOCOL.md §5): what became of migration `mid` of this source. */
export function outcomeOf(platform: Platform, dataDir: string, mid: string, sourceCounterId: string): Outcome {
  const running = active.mids.get(mid);
  const j = listJournals(dataDir, "source").find((x) => x.mid === mid) as SourceJournal | undefined;
  if (running && !running.committed) {
    return "pending"; // it decides itself; ask again
  }
  if (j?.state === "MOVED") return "commit";
  if (j?.state === "COMMITTING") {
    finishCommit(platform, dataDir, j);
    return "commit";
  }
  if (running?.committed) return "commit";
  if (/^[0-9a-f]{32}$/.test(sourceCounterId) && counterGone(platform, sourceCounterId)) {
    if (j) finishCommit(platform, dataDir, { ...j, state: "COMMITTING" });
    return "commit";
  }
  if (j && j.state !== "ABORTED") writeJournal(dataDir, { ...j, state: "ABORTED" });
  return "abort";
}

export interface PeerOptions extends Omit<AcceptOptions, "channel" | "first"> {}

/**
 * Serves one incoming migration connection: an `offer` runs acceptMigration(), a `status` gets
 * the outcome rule's answer. Returns what was accepted, if anything.
 */
export async function serveMigrationPeer(channel: MigrationChannel, o: PeerOptions): Promise<Accepted | undefined> {
  let first: MigrationMessage;
  try {
    first = await channel.receive(o.timeoutMs ?? 30_000);
  } catch {
    channel.close();
    return undefined;
  }
  if (first.type === "status") {
    try {
      const mid = str(first, "mid");
      const sc = typeof first["sourceCounterId"] === "string" ? first["sourceCounterId"] : "";
      await channel.send({ type: "outcome", mid, outcome: outcomeOf(o.platform, o.dataDir, mid, sc) });
    } finally {
      channel.close();
    }
    return undefined;
  }
  return acceptMigration({ ...o, channel, first });
}

/** True when `dataDir` holds a staging folder or journal that recovery has not settled. */
export function pendingMigrations(dataDir: string): boolean {
  const dir = path.join(dataDir, ".selkie-migrate");
  return fs.existsSync(dir) && [...listJournals(dataDir, "source"), ...listJournals(dataDir, "destination")].some((j) => j.state !== "MOVED" && j.state !== "ABORTED" && j.state !== "DONE");
}
