/**
 * The provisioning CA (stands in for Intel's): an Ed25519 key that certifies platforms' attestation
 * keys. Files: FORMATS.md §2.
 *
 * Invariants: the CA private key lives only in `ca.key` (0600) and in a #private field; it never
 * appears in errors, JSON or util.inspect output. A development CA marks its own certificate and every
 * certificate it issues as dev, so verifiers can refuse them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { CaError } from "./errors.js";
import { generateEd25519, privateKeyFromSeed, rawPublic } from "./ed25519.js";
import { caIdFor, CertKind, parseCertificate, signCertificate, verifyCertificateSignature, type Certificate } from "./cert.js";
import { ensureDir, exists, isGroupOrWorldAccessible, PUBLIC_MODE, SECRET_MODE, writeFileAtomic } from "./files.js";

export const CA_KEY_FILE = "ca.key";
export const CA_CERT_FILE = "ca.cert";
export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_PLATFORM_CERT_DAYS = 365;
/** Issued certificates start this much before issue time, to tolerate clock skew. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 86_400_000;
const MAX_DAYS = 36_500;

const KEY_MAGIC = Buffer.from("SKCK", "latin1");
const KEY_VERSION = 1;
const KEY_BODY = 88;
const KEY_LEN = KEY_BODY + 32;

export interface CaCreateOptions {
  /** A development CA: everything it certifies is marked dev. Default false. */
  dev?: boolean;
  /** Validity of the CA certificate in days (default 3650). */
  days?: number;
  /** Clock, ms since the epoch (tests). */
  now?: number;
}

export interface IssueOptions {
  platformId: Buffer; // 16 bytes
  publicKey: Buffer; // 32 bytes, the platform's Ed25519 attestation key
  days?: number;
  now?: number;
  /** Explicit validity window (tests): overrides days/now. */
  notBefore?: number;
  notAfter?: number;
}

export function checkDays(days: number | undefined, dflt: number): number {
  const d = days ?? dflt;
  if (!Number.isInteger(d) || d < 1 || d > MAX_DAYS) throw new CaError("CA_BAD_REQUEST", `validity must be 1..${MAX_DAYS} days, got ${String(days)}`);
  return d;
}

export class CertificateAuthority {
  readonly dir: string;
  readonly caId: Buffer;
  readonly publicKey: Buffer;
  readonly dev: boolean;
  readonly certificate: Certificate;
  readonly #key: KeyObject;

  private constructor(dir: string, key: KeyObject, publicKey: Buffer, dev: boolean, certificate: Certificate) {
    this.dir = dir;
    this.#key = key;
    this.publicKey = publicKey;
    this.caId = caIdFor(publicKey);
    this.dev = dev;
    this.certificate = certificate;
  }

  /** Creates a CA in `dir` (created 0700). Refuses (CA_EXISTS) if the directory already holds one. */
  static create(dir: string, opts: CaCreateOptions = {}): CertificateAuthority {
    const d = path.resolve(dir);
    if (exists(path.join(d, CA_KEY_FILE)) || exists(path.join(d, CA_CERT_FILE))) {
      throw new CaError("CA_EXISTS", `a CA already exists in ${d}; refusing to overwrite it`);
    }
    const days = checkDays(opts.days, DEFAULT_CA_DAYS);
    const dev = opts.dev === true;
    ensureDir(d);
    const kp = generateEd25519();
    const key = privateKeyFromSeed(kp.seed);
    const caId = caIdFor(kp.publicKey);
    const now = opts.now ?? Date.now();
    const cert = signCertificate(
      { kind: CertKind.CA, dev, subjectId: caId, subjectKey: kp.publicKey, issuerId: caId, notBefore: now - CLOCK_SKEW_MS, notAfter: now + days * DAY_MS },
      key,
    );
    const file = Buffer.alloc(KEY_LEN);
    KEY_MAGIC.copy(file, 0);
    file[4] = KEY_VERSION;
    file[5] = dev ? 1 : 0;
    caId.copy(file, 8);
    kp.seed.copy(file, 24);
    kp.publicKey.copy(file, 56);
    createHash("sha256").update(file.subarray(0, KEY_BODY)).digest().copy(file, KEY_BODY);
    writeFileAtomic(path.join(d, CA_KEY_FILE), file, SECRET_MODE);
    file.fill(0);
    kp.seed.fill(0);
    writeFileAtomic(path.join(d, CA_CERT_FILE), cert.bytes, PUBLIC_MODE);
    return new CertificateAuthority(d, key, kp.publicKey, dev, cert);
  }

