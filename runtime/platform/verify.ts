/**
 * The quote verifier library (remote attestation): checks chain, signatures, validity, dev CA,
 * nonce, measurement, version (TCB) and debug flag, in the fixed order of FORMATS.md §6.3, and names
 * the first check that failed with a QuoteError code.
 *
 * Invariant: a VerifiedQuote exists only if every check passed: its constructor needs a
 * module-private token, so code that holds one has proof that verification ran (STYLE 3).
 * Needs no platform: a verifier holds only the CA certificate (or key) it trusts.
 */
import { parseCaCertificate } from "./ca.js";
import { caIdFor, CertKind, verifyCertificateSignature, type Certificate } from "./cert.js";
import { ed25519Verify } from "./ed25519.js";
import { QuoteError } from "./errors.js";
import { fromHex, identityToJSON, type EnclaveIdentity } from "./identity.js";
import { parseQuote } from "./quote.js";
import { nonceDigest } from "./report.js";

export interface VerifyQuoteOptions {
  /** The trusted CA certificate (parsed, or its 152 bytes). One of `ca` / `caPublicKey` is required. */
  ca?: Certificate | Uint8Array;
  /** The trusted CA's raw Ed25519 public key (when its certificate is not at hand). */
  caPublicKey?: Uint8Array;
  /** The verifier's fresh nonce, as given to the quoting side: bytes, or a hex string. */
  nonce: string | Uint8Array;
  /**
   * The enclave policy: a verifier must choose one (QUOTE_NO_POLICY otherwise):
   *  - `mrenclave`: exactly that measurement;
   *  - `mrsigner` + `isvProdId` (+ `minIsvSvn`): any build of that signer's product, SGX's MRSIGNER policy;
   *  - `anyEnclave: true`: any enclave (only the platform is checked), stated explicitly.
   */
  mrenclave?: Uint8Array | string;
  /** Expected signer (bytes or 64 hex digits); needs isvProdId. */
  mrsigner?: Uint8Array | string;
  isvProdId?: number;
  /** Accept any measurement and signer: the quote then proves only which platform made it. */
  anyEnclave?: boolean;
  minIsvSvn?: number;
  /** Minimum runtime version (CPUSVN) of the quoting platform. */
  minCpuSvn?: number;
  /** Accept a debug enclave (default: refuse, QUOTE_DEBUG_ENCLAVE). */
  allowDebug?: boolean;
  /** Accept a chain from a development CA (default: refuse, QUOTE_DEV_CA). */
  allowDev?: boolean;
  /** Verification time (default now). */
  now?: number | Date;
}

const TOKEN = Symbol("VerifiedQuote");

export class VerifiedQuote {
  readonly identity: EnclaveIdentity;
  readonly cpuSvn: number;
  readonly reportData: Buffer;
  /** The enclave's ephemeral X25519 public key from report data bytes 32..64, or null if zero. */
  readonly peerPublicKey: Buffer | null;
  /** Hex platform id (the platform certificate's subject). */
  readonly platformId: string;
  /** Hex id of the trusted CA the chain ends at. */
  readonly caId: string;
  readonly dev: boolean;
  readonly certificates: readonly Certificate[];
  /** Not constructible outside verify.ts. */
  constructor(token: symbol, fields: Omit<VerifiedQuote, "toJSON">) {
    if (token !== TOKEN) throw new TypeError("VerifiedQuote is created only by verifyQuote()");
    this.identity = fields.identity;
    this.cpuSvn = fields.cpuSvn;
    this.reportData = fields.reportData;
    this.peerPublicKey = fields.peerPublicKey;
    this.platformId = fields.platformId;
    this.caId = fields.caId;
    this.dev = fields.dev;
    this.certificates = fields.certificates;
    Object.freeze(this);
  }
  toJSON(): Record<string, unknown> {
    return {
      ...identityToJSON(this.identity),
      cpuSvn: this.cpuSvn,
      platformId: this.platformId,
      caId: this.caId,
      dev: this.dev,
      peerPublicKey: this.peerPublicKey?.toString("hex") ?? null,
      certificateNotAfter: new Date(Math.min(...this.certificates.map((c) => c.notAfter))).toISOString(),
    };
  }
}

function fail(code: ConstructorParameters<typeof QuoteError>[0], message: string): never {
  throw new QuoteError(code, message);
}

