/**
 * Sealing (sgx_seal_data / sgx_unseal_data): AES-256-GCM under a seal key derived for the calling
 * enclave, with the key request in a versioned header (FORMATS.md §5).
 *
 * Invariants:
 * - Keys exist only in this Sealer's #private fields; a Sealer is created by the Platform for one
 *   enclave identity (services.ts) and is never handed to host code.
 * - The whole header and the caller's AAD are authenticated; any changed byte fails with a typed
 *   SealError, never with wrong plaintext. Header checks run first only to name the cause precisely.
 * - IVs never repeat under a key: a KEYID (hence a key) is drawn at random per Sealer and policy and
 *   used for at most KEYID_MAX_USES blobs, each with IV = 4 random bytes || a 64-bit use counter.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { SealError } from "./errors.js";
import type { EnclaveIdentity } from "./identity.js";
import { deriveSealKey, KeyCache, policyId, policyName, RUNTIME_VERSION, SealPolicy, type SealKeyRequest, type SealPolicyId, type SealPolicyName } from "./keys.js";

export const SEAL_MAGIC = Buffer.from("SKSL", "latin1");
const SEAL_MAGIC_U32 = SEAL_MAGIC.readUInt32BE(0);
export const SEAL_VERSION = 1;
export const SEAL_HEADER_LEN = 112;
export const SEAL_TAG_LEN = 16;
export const SEAL_OVERHEAD = SEAL_HEADER_LEN + SEAL_TAG_LEN;
const KEYID_MAX_USES = 1 << 24;
const MAX_PLAINTEXT = 0xffffffff;
const FLAG_DEBUG = 1;

export interface SealOptions {
  /** Default MRSIGNER (as sgx_seal_data): later versions of the same signer's enclave can unseal. */
  policy?: SealPolicyName;
  /** Additional authenticated data: not stored; must be given again to unseal. */
  aad?: Uint8Array;
}

export interface UnsealOptions {
  aad?: Uint8Array;
}

/** Public header fields of a sealed blob (nothing secret), for diagnostics and tools. */
export interface SealedBlobInfo {
  version: number;
  policy: SealPolicyName;
  debug: boolean;
  cpuSvn: number;
  isvSvn: number;
  isvProdId: number;
  platformTag: string;
  binding: string;
  plaintextLength: number;
}

interface CurrentKey {
  readonly key: KeyObject;
  /** The header of every blob under this key, IV counter and length left zero. */
  readonly template: Buffer;
  uses: number;
}

interface ParsedHeader {
  policy: SealPolicyId;
  debug: boolean;
  cpuSvn: number;
  isvSvn: number;
  isvProdId: number;
  platformTag: Buffer;
  binding: Buffer;
  keyId: Buffer;
  iv: Buffer;
  length: number;
}

function fail(code: ConstructorParameters<typeof SealError>[0], message: string): never {
  throw new SealError(code, message);
}

function asBuffer(blob: Uint8Array): Buffer {
  if (!(blob instanceof Uint8Array)) fail("SEAL_MALFORMED", "sealed blob must be a Uint8Array");
  return Buffer.isBuffer(blob) ? blob : Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
}

