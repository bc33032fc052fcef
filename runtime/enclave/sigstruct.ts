/**
 * SIGSTRUCT (enclaves/ABI.md §6, format 1): a developer's Ed25519 signature over an enclave's
 * identity (name, ISVSVN, ISVPRODID, MRENCLAVE). MRSIGNER = SHA-256 of the signer's raw 32-byte
 * public key. ISVPRODID (the signer's product number, 0 when absent) is signed too, so sealed data
 * and counters of one product are out of reach of the same signer's other products.
 *
 * The signed message is built from the manifest and the MRENCLAVE the verifier computes itself from
 * the module bytes, never from the fields of the signature file, so any change to the module, the
 * manifest's measured fields, its name or its version breaks the signature.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { SelkieError } from "../errors.js";
import type { Manifest } from "./manifest.js";

export const SIGSTRUCT_FORMAT = 1;
const TAG = "selkie/sigstruct/v1\0";
/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows (32 bytes). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export class SigstructError extends SelkieError {}

export interface Sigstruct {
  readonly format: 1;
  readonly name: string;
  /** ISVSVN: the manifest's version. */
  readonly version: number;
  /** ISVPRODID, 0..65535; absent means 0 (ABI revision 5 signatures have none). */
  readonly isvProdId?: number;
  /** Hex. */
  readonly mrenclave: string;
  /** Raw Ed25519 public key, base64 (32 bytes). */
  readonly publicKey: string;
  /** Ed25519 signature over signedMessage(), base64 (64 bytes). */
  readonly signature: string;
}

/** The bytes a SIGSTRUCT signs (ABI §6). */
export function signedMessage(manifest: Manifest, mrenclave: Uint8Array, isvProdId = 0): Buffer {
  // ISVPRODID 0 signs exactly what revision 5 signed, so existing signatures stay valid.
  const prod = isvProdId === 0 ? "" : `,"isvProdId":${isvProdId}`;
  const canonical = `{"format":${SIGSTRUCT_FORMAT},"name":${JSON.stringify(manifest.name)},"version":${manifest.version}${prod},"mrenclave":"${Buffer.from(mrenclave).toString("hex")}"}`;
  return Buffer.concat([Buffer.from(TAG, "utf8"), Buffer.from(canonical, "utf8")]);
}

/** MRSIGNER of a raw 32-byte Ed25519 public key. */
export function mrsignerOf(rawPublicKey: Uint8Array): Buffer {
  return createHash("sha256").update(rawPublicKey).digest();
}

export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const der = pub.export({ type: "spki", format: "der" });
  if (pub.asymmetricKeyType !== "ed25519" || der.length !== 44 || !der.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) {
    throw new SigstructError("SIG_BAD_KEY", "the signing key is not an Ed25519 key");
  }
  return der.subarray(12);
}

/** A fresh developer key, as a PKCS#8 PEM private key. */
export function generateSigningKey(): { pem: string; publicKey: Buffer; mrsigner: Buffer } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pub = rawPublicKey(privateKey);
  return { pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string, publicKey: pub, mrsigner: mrsignerOf(pub) };
}