function expected32(v: Uint8Array | string | undefined, what: string): Buffer | undefined {
  if (v === undefined) return undefined;
  try {
    if (typeof v === "string") return fromHex(v, 32, what);
  } catch (e) {
    fail("QUOTE_BAD_OPTIONS", (e as Error).message);
  }
  if (!(v instanceof Uint8Array) || v.length !== 32) fail("QUOTE_BAD_OPTIONS", `${what} must be 32 bytes`);
  return Buffer.from(v);
}

function optU16(v: number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) fail("QUOTE_BAD_OPTIONS", `${what} must be an integer 0..65535`);
  return v;
}

const ZERO32 = Buffer.alloc(32);

interface Anchor {
  id: Buffer;
  key: Buffer;
  dev: boolean;
  cert?: Certificate;
}

function anchorOf(opts: VerifyQuoteOptions): Anchor {
  if (opts.ca !== undefined) {
    let c = opts.ca;
    if (c instanceof Uint8Array) {
      try {
        c = parseCaCertificate(c);
      } catch (e) {
        fail("QUOTE_BAD_OPTIONS", `the trusted CA certificate is unusable: ${(e as Error).message}`);
      }
    }
    if (c === null || typeof c !== "object" || c.kind !== CertKind.CA || !(c.subjectKey instanceof Uint8Array)) {
      fail("QUOTE_BAD_OPTIONS", "ca must be a parsed CA certificate (readCaCertificate / parseCaCertificate)");
    }
    return { id: c.subjectId, key: c.subjectKey, dev: c.dev, cert: c };
  }
  if (opts.caPublicKey instanceof Uint8Array && opts.caPublicKey.length === 32) {
    const key = Buffer.from(opts.caPublicKey);
    return { id: caIdFor(key), key, dev: false };
  }
  return fail("QUOTE_BAD_OPTIONS", "a trusted CA is required: pass ca (CA certificate) or caPublicKey (32 bytes)");
}

function checkValidity(c: Certificate, now: number, what: string): void {
  if (now < c.notBefore) fail("QUOTE_CERT_NOT_YET_VALID", `${what} is not valid before ${new Date(c.notBefore).toISOString()}`);
  if (now > c.notAfter) fail("QUOTE_CERT_EXPIRED", `${what} expired at ${new Date(c.notAfter).toISOString()}`);
}

