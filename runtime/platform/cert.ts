/**
 * Certificates (FORMATS.md §3): fixed 152-byte, versioned, Ed25519-signed by the issuer.
 *
 * Invariants: `parseCertificate` checks only shape (magic, version, kind, reserved bits) and never
 * trusts the content; `verifyCertificateSignature` is the only thing that establishes an issuer
 * signed it. Verified (certificate bytes, issuer key) pairs are cached: verification is a pure
 * function of them, and the quote verifier's throughput depends on it.
 */
import type { KeyObject } from "node:crypto";
import { ed25519Sign, ed25519Verify } from "./ed25519.js";
import { tag, taggedHash } from "./identity.js";

export const CERT_MAGIC = Buffer.from("SKCT", "latin1");
export const CERT_VERSION = 1;
export const CERT_LEN = 152;
const SIGNED_LEN = 88;

export const CertKind = Object.freeze({ CA: 1, PLATFORM: 2 } as const);
export type CertKind = (typeof CertKind)[keyof typeof CertKind];

const FLAG_DEV = 1;
const CERT_TAG = tag("cert");

export interface CertificateFields {
  readonly kind: CertKind;
  readonly dev: boolean;
  readonly subjectId: Buffer; // 16
  readonly subjectKey: Buffer; // 32, Ed25519 raw
  readonly issuerId: Buffer; // 16
  readonly notBefore: number; // ms since epoch
  readonly notAfter: number;
}

export interface Certificate extends CertificateFields {
  readonly signature: Buffer;
  readonly bytes: Buffer; // the full 152-byte encoding
}

export type CertParseResult =
  | { ok: true; cert: Certificate }
  | { ok: false; reason: "malformed" | "version"; message: string };

/** CA id = first 16 bytes of SHA-256(TAG(ca-id) || public key). */
export function caIdFor(publicKey: Uint8Array): Buffer {
  return taggedHash("ca-id", publicKey).subarray(0, 16);
}

function checkTime(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${what} must be a non-negative integer (ms)`);
}

export function signCertificate(fields: CertificateFields, issuerKey: KeyObject): Certificate {
  if (fields.subjectId.length !== 16 || fields.issuerId.length !== 16 || fields.subjectKey.length !== 32) {
    throw new TypeError("certificate ids must be 16 bytes and the subject key 32 bytes");
  }
  checkTime(fields.notBefore, "notBefore");
  checkTime(fields.notAfter, "notAfter");
  if (fields.notAfter <= fields.notBefore) throw new TypeError("notAfter must be after notBefore");
  const b = Buffer.alloc(CERT_LEN);
  CERT_MAGIC.copy(b, 0);
  b[4] = CERT_VERSION;
  b[5] = fields.kind;
  b[6] = fields.dev ? FLAG_DEV : 0;
  fields.subjectId.copy(b, 8);
  fields.subjectKey.copy(b, 24);
  fields.issuerId.copy(b, 56);
  b.writeBigUInt64BE(BigInt(fields.notBefore), 72);
  b.writeBigUInt64BE(BigInt(fields.notAfter), 80);
  const sig = ed25519Sign(issuerKey, Buffer.concat([CERT_TAG, b.subarray(0, SIGNED_LEN)]));
  sig.copy(b, SIGNED_LEN);
  const parsed = parseCertificate(b);
  if (!parsed.ok) throw new Error(`internal: freshly signed certificate does not parse: ${parsed.message}`);
  return parsed.cert;
}

export function parseCertificate(input: Uint8Array): CertParseResult {
  return parseCertificateView(Buffer.from(input)); // own copy: the caller's buffer may change
}

/** As parseCertificate, but the result views `b` (for callers that already own a private copy). */
export function parseCertificateView(b: Buffer): CertParseResult {
  if (b.length < 5) return { ok: false, reason: "malformed", message: `certificate is ${b.length} bytes` };
  if (!b.subarray(0, 4).equals(CERT_MAGIC)) return { ok: false, reason: "malformed", message: "not a Selkie certificate (bad magic)" };
  if (b[4] !== CERT_VERSION) return { ok: false, reason: "version", message: `certificate format version ${b[4]} is not supported (this runtime reads ${CERT_VERSION})` };
  if (b.length !== CERT_LEN) return { ok: false, reason: "malformed", message: `certificate is ${b.length} bytes, expected ${CERT_LEN}` };
  const kind = b[5];
  if (kind !== CertKind.CA && kind !== CertKind.PLATFORM) return { ok: false, reason: "malformed", message: `unknown certificate kind ${kind}` };
  const flags = b[6] ?? 0;
  if ((flags & ~FLAG_DEV) !== 0 || b[7] !== 0) return { ok: false, reason: "malformed", message: "certificate has unknown flags or non-zero reserved bytes" };
  const nb = b.readBigUInt64BE(72);
  const na = b.readBigUInt64BE(80);
  if (nb > BigInt(Number.MAX_SAFE_INTEGER) || na > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { ok: false, reason: "malformed", message: "certificate validity out of range" };
  }
  return {
    ok: true,
    cert: Object.freeze({
      kind,
      dev: (flags & FLAG_DEV) !== 0,
      subjectId: b.subarray(8, 24),
      subjectKey: b.subarray(24, 56),
      issuerId: b.subarray(56, 72),
      notBefore: Number(nb),
      notAfter: Number(na),
      signature: b.subarray(SIGNED_LEN, CERT_LEN),
      bytes: b,
    }),
  };
}

const verifiedCache = new Set<string>();
const VERIFIED_CACHE_MAX = 4096;

/** True when `issuerPublicKey` signed this certificate. */
export function verifyCertificateSignature(cert: Certificate, issuerPublicKey: Uint8Array): boolean {
  const key = cert.bytes.toString("latin1") + Buffer.from(issuerPublicKey).toString("latin1");
  if (verifiedCache.has(key)) return true;
  const ok = ed25519Verify(issuerPublicKey, Buffer.concat([CERT_TAG, cert.bytes.subarray(0, SIGNED_LEN)]), cert.signature);
  if (ok) {
    if (verifiedCache.size >= VERIFIED_CACHE_MAX) verifiedCache.clear();
    verifiedCache.add(key);
  }
  return ok;
}

export function describeCertificate(cert: Certificate): Record<string, unknown> {
  return {
    kind: cert.kind === CertKind.CA ? "ca" : "platform",
    dev: cert.dev,
    subjectId: cert.subjectId.toString("hex"),
    subjectKey: cert.subjectKey.toString("hex"),
    issuerId: cert.issuerId.toString("hex"),
    notBefore: new Date(cert.notBefore).toISOString(),
    notAfter: new Date(cert.notAfter).toISOString(),
  };
}
