import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import {
  CertificateAuthority,
  Platform,
  QUOTING_IDENTITY,
  QuoteError,
  ReportError,
  readCaCertificate,
  reportDataFor,
  verifyQuote,
  VerifiedQuote,
  type VerifyQuoteOptions,
} from "../../runtime/platform/index.js";
import { h, identity, rmDir, tempDir } from "./helpers.js";

const NONCE = "3b9f0c1d2e4a5b6c7d8e9f00";
const DAY = 86_400_000;

interface Fleet {
  ca: CertificateAuthority;
  p: Platform;
  dirs: string[];
}

async function fleet(opts: { certDays?: number; dev?: boolean } = {}): Promise<Fleet> {
  const caDir = tempDir("selkie-ca-");
  const pDir = tempDir();
  const ca = CertificateAuthority.create(caDir, { dev: opts.dev === true });
  const p = await Platform.create(pDir, { ca, ...(opts.certDays !== undefined ? { certDays: opts.certDays } : {}) });
  return { ca, p, dirs: [caDir, pDir] };
}

function done(f: Fleet): void {
  f.p.close();
  f.dirs.forEach(rmDir);
}

function x25519Pub(): Buffer {
  const { publicKey } = generateKeyPairSync("x25519");
  return Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url");
}

function refuses(quote: Uint8Array, opts: VerifyQuoteOptions, code: string): void {
  assert.throws(
    () => verifyQuote(quote, opts),
    (e: unknown) => {
      assert.ok(e instanceof QuoteError, `expected QuoteError, got ${String(e)}`);
      assert.equal(e.code, code, e.message);
      return true;
    },
  );
}

test("a valid quote verifies and carries the identity, platform and bound X25519 key", async () => {
  const f = await fleet();
  try {
    const id = identity();
    const pub = x25519Pub();
    const q = f.p.servicesFor(id).quote(reportDataFor(NONCE, pub));
    const v = verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, mrenclave: id.mrenclave, mrsigner: id.mrsigner, isvProdId: 1, minIsvSvn: 3, minCpuSvn: 1 });
    assert.ok(v instanceof VerifiedQuote);
    assert.deepEqual(v.identity.mrenclave, id.mrenclave);
    assert.equal(v.identity.isvSvn, 3);
    assert.equal(v.platformId, f.p.platformId);
    assert.equal(v.caId, f.ca.caId.toString("hex"));
    assert.equal(v.dev, false);
    assert.deepEqual(v.peerPublicKey, pub);
    // Also by CA public key alone, by CA certificate bytes, and with hex expectations.
    verifyQuote(q, { caPublicKey: f.ca.publicKey, nonce: NONCE, mrenclave: id.mrenclave.toString("hex") });
    verifyQuote(q, { ca: readCaCertificate(path.join(f.ca.dir, "ca.cert")).bytes, nonce: NONCE, anyEnclave: true });
  } finally {
    done(f);
  }
});

test("a VerifiedQuote cannot be constructed outside the verifier", () => {
  assert.throws(() => new VerifiedQuote(Symbol("VerifiedQuote"), {} as never), TypeError);
});

test("a quote with a replayed or wrong nonce fails with QUOTE_NONCE_MISMATCH", async () => {
  const f = await fleet();
  try {
    const old = f.p.servicesFor(identity()).quote(reportDataFor("ea41e7aa00010203"));
    refuses(old, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_NONCE_MISMATCH");
  } finally {
    done(f);
  }
});

test("a quote with a forged signature fails with QUOTE_BAD_SIGNATURE", async () => {
  const f = await fleet();
  try {
    const q = Buffer.from(f.p.servicesFor(identity()).quote(reportDataFor(NONCE)));
    q[q.length - 10] = (q[q.length - 10] ?? 0) ^ 0xff;
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_BAD_SIGNATURE");
    // A signature by another platform's key over this quote's bytes: also refused.
    const g = await fleet();
    try {
      const other = g.p.servicesFor(identity()).quote(reportDataFor(NONCE));
      const spliced = Buffer.concat([q.subarray(0, q.length - 64), other.subarray(other.length - 64)]);
      refuses(spliced, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_BAD_SIGNATURE");
    } finally {
      done(g);
    }
  } finally {
    done(f);
  }
});

test("a quote whose certificate comes from another CA fails with QUOTE_UNTRUSTED_CA", async () => {
  const f = await fleet();
  const g = await fleet();
  try {
    const q = g.p.servicesFor(identity()).quote(reportDataFor(NONCE));
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_UNTRUSTED_CA");
  } finally {
    done(f);
    done(g);
  }
});

test("a platform certificate claiming the trusted CA but signed by another key fails with QUOTE_CERT_BAD_SIGNATURE", async () => {
  const f = await fleet();
  try {
    const q = Buffer.from(f.p.servicesFor(identity()).quote(reportDataFor(NONCE)));
    q[188 + 100] = (q[188 + 100] ?? 0) ^ 1; // inside the certificate signature
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_CERT_BAD_SIGNATURE");
  } finally {
    done(f);
  }
});

test("a quote with a tampered report field fails with QUOTE_BAD_SIGNATURE", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity({ debug: true })).quote(reportDataFor(NONCE));
    const fields: Array<[string, number]> = [
      ["debug flag", 8 + 5],
      ["cpusvn", 8 + 9],
      ["isvprodid", 8 + 11],
      ["isvsvn", 8 + 13],
      ["mrenclave", 8 + 16],
      ["mrsigner", 8 + 60],
      ["report data", 8 + 100],
      ["key id", 8 + 150],
    ];
    for (const [name, at] of fields) {
      const t = Buffer.from(q);
      t[at] = (t[at] ?? 0) ^ 0x01;
      assert.throws(() => verifyQuote(t, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, allowDebug: true }), { code: "QUOTE_BAD_SIGNATURE" }, name);
    }
  } finally {
    done(f);
  }
});

