/**
 * EINIT (runtime/platform/einit.ts, runtime/enclave/einit.ts): the platform acts as an enclave only
 * for what the loader measured, and MRSIGNER enters only through a verified signature.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { checkModule } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { Enclave } from "../../runtime/enclave/enclave.js";
import { measureEnclave } from "../../runtime/enclave/measure.js";
import { generateSigningKey, signEnclave } from "../../runtime/enclave/sigstruct.js";
import { MeasuredEnclave, takeEinitMinter } from "../../runtime/platform/einit.js";
import { Platform, QUOTING_IDENTITY, reportDataFor, verifyQuote, readCaCertificate } from "../../runtime/platform/index.js";
import { h, identity, rmDir, tempDir } from "../platform/helpers.js";
import { wat } from "../helpers.js";
import * as path from "node:path";

const MEM = `(import "selkie:sys" "memory" (memory 1))`;

test("servicesFor refuses any identity the loader did not measure: plain objects, look-alikes, forged instances", async () => {
  const dir = tempDir();
  const p = await Platform.create(dir);
  try {
    const real = identity();
    const plain = { mrenclave: real.mrenclave, mrsigner: real.mrsigner, isvProdId: real.isvProdId, isvSvn: real.isvSvn, debug: false };
    const lookAlike = Object.assign(Object.create(MeasuredEnclave.prototype) as object, plain);
    for (const fake of [plain, lookAlike, QUOTING_IDENTITY, { ...real }]) {
      assert.throws(() => p.servicesFor(fake as never), { code: "PLATFORM_NOT_MEASURED" });
    }
    assert.throws(() => new MeasuredEnclave(Symbol("MeasuredEnclave"), plain), { code: "PLATFORM_NOT_MEASURED" });
    // The one-shot minting capability is already held by the loader.
    assert.throws(() => takeEinitMinter(), { code: "PLATFORM_EINIT_TAKEN" });
    // What the loader measured works, and a sealed blob of it does not open under a look-alike.
    const blob = p.servicesFor(real).seal(Buffer.from("secret"));
    assert.equal(p.servicesFor(real).unseal(blob).toString(), "secret");
    assert.ok(Object.isFrozen(real));
  } finally {
    p.close();
    rmDir(dir);
  }
});

test("MRSIGNER and ISVPRODID come only from a signature the loader verified over the measured module", async () => {
  const m = checkModule(await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 7))`));
  const other = checkModule(await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 8))`));
  const manifest = parseManifest({ format: 1, name: "t", version: 3, epc: "1MiB" });
  const k = generateSigningKey();
  const sig = signEnclave(manifest, measureEnclave(m.sha256, manifest), createPrivateKey(k.pem), { isvProdId: 42 });
  const e = new Enclave({ module: m, manifest, signature: sig });
  assert.deepEqual(e.measured.mrsigner, k.mrsigner);
  assert.equal(e.measured.isvProdId, 42);
  assert.equal(e.measured.isvSvn, 3);
  // The same signature on other bytes, or with the product number rewritten, gives no enclave at all.
  assert.throws(() => new Enclave({ module: other, manifest, signature: sig }), { code: "SIG_MRENCLAVE_MISMATCH" });
  assert.throws(() => new Enclave({ module: m, manifest, signature: { ...sig, isvProdId: 1 } }), { code: "SIG_BAD_SIGNATURE" });
  // The EPC cap is runtime policy: another cap, the same identity.
  const bigger = parseManifest({ format: 1, name: "t", version: 3, epc: "64MiB" });
  assert.deepEqual(new Enclave({ module: m, manifest: bigger, signature: sig }).measured.mrenclave, e.measured.mrenclave);
});

test("a quote of an enclave comes from its own services; the platform quotes only itself otherwise", async () => {
  const dir = tempDir();
  const p = await Platform.create(dir);
  try {
    const ca = readCaCertificate(path.join(dir, "dev-ca", "ca.cert"));
    const nonce = "c0ffee00c0ffee00c0ffee00c0ffee00";
    const a = identity();
    const q = p.servicesFor(a).quote(reportDataFor(nonce));
    assert.deepEqual(verifyQuote(q, { ca, nonce, allowDev: true, mrenclave: a.mrenclave }).identity.mrsigner, a.mrsigner);
    const self = p.quoteSelf(reportDataFor(nonce));
    assert.throws(() => verifyQuote(self, { ca, nonce, allowDev: true, mrenclave: a.mrenclave }), { code: "QUOTE_MRENCLAVE_MISMATCH" });
    assert.deepEqual(verifyQuote(self, { ca, nonce, allowDev: true, mrenclave: QUOTING_IDENTITY.mrenclave }).identity.mrenclave, QUOTING_IDENTITY.mrenclave);
    // No identity can be claimed by seed: h("enclave-a") is what the test helper hashes into a module, not a measurement.
    assert.notDeepEqual(a.mrenclave, h("enclave-a"));
  } finally {
    p.close();
    rmDir(dir);
  }
});
