/**
 * The emulated SGX platform: root secrets (fuses), attestation key and certificate, EPC budget,
 * counter store, and the per-enclave services (FORMATS.md §1).
 *
 * Invariants:
 * - Root secrets and the attestation private key live only in #private fields; `toJSON`,
 *   `util.inspect` and every error show public facts only (dir, platform id, CA id, EPC size).
 * - `create` refuses to overwrite an existing platform unless `force` is set; `platform.json` is
 *   written last, so a platform either opens completely or is reported incomplete.
 * - On open, the attestation key in `secrets.bin`, `platform.json` and `platform.cert` must agree.
 * - `servicesFor(measured)` is EINIT: it takes only a MeasuredEnclave (einit.ts), which only the
 *   enclave loader can make, after measuring a module it holds and verifying its signature. A plain
 *   identity object is refused (PLATFORM_NOT_MEASURED). It is the only way to reach sealing,
 *   counters, reports and enclave quotes; no key ever leaves this layer.
 * - The platform quotes only a local report targeted at its quoting identity whose MAC verifies, so
 *   a quote of an enclave exists only if that enclave's services (its EINIT holder) asked for it.
 *   `quoteSelf` quotes the platform's own quoting identity (FORMATS.md §6.4): it attests the
 *   platform (certificate chain, runtime version), never an enclave.
 *
 * Lifecycle: open --close()--> closed (services refuse with PLATFORM_CLOSED; counter lock released).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { CertificateAuthority, DEFAULT_PLATFORM_CERT_DAYS } from "./ca.js";
import { CertKind, describeCertificate, parseCertificate, type Certificate } from "./cert.js";
import { acquireCounterStore, CounterStore, COUNTERS_DIR, sharedCounterStore } from "./counter-store.js";
import { counterService, DEFAULT_COUNTER_QUOTA } from "./counters.js";
import { privateKeyFromSeed, rawPublic } from "./ed25519.js";
import { DEFAULT_EPC_BYTES, EpcManager, checkEpcBudget, parseSize } from "./epc.js";
import { PlatformError } from "./errors.js";
import { ensureDir, exists, fsyncDir, writeFileAtomic, DIR_MODE } from "./files.js";
import { taggedHash, type TargetInfo } from "./identity.js";
import { isMeasured, type MeasuredEnclave } from "./einit.js";
import { deriveCounterStoreKey, RUNTIME_VERSION } from "./keys.js";
import { buildQuote, QUOTING_IDENTITY, QUOTING_TARGET } from "./quote.js";
import { REPORT_BODY_LEN, Reporter } from "./report.js";
import { Sealer } from "./seal.js";
import { generateSecrets, readSecrets, writeSecrets, type RootSecrets } from "./secrets.js";
import { makeServices, type EnclaveServices } from "./services.js";

export const PLATFORM_JSON = "platform.json";
export const SECRETS_FILE = "secrets.bin";
export const PLATFORM_CERT = "platform.cert";
export const DEV_CA_DIR = "dev-ca";
/**
 * The platform's local enclave-signing key for the SQLite enclave Selkie builds itself (created at
 * first use by runtime/sql/sqlite-signer.ts; README "Sealing policy"). Not a platform secret: a
 * developer key kept next to the platform so a recreated platform starts with a new one.
 */
export const SQLITE_SIGNER_FILE = "sqlite-signer.key";
const PLATFORM_FORMAT = 1;

export interface PlatformCreateOptions {
  /** EPC budget: bytes or a size string ("93.5MiB", "8GiB"). Default 93.5 MiB. */
  epc?: number | string;
  /** A fleet CA (its directory, or an open CA) to certify the platform. Default: a new dev CA in `<dir>/dev-ca`. */
  ca?: string | CertificateAuthority;
  /** Replace an existing platform (destroys its root secrets: everything sealed on it becomes unreadable). */
  force?: boolean;
  /** Validity of the platform certificate in days (default 365). */
  certDays?: number;
  /** Clock, ms since the epoch (tests). */
  now?: number;
}

export interface PlatformOpenOptions {
  /** Counter log records before compaction (default 4096). */
  counterCompactEvery?: number;
  /** Counters per owner (default 65,536; see DEFAULT_COUNTER_QUOTA). */
  counterQuota?: number;
}

