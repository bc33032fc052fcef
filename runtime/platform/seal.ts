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
  readonly req: SealKeyRequest;
  readonly key: KeyObject;
  readonly ivPrefix: number;
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

/** Parses and shape-checks a blob's header; does not check identity or authenticity. */
function parseHeader(blob: Uint8Array): ParsedHeader {
  if (!(blob instanceof Uint8Array)) fail("SEAL_MALFORMED", "sealed blob must be a Uint8Array");
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < 5) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} bytes)`);
  if (!b.subarray(0, 4).equals(SEAL_MAGIC)) fail("SEAL_MALFORMED", "not a sealed blob (bad magic)");
  if (b[4] !== SEAL_VERSION) fail("SEAL_VERSION_UNSUPPORTED", `sealed blob format version ${b[4]} is not supported (this runtime reads ${SEAL_VERSION})`);
  if (b.length < SEAL_HEADER_LEN) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} bytes, header alone is ${SEAL_HEADER_LEN})`);
  const length = b.readUInt32BE(108);
  const want = SEAL_HEADER_LEN + length + SEAL_TAG_LEN;
  if (b.length < want) fail("SEAL_TRUNCATED", `sealed blob is truncated (${b.length} of ${want} bytes)`);
  if (b.length > want) fail("SEAL_MALFORMED", `sealed blob has ${b.length - want} trailing bytes`);
  const policy = b[5] ?? 0;
  if (policyName(policy) === undefined) fail("SEAL_MALFORMED", `sealed blob has unknown policy ${policy}`);
  const flags = b[6] ?? 0;
  if ((flags & ~FLAG_DEBUG) !== 0 || b[7] !== 0 || b.readUInt16BE(14) !== 0) fail("SEAL_MALFORMED", "sealed blob has non-zero reserved bits");
  return {
    policy: policy as SealPolicyId,
    debug: (flags & FLAG_DEBUG) !== 0,
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

export class Sealer {
  readonly #root: Buffer;
  readonly #platformTag: Buffer;
  readonly #id: EnclaveIdentity;
  readonly #current = new Map<SealPolicyId, CurrentKey>();
  readonly #cache = new KeyCache<KeyObject>(64);

  constructor(sealRoot: Buffer, platformTag: Buffer, identity: EnclaveIdentity) {
    this.#root = sealRoot;
    this.#platformTag = platformTag;
    this.#id = identity;
  }

  #keyFor(policy: SealPolicyId): CurrentKey {
    let cur = this.#current.get(policy);
    if (cur === undefined || cur.uses >= KEYID_MAX_USES) {
      const req: SealKeyRequest = { policy, isvSvn: this.#id.isvSvn, cpuSvn: RUNTIME_VERSION, isvProdId: this.#id.isvProdId, keyId: randomBytes(32) };
      cur = { req, key: createSecretKey(deriveSealKey(this.#root, req, this.#id)), ivPrefix: randomBytes(4).readUInt32BE(0), uses: 0 };
      this.#current.set(policy, cur);
    }
    return cur;
  }

  seal(data: Uint8Array, opts: SealOptions = {}): Buffer {
    if (!(data instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "data to seal must be a Uint8Array");
    if (data.length > MAX_PLAINTEXT) fail("SEAL_BAD_REQUEST", "data to seal is larger than 4 GiB - 1");
    if (opts.aad !== undefined && !(opts.aad instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "aad must be a Uint8Array");
    const policy = policyId(opts.policy, "MRSIGNER");
    const cur = this.#keyFor(policy);
    const { req, key } = cur;
    const n = cur.uses++;
    const L = data.length;
    const out = Buffer.allocUnsafe(SEAL_HEADER_LEN + L + SEAL_TAG_LEN);
    SEAL_MAGIC.copy(out, 0);
    out[4] = SEAL_VERSION;
    out[5] = policy;
    out[6] = this.#id.debug ? FLAG_DEBUG : 0;
    out[7] = 0;
    out.writeUInt16BE(req.cpuSvn, 8);
    out.writeUInt16BE(req.isvSvn, 10);
    out.writeUInt16BE(req.isvProdId, 12);
    out.writeUInt16BE(0, 14);
    this.#platformTag.copy(out, 16);
    (policy === SealPolicy.MRENCLAVE ? this.#id.mrenclave : this.#id.mrsigner).copy(out, 32);
    req.keyId.copy(out, 64);
    const iv = out.subarray(96, 108);
    out.writeUInt32BE(cur.ivPrefix, 96);
    out.writeUInt32BE(0, 100); // counter high bits: uses < 2^24
    out.writeUInt32BE(n, 104);
    out.writeUInt32BE(L, 108);
    const c = createCipheriv("aes-256-gcm", key, iv);
    c.setAAD(out.subarray(0, SEAL_HEADER_LEN));
    if (opts.aad !== undefined && opts.aad.length > 0) c.setAAD(opts.aad);
    const ct = c.update(data);
    ct.copy(out, SEAL_HEADER_LEN);
    c.final();
    c.getAuthTag().copy(out, SEAL_HEADER_LEN + L);
    return out;
  }

  unseal(blob: Uint8Array, opts: UnsealOptions = {}): Buffer {
    if (opts.aad !== undefined && !(opts.aad instanceof Uint8Array)) fail("SEAL_BAD_REQUEST", "aad must be a Uint8Array");
    const h = parseHeader(blob);
    const id = this.#id;
    if (!h.platformTag.equals(this.#platformTag)) fail("SEAL_OTHER_PLATFORM", "sealed blob was sealed on another platform");
    if (h.policy === SealPolicy.MRENCLAVE) {
      if (!h.binding.equals(id.mrenclave)) fail("SEAL_WRONG_ENCLAVE", "sealed blob was sealed by another enclave (MRENCLAVE policy)");
    } else if (!h.binding.equals(id.mrsigner)) {
      fail("SEAL_WRONG_SIGNER", "sealed blob was sealed by another signer's enclave (MRSIGNER policy)");
    }
    if (h.isvProdId !== id.isvProdId) fail("SEAL_WRONG_PRODUCT", `sealed blob belongs to ISVPRODID ${h.isvProdId}, not ${id.isvProdId}`);
    if (h.debug !== id.debug) fail("SEAL_DEBUG_MISMATCH", `sealed blob was sealed by a ${h.debug ? "debug" : "production"} enclave`);
    if (h.isvSvn > id.isvSvn) fail("SEAL_ENCLAVE_TOO_OLD", `sealed blob needs ISVSVN >= ${h.isvSvn}; this enclave is at ${id.isvSvn}`);
    if (h.cpuSvn > RUNTIME_VERSION) fail("SEAL_RUNTIME_TOO_OLD", `sealed blob needs runtime version >= ${h.cpuSvn}; this runtime is ${RUNTIME_VERSION}`);
    const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    const cacheKey = b.toString("latin1", 5, 14) + h.keyId.toString("latin1");
    let key = this.#cache.get(cacheKey);
    if (key === undefined) {
      const req: SealKeyRequest = { policy: h.policy, isvSvn: h.isvSvn, cpuSvn: h.cpuSvn, isvProdId: h.isvProdId, keyId: Buffer.from(h.keyId) };
      key = createSecretKey(deriveSealKey(this.#root, req, id));
      this.#cache.set(cacheKey, key);
    }
    const d = createDecipheriv("aes-256-gcm", key, h.iv);
    d.setAAD(b.subarray(0, SEAL_HEADER_LEN));
    if (opts.aad !== undefined && opts.aad.length > 0) d.setAAD(opts.aad);
    d.setAuthTag(b.subarray(SEAL_HEADER_LEN + h.length));
    const pt = d.update(b.subarray(SEAL_HEADER_LEN, SEAL_HEADER_LEN + h.length));
    try {
      d.final();
    } catch {
      pt.fill(0);
      fail("SEAL_AUTH_FAILED", "sealed blob failed authentication: header, ciphertext, tag or additional data changed");
    }
    return pt;
  }
}