/** Shape checks in FORMATS.md §5 order; returns the plaintext length. Trusts nothing else. */
function checkShape(b: Buffer): number {
  if (b.length < 5) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} bytes)`);
  if (b.readUInt32BE(0) !== SEAL_MAGIC_U32) fail("SEAL_MALFORMED", "not a sealed blob (bad magic)");
  if (b[4] !== SEAL_VERSION) fail("SEAL_VERSION_UNSUPPORTED", `sealed blob format version ${b[4]} is not supported (this runtime reads ${SEAL_VERSION})`);
  if (b.length < SEAL_HEADER_LEN) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} bytes, header alone is ${SEAL_HEADER_LEN})`);
  const length = b.readUInt32BE(108);
  const want = SEAL_HEADER_LEN + length + SEAL_TAG_LEN;
  if (b.length < want) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} of ${want} bytes)`);
  if (b.length > want) fail("SEAL_MALFORMED", `sealed blob has ${b.length - want} trailing bytes`);
  const policy = b[5] ?? 0;
  if (policy !== SealPolicy.MRENCLAVE && policy !== SealPolicy.MRSIGNER) fail("SEAL_MALFORMED", `sealed blob has unknown policy ${policy}`);
  if (((b[6] ?? 0) & ~FLAG_DEBUG) !== 0 || b[7] !== 0 || b[14] !== 0 || b[15] !== 0) fail("SEAL_MALFORMED", "sealed blob has non-zero reserved bits");
  return length;
}

/** Parses and shape-checks a blob's header; does not check identity or authenticity. */
function parseHeader(blob: Uint8Array): ParsedHeader {
  const b = asBuffer(blob);
  const length = checkShape(b);
  return {
    policy: (b[5] ?? 0) as SealPolicyId,
    debug: ((b[6] ?? 0) & FLAG_DEBUG) !== 0,
    cpuSvn: b.readUInt16BE(8),
    isvSvn: b.readUInt16BE(10),
    isvProdId: b.readUInt16BE(12),
    platformTag: b.subarray(16, 32),
    binding: b.subarray(32, 64),
    keyId: b.subarray(64, 96),
    iv: b.subarray(96, 108),
    length,
  };
}

/** Reads the public header of a sealed blob (no key needed, nothing verified). */
export function inspectSealedBlob(blob: Uint8Array): SealedBlobInfo {
  const h = parseHeader(blob);
  return {
    version: SEAL_VERSION,
    policy: policyName(h.policy) ?? "MRSIGNER",
    debug: h.debug,
    cpuSvn: h.cpuSvn,
    isvSvn: h.isvSvn,
    isvProdId: h.isvProdId,
    platformTag: h.platformTag.toString("hex"),
    binding: h.binding.toString("hex"),
    plaintextLength: h.length,
  };
}

/** True when blob bytes 5..96 equal `req` (91 bytes). A plain loop: faster than a view + equals here. */
function sameRequest(b: Buffer, req: Buffer): boolean {
  for (let i = 0; i < 91; i++) if (b[5 + i] !== req[i]) return false;
  return true;
}

export class Sealer {
  readonly #root: Buffer;
  readonly #platformTag: Buffer;
  readonly #id: EnclaveIdentity;
  readonly #current = new Map<SealPolicyId, CurrentKey>();
  readonly #cache = new KeyCache<KeyObject>(64);
  /** Bytes 5..96 of the last blob whose header passed the identity checks, and its key. */
  #lastReq: Buffer | undefined;
  #lastKey: KeyObject | undefined;

  constructor(sealRoot: Buffer, platformTag: Buffer, identity: EnclaveIdentity) {
    this.#root = sealRoot;
    this.#platformTag = platformTag;
    this.#id = identity;
  }

  #keyFor(policy: SealPolicyId): CurrentKey {
    let cur = this.#current.get(policy);
    if (cur === undefined || cur.uses >= KEYID_MAX_USES) {
      const id = this.#id;
      const req: SealKeyRequest = { policy, isvSvn: id.isvSvn, cpuSvn: RUNTIME_VERSION, isvProdId: id.isvProdId, keyId: randomBytes(32) };
      const t = Buffer.alloc(SEAL_HEADER_LEN);
      SEAL_MAGIC.copy(t, 0);
      t[4] = SEAL_VERSION;
      t[5] = policy;
      t[6] = id.debug ? FLAG_DEBUG : 0;
      t.writeUInt16BE(req.cpuSvn, 8);
      t.writeUInt16BE(req.isvSvn, 10);
      t.writeUInt16BE(req.isvProdId, 12);
      this.#platformTag.copy(t, 16);
      (policy === SealPolicy.MRENCLAVE ? id.mrenclave : id.mrsigner).copy(t, 32);
      req.keyId.copy(t, 64);
      randomBytes(4).copy(t, 96); // IV = 4 random bytes || 64-bit use counter (bytes 100..108)
      cur = { key: createSecretKey(deriveSealKey(this.#root, req, id)), template: t, uses: 0 };
      this.#current.set(policy, cur);
    }
    return cur;
  }

  seal(data: Uint8Array, opts: SealOptions = {}): Buffer {
    if (!(data instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "data to seal must be a Uint8Array");
    if (data.length > MAX_PLAINTEXT) fail("SEAL_BAD_REQUEST", "data to seal is larger than 4 GiB - 1");
    if (opts.aad !== undefined && !(opts.aad instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "aad must be a Uint8Array");
    const cur = this.#keyFor(opts.policy === undefined ? SealPolicy.MRSIGNER : policyId(opts.policy, "MRSIGNER"));
    const n = cur.uses++;
    const L = data.length;
    const out = Buffer.allocUnsafe(SEAL_HEADER_LEN + L + SEAL_TAG_LEN);
    out.set(cur.template, 0);
    out.writeUInt32BE(0, 100); // counter high bits: uses < 2^24
    out.writeUInt32BE(n, 104);
    out.writeUInt32BE(L, 108);
    const c = createCipheriv("aes-256-gcm", cur.key, new Uint8Array(out.buffer, out.byteOffset + 96, 12));
    c.setAAD(new Uint8Array(out.buffer, out.byteOffset, SEAL_HEADER_LEN));
    if (opts.aad !== undefined && opts.aad.length > 0) c.setAAD(opts.aad);
    out.set(c.update(data), SEAL_HEADER_LEN);
    c.final();
    out.set(c.getAuthTag(), SEAL_HEADER_LEN + L);
    return out;
  }

  unseal(blob: Uint8Array, opts: UnsealOptions = {}): Buffer {
    if (opts.aad !== undefined && !(opts.aad instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "aad must be a Uint8Array");
    const b = asBuffer(blob);
    const length = checkShape(b);
    // Fast path: the same key request as the last blob that passed the checks below (bytes 5..96:
    // policy, flags, svns, product, platform tag, binding, key id) needs neither checks nor lookup.
    const last = this.#lastReq;
    const key = last !== undefined && this.#lastKey !== undefined && sameRequest(b, last) ? this.#lastKey : this.#checkAndKey(b, b.subarray(5, 96));
    // Plain Uint8Array views: cheaper to make than Buffer views, and node:crypto takes either.
    const ab = b.buffer;
    const o = b.byteOffset;
    const d = createDecipheriv("aes-256-gcm", key, new Uint8Array(ab, o + 96, 12));
    d.setAAD(new Uint8Array(ab, o, SEAL_HEADER_LEN));
    if (opts.aad !== undefined && opts.aad.length > 0) d.setAAD(opts.aad);
    d.setAuthTag(new Uint8Array(ab, o + SEAL_HEADER_LEN + length, SEAL_TAG_LEN));
    const pt = d.update(new Uint8Array(ab, o + SEAL_HEADER_LEN, length));
    try {
      d.final();
    } catch {
      pt.fill(0);
      fail("SEAL_AUTH_FAILED", "sealed blob failed authentication: header, ciphertext, tag or additional data changed");
    }
    return pt;
  }

  /** The identity checks of FORMATS.md §5, then the key for the blob's request (cached or derived). */
  #checkAndKey(b: Buffer, req: Buffer): KeyObject {
    const id = this.#id;
    if (b.compare(this.#platformTag, 0, 16, 16, 32) !== 0) fail("SEAL_OTHER_PLATFORM", "sealed blob was sealed on another platform");
    const policy = b[5] as SealPolicyId;
    if (policy === SealPolicy.MRENCLAVE) {
      if (b.compare(id.mrenclave, 0, 32, 32, 64) !== 0) fail("SEAL_WRONG_ENCLAVE", "sealed blob was sealed by another enclave (MRENCLAVE policy)");
    } else if (b.compare(id.mrsigner, 0, 32, 32, 64) !== 0) {
      fail("SEAL_WRONG_SIGNER", "sealed blob was sealed by another signer's enclave (MRSIGNER policy)");
    }
    const isvProdId = b.readUInt16BE(12);
    if (isvProdId !== id.isvProdId) fail("SEAL_WRONG_PRODUCT", `sealed blob belongs to ISVPRODID ${isvProdId}, not ${id.isvProdId}`);
    const debug = ((b[6] ?? 0) & FLAG_DEBUG) !== 0;
    if (debug !== id.debug) fail("SEAL_DEBUG_MISMATCH", `sealed blob was sealed by a ${debug ? "debug" : "production"} enclave`);
    const isvSvn = b.readUInt16BE(10);
    if (isvSvn > id.isvSvn) fail("SEAL_ENCLAVE_TOO_OLD", `sealed blob needs ISVSVN >= ${isvSvn}; this enclave is at ${id.isvSvn}`);
    const cpuSvn = b.readUInt16BE(8);
    if (cpuSvn > RUNTIME_VERSION) fail("SEAL_RUNTIME_TOO_OLD", `sealed blob needs runtime version >= ${cpuSvn}; this runtime is ${RUNTIME_VERSION}`);
    const cacheKey = Buffer.concat([b.subarray(5, 14), b.subarray(64, 96)]).toString("latin1");
    let key = this.#cache.get(cacheKey);
    if (key === undefined) {
      key = createSecretKey(deriveSealKey(this.#root, { policy, isvSvn, cpuSvn, isvProdId, keyId: Buffer.from(b.subarray(64, 96)) }, id));
      this.#cache.set(cacheKey, key);
    }
    this.#lastReq = Buffer.from(req);
    this.#lastKey = key;
    return key;
  }
}