/** Public description of a platform (`platform.json`). */
export interface PlatformInfo {
  format: 1;
  platformId: string;
  createdAt: string;
  epcBytes: number;
  attestationPublicKey: string;
  caId: string;
  dev: boolean;
}

const INFO_KEYS = ["format", "platformId", "createdAt", "epcBytes", "attestationPublicKey", "caId", "dev"];

/** Reads and checks `platform.json` (public; no secrets needed). */
export function readPlatformInfo(dir: string): PlatformInfo {
  const file = path.join(path.resolve(dir), PLATFORM_JSON);
  if (!exists(file)) {
    if (exists(path.join(path.resolve(dir), SECRETS_FILE))) {
      throw new PlatformError("PLATFORM_CORRUPT", `the platform in ${path.resolve(dir)} is incomplete (no ${PLATFORM_JSON}); recreate it with \`selkie init --force\``);
    }
    throw new PlatformError("PLATFORM_NOT_FOUND", `no platform in ${path.resolve(dir)}; create one with \`selkie init --dir ${path.resolve(dir)}\``);
  }
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new PlatformError("PLATFORM_CORRUPT", `${file} is not valid JSON`, { cause: e });
  }
  if (j === null || typeof j !== "object" || Array.isArray(j)) throw new PlatformError("PLATFORM_CORRUPT", `${file} is not a JSON object`);
  const o = j as Record<string, unknown>;
  if (o["format"] !== PLATFORM_FORMAT) throw new PlatformError("PLATFORM_VERSION_UNSUPPORTED", `${file} has format ${String(o["format"])}; this runtime reads ${PLATFORM_FORMAT}`);
  const unknown = Object.keys(o).filter((k) => !INFO_KEYS.includes(k));
  if (unknown.length > 0) throw new PlatformError("PLATFORM_CORRUPT", `${file} has unknown keys: ${unknown.join(", ")}`);
  const hex = (k: string, n: number): string => {
    const v = o[k];
    if (typeof v !== "string" || !new RegExp(`^[0-9a-f]{${n}}$`).test(v)) throw new PlatformError("PLATFORM_CORRUPT", `${file}: ${k} must be ${n} lowercase hex digits`);
    return v;
  };
  const epc = o["epcBytes"];
  if (typeof epc !== "number") throw new PlatformError("PLATFORM_CORRUPT", `${file}: epcBytes must be a number`);
  try {
    checkEpcBudget(epc);
  } catch (e) {
    throw new PlatformError("PLATFORM_CORRUPT", `${file}: ${(e as Error).message}`);
  }
  if (typeof o["createdAt"] !== "string" || typeof o["dev"] !== "boolean") throw new PlatformError("PLATFORM_CORRUPT", `${file}: createdAt / dev have wrong types`);
  return {
    format: PLATFORM_FORMAT,
    platformId: hex("platformId", 32),
    createdAt: o["createdAt"],
    epcBytes: epc,
    attestationPublicKey: hex("attestationPublicKey", 64),
    caId: hex("caId", 32),
    dev: o["dev"],
  };
}

function writePlatformInfo(dir: string, info: PlatformInfo): void {
  writeFileAtomic(path.join(dir, PLATFORM_JSON), `${JSON.stringify(info, null, 2)}\n`);
}

function resolveEpc(v: number | string | undefined): number {
  return checkEpcBudget(v === undefined ? DEFAULT_EPC_BYTES : parseSize(v));
}

/** Sealed blobs carry this tag so unsealing on another platform is named precisely. */
export function platformTag(platformId: Buffer): Buffer {
  return taggedHash("platform-tag", platformId).subarray(0, 16);
}

function checkCertFor(cert: Certificate, info: { platformId: string; attestationPublicKey: string }, what: string): void {
  if (cert.kind !== CertKind.PLATFORM) throw new PlatformError("PLATFORM_CERT_MISMATCH", `${what} is not a platform certificate`);
  if (cert.subjectId.toString("hex") !== info.platformId) throw new PlatformError("PLATFORM_CERT_MISMATCH", `${what} is for platform ${cert.subjectId.toString("hex")}, not ${info.platformId}`);
  if (cert.subjectKey.toString("hex") !== info.attestationPublicKey) throw new PlatformError("PLATFORM_CERT_MISMATCH", `${what} certifies another attestation key`);
}

