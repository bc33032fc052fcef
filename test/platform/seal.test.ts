import { test } from "node:test";
import * as assert from "node:assert/strict";
import { inspect } from "node:util";
import { Platform, SealError, SEAL_HEADER_LEN, inspectSealedBlob, type EnclaveServices } from "../../runtime/platform/index.js";
import { h, identity, rmDir, tempDir } from "./helpers.js";

async function withPlatforms(fn: (a: Platform, b: Platform) => void | Promise<void>): Promise<void> {
  const da = tempDir();
  const db = tempDir();
  const a = await Platform.create(da);
  const b = await Platform.create(db);
  try {
    await fn(a, b);
  } finally {
    a.close();
    b.close();
    rmDir(da);
    rmDir(db);
  }
}

function rejects(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SealError, `expected SealError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

const data = Buffer.from("the quick brown fox jumps over the lazy dog");

test("seal and unseal round-trip under both policies, with and without AAD", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    for (const policy of ["MRENCLAVE", "MRSIGNER"] as const) {
      assert.deepEqual(s.unseal(s.seal(data, { policy })), data);
      const aad = Buffer.from("page 7 v3");
      assert.deepEqual(s.unseal(s.seal(data, { policy, aad }), { aad }), data);
    }
    assert.deepEqual(s.unseal(s.seal(Buffer.alloc(0))), Buffer.alloc(0));
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    assert.deepEqual(s.unseal(s.seal(big)), big);
  });
});

test("a sealed blob carries its key request in a versioned header and no plaintext", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data, { policy: "MRENCLAVE" });
    assert.equal(blob.subarray(0, 4).toString(), "SKSL");
    assert.equal(blob.length, SEAL_HEADER_LEN + data.length + 16);
    assert.equal(blob.indexOf(data.subarray(0, 8)), -1);
    const info = inspectSealedBlob(blob);
    assert.equal(info.policy, "MRENCLAVE");
    assert.equal(info.isvSvn, 3);
    assert.equal(info.binding, identity().mrenclave.toString("hex"));
    // Two seals of the same data differ (a fresh IV each time).
    assert.notDeepEqual(s.seal(data), s.seal(data));
  });
});

test("unseal refuses a blob sealed on another platform", async () => {
  await withPlatforms((a, b) => {
    const blob = a.servicesFor(identity()).seal(data);
    rejects(() => b.servicesFor(identity()).unseal(blob), "SEAL_OTHER_PLATFORM");
  });
});

test("unseal refuses another enclave under the MRENCLAVE policy", async () => {
  await withPlatforms((a) => {
    const blob = a.servicesFor(identity()).seal(data, { policy: "MRENCLAVE" });
    rejects(() => a.servicesFor(identity({ mrenclave: h("enclave-b") })).unseal(blob), "SEAL_WRONG_ENCLAVE");
  });
});

test("another enclave of the same signer unseals under the MRSIGNER policy", async () => {
  await withPlatforms((a) => {
    const blob = a.servicesFor(identity()).seal(data, { policy: "MRSIGNER" });
    assert.deepEqual(a.servicesFor(identity({ mrenclave: h("enclave-b") })).unseal(blob), data);
  });
});

test("unseal refuses another signer under the MRSIGNER policy", async () => {
  await withPlatforms((a) => {
    const blob = a.servicesFor(identity()).seal(data);
    rejects(() => a.servicesFor(identity({ mrsigner: h("signer-b") })).unseal(blob), "SEAL_WRONG_SIGNER");
  });
});

test("unseal refuses another product of the same signer", async () => {
  await withPlatforms((a) => {
    const blob = a.servicesFor(identity()).seal(data);
    rejects(() => a.servicesFor(identity({ isvProdId: 2 })).unseal(blob), "SEAL_WRONG_PRODUCT");
  });
});

test("a debug enclave cannot unseal a production enclave's data", async () => {
  await withPlatforms((a) => {
    const blob = a.servicesFor(identity()).seal(data);
    rejects(() => a.servicesFor(identity({ debug: true })).unseal(blob), "SEAL_DEBUG_MISMATCH");
  });
});

test("unseal refuses an older enclave version, and a newer version reads older data", async () => {
  await withPlatforms((a) => {
    const v3 = a.servicesFor(identity({ isvSvn: 3 }));
    const v2 = a.servicesFor(identity({ isvSvn: 2 }));
    const v4 = a.servicesFor(identity({ isvSvn: 4 }));
    rejects(() => v2.unseal(v3.seal(data)), "SEAL_ENCLAVE_TOO_OLD");
    assert.deepEqual(v4.unseal(v3.seal(data)), data);
    assert.deepEqual(v4.unseal(v3.seal(data, { policy: "MRENCLAVE" })), data);
  });
});

function flip(blob: Buffer, at: number): Buffer {
  const c = Buffer.from(blob);
  c[at] = (c[at] ?? 0) ^ 0x01;
  return c;
}

test("unseal refuses a changed header byte (key id, IV, version field) as an authentication failure", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data);
    for (const at of [64, 80, 95, 96, 107]) rejects(() => s.unseal(flip(blob, at)), "SEAL_AUTH_FAILED");
    // A changed svn field: lowered, it passes the version check but fails authentication.
    const lowered = Buffer.from(blob);
    lowered.writeUInt16BE(2, 10);
    rejects(() => s.unseal(lowered), "SEAL_AUTH_FAILED");
  });
});

test("unseal refuses a changed ciphertext byte", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data);
    rejects(() => s.unseal(flip(blob, SEAL_HEADER_LEN + 3)), "SEAL_AUTH_FAILED");
  });
});

test("unseal refuses a changed tag byte", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data);
    rejects(() => s.unseal(flip(blob, blob.length - 1)), "SEAL_AUTH_FAILED");
  });
});

test("unseal refuses wrong or missing additional data", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data, { aad: Buffer.from("page 1") });
    rejects(() => s.unseal(blob, { aad: Buffer.from("page 2") }), "SEAL_AUTH_FAILED");
    rejects(() => s.unseal(blob), "SEAL_AUTH_FAILED");
  });
});

test("unseal refuses a truncated blob at every length", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data);
    for (let n = 0; n < blob.length; n++) rejects(() => s.unseal(blob.subarray(0, n)), "SEAL_TRUNCATED");
  });
});

test("unseal refuses an unknown format version", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = Buffer.from(s.seal(data));
    blob[4] = 2;
    rejects(() => s.unseal(blob), "SEAL_VERSION_UNSUPPORTED");
  });
});

test("unseal refuses bad magic, trailing bytes, bad policy and reserved bits as malformed", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(data);
    rejects(() => s.unseal(flip(blob, 0)), "SEAL_MALFORMED");
    rejects(() => s.unseal(Buffer.concat([blob, Buffer.alloc(1)])), "SEAL_MALFORMED");
    const p = Buffer.from(blob);
    p[5] = 9;
    rejects(() => s.unseal(p), "SEAL_MALFORMED");
    rejects(() => s.unseal(flip(blob, 7)), "SEAL_MALFORMED");
    rejects(() => s.unseal("not bytes" as unknown as Buffer), "SEAL_MALFORMED");
  });
});

test("unseal refuses a blob that needs a newer runtime", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = Buffer.from(s.seal(data));
    blob.writeUInt16BE(99, 8);
    rejects(() => s.unseal(blob), "SEAL_RUNTIME_TOO_OLD");
  });
});

test("every single-byte change of a sealed blob is refused, never returning data", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const blob = s.seal(Buffer.from("0123456789abcdef"), { aad: Buffer.from("x") });
    for (let i = 0; i < blob.length; i++) {
      assert.deepEqual(s.unseal(blob, { aad: Buffer.from("x") }), Buffer.from("0123456789abcdef")); // primes the fast path
      assert.throws(() => s.unseal(flip(blob, i), { aad: Buffer.from("x") }), SealError, `byte ${i}`);
    }
  });
});

test("services expose no key material through inspection or JSON", async () => {
  await withPlatforms((a) => {
    const s: EnclaveServices = a.servicesFor(identity());
    const shown = inspect(s, { depth: 10, showHidden: true }) + JSON.stringify(s) + inspect(a, { depth: 10, showHidden: true }) + JSON.stringify(a);
    assert.ok(!/sealRoot|reportRoot|attestationSeed/.test(shown), shown);
    assert.deepEqual(Object.keys(s).sort(), ["counters", "identity", "quote", "report", "seal", "targetInfo", "unseal", "verifyReport"]);
  });
});

test("services refuse to work after the platform is closed", async () => {
  const d = tempDir();
  const p = await Platform.create(d);
  const s = p.servicesFor(identity());
  const blob = s.seal(data);
  p.close();
  assert.throws(() => s.unseal(blob), { code: "PLATFORM_CLOSED" });
  rmDir(d);
});

test("key derivation refuses an ISVSVN or runtime version above the enclave's (EGETKEY)", async () => {
  const { deriveSealKey, SealPolicy, RUNTIME_VERSION } = await import("../../runtime/platform/keys.js");
  const root = Buffer.alloc(32, 1);
  const id = identity({ isvSvn: 3 });
  const req = { policy: SealPolicy.MRSIGNER, isvSvn: 3, cpuSvn: RUNTIME_VERSION, isvProdId: 1, keyId: Buffer.alloc(32, 2) };
  assert.equal(deriveSealKey(root, { ...req, isvSvn: 2 }, id).length, 32);
  rejects(() => deriveSealKey(root, { ...req, isvSvn: 4 }, id), "SEAL_SVN_TOO_HIGH");
  rejects(() => deriveSealKey(root, { ...req, cpuSvn: RUNTIME_VERSION + 1 }, id), "SEAL_CPUSVN_TOO_HIGH");
  // Keys differ by every field of the request.
  const k = deriveSealKey(root, req, id);
  assert.notDeepEqual(deriveSealKey(root, { ...req, isvSvn: 2 }, id), k);
  assert.notDeepEqual(deriveSealKey(root, { ...req, keyId: Buffer.alloc(32, 3) }, id), k);
  assert.notDeepEqual(deriveSealKey(root, { ...req, policy: SealPolicy.MRENCLAVE }, id), k);
  assert.notDeepEqual(deriveSealKey(root, req, identity({ isvSvn: 3, debug: true })), k);
});

test("no two blobs sealed under one key share an IV, and each services object draws its own key id", async () => {
  await withPlatforms((a) => {
    const s = a.servicesFor(identity());
    const ivs = new Set<string>();
    let keyId = "";
    for (let i = 0; i < 2000; i++) {
      const blob = s.seal(data);
      const k = blob.toString("hex", 64, 96);
      if (i === 0) keyId = k;
      assert.equal(k, keyId);
      const iv = blob.toString("hex", 96, 108);
      assert.ok(!ivs.has(iv), `IV reused at blob ${i}`);
      ivs.add(iv);
    }
    assert.notEqual(a.servicesFor(identity()).seal(data).toString("hex", 64, 96), keyId);
  });
});
