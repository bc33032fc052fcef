/**
 * Local attestation (EREPORT / target-side verification) and report data (FORMATS.md §6.1, §6.2).
 *
 * Invariants:
 * - A report's MAC key is the REPORT key of its *target* enclave, derived from the platform's report
 *   root: only code holding that root (this platform) can make or check it, and the Reporter keeps
 *   the root in a #private field.
 * - A VerifiedReport can be constructed only here, after the MAC checked (types as proof).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { ReportError } from "./errors.js";
import { isU16, tag, taggedHash, type EnclaveIdentity, type TargetInfo } from "./identity.js";
import { deriveReportKey, KeyCache } from "./keys.js";

export const REPORT_MAGIC = Buffer.from("SKRP", "latin1");
export const REPORT_VERSION = 1;
export const REPORT_BODY_LEN = 176;
export const REPORT_MAC_LEN = 32;
export const REPORT_LEN = REPORT_BODY_LEN + REPORT_MAC_LEN;
export const REPORT_DATA_LEN = 64;
export const NONCE_MIN = 8;
export const NONCE_MAX = 1024;
const FLAG_DEBUG = 1;
const REPORT_TAG = tag("report");

/** The fields of a report body; `identity` is the reporting enclave's. */
export interface ReportBody {
  readonly identity: EnclaveIdentity;
  readonly cpuSvn: number;
  readonly reportData: Buffer; // 64
  readonly keyId: Buffer; // 32
}