function parseCertOrThrow(bytes: Uint8Array, what: string): Certificate {
  const p = parseCertificate(bytes);
  if (!p.ok) throw new PlatformError(p.reason === "version" ? "PLATFORM_VERSION_UNSUPPORTED" : "PLATFORM_CORRUPT", `${what}: ${p.message}`);
  return p.cert;
}

export class Platform {
  readonly dir: string;
  /** 32 hex digits. */
  readonly platformId: string;
  /** Stands for CPUSVN. */
  readonly runtimeVersion = RUNTIME_VERSION;
  readonly epcBytes: number;
  readonly epc: EpcManager;
  readonly certificate: Certificate;
  readonly attestationPublicKey: Buffer;
  readonly createdAt: string;

  readonly #secrets: RootSecrets;
  readonly #attestationKey: KeyObject;
  readonly #reporter: Reporter;
  readonly #tag: Buffer;
  readonly #openOpts: PlatformOpenOptions;
  /** This platform's reference to the process's writer counter store (taken at the first change). */
  #store: { store: CounterStore; release: () => void } | undefined;
  /** A lock-free reader of the counter store, for lookups while another process holds the writer. */
  #reader: CounterStore | undefined;
  #closed = false;

  private constructor(dir: string, info: PlatformInfo, secrets: RootSecrets, key: KeyObject, cert: Certificate, opts: PlatformOpenOptions) {
    this.dir = dir;
    this.platformId = info.platformId;
    this.epcBytes = info.epcBytes;
    this.epc = new EpcManager(info.epcBytes);
    this.certificate = cert;
    this.attestationPublicKey = Buffer.from(info.attestationPublicKey, "hex");
    this.createdAt = info.createdAt;
    this.#secrets = secrets;
    this.#attestationKey = key;
    this.#reporter = new Reporter(secrets.reportRoot);
    this.#tag = platformTag(secrets.platformId);
    this.#openOpts = opts;
  }

  /** True when `dir` holds a platform (complete or not). */
  static exists(dir: string): boolean {
    const d = path.resolve(dir);
    return exists(path.join(d, PLATFORM_JSON)) || exists(path.join(d, SECRETS_FILE));
  }

  /** Creates a platform in `dir` (0700) and opens it. Refuses (PLATFORM_EXISTS) to overwrite one unless `force`. */
  static async create(dir: string, opts: PlatformCreateOptions = {}): Promise<Platform> {
    const d = path.resolve(dir);
    const epcBytes = resolveEpc(opts.epc);
    if (Platform.exists(d)) {
      if (opts.force !== true) throw new PlatformError("PLATFORM_EXISTS", `a platform already exists in ${d}; refusing to overwrite its root secrets (--force destroys them)`);
      for (const f of [PLATFORM_JSON, SECRETS_FILE, PLATFORM_CERT, DEV_CA_DIR, COUNTERS_DIR, SQLITE_SIGNER_FILE]) fs.rmSync(path.join(d, f), { recursive: true, force: true });
      fsyncDir(d);
    } else {
      // A dev CA left by a create that crashed before writing secrets.bin (it certified nothing that
      // was ever used). Only a directory holding nothing but our CA files is removed.
      const devCa = path.join(d, DEV_CA_DIR);
      if (exists(devCa) && fs.readdirSync(devCa).every((f) => f === "ca.key" || f === "ca.cert" || f.includes(".tmp-"))) {
        fs.rmSync(devCa, { recursive: true, force: true });
      }
    }
    const ca = typeof opts.ca === "string" ? CertificateAuthority.open(opts.ca) : opts.ca;
    ensureDir(d);
    fs.chmodSync(d, DIR_MODE);
    const { secrets, attestationPublicKey } = generateSecrets();
    const issuer = ca ?? CertificateAuthority.create(path.join(d, DEV_CA_DIR), { dev: true, ...(opts.now !== undefined ? { now: opts.now } : {}) });
    const cert = issuer.issuePlatformCertificate({
      platformId: secrets.platformId,
      publicKey: attestationPublicKey,
      days: opts.certDays ?? DEFAULT_PLATFORM_CERT_DAYS,
      ...(opts.now !== undefined ? { now: opts.now } : {}),
    });
    writeSecrets(path.join(d, SECRETS_FILE), secrets);
    writeFileAtomic(path.join(d, PLATFORM_CERT), cert.bytes);
    CounterStore.initialize(d, deriveCounterStoreKey(secrets.sealRoot));
    writePlatformInfo(d, {
      format: PLATFORM_FORMAT,
      platformId: secrets.platformId.toString("hex"),
      createdAt: new Date(opts.now ?? Date.now()).toISOString(),
      epcBytes,
      attestationPublicKey: attestationPublicKey.toString("hex"),
      caId: issuer.caId.toString("hex"),
      dev: issuer.dev,
    });
    for (const b of Object.values(secrets) as Buffer[]) b.fill(0);
    return Platform.open(d);
  }