export function loadSigningKey(pem: string | Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new SigstructError("SIG_BAD_KEY", `cannot read the signing key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new SigstructError("SIG_BAD_KEY", `the signing key is ${key.asymmetricKeyType}, not Ed25519`);
  return key;
}

export function signEnclave(manifest: Manifest, mrenclave: Uint8Array, key: KeyObject, opts: { isvProdId?: number } = {}): Sigstruct {
  const isvProdId = opts.isvProdId ?? 0;
  if (!Number.isInteger(isvProdId) || isvProdId < 0 || isvProdId > 0xffff) throw new SigstructError("SIG_MALFORMED", "isvProdId must be an integer 0..65535");
  const pub = rawPublicKey(key);
  const sig = sign(null, signedMessage(manifest, mrenclave, isvProdId), key);
  return {
    format: SIGSTRUCT_FORMAT,
    name: manifest.name,
    version: manifest.version,
    ...(isvProdId !== 0 ? { isvProdId } : {}),
    mrenclave: Buffer.from(mrenclave).toString("hex"),
    publicKey: pub.toString("base64"),
    signature: sig.toString("base64"),
  };
}

const KEYS = ["format", "name", "version", "isvProdId", "mrenclave", "publicKey", "signature"];

/** Strict parse of a SIGSTRUCT object (as read from JSON). */
export function parseSigstruct(raw: unknown): Sigstruct {
  const fail = (msg: string): never => {
    throw new SigstructError("SIG_MALFORMED", `signature: ${msg}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("must be a JSON object");
  const s = raw as Record<string, unknown>;
  for (const k of Object.keys(s)) if (!KEYS.includes(k)) fail(`unknown key "${k}" (allowed: ${KEYS.join(", ")})`);
  if (s.format !== SIGSTRUCT_FORMAT) fail(`format must be ${SIGSTRUCT_FORMAT}`);
  if (typeof s.name !== "string") fail("name must be a string");
  if (!Number.isInteger(s.version)) fail("version must be an integer");
  if (s.isvProdId !== undefined && (!Number.isInteger(s.isvProdId) || (s.isvProdId as number) < 0 || (s.isvProdId as number) > 0xffff)) fail("isvProdId must be an integer 0..65535");
  if (typeof s.mrenclave !== "string" || !/^[0-9a-f]{64}$/.test(s.mrenclave)) fail("mrenclave must be 64 lowercase hex digits");
  const b64 = (v: unknown, len: number, what: string): void => {
    if (typeof v !== "string" || !/^[A-Za-z0-9+/]+={0,2}$/.test(v) || Buffer.from(v, "base64").length !== len) fail(`${what} must be ${len} bytes in base64`);
  };
  b64(s.publicKey, 32, "publicKey");
  b64(s.signature, 64, "signature");
  return s as unknown as Sigstruct;
}

/**
 * Verifies a SIGSTRUCT against a manifest and the MRENCLAVE computed from the module; returns the
 * signer's MRSIGNER. Throws SigstructError: SIG_MALFORMED, SIG_NAME_MISMATCH, SIG_VERSION_MISMATCH,
 * SIG_MRENCLAVE_MISMATCH, SIG_BAD_SIGNATURE.
 */
export function verifyEnclaveSignature(raw: unknown, manifest: Manifest, mrenclave: Uint8Array): { mrsigner: Buffer; publicKey: Buffer; isvProdId: number } {
  const s = parseSigstruct(raw);
  if (s.name !== manifest.name) throw new SigstructError("SIG_NAME_MISMATCH", `the signature is for enclave "${s.name}", the manifest names "${manifest.name}"`);
  if (s.version !== manifest.version) throw new SigstructError("SIG_VERSION_MISMATCH", `the signature is for version ${s.version}, the manifest has version ${manifest.version}`);
  const mr = Buffer.from(mrenclave).toString("hex");
  if (s.mrenclave !== mr) {
    throw new SigstructError("SIG_MRENCLAVE_MISMATCH", `the signature is for MRENCLAVE ${s.mrenclave}, but this module and manifest measure ${mr} (the module or a measured manifest field changed since signing)`);
  }
  const pub = Buffer.from(s.publicKey, "base64");
  let ok = false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pub]), format: "der", type: "spki" });
    ok = verify(null, signedMessage(manifest, mrenclave, s.isvProdId ?? 0), key, Buffer.from(s.signature, "base64"));
  } catch {
    ok = false;
  }
  if (!ok) throw new SigstructError("SIG_BAD_SIGNATURE", "the signature does not verify with its public key over this manifest and module");
  return { mrsigner: mrsignerOf(pub), publicKey: pub, isvProdId: s.isvProdId ?? 0 };
}