test("a quote with a wrong measurement fails with QUOTE_MRENCLAVE_MISMATCH / QUOTE_MRSIGNER_MISMATCH", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity()).quote(reportDataFor(NONCE));
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, mrenclave: h("enclave-b") }, "QUOTE_MRENCLAVE_MISMATCH");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, mrsigner: h("signer-b"), isvProdId: 1 }, "QUOTE_MRSIGNER_MISMATCH");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, isvProdId: 9 }, "QUOTE_PRODID_MISMATCH");
  } finally {
    done(f);
  }
});

test("a quote of an enclave below the required version fails with QUOTE_SVN_TOO_LOW", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity({ isvSvn: 2 })).quote(reportDataFor(NONCE));
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, minIsvSvn: 3 }, "QUOTE_SVN_TOO_LOW");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, minCpuSvn: 2 }, "QUOTE_CPUSVN_TOO_LOW");
  } finally {
    done(f);
  }
});

test("a debug enclave's quote fails with QUOTE_DEBUG_ENCLAVE where production is required", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity({ debug: true })).quote(reportDataFor(NONCE));
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_DEBUG_ENCLAVE");
    assert.equal(verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, allowDebug: true }).identity.debug, true);
  } finally {
    done(f);
  }
});

test("a quote with an expired or not yet valid certificate fails with QUOTE_CERT_EXPIRED / NOT_YET_VALID", async () => {
  const f = await fleet({ certDays: 1 });
  try {
    const q = f.p.servicesFor(identity()).quote(reportDataFor(NONCE));
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true });
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, now: Date.now() + 2 * DAY }, "QUOTE_CERT_EXPIRED");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, now: Date.now() - DAY }, "QUOTE_CERT_NOT_YET_VALID");
    // The CA's own certificate expires too (10 years by default).
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true, now: Date.now() + 4000 * DAY }, "QUOTE_CERT_EXPIRED");
  } finally {
    done(f);
  }
});

test("a quote certified by a development CA fails with QUOTE_DEV_CA unless dev is allowed", async () => {
  const d = tempDir();
  const p = await Platform.create(d);
  try {
    assert.equal(p.dev, true);
    const q = p.servicesFor(identity()).quote(reportDataFor(NONCE));
    const ca = readCaCertificate(path.join(d, "dev-ca", "ca.cert"));
    refuses(q, { ca, nonce: NONCE, anyEnclave: true }, "QUOTE_DEV_CA");
    assert.equal(verifyQuote(q, { ca, nonce: NONCE, anyEnclave: true, allowDev: true }).dev, true);
    // Marked dev even when the verifier only has the CA's key.
    refuses(q, { caPublicKey: ca.subjectKey, nonce: NONCE, anyEnclave: true }, "QUOTE_DEV_CA");
  } finally {
    p.close();
    rmDir(d);
  }
});

test("malformed quotes and unknown versions fail with QUOTE_MALFORMED / QUOTE_VERSION_UNSUPPORTED, never a crash", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity()).quote(reportDataFor(NONCE));
    const opts = { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true };
    for (let n = 0; n < q.length; n += 7) refuses(q.subarray(0, n), opts, "QUOTE_MALFORMED");
    refuses(Buffer.concat([q, Buffer.alloc(1)]), opts, "QUOTE_MALFORMED");
    const v = Buffer.from(q);
    v[4] = 2;
    refuses(v, opts, "QUOTE_VERSION_UNSUPPORTED");
    const c = Buffer.from(q);
    c[184] = 0;
    refuses(c, opts, "QUOTE_MALFORMED");
    const cv = Buffer.from(q);
    cv[188 + 4] = 9; // certificate version
    refuses(cv, opts, "QUOTE_VERSION_UNSUPPORTED");
    // Random bytes of every kind are refused with a QuoteError.
    for (let i = 0; i < 200; i++) {
      const r = Buffer.from(q);
      r[Math.floor(Math.random() * r.length)] = Math.floor(Math.random() * 256);
      try {
        verifyQuote(r, opts);
      } catch (e) {
        assert.ok(e instanceof QuoteError, String(e));
      }
    }
  } finally {
    done(f);
  }
});