function toBuffer(v: string | Uint8Array): Buffer {
  if (typeof v === "string") {
    if (v.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(v)) throw new TypeError("a nonce given as a string must be hex (an even number of 0-9 a-f digits, e.g. 32 random hex digits); give bytes otherwise");
    return Buffer.from(v, "hex");
  }
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Checks a verifier nonce: 8..1024 bytes, given as bytes or as a HEX string (FORMATS.md §6.1: the
 * one text encoding of a nonce, in the library, the CLI and the server's quote endpoint alike).
 */
export function checkNonce(nonce: string | Uint8Array): Buffer {
  if (typeof nonce !== "string" && !(nonce instanceof Uint8Array)) throw new TypeError("nonce must be a hex string or bytes");
  const b = toBuffer(nonce);
  if (b.length < NONCE_MIN || b.length > NONCE_MAX) throw new TypeError(`nonce must be ${NONCE_MIN}..${NONCE_MAX} bytes (use at least 16 random bytes), got ${b.length}`);
  return b;
}

/** SHA-256(TAG(nonce) || nonce): the first half of report data. */
export function nonceDigest(nonce: string | Uint8Array): Buffer {
  return taggedHash("nonce", checkNonce(nonce));
}

/**
 * Report data binding a verifier's nonce and an ephemeral X25519 public key (FORMATS.md §6.1):
 * bytes 0..32 = nonceDigest(nonce), bytes 32..64 = the raw X25519 public key (zeros when omitted).
 */
export function reportDataFor(nonce: string | Uint8Array, x25519PublicKey?: Uint8Array): Buffer {
  const out = Buffer.alloc(REPORT_DATA_LEN);
  nonceDigest(nonce).copy(out, 0);
  if (x25519PublicKey !== undefined) {
    if (!(x25519PublicKey instanceof Uint8Array) || x25519PublicKey.length !== 32) throw new TypeError("X25519 public key must be 32 raw bytes");
    Buffer.from(x25519PublicKey).copy(out, 32);
  }
  return out;
}

export function encodeReportBody(body: ReportBody): Buffer {
  const b = Buffer.alloc(REPORT_BODY_LEN);
  REPORT_MAGIC.copy(b, 0);
  b[4] = REPORT_VERSION;
  b[5] = body.identity.debug ? FLAG_DEBUG : 0;
  b.writeUInt16BE(body.cpuSvn, 8);
  b.writeUInt16BE(body.identity.isvProdId, 10);
  b.writeUInt16BE(body.identity.isvSvn, 12);
  body.identity.mrenclave.copy(b, 16);
  body.identity.mrsigner.copy(b, 48);
  body.reportData.copy(b, 80);
  body.keyId.copy(b, 144);
  return b;
}

export type BodyParseResult = { ok: true; body: ReportBody } | { ok: false; reason: "malformed" | "version"; message: string };

/** Parses exactly REPORT_BODY_LEN bytes (copies them). Shape checks only. */
export function parseReportBody(input: Uint8Array): BodyParseResult {
  return parseReportBodyView(Buffer.from(input));
}

/** As parseReportBody, but the result views `b` (for callers that already own a private copy). */
export function parseReportBodyView(b: Buffer): BodyParseResult {
  if (b.length < 5) return { ok: false, reason: "malformed", message: "report body truncated" };
  if (!b.subarray(0, 4).equals(REPORT_MAGIC)) return { ok: false, reason: "malformed", message: "not a report body (bad magic)" };
  if (b[4] !== REPORT_VERSION) return { ok: false, reason: "version", message: `report format version ${b[4]} is not supported (this runtime reads ${REPORT_VERSION})` };
  if (b.length !== REPORT_BODY_LEN) return { ok: false, reason: "malformed", message: `report body is ${b.length} bytes, expected ${REPORT_BODY_LEN}` };
  const flags = b[5] ?? 0;
  if ((flags & ~FLAG_DEBUG) !== 0 || b.readUInt16BE(6) !== 0 || b.readUInt16BE(14) !== 0) {
    return { ok: false, reason: "malformed", message: "report body has unknown flags or non-zero reserved bytes" };
  }
  const identity: EnclaveIdentity = Object.freeze({
    mrenclave: b.subarray(16, 48),
    mrsigner: b.subarray(48, 80),
    isvProdId: b.readUInt16BE(10),
    isvSvn: b.readUInt16BE(12),
    debug: (flags & FLAG_DEBUG) !== 0,
  });
  return { ok: true, body: Object.freeze({ identity, cpuSvn: b.readUInt16BE(8), reportData: b.subarray(80, 144), keyId: b.subarray(144, 176) }) };
}

const TOKEN = Symbol("VerifiedReport");

/** A local report whose MAC checked under the verifying enclave's report key. */
export class VerifiedReport implements ReportBody {
  readonly identity: EnclaveIdentity;
  readonly cpuSvn: number;
  readonly reportData: Buffer;
  readonly keyId: Buffer;
  /** Not constructible outside report.ts. */
  constructor(token: symbol, body: ReportBody) {
    if (token !== TOKEN) throw new TypeError("VerifiedReport is created only by report verification");
    this.identity = body.identity;
    this.cpuSvn = body.cpuSvn;
    this.reportData = body.reportData;
    this.keyId = body.keyId;
    Object.freeze(this);
  }
}

/** Makes and checks local reports for one platform. Holds the report root. */
export class Reporter {
  readonly #root: Buffer;
  readonly #keyId = randomBytes(32); // per platform instance, as SGX's per-boot report KEYID
  readonly #keys = new KeyCache<Buffer>(128);

  constructor(reportRoot: Buffer) {
    this.#root = reportRoot;
  }

  #key(keyId: Buffer, target: TargetInfo): Buffer {
    const k = keyId.toString("latin1") + target.mrenclave.toString("latin1") + (target.debug ? "1" : "0");
    let key = this.#keys.get(k);
    if (key === undefined) {
      key = deriveReportKey(this.#root, keyId, target);
      this.#keys.set(k, key);
    }
    return key;
  }

  /** EREPORT: a report of `identity` for `target`, carrying 64 bytes of report data. */
  report(identity: EnclaveIdentity, cpuSvn: number, target: TargetInfo, reportData: Uint8Array): Buffer {
    if (!(reportData instanceof Uint8Array) || reportData.length !== REPORT_DATA_LEN) {
      throw new ReportError("REPORT_BAD_REQUEST", `report data must be ${REPORT_DATA_LEN} bytes`);
    }
    if (target === null || typeof target !== "object" || !(target.mrenclave instanceof Uint8Array) || target.mrenclave.length !== 32 || typeof target.debug !== "boolean") {
      throw new ReportError("REPORT_BAD_REQUEST", "target info must be { mrenclave: 32 bytes, debug: boolean }");
    }
    if (!isU16(cpuSvn)) throw new ReportError("REPORT_BAD_REQUEST", "cpuSvn out of range");
    const body = encodeReportBody({ identity, cpuSvn, reportData: Buffer.from(reportData), keyId: this.#keyId });
    const mac = createHmac("sha256", this.#key(this.#keyId, { mrenclave: Buffer.from(target.mrenclave), debug: target.debug }))
      .update(REPORT_TAG)
      .update(body)
      .digest();
    return Buffer.concat([body, mac]);
  }

  /** Checks a report targeted at `self` (the verifying enclave). */
  verify(self: TargetInfo, report: Uint8Array): VerifiedReport {
    if (!(report instanceof Uint8Array)) throw new ReportError("REPORT_MALFORMED", "report must be bytes");
    const p = parseReportBody(report.subarray(0, REPORT_BODY_LEN));
    if (!p.ok) throw new ReportError(p.reason === "version" ? "REPORT_VERSION_UNSUPPORTED" : "REPORT_MALFORMED", p.message);
    if (report.length !== REPORT_LEN) throw new ReportError("REPORT_MALFORMED", `report is ${report.length} bytes, expected ${REPORT_LEN}`);
    const want = createHmac("sha256", this.#key(p.body.keyId, self)).update(REPORT_TAG).update(report.subarray(0, REPORT_BODY_LEN)).digest();
    if (!timingSafeEqual(want, report.subarray(REPORT_BODY_LEN))) {
      throw new ReportError("REPORT_BAD_MAC", "report MAC does not verify: changed, made on another platform, or targeted at another enclave");
    }
    return new VerifiedReport(TOKEN, p.body);
  }
}
