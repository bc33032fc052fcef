import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { checkModule, measure } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { Enclave } from "../../runtime/enclave/enclave.js";
import { enclaveIdentity, UNSIGNED_MRSIGNER } from "../../runtime/enclave/identity.js";
import { generateSigningKey, signEnclave, verifyEnclaveSignature } from "../../runtime/enclave/sigstruct.js";
import { wat } from "../helpers.js";

const MEM = `(import "selkie:sys" "memory" (memory 1))`;

test("a SIGSTRUCT verifies, yields MRSIGNER = SHA-256(public key), and breaks on any change", async () => {
  const m = checkModule(await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 7))`));
  const manifest = parseManifest({ format: 1, name: "t", version: 3, epc: "1MiB", permissions: ["clock"] });
  const mr = measure(m, manifest);
  const k = generateSigningKey();
  const sig = signEnclave(manifest, mr, createPrivateKey(k.pem));
  const v = verifyEnclaveSignature(sig, manifest, mr);
  assert.deepEqual(v.mrsigner, k.mrsigner);
  const e = new Enclave({ module: m, manifest, signature: sig });
  assert.deepEqual(enclaveIdentity(e).mrsigner, k.mrsigner);
  assert.deepEqual(enclaveIdentity(new Enclave({ module: m, manifest })).mrsigner, UNSIGNED_MRSIGNER);

  const bumped = parseManifest({ format: 1, name: "t", version: 4, epc: "1MiB", permissions: ["clock"] });
  assert.throws(() => verifyEnclaveSignature(sig, bumped, measure(m, bumped)), { code: "SIG_VERSION_MISMATCH" });
  const widened = parseManifest({ format: 1, name: "t", version: 3, epc: "1MiB", permissions: ["clock", "net"] });
  assert.throws(() => verifyEnclaveSignature(sig, widened, measure(m, widened)), { code: "SIG_MRENCLAVE_MISMATCH" });
  // Fields of the file rewritten to match: the signature itself no longer verifies.
  assert.throws(() => verifyEnclaveSignature({ ...sig, version: 4 }, bumped, measure(m, bumped)), { code: "SIG_BAD_SIGNATURE" });
  const other = generateSigningKey();
  assert.throws(() => verifyEnclaveSignature({ ...sig, publicKey: other.publicKey.toString("base64") }, manifest, mr), { code: "SIG_BAD_SIGNATURE" });
  assert.throws(() => verifyEnclaveSignature({ ...sig, extra: 1 }, manifest, mr), { code: "SIG_MALFORMED" });
});
