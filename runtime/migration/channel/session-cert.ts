/**
 * A self-signed X.509 certificate over a fresh Ed25519 key, made for one channel session (CHANNEL.md
 * §2). It carries no trust: TLS needs a certificate, and the attestation binds the session instead.
 * DER is written directly (RFC 5280 §4.1, Ed25519 per RFC 8410): version 3, random serial, CN
 * "selkie-migration" as issuer and subject, valid from 1 minute ago for 10 minutes, no extensions.
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";

const ED25519_ALG = Buffer.from("300506032b6570", "hex"); // SEQUENCE { OID 1.3.101.112 }
const CN_OID = Buffer.from("0603550403", "hex"); // OID 2.5.4.3

function der(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else if (n < 0x100) len = Buffer.from([0x81, n]);
  else len = Buffer.from([0x82, n >> 8, n & 0xff]); // certificates here are far below 64 KiB
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...parts: Buffer[]): Buffer => der(0x30, Buffer.concat(parts));

function utcTime(ms: number): Buffer {
  const s = new Date(ms).toISOString(); // 2026-12-04T14:35:07.123Z
  const t = `${s.slice(2, 4)}${s.slice(5, 7)}${s.slice(8, 10)}${s.slice(11, 13)}${s.slice(14, 16)}${s.slice(17, 19)}Z`;
  return der(0x17, Buffer.from(t, "latin1"));
}

function name(cn: string): Buffer {
  return seq(der(0x31, seq(CN_OID, der(0x0c, Buffer.from(cn, "utf8")))));
}

export interface SessionCertificate {
  /** PEM, for tls `cert`. */
  readonly cert: string;
  /** The private key (PKCS#8 PEM), in memory only. */
  readonly key: string;
}

export function sessionCertificate(now = Date.now()): SessionCertificate {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const spki = publicKey.export({ type: "spki", format: "der" });
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01; // positive, no leading zero byte
  const who = name("selkie-migration");
  const tbs = seq(
    Buffer.from("a003020102", "hex"), // [0] EXPLICIT version v3
    der(0x02, serial),
    ED25519_ALG,
    who,
    seq(utcTime(now - 60_000), utcTime(now + 10 * 60_000)),
    who,
    spki,
  );
  const sig = sign(null, tbs, privateKey);
  const cert = seq(tbs, ED25519_ALG, der(0x03, Buffer.concat([Buffer.from([0]), sig])));
  const b64 = cert.toString("base64").replace(/.{1,64}/g, "$&\n");
  return { cert: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`, key: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
}