  /** Opens the platform in `dir`, checking file permissions and that its files agree. */
  static async open(dir: string, opts: PlatformOpenOptions = {}): Promise<Platform> {
    const d = path.resolve(dir);
    const info = readPlatformInfo(d);
    const secretsFile = path.join(d, SECRETS_FILE);
    if (!exists(secretsFile)) throw new PlatformError("PLATFORM_CORRUPT", `the platform in ${d} has no ${SECRETS_FILE}`);
    const secrets = readSecrets(secretsFile);
    if (secrets.platformId.toString("hex") !== info.platformId) throw new PlatformError("PLATFORM_CORRUPT", `${SECRETS_FILE} and ${PLATFORM_JSON} in ${d} belong to different platforms`);
    const key = privateKeyFromSeed(secrets.attestationSeed);
    if (rawPublic(key).toString("hex") !== info.attestationPublicKey) throw new PlatformError("PLATFORM_CORRUPT", `the attestation key in ${SECRETS_FILE} does not match ${PLATFORM_JSON}`);
    const certFile = path.join(d, PLATFORM_CERT);
    if (!exists(certFile)) throw new PlatformError("PLATFORM_CORRUPT", `the platform in ${d} has no ${PLATFORM_CERT}`);
    const cert = parseCertOrThrow(fs.readFileSync(certFile), certFile);
    checkCertFor(cert, info, certFile);
    if (opts.counterQuota !== undefined && (!Number.isInteger(opts.counterQuota) || opts.counterQuota < 1)) {
      throw new PlatformError("PLATFORM_BAD_OPTION", "counterQuota must be a positive integer");
    }
    return new Platform(d, info, secrets, key, cert, opts);
  }

  /**
   * Installs a platform certificate (e.g. from `selkie ca issue`) into the platform in `dir`, after
   * checking it certifies this platform's id and attestation key. Needs no secrets.
   */
  static installCertificate(dir: string, certBytes: Uint8Array, issuer?: { caId: Buffer; dev: boolean }): Certificate {
    const d = path.resolve(dir);
    const info = readPlatformInfo(d);
    const cert = parseCertOrThrow(certBytes, "certificate");
    checkCertFor(cert, info, "the certificate");
    if (issuer !== undefined && !cert.issuerId.equals(issuer.caId)) throw new PlatformError("PLATFORM_CERT_MISMATCH", "the certificate was not issued by the given CA");
    writeFileAtomic(path.join(d, PLATFORM_CERT), cert.bytes);
    writePlatformInfo(d, { ...info, caId: cert.issuerId.toString("hex"), dev: cert.dev });
    return cert;
  }

  get dev(): boolean {
    return this.certificate.dev;
  }

  get caId(): string {
    return this.certificate.issuerId.toString("hex");
  }

  get closed(): boolean {
    return this.#closed;
  }

  #alive = (): void => {
    if (this.#closed) throw new PlatformError("PLATFORM_CLOSED", `the platform ${this.platformId} is closed`);
  };

