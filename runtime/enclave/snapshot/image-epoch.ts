/**
 * TRUSTED. The epoch record of a durable lineage (IMAGES.md "Epoch record"): the object that a burned
 * counter value stands for. A burn advances the counter past a value that a crashed or failed write may
 * have used for an image, so that no image can ever be accepted under it; the record, sealed under the
 * lineage key and counted at that value, says which image is still the newest.
 *
 * Invariants:
 *  1. A record is authentic only under its lineage's key, with its lineage id and value in the AAD.
 *  2. Every field read from the file is checked (size, magic, version, reserved bytes) before use; a bad
 *     record is IMAGE_TAMPERED (another version IMAGE_VERSION_UNSUPPORTED), never a RangeError.
 */
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from "node:crypto";
import { SnapshotError } from "../../errors.js";
import { FORMAT_VERSION, ID_BYTES, MAX_KEY_USES, MAX_SEQ, NONCE, TAG, tampered } from "./image-format.js";

const MAGIC = Buffer.from("SKEP", "latin1");
const AAD = Buffer.from("selkie/image-epoch/v2", "latin1");
/** magic 4, version byte 1, reserved 3, lineageId 16, value 8, nonce 12. */
const HEADER = 44;
/** newest seq 8 (0: none), newest digest 32, keyUses 8. */
const BODY = 48;
export const EPOCH_BYTES = HEADER + BODY + TAG;

export interface Epoch {
  /** The counter value this record is counted at (a burned value: no image ever has it as its seq). */
  value: number;
  /** The newest image when the value was burned. */
  newest: { seq: number; digest: Buffer };
  /** Messages sealed under the lineage key up to and including this record (IMAGES.md "Keys"). */
  keyUses: number;
}

export function sealEpoch(lineage: { id: Buffer; key: KeyObject }, e: Epoch): Buffer {
  const out = Buffer.alloc(EPOCH_BYTES);
  MAGIC.copy(out, 0);
  out[4] = FORMAT_VERSION;
  lineage.id.copy(out, 8);
  out.writeBigUInt64BE(BigInt(e.value), 24);
  const nonce = randomBytes(NONCE);
  nonce.copy(out, 32);
  const body = Buffer.alloc(BODY);
  body.writeBigUInt64BE(BigInt(e.newest.seq), 0);
  e.newest.digest.copy(body, 8);
  body.writeBigUInt64BE(BigInt(e.keyUses), 40);
  const c = createCipheriv("aes-256-gcm", lineage.key, nonce);
  c.setAAD(Buffer.concat([AAD, out.subarray(0, HEADER)]));
  c.update(body).copy(out, HEADER);
  c.final();
  c.getAuthTag().copy(out, HEADER + BODY);
  return out;
}

/** Checks and opens an epoch record of `lineage` (invariants 1-2). */
export function openEpoch(lineage: { id: Buffer; key: KeyObject }, b: Buffer, file: string): Epoch {
  if (b.length !== EPOCH_BYTES || !b.subarray(0, 4).equals(MAGIC)) throw tampered(file, "it is not a Selkie image epoch record");
  if (b[4] !== FORMAT_VERSION) {
    throw new SnapshotError("IMAGE_VERSION_UNSUPPORTED", `${file}: epoch record version ${b[4]} is not supported (this runtime reads version ${FORMAT_VERSION}); open the folder with a matching Selkie release`);
  }
  if (b[5] !== 0 || b[6] !== 0 || b[7] !== 0) throw tampered(file, "reserved bytes of the epoch record are not zero");
  if (!b.subarray(8, 8 + ID_BYTES).equals(lineage.id)) throw tampered(file, "the epoch record belongs to another lineage");
  const d = createDecipheriv("aes-256-gcm", lineage.key, b.subarray(32, 44));
  d.setAAD(Buffer.concat([AAD, b.subarray(0, HEADER)]));
  d.setAuthTag(b.subarray(HEADER + BODY));
  let body: Buffer;
  try {
    body = d.update(b.subarray(HEADER, HEADER + BODY));
    d.final();
  } catch {
    throw tampered(file, "the epoch record failed authentication");
  }
  const value = b.readBigUInt64BE(24);
  const seq = body.readBigUInt64BE(0);
  const uses = body.readBigUInt64BE(40);
  if (value < 1n || value > BigInt(MAX_SEQ) || seq >= value || uses > BigInt(MAX_KEY_USES)) throw tampered(file, "the epoch record's fields are out of range");
  return { value: Number(value), newest: { seq: Number(seq), digest: Buffer.from(body.subarray(8, 40)) }, keyUses: Number(uses) };
}