/** Verifies a quote; returns a VerifiedQuote or throws a QuoteError naming the failed check. */
export function verifyQuote(quote: Uint8Array, opts: VerifyQuoteOptions): VerifiedQuote {
  if (opts === null || typeof opts !== "object") fail("QUOTE_BAD_OPTIONS", "options are required");
  const anchor = anchorOf(opts);
  let nonceHash: Buffer;
  try {
    nonceHash = nonceDigest(opts.nonce);
  } catch (e) {
    fail("QUOTE_BAD_OPTIONS", (e as Error).message);
  }
  const wantEnclave = expected32(opts.mrenclave, "mrenclave");
  const wantSigner = expected32(opts.mrsigner, "mrsigner");
  const wantProd = optU16(opts.isvProdId, "isvProdId");
  const minSvn = optU16(opts.minIsvSvn, "minIsvSvn");
  const minCpu = optU16(opts.minCpuSvn, "minCpuSvn");
  if (opts.anyEnclave !== undefined && typeof opts.anyEnclave !== "boolean") fail("QUOTE_BAD_OPTIONS", "anyEnclave must be true or false");
  if (wantSigner !== undefined && wantProd === undefined) {
    fail("QUOTE_NO_POLICY", "an MRSIGNER policy needs the product too: give isvProdId (--isvprodid) with mrsigner (and minIsvSvn for the oldest version you accept)");
  }
  if (wantEnclave === undefined && wantSigner === undefined && opts.anyEnclave !== true) {
    fail("QUOTE_NO_POLICY", "choose what enclave you trust: mrenclave (--mrenclave), or mrsigner + isvProdId (--mrsigner --isvprodid [--min-isvsvn]), or anyEnclave: true (--any-enclave) to check only the platform");
  }
  const now = opts.now === undefined ? Date.now() : opts.now instanceof Date ? opts.now.getTime() : opts.now;
  if (!Number.isFinite(now)) fail("QUOTE_BAD_OPTIONS", "now must be a time");

  const q = parseQuote(quote);
  const certs = q.certs;
  // 1. Chain shape and links: [0] platform, then CAs, ending at the trusted CA.
  if (certs[0]?.kind !== CertKind.PLATFORM) fail("QUOTE_MALFORMED", "the first certificate is not a platform certificate");
  for (let i = 1; i < certs.length; i++) if (certs[i]?.kind !== CertKind.CA) fail("QUOTE_MALFORMED", `certificate ${i} is not a CA certificate`);
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i] as Certificate;
    const issuer = certs[i + 1];
    const issuerId = issuer === undefined ? anchor.id : issuer.subjectId;
    if (!c.issuerId.equals(issuerId)) {
      fail("QUOTE_UNTRUSTED_CA", issuer === undefined
        ? `the platform certificate chain ends at CA ${c.issuerId.toString("hex")}, not at the trusted CA ${anchor.id.toString("hex")}`
        : `certificate ${i} is not issued by certificate ${i + 1}`);
    }
  }
  // 2. Certificate signatures.
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i] as Certificate;
    const issuerKey = certs[i + 1]?.subjectKey ?? anchor.key;
    if (!verifyCertificateSignature(c, issuerKey)) fail("QUOTE_CERT_BAD_SIGNATURE", `certificate ${i} (${c.kind === CertKind.PLATFORM ? "platform" : "CA"}) has a bad signature`);
  }
  // 3. Validity windows (the trusted CA's own certificate included).
  if (anchor.cert !== undefined) checkValidity(anchor.cert, now, "the trusted CA certificate");
  certs.forEach((c, i) => checkValidity(c, now, i === 0 ? "the platform certificate" : `CA certificate ${i}`));
  // 4. The quote signature under the platform's attestation key.
  const platform = certs[0] as Certificate;
  if (!ed25519Verify(platform.subjectKey, q.signedMessage, q.signature)) {
    fail("QUOTE_BAD_SIGNATURE", "the quote signature does not verify under the platform's attestation key (forged or changed quote)");
  }
  // 5. Development CA.
  const dev = anchor.dev || certs.some((c) => c.dev);
  if (dev && opts.allowDev !== true) fail("QUOTE_DEV_CA", "the quote is certified by a development CA (pass allowDev / --allow-dev to accept it)");
  // 6. Freshness and identity policy.
  const body = q.body;
  if (!body.reportData.subarray(0, 32).equals(nonceHash)) fail("QUOTE_NONCE_MISMATCH", "the quote is not bound to this nonce (replayed or made for another verifier)");
  const id = body.identity;
  if (wantEnclave !== undefined && !id.mrenclave.equals(wantEnclave)) {
    fail("QUOTE_MRENCLAVE_MISMATCH", `MRENCLAVE is ${id.mrenclave.toString("hex")}, expected ${wantEnclave.toString("hex")}`);
  }
  if (wantSigner !== undefined && !id.mrsigner.equals(wantSigner)) {
    fail("QUOTE_MRSIGNER_MISMATCH", `MRSIGNER is ${id.mrsigner.toString("hex")}, expected ${wantSigner.toString("hex")}`);
  }
  if (wantProd !== undefined && id.isvProdId !== wantProd) fail("QUOTE_PRODID_MISMATCH", `ISVPRODID is ${id.isvProdId}, expected ${wantProd}`);
  if (minSvn !== undefined && id.isvSvn < minSvn) fail("QUOTE_SVN_TOO_LOW", `ISVSVN is ${id.isvSvn}, below the required ${minSvn}`);
  if (minCpu !== undefined && body.cpuSvn < minCpu) fail("QUOTE_CPUSVN_TOO_LOW", `runtime version (CPUSVN) is ${body.cpuSvn}, below the required ${minCpu}`);
  if (id.debug && opts.allowDebug !== true) fail("QUOTE_DEBUG_ENCLAVE", "the quoted enclave is a debug enclave (pass allowDebug / --allow-debug to accept it)");

  const peer = body.reportData.subarray(32, 64);
  return new VerifiedQuote(TOKEN, {
    identity: id,
    cpuSvn: body.cpuSvn,
    reportData: body.reportData,
    peerPublicKey: peer.equals(ZERO32) ? null : Buffer.from(peer),
    platformId: platform.subjectId.toString("hex"),
    caId: anchor.id.toString("hex"),
    dev,
    certificates: certs,
  });
}
