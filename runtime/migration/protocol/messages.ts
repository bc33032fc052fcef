/**
 * The protocol's messages (PROTOCOL.md §2, version 1) and the checks every received one passes.
 * Types are strings fixed here; a field of the wrong type is MIGRATION_BAD_MESSAGE.
 */
import type { MigrationChannel, MigrationMessage } from "../channel-api.js";
import { MigrationError } from "./errors.js";

export const PROTOCOL_VERSION = 1;
/** Largest `data` chunk: 254 slots (4,124 bytes each), just under 1 MiB. */
export const CHUNK_BYTES = 254 * 4124;

export type MessageType =
  | "offer" | "admit" | "refuse" | "data" | "round" | "final" | "prepared" | "commit" | "abort" | "done" | "status" | "outcome";

export function bad(what: string): MigrationError {
  return new MigrationError("MIGRATION_BAD_MESSAGE", `the peer sent a malformed or unexpected migration message (${what}); the migration was aborted before its commit point and nothing changed`);
}

export function str(m: MigrationMessage, k: string): string {
  const v = m[k];
  if (typeof v !== "string" || v.length === 0 || v.length > 4096) throw bad(`${m.type}.${k} must be a string`);
  return v;
}

export function num(m: MigrationMessage, k: string): number {
  const v = m[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw bad(`${m.type}.${k} must be a non-negative integer`);
  return v;
}

export function bytes(m: MigrationMessage, k: string): Uint8Array {
  const v = m[k];
  if (!(v instanceof Uint8Array)) throw bad(`${m.type}.${k} must be bytes`);
  return v;
}

/** Receives the next message of migration `mid`, one of `types` (an `abort` always passes). */
export async function expect(ch: MigrationChannel, mid: string, types: readonly MessageType[], timeoutMs: number): Promise<MigrationMessage> {
  let m: MigrationMessage;
  try {
    m = await ch.receive(timeoutMs);
  } catch (e) {
    throw lost(e);
  }
  if (typeof m !== "object" || m === null || typeof m.type !== "string") throw bad("no type");
  if (m.type === "abort" && m["mid"] === mid) return m;
  if (!(types as readonly string[]).includes(m.type)) throw bad(`got ${m.type}, expected ${types.join(" or ")}`);
  if (m["mid"] !== mid) throw bad(`${m.type} for another migration`);
  return m;
}

export function lost(e: unknown): MigrationError {
  if (e instanceof MigrationError) return e;
  return new MigrationError("MIGRATION_PEER_LOST", `the migration peer stopped answering or the connection closed (${(e as Error).message}); the side that had not committed gives up, recovery settles the rest`, { cause: e });
}

/** Sends, turning a closed channel into MIGRATION_PEER_LOST. */
export async function send(ch: MigrationChannel, m: MigrationMessage): Promise<void> {
  try {
    await ch.send(m);
  } catch (e) {
    throw lost(e);
  }
}

/** The peer's `abort` message as the error it stands for. */
export function peerAborted(m: MigrationMessage): MigrationError {
  const code = typeof m["code"] === "string" ? m["code"] : "unknown";
  const msg = typeof m["message"] === "string" ? m["message"] : "";
  return new MigrationError("MIGRATION_ABORTED", `the peer aborted the migration (${code}: ${msg}); nothing changed on the source`, { peerCode: code });
}
