/**
 * Ed25519 with node:crypto, raw 32-byte keys (notes/packages.md: raw keys <-> KeyObject via JWK for
 * public keys; private keys from their 32-byte seed through the fixed PKCS#8 prefix).
 *
 * Invariant: public KeyObjects are cached by raw key (they are public); private KeyObjects are never
 * cached here — their holders keep them in #private fields.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

export interface Ed25519KeyPair {
  readonly seed: Buffer;
  readonly publicKey: Buffer;
}

export function generateEd25519(): Ed25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  return { seed: Buffer.from(jwk.d ?? "", "base64url"), publicKey: rawPublic(publicKey) };
}

export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new TypeError("Ed25519 seed must be 32 bytes");
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
}

export function rawPublic(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return Buffer.from(pub.export({ format: "jwk" }).x ?? "", "base64url");
}

const pubCache = new Map<string, KeyObject>();
const PUB_CACHE_MAX = 1024;

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new TypeError("Ed25519 public key must be 32 bytes");
  const k = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("latin1");
  let obj = pubCache.get(k);
  if (obj === undefined) {
    obj = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
    if (pubCache.size >= PUB_CACHE_MAX) pubCache.clear();
    pubCache.set(k, obj);
  }
  return obj;
}

export function ed25519Sign(key: KeyObject, msg: Uint8Array): Buffer {
  return sign(null, msg, key);
}

/** False (never throws) on a malformed key or signature. */
export function ed25519Verify(rawPub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  try {
    return verify(null, msg, publicKeyFromRaw(rawPub), sig);
  } catch {
    return false;
  }
}
