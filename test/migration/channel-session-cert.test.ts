import { test } from "node:test";
import * as assert from "node:assert/strict";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { sessionCertificate } from "../../runtime/migration/channel/session-cert.js";

test("a session certificate is valid self-signed X.509 over a fresh Ed25519 key, valid for 10 minutes", () => {
  const now = Date.UTC(2026, 11, 4, 15, 0, 0);
  const a = sessionCertificate(now);
  const b = sessionCertificate(now);
  const x = new X509Certificate(a.cert);
  assert.equal(x.subject, "CN=selkie-migration");
  assert.equal(x.issuer, "CN=selkie-migration");
  assert.equal(x.publicKey.asymmetricKeyType, "ed25519");
  assert.equal(x.verify(x.publicKey), true, "self-signed");
  assert.equal(x.checkPrivateKey(createPrivateKey(a.key)), true);
  assert.equal(new Date(x.validFrom).getTime(), now - 60_000);
  assert.equal(new Date(x.validTo).getTime(), now + 10 * 60_000);
  const y = new X509Certificate(b.cert);
  assert.notEqual(x.serialNumber, y.serialNumber);
  assert.notEqual(x.publicKey.export({ type: "spki", format: "der" }).toString("hex"), y.publicKey.export({ type: "spki", format: "der" }).toString("hex"), "a fresh key each time");
  assert.equal(y.verify(x.publicKey), false);
});