  /** The writer store (its lock is taken, or shared with another Platform of this folder in this process). */
  #counterStore = (): CounterStore => {
    this.#alive();
    if (this.#store === undefined) {
      this.#store = acquireCounterStore(
        this.dir,
        deriveCounterStoreKey(this.#secrets.sealRoot),
        this.#openOpts.counterCompactEvery !== undefined ? { compactEvery: this.#openOpts.counterCompactEvery } : {},
      );
    }
    return this.#store.store;
  };

  /**
   * The store for lookups (reading a counter, listing): the writer when this process holds it,
   * else a lock-free reader refreshed at each lookup (counter-store.ts invariant 6). Reading never
   * takes the lock, so a read-only database open here never keeps another process from writing.
   */
  #counterLookup = (): CounterStore => {
    this.#alive();
    if (this.#store !== undefined) return this.#store.store;
    const writer = sharedCounterStore(this.dir);
    if (writer !== undefined) return writer;
    this.#reader ??= CounterStore.openReader(this.dir, deriveCounterStoreKey(this.#secrets.sealRoot));
    return this.#reader;
  };

  /**
   * EINIT: the services of one measured enclave (sealing, counters, reports, quotes). `measured`
   * must come from the enclave loader (runtime/enclave/einit.ts: `Enclave#measured`); any other
   * value, however it is shaped, is refused with PLATFORM_NOT_MEASURED. Whoever holds the result
   * acts as that enclave: keep it with the loaded instance it was made for.
   */
  servicesFor(measured: MeasuredEnclave): EnclaveServices {
    this.#alive();
    if (!isMeasured(measured)) {
      throw new PlatformError("PLATFORM_NOT_MEASURED", "EINIT takes only an enclave the loader measured (Enclave#measured); an identity object cannot ask the platform to act as an enclave");
    }
    const id = measured;
    return makeServices({
      identity: id,
      cpuSvn: RUNTIME_VERSION,
      sealer: new Sealer(this.#secrets.sealRoot, this.#tag, id),
      reporter: this.#reporter,
      counters: counterService(id, this.#counterStore, this.#openOpts.counterQuota ?? DEFAULT_COUNTER_QUOTA, this.#counterLookup),
      quotingTarget: QUOTING_TARGET,
      quote: (report) => this.quote(report),
      alive: this.#alive,
    });
  }

  /** Target info of the platform's quoting identity: make a report for it, then call quote(). */
  quotingTarget(): TargetInfo {
    return QUOTING_TARGET;
  }

  /**
   * A quote of the platform's own quoting identity (FORMATS.md §6.4) binding `reportData`: it
   * attests this platform (its certificate chain and runtime version) and nothing about any enclave.
   * What `selkie quote` prints.
   */
  quoteSelf(reportData: Uint8Array): Buffer {
    this.#alive();
    return this.quote(this.#reporter.report(QUOTING_IDENTITY, RUNTIME_VERSION, QUOTING_TARGET, reportData));
  }

  /** Signs a quote over a local report targeted at the quoting identity (REPORT_BAD_MAC otherwise). */
  quote(report: Uint8Array): Buffer {
    this.#alive();
    this.#reporter.verify(QUOTING_TARGET, report);
    return buildQuote(Buffer.from(report.subarray(0, REPORT_BODY_LEN)), [this.certificate], this.#attestationKey);
  }

  /**
   * Runs `fn` (calls on counter services) with the counter store's records synced on libuv's pool
   * instead of this thread (counter-store.ts, deferred appends), and resolves with its value once
   * they are durable. The server's platform RPC answers a worker's counter update this way, so the
   * main thread keeps serving while the update's fdatasync runs. Acknowledge nothing before.
   */
  withDeferredCounterSync<T>(fn: () => T): Promise<T> {
    try {
      const { value, durable } = this.#counterStore().deferred(fn);
      return durable.then(() => value);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Closes the counter store (releasing its lock); services refuse afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#store?.release();
    this.#store = undefined;
    this.#reader?.close();
    this.#reader = undefined;
  }

  toJSON(): Record<string, unknown> {
    return {
      dir: this.dir,
      platformId: this.platformId,
      runtimeVersion: this.runtimeVersion,
      epcBytes: this.epcBytes,
      attestationPublicKey: this.attestationPublicKey.toString("hex"),
      dev: this.dev,
      caId: this.caId,
      certificate: describeCertificate(this.certificate),
    };
  }

  [inspect.custom](): string {
    return `Platform ${JSON.stringify({ dir: this.dir, platformId: this.platformId, epcBytes: this.epcBytes, dev: this.dev, caId: this.caId, closed: this.#closed })}`;
  }

  toString(): string {
    return `Platform(${this.platformId})`;
  }
}