test("verifyQuote makes the verifier choose an enclave policy: MRENCLAVE, MRSIGNER + ISVPRODID, or anyEnclave", async () => {
  const f = await fleet();
  try {
    const id = identity();
    const q = f.p.servicesFor(id).quote(reportDataFor(NONCE));
    refuses(q, { ca: f.ca.certificate, nonce: NONCE }, "QUOTE_NO_POLICY");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, minIsvSvn: 1, isvProdId: 1 }, "QUOTE_NO_POLICY");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, mrsigner: id.mrsigner }, "QUOTE_NO_POLICY"); // a signer without its product
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: false }, "QUOTE_NO_POLICY");
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, mrenclave: id.mrenclave });
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, mrsigner: id.mrsigner, isvProdId: id.isvProdId, minIsvSvn: id.isvSvn });
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true });
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, mrsigner: id.mrsigner, isvProdId: id.isvProdId, minIsvSvn: id.isvSvn + 1 }, "QUOTE_SVN_TOO_LOW");
  } finally {
    done(f);
  }
});

test("a nonce given as a string is hex, the same bytes as given as a Buffer; text is refused", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity()).quote(reportDataFor(Buffer.from(NONCE, "hex")));
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE, anyEnclave: true });
    verifyQuote(q, { ca: f.ca.certificate, nonce: NONCE.toUpperCase(), anyEnclave: true });
    refuses(q, { ca: f.ca.certificate, nonce: "not hex, just some text", anyEnclave: true }, "QUOTE_BAD_OPTIONS");
    assert.throws(() => reportDataFor("nonce-as-text-1234"), TypeError);
  } finally {
    done(f);
  }
});

test("verifyQuote refuses missing trust anchors and bad options with QUOTE_BAD_OPTIONS", async () => {
  const f = await fleet();
  try {
    const q = f.p.servicesFor(identity()).quote(reportDataFor(NONCE));
    refuses(q, { nonce: NONCE, anyEnclave: true }, "QUOTE_BAD_OPTIONS");
    refuses(q, { ca: f.ca.certificate, nonce: "short" }, "QUOTE_BAD_OPTIONS");
    refuses(q, { ca: f.ca.certificate, nonce: NONCE, mrenclave: "zz" }, "QUOTE_BAD_OPTIONS");
    refuses(q, { ca: f.p.certificate, nonce: NONCE, anyEnclave: true }, "QUOTE_BAD_OPTIONS");
  } finally {
    done(f);
  }
});

test("a local report verifies only for its target enclave on the same platform", async () => {
  const f = await fleet();
  const g = await fleet();
  try {
    const a = f.p.servicesFor(identity());
    const b = f.p.servicesFor(identity({ mrenclave: h("enclave-b") }));
    const data = Buffer.alloc(64, 5);
    const r = a.report(b.targetInfo(), data);
    const v = b.verifyReport(r);
    assert.deepEqual(v.identity.mrenclave, identity().mrenclave);
    assert.deepEqual(v.reportData, data);
    assert.throws(() => a.verifyReport(r), (e: unknown) => e instanceof ReportError && e.code === "REPORT_BAD_MAC");
    const bOnG = g.p.servicesFor(identity({ mrenclave: h("enclave-b") }));
    assert.throws(() => bOnG.verifyReport(r), { code: "REPORT_BAD_MAC" });
    const t = Buffer.from(r);
    t[20] = (t[20] ?? 0) ^ 1;
    assert.throws(() => b.verifyReport(t), { code: "REPORT_BAD_MAC" });
    assert.throws(() => b.verifyReport(r.subarray(0, 100)), { code: "REPORT_MALFORMED" });
    assert.throws(() => a.report(b.targetInfo(), Buffer.alloc(10)), { code: "REPORT_BAD_REQUEST" });
  } finally {
    done(f);
    done(g);
  }
});

test("the platform quotes only a report targeted at its quoting identity with a valid MAC", async () => {
  const f = await fleet();
  try {
    const a = f.p.servicesFor(identity());
    const b = f.p.servicesFor(identity({ mrenclave: h("enclave-b") }));
    const data = reportDataFor(NONCE);
    const forQe = a.report(f.p.quotingTarget(), data);
    verifyQuote(f.p.quote(forQe), { ca: f.ca.certificate, nonce: NONCE, mrenclave: identity().mrenclave });
    assert.throws(() => f.p.quote(a.report(b.targetInfo(), data)), { code: "REPORT_BAD_MAC" });
    const forged = Buffer.from(forQe);
    forged[16] = (forged[16] ?? 0) ^ 1; // claim another MRENCLAVE
    assert.throws(() => f.p.quote(forged), { code: "REPORT_BAD_MAC" });
    // The platform quotes its own quoting identity (what `selkie quote` does): it attests the
    // platform only. There is no way to get services for that identity, or any other made-up one.
    const self = f.p.quoteSelf(data);
    assert.deepEqual(verifyQuote(self, { ca: f.ca.certificate, nonce: NONCE, mrenclave: QUOTING_IDENTITY.mrenclave }).identity.mrenclave, QUOTING_IDENTITY.mrenclave);
    assert.throws(() => f.p.servicesFor(QUOTING_IDENTITY as never), { code: "PLATFORM_NOT_MEASURED" });
  } finally {
    done(f);
  }
});
