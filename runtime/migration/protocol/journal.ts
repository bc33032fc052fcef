/**
 * UNTRUSTED storage of the migration journals (PROTOCOL.md §7, format version 1): one JSON object
 * per migration and role in DATA/.selkie-migrate/, replaced atomically (tmp, fsync, rename, fsync
 * folder). Journals hold no key; the protocol's safety does not rest on them (§7).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { syncDirectory } from "../../host/files.js";
import { MigrationError } from "./errors.js";

export const JOURNAL_FORMAT = 1;
export const MIGRATE_DIR = ".selkie-migrate";

export type SourceState = "FROZEN" | "COMMITTING" | "MOVED" | "ABORTED";
export type DestinationState = "RECEIVING" | "PREPARING" | "PREPARED" | "COMMITTED" | "DONE" | "ABORTED";

export interface SourceJournal {
  format: 1;
  role: "source";
  mid: string;
  state: SourceState;
  name: string;
  counterId: string;
  to: string;
}

export interface DestinationJournal {
  format: 1;
  role: "destination";
  mid: string;
  state: DestinationState;
  name: string;
  counterId?: string;
  c?: number;
  sourceAddress: string;
  sourceCounterId?: string;
  /** The host's metadata from `final` (e.g. token hashes), kept so a recovery that installs has it. */
  meta?: Record<string, unknown>;
}

export type Journal = SourceJournal | DestinationJournal;

export function migrateDir(dataDir: string): string {
  return path.join(dataDir, MIGRATE_DIR);
}

export function journalPath(dataDir: string, mid: string, role: "source" | "destination"): string {
  return path.join(migrateDir(dataDir), `${mid}.${role}.json`);
}

export function stagingDir(dataDir: string, mid: string): string {
  return path.join(migrateDir(dataDir), mid);
}

/** Writes the journal durably (it is on disk, whole, when this returns). */
export function writeJournal(dataDir: string, j: Journal): void {
  const dir = migrateDir(dataDir);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    syncDirectory(dataDir);
  }
  const file = journalPath(dataDir, j.mid, j.role);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(j));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDirectory(dir);
}

/** Reads one journal; undefined when absent. */
export function readJournal(file: string): Journal | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw corrupt(file, "it is not JSON", e);
  }
  const o = j as Partial<Journal> | null;
  if (o === null || typeof o !== "object" || o.format !== JOURNAL_FORMAT) throw corrupt(file, `its format is not ${JOURNAL_FORMAT}`);
  if ((o.role !== "source" && o.role !== "destination") || typeof o.mid !== "string" || typeof o.state !== "string" || typeof o.name !== "string") {
    throw corrupt(file, "a field is missing");
  }
  return o as Journal;
}

/** Every journal of `role` in the data folder. */
export function listJournals(dataDir: string, role: "source" | "destination"): Journal[] {
  const dir = migrateDir(dataDir);
  if (!fs.existsSync(dir)) return [];
  const out: Journal[] = [];
  for (const f of fs.readdirSync(dir).sort()) {
    if (!f.endsWith(`.${role}.json`)) continue;
    const j = readJournal(path.join(dir, f));
    if (j && j.role === role) out.push(j);
  }
  return out;
}

function corrupt(file: string, what: string, cause?: unknown): MigrationError {
  return new MigrationError(
    "MIGRATION_JOURNAL_CORRUPT",
    `${file}: the migration journal is unreadable (${what}); recovery stops for this migration. Restore the file, or move it away once you know which side serves the database`,
    cause === undefined ? undefined : { cause },
  );
}
