/**
 * Quotes (FORMATS.md §6.3): a report body plus the platform's certificate chain, signed with the
 * platform's Ed25519 attestation key; and the platform's built-in quoting identity (§6.4).
 *
 * Invariants: the platform signs only a local report that targets its quoting identity and whose MAC
 * verifies (Platform.quote); `parseQuote` checks shape only and trusts nothing (verify.ts decides).
 */
import type { KeyObject } from "node:crypto";
import { CERT_LEN, parseCertificateView, type Certificate } from "./cert.js";
import { ed25519Sign } from "./ed25519.js";
import { QuoteError } from "./errors.js";
import { tag, taggedHash, type EnclaveIdentity, type TargetInfo } from "./identity.js";
import { RUNTIME_VERSION } from "./keys.js";
import { parseReportBodyView, REPORT_BODY_LEN, type ReportBody } from "./report.js";

export const QUOTE_MAGIC = Buffer.from("SKQT", "latin1");
export const QUOTE_VERSION = 1;
export const QUOTE_SIG_LEN = 64;
export const QUOTE_MAX_CERTS = 4;
const BODY_OFF = 8;
const COUNT_OFF = BODY_OFF + REPORT_BODY_LEN; // 184
const CERTS_OFF = COUNT_OFF + 4; // 188
export const QUOTE_TAG = tag("quote");

/** The platform's built-in quoting identity: what `selkie quote` attests (FORMATS.md §6.4). */
export const QUOTING_IDENTITY: EnclaveIdentity = Object.freeze({
  mrenclave: taggedHash("quoting-enclave"),
  mrsigner: taggedHash("platform-signer"),
  isvProdId: 0,
  isvSvn: RUNTIME_VERSION,
  debug: false,
});

export const QUOTING_TARGET: TargetInfo = Object.freeze({ mrenclave: QUOTING_IDENTITY.mrenclave, debug: false });

export function quoteLength(certCount: number): number {
  return CERTS_OFF + certCount * CERT_LEN + QUOTE_SIG_LEN;
}

export function buildQuote(body: Buffer, certs: readonly Certificate[], attestationKey: KeyObject): Buffer {
  if (body.length !== REPORT_BODY_LEN) throw new Error("internal: report body length");
  if (certs.length < 1 || certs.length > QUOTE_MAX_CERTS) throw new Error("internal: certificate count");
  const q = Buffer.alloc(quoteLength(certs.length));
  QUOTE_MAGIC.copy(q, 0);
  q[4] = QUOTE_VERSION;
  body.copy(q, BODY_OFF);
  q[COUNT_OFF] = certs.length;
  certs.forEach((c, i) => c.bytes.copy(q, CERTS_OFF + i * CERT_LEN));
  const signedEnd = q.length - QUOTE_SIG_LEN;
  ed25519Sign(attestationKey, Buffer.concat([QUOTE_TAG, q.subarray(0, signedEnd)])).copy(q, signedEnd);
  return q;
}

export interface ParsedQuote {
  readonly body: ReportBody;
  readonly certs: readonly Certificate[];
  /** TAG(quote) || every byte before the signature: what the signature covers. */
  readonly signedMessage: Buffer;
  readonly signature: Buffer;
}

function malformed(msg: string): never {
  throw new QuoteError("QUOTE_MALFORMED", msg);
}

/** Shape checks only; throws QUOTE_MALFORMED or QUOTE_VERSION_UNSUPPORTED. Copies its input once; the result views the copy. */
export function parseQuote(input: Uint8Array): ParsedQuote {
  if (!(input instanceof Uint8Array)) malformed("quote must be bytes");
  if (input.length < 5) malformed(`quote is truncated (${input.length} bytes)`);
  const q = Buffer.from(input);
  if (!q.subarray(0, 4).equals(QUOTE_MAGIC)) malformed("not a Selkie quote (bad magic)");
  if (q[4] !== QUOTE_VERSION) throw new QuoteError("QUOTE_VERSION_UNSUPPORTED", `quote format version ${q[4]} is not supported (this verifier reads ${QUOTE_VERSION})`);
  if (q.length < CERTS_OFF) malformed(`quote is truncated (${q.length} bytes)`);
  if (q[5] !== 0 || q[6] !== 0 || q[7] !== 0 || q[COUNT_OFF + 1] !== 0 || q[COUNT_OFF + 2] !== 0 || q[COUNT_OFF + 3] !== 0) malformed("quote has non-zero reserved bytes");
  const n = q[COUNT_OFF] ?? 0;
  if (n < 1 || n > QUOTE_MAX_CERTS) malformed(`quote has ${n} certificates (1..${QUOTE_MAX_CERTS} allowed)`);
  if (q.length !== quoteLength(n)) malformed(`quote is ${q.length} bytes, expected ${quoteLength(n)} for ${n} certificate(s)`);
  const rb = parseReportBodyView(q.subarray(BODY_OFF, COUNT_OFF));
  if (!rb.ok) throw new QuoteError(rb.reason === "version" ? "QUOTE_VERSION_UNSUPPORTED" : "QUOTE_MALFORMED", `quoted report: ${rb.message}`);
  const certs: Certificate[] = [];
  for (let i = 0; i < n; i++) {
    const p = parseCertificateView(q.subarray(CERTS_OFF + i * CERT_LEN, CERTS_OFF + (i + 1) * CERT_LEN));
    if (!p.ok) throw new QuoteError(p.reason === "version" ? "QUOTE_VERSION_UNSUPPORTED" : "QUOTE_MALFORMED", `certificate ${i}: ${p.message}`);
    certs.push(p.cert);
  }
  const signedEnd = q.length - QUOTE_SIG_LEN;
  return { body: rb.body, certs, signedMessage: Buffer.concat([QUOTE_TAG, q.subarray(0, signedEnd)]), signature: q.subarray(signedEnd) };
}
