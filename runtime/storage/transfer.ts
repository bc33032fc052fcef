/**
 * TRUSTED. Moving a sealed store to another platform (runtime/migration/protocol/PROTOCOL.md §5):
 * the slot file and the log's records travel as the ciphertext they are; only the log's header,
 * which holds the data key sealed to the source platform and the source's counter id, is rewritten
 * by the destination for its own platform and counter.
 *
 * Invariants:
 *  1. The data key leaves this module only to the caller that sends it over the attested channel
 *     (exportStoreKey) and is stored only sealed (rehomeLog).
 *  2. A rehomed log keeps every record byte for byte: records bind dbId, seqs and the previous tag,
 *     nothing platform-specific, so the chain verifies on the destination as it did on the source.
 */
import { StorageError } from "./errors.js";
import { parseLogHeader, sealLogHeader, unsealLogKey, type StoreTrust } from "./page-store.js";

export interface StoreKeyExport {
  readonly key: Buffer;
  readonly dbId: Buffer;
  readonly counterId: string;
  readonly name: string;
  /** The counter's value (the counted seq). */
  readonly counter: number;
}

/** Unseals the data key of the store whose log bytes are `log` and reads its counter. */
export function exportStoreKey(trust: StoreTrust, log: Buffer, file: string): StoreKeyExport {
  const h = parseLogHeader(log, file);
  const key = unsealLogKey(trust, log, file);
  return { key, dbId: h.dbId, counterId: h.counterId, name: h.name, counter: trust.readCounter(h.counterId) };
}

/** The counter id a log's header names (a clear field; untrusted until the store opens). */
export function logCounterId(log: Buffer, file: string): string {
  return parseLogHeader(log, file).counterId;
}

/**
 * The log `log` (another platform's) with its header replaced by one for `counterId`, its data key
 * `key` sealed through `trust`. Refuses a header whose dbId or name is not the expected one.
 */
export function rehomeLog(trust: StoreTrust, log: Buffer, file: string, key: Buffer, dbId: Buffer, name: string, counterId: string): Buffer {
  const h = parseLogHeader(log, file);
  if (!h.dbId.equals(dbId) || h.name !== name) throw new StorageError("STORAGE_TAMPERED", `${file}: the transferred log is of another database (dbId or name differs); the migration must be run again`, file);
  return Buffer.concat([sealLogHeader(trust, key, dbId, counterId, name), log.subarray(h.bytes)]);
}
