/**
 * TRUSTED. Sealing and opening an image's manifest under the lineage key (IMAGES.md "Manifest AAD"),
 * and what a platform refusal to unseal the lineage key means for an image.
 */
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from "node:crypto";
import { SnapshotError } from "../../errors.js";
import { encodeHeader, manifestAad, NONCE, packManifest, TAG, tampered, unpackManifest, type Header, type Manifest } from "./image-format.js";

/** The clear header and the sealed manifest (IMAGES.md "File layout"); the digest covers both. */
export function sealManifest(lineage: { id: Buffer; key: KeyObject; sealedKey: Buffer }, m: Manifest, imageId: Buffer): { clear: Buffer; sealed: Buffer } {
  const plain = packManifest(m);
  const nonce = randomBytes(NONCE);
  const clear = encodeHeader({ mode: m.mode, lineage: lineage.id, seq: m.seq, imageId, nonce, sealedKey: lineage.sealedKey, manifestLength: plain.length + TAG });
  const c = createCipheriv("aes-256-gcm", lineage.key, nonce);
  c.setAAD(manifestAad(clear));
  const ct = c.update(plain);
  c.final();
  return { clear, sealed: Buffer.concat([ct, c.getAuthTag()]) };
}

export function openManifest(key: KeyObject, h: Header, clear: Buffer, sealed: Buffer, file: string): Manifest {
  const d = createDecipheriv("aes-256-gcm", key, h.nonce);
  d.setAAD(manifestAad(clear));
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  let plain: Buffer;
  try {
    plain = d.update(sealed.subarray(0, sealed.length - TAG));
    d.final();
  } catch {
    throw tampered(file, "its manifest failed authentication");
  }
  return unpackManifest(plain, h, file);
}

/** Seal errors mean: not this platform, not this enclave, or a changed blob (IMAGES.md "Checks" 2). */
export function unsealFailure(e: unknown, file: string): unknown {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("SEAL_")) return e;
  if (code === "SEAL_OTHER_PLATFORM") {
    return new SnapshotError("IMAGE_WRONG_PLATFORM", `${file}: the image was sealed on another platform (or its sealed key was changed); open it on the platform that wrote it, or move it with a migration`, { cause: e });
  }
  if (["SEAL_WRONG_ENCLAVE", "SEAL_WRONG_SIGNER", "SEAL_WRONG_PRODUCT", "SEAL_DEBUG_MISMATCH", "SEAL_ENCLAVE_TOO_OLD"].includes(code)) {
    return new SnapshotError("IMAGE_WRONG_ENCLAVE", `${file}: the image's key is sealed to another enclave build (${code}); restore it into the enclave it was taken of`, { cause: e });
  }
  return tampered(file, `its sealed key or lineage id was changed (${code})`);
}