  /** Opens the CA in `dir`, checking its key file's integrity and permissions. */
  static open(dir: string): CertificateAuthority {
    const d = path.resolve(dir);
    const keyFile = path.join(d, CA_KEY_FILE);
    if (!exists(keyFile)) throw new CaError("CA_NOT_FOUND", `no CA in ${d} (missing ${CA_KEY_FILE}); create one with \`selkie ca init --dir ${d}\``);
    if (isGroupOrWorldAccessible(keyFile)) {
      throw new CaError("CA_CORRUPT", `${keyFile} is accessible by group or others; run \`chmod 600 ${keyFile}\``);
    }
    const b = fs.readFileSync(keyFile);
    if (b.length < 5 || !b.subarray(0, 4).equals(KEY_MAGIC)) throw new CaError("CA_CORRUPT", `${keyFile} is not a Selkie CA key`);
    if (b[4] !== KEY_VERSION) throw new CaError("CA_VERSION_UNSUPPORTED", `${keyFile} has format version ${b[4]}; this runtime reads ${KEY_VERSION}`);
    if (b.length !== KEY_LEN || !createHash("sha256").update(b.subarray(0, KEY_BODY)).digest().equals(b.subarray(KEY_BODY))) {
      throw new CaError("CA_CORRUPT", `${keyFile} is damaged (checksum mismatch)`);
    }
    const dev = (b[5] ?? 0) === 1;
    const key = privateKeyFromSeed(b.subarray(24, 56));
    const publicKey = Buffer.from(b.subarray(56, 88));
    b.fill(0);
    if (!rawPublic(key).equals(publicKey)) throw new CaError("CA_CORRUPT", `${keyFile}: public key does not match the private key`);
    const cert = readCaCertificate(path.join(d, CA_CERT_FILE));
    if (!cert.subjectKey.equals(publicKey)) throw new CaError("CA_CORRUPT", `${CA_CERT_FILE} in ${d} is not the certificate of this CA's key`);
    return new CertificateAuthority(d, key, publicKey, dev, cert);
  }

  /** Certifies a platform's attestation key. */
  issuePlatformCertificate(opts: IssueOptions): Certificate {
    if (!(opts.platformId instanceof Uint8Array) || opts.platformId.length !== 16) throw new CaError("CA_BAD_REQUEST", "platform id must be 16 bytes");
    if (!(opts.publicKey instanceof Uint8Array) || opts.publicKey.length !== 32) throw new CaError("CA_BAD_REQUEST", "platform public key must be 32 bytes");
    const now = opts.now ?? Date.now();
    const notBefore = opts.notBefore ?? now - CLOCK_SKEW_MS;
    const notAfter = opts.notAfter ?? now + checkDays(opts.days, DEFAULT_PLATFORM_CERT_DAYS) * DAY_MS;
    return signCertificate(
      { kind: CertKind.PLATFORM, dev: this.dev, subjectId: Buffer.from(opts.platformId), subjectKey: Buffer.from(opts.publicKey), issuerId: this.caId, notBefore, notAfter },
      this.#key,
    );
  }

  toJSON(): Record<string, unknown> {
    return { dir: this.dir, caId: this.caId.toString("hex"), publicKey: this.publicKey.toString("hex"), dev: this.dev };
  }

  [inspect.custom](): string {
    return `CertificateAuthority ${JSON.stringify(this.toJSON())}`;
  }
}

/** Reads and checks a CA certificate file (self-signed, kind CA): what verifiers trust. */
export function readCaCertificate(file: string): Certificate {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new CaError("CA_NOT_FOUND", `cannot read CA certificate ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return parseCaCertificate(bytes, file);
}

export function parseCaCertificate(bytes: Uint8Array, what = "CA certificate"): Certificate {
  const p = parseCertificate(bytes);
  if (!p.ok) throw new CaError(p.reason === "version" ? "CA_VERSION_UNSUPPORTED" : "CA_CORRUPT", `${what}: ${p.message}`);
  const c = p.cert;
  if (c.kind !== CertKind.CA) throw new CaError("CA_CORRUPT", `${what} is a platform certificate, not a CA certificate`);
  if (!c.subjectId.equals(caIdFor(c.subjectKey)) || !c.issuerId.equals(c.subjectId)) throw new CaError("CA_CORRUPT", `${what}: CA id does not match its key`);
  if (!verifyCertificateSignature(c, c.subjectKey)) throw new CaError("CA_CORRUPT", `${what}: bad self-signature`);
  return c;
}
