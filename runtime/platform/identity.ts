/**
 * Enclave identity: what EINIT establishes and what keys, counters and reports bind to.
 *
 * Invariants: `mrenclave` and `mrsigner` are exactly 32 bytes; `isvProdId` and `isvSvn` are integers
 * in 0..65535. `checkIdentity` copies the buffers, so a caller mutating its own buffers later cannot
 * change an identity the platform holds. MRENCLAVE itself is computed by runtime/enclave (ABI.md §5).
 */
import { hash } from "node:crypto";
import { PlatformError } from "./errors.js";

export interface EnclaveIdentity {
  readonly mrenclave: Buffer;
  readonly mrsigner: Buffer;
  readonly isvProdId: number;
  readonly isvSvn: number;
  readonly debug: boolean;
}

/** Who a report is for (SGX TARGETINFO): the target's MRENCLAVE and debug attribute. */
export interface TargetInfo {
  readonly mrenclave: Buffer;
  readonly debug: boolean;
}

export function isU16(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** Validates and deep-copies an identity; throws PLATFORM_BAD_IDENTITY naming the bad field. */
export function checkIdentity(id: EnclaveIdentity): EnclaveIdentity {
  if (id === null || typeof id !== "object") throw new PlatformError("PLATFORM_BAD_IDENTITY", "identity must be an object");
  for (const f of ["mrenclave", "mrsigner"] as const) {
    const v: unknown = id[f];
    if (!(v instanceof Uint8Array) || v.length !== 32) {
      throw new PlatformError("PLATFORM_BAD_IDENTITY", `identity.${f} must be 32 bytes`);
    }
  }
  for (const f of ["isvProdId", "isvSvn"] as const) {
    if (!isU16(id[f])) throw new PlatformError("PLATFORM_BAD_IDENTITY", `identity.${f} must be an integer 0..65535`);
  }
  if (typeof id.debug !== "boolean") throw new PlatformError("PLATFORM_BAD_IDENTITY", "identity.debug must be a boolean");
  return Object.freeze({
    mrenclave: Buffer.from(id.mrenclave),
    mrsigner: Buffer.from(id.mrsigner),
    isvProdId: id.isvProdId,
    isvSvn: id.isvSvn,
    debug: id.debug,
  });
}

/** Parses exactly `bytes` bytes of hex (case-insensitive, optional 0x); throws a TypeError naming `what`. */
export function fromHex(hex: string, bytes: number, what: string): Buffer {
  const s = hex.trim().replace(/^0x/i, "");
  if (s.length !== bytes * 2 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError(`${what} must be ${bytes * 2} hex digits`);
  }
  return Buffer.from(s, "hex");
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** A JSON-friendly view (hex strings) for logs and CLI output; identities are public. */
export function identityToJSON(id: EnclaveIdentity): {
  mrenclave: string;
  mrsigner: string;
  isvProdId: number;
  isvSvn: number;
  debug: boolean;
} {
  return { mrenclave: toHex(id.mrenclave), mrsigner: toHex(id.mrsigner), isvProdId: id.isvProdId, isvSvn: id.isvSvn, debug: id.debug };
}

/** `SHA-256(TAG(purpose) || parts...)` with the FORMATS.md domain tag convention. */
export function taggedHash(purpose: string, ...parts: Uint8Array[]): Buffer {
  return hash("sha256", Buffer.concat([tag(purpose), ...parts]), "buffer");
}

const tags = new Map<string, Buffer>();

/** `selkie/<purpose>/v1` followed by one zero byte (cached; callers must not modify it). */
export function tag(purpose: string): Buffer {
  let t = tags.get(purpose);
  if (t === undefined) {
    t = Buffer.from(`selkie/${purpose}/v1\0`, "latin1");
    tags.set(purpose, t);
  }
  return t;
}
