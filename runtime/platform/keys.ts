/**
 * EGETKEY: HKDF-SHA256 derivation of seal and report keys from the platform's root secrets and a key
 * request (FORMATS.md §4).
 *
 * Invariants:
 * - An enclave at ISVSVN N can derive seal keys for isvSvn <= N, never > N (SEAL_SVN_TOO_HIGH); cpuSvn
 *   is at most RUNTIME_VERSION (SEAL_CPUSVN_TOO_HIGH). So a newer enclave reads an older one's data,
 *   never the reverse.
 * - This module holds no secret itself: roots are passed in by the Platform (from #private fields)
 *   and derived keys go back to closures in seal.ts / report.ts. Nothing here is exported through
 *   index.ts except the constants and types.
 */
import { hkdfSync } from "node:crypto";
import { SealError } from "./errors.js";
import { isU16, tag, type EnclaveIdentity, type TargetInfo } from "./identity.js";

/** Stands for CPUSVN: bumped when the platform layer's security-relevant behavior changes. */
export const RUNTIME_VERSION = 1;

export const KeyName = Object.freeze({ SEAL: 1, REPORT: 2 } as const);
export type KeyName = (typeof KeyName)[keyof typeof KeyName];

/** Numeric ids are fixed (FORMATS.md §4). */
export const SealPolicy = Object.freeze({ MRENCLAVE: 1, MRSIGNER: 2 } as const);
export type SealPolicyName = keyof typeof SealPolicy;
export type SealPolicyId = (typeof SealPolicy)[SealPolicyName];

export function policyId(name: SealPolicyName | undefined, dflt: SealPolicyName): SealPolicyId {
  const n = name ?? dflt;
  if (n !== "MRENCLAVE" && n !== "MRSIGNER") throw new SealError("SEAL_BAD_REQUEST", `policy must be "MRENCLAVE" or "MRSIGNER", got ${JSON.stringify(name)}`);
  return SealPolicy[n];
}

export function policyName(id: number): SealPolicyName | undefined {
  return id === SealPolicy.MRENCLAVE ? "MRENCLAVE" : id === SealPolicy.MRSIGNER ? "MRSIGNER" : undefined;
}

export interface SealKeyRequest {
  readonly policy: SealPolicyId;
  readonly isvSvn: number;
  readonly cpuSvn: number;
  readonly isvProdId: number;
  readonly keyId: Buffer; // 32 random bytes
}

const EGETKEY_TAG = tag("egetkey");
const ZERO32 = Buffer.alloc(32);

function info(keyName: KeyName, policy: number, debug: boolean, cpuSvn: number, isvSvn: number, isvProdId: number, mrenclave: Buffer, mrsigner: Buffer): Buffer {
  const b = Buffer.alloc(EGETKEY_TAG.length + 12 + 64);
  let o = EGETKEY_TAG.copy(b, 0);
  b[o++] = keyName;
  b[o++] = policy;
  b[o++] = debug ? 1 : 0;
  b[o++] = 0;
  o = b.writeUInt16BE(cpuSvn, o);
  o = b.writeUInt16BE(isvSvn, o);
  o = b.writeUInt16BE(isvProdId, o);
  o = b.writeUInt16BE(0, o);
  o += mrenclave.copy(b, o);
  mrsigner.copy(b, o);
  return b;
}

/** EGETKEY(SEAL) for `identity`. The caller's identity decides MRENCLAVE/MRSIGNER and debug. */
export function deriveSealKey(sealRoot: Buffer, req: SealKeyRequest, identity: EnclaveIdentity): Buffer {
  if (!isU16(req.isvSvn) || !isU16(req.cpuSvn) || !isU16(req.isvProdId) || req.keyId.length !== 32) {
    throw new SealError("SEAL_BAD_REQUEST", "malformed key request");
  }
  if (req.isvSvn > identity.isvSvn) {
    throw new SealError("SEAL_SVN_TOO_HIGH", `enclave at ISVSVN ${identity.isvSvn} cannot derive keys for ISVSVN ${req.isvSvn}`);
  }
  if (req.cpuSvn > RUNTIME_VERSION) {
    throw new SealError("SEAL_CPUSVN_TOO_HIGH", `runtime version ${RUNTIME_VERSION} cannot derive keys for runtime version ${req.cpuSvn}`);
  }
  if (req.isvProdId !== identity.isvProdId) throw new SealError("SEAL_BAD_REQUEST", "key request ISVPRODID differs from the enclave's");
  const i = info(
    KeyName.SEAL,
    req.policy,
    identity.debug,
    req.cpuSvn,
    req.isvSvn,
    req.isvProdId,
    req.policy === SealPolicy.MRENCLAVE ? identity.mrenclave : ZERO32,
    req.policy === SealPolicy.MRSIGNER ? identity.mrsigner : ZERO32,
  );
  return Buffer.from(hkdfSync("sha256", sealRoot, req.keyId, i, 32));
}

/** EGETKEY(REPORT) for the target enclave of a report. */
export function deriveReportKey(reportRoot: Buffer, keyId: Buffer, target: TargetInfo): Buffer {
  const i = info(KeyName.REPORT, SealPolicy.MRENCLAVE, target.debug, 0, 0, 0, target.mrenclave, ZERO32);
  return Buffer.from(hkdfSync("sha256", reportRoot, keyId, i, 32));
}

/** Key of the platform's counter store (FORMATS.md §4). */
export function deriveCounterStoreKey(sealRoot: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", sealRoot, Buffer.alloc(0), tag("counter-store"), 32));
}

/** A small bounded cache for derived keys, held inside closures only. */
export class KeyCache<V> {
  readonly #map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    return this.#map.get(k);
  }
  set(k: string, v: V): void {
    if (this.#map.size >= this.max) {
      const first = this.#map.keys().next();
      if (first.done !== true) this.#map.delete(first.value);
    }
    this.#map.set(k, v);
  }
}
