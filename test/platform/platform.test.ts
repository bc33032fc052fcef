import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { inspect } from "node:util";
import { CaError, CertificateAuthority, Platform, PlatformError, readCaCertificate, reportDataFor, verifyQuote } from "../../runtime/platform/index.js";
import { identity, rmDir, tempDir } from "./helpers.js";

const NONCE = "0123456789abcdef0123456789abcdef";

test("init creates a platform with 0600 files in a 0700 directory", async () => {
  const dir = path.join(tempDir(), "home");
  try {
    const p = await Platform.create(dir, { epc: "128MiB" });
    assert.equal(p.epcBytes, 128 * 1024 * 1024);
    assert.equal(p.epc.usage().budget, 128 * 1024 * 1024);
    assert.match(p.platformId, /^[0-9a-f]{32}$/);
    assert.equal(p.runtimeVersion, 1);
    p.close();
    const walk = (d: string): void => {
      assert.equal(fs.statSync(d).mode & 0o777, 0o700, d);
      for (const f of fs.readdirSync(d)) {
        const full = path.join(d, f);
        if (fs.statSync(full).isDirectory()) walk(full);
        else if (f === "ca.cert") assert.equal(fs.statSync(full).mode & 0o777, 0o644, full);
        else assert.equal(fs.statSync(full).mode & 0o777, 0o600, full);
      }
    };
    walk(dir);
    assert.ok(!fs.readdirSync(dir).some((f) => f.includes(".tmp-")));
  } finally {
    rmDir(path.dirname(dir));
  }
});

test("init refuses to overwrite an existing platform unless forced", async () => {
  const dir = tempDir();
  try {
    const a = await Platform.create(dir);
    const id = a.platformId;
    a.close();
    await assert.rejects(Platform.create(dir), (e: unknown) => e instanceof PlatformError && e.code === "PLATFORM_EXISTS");
    const reopened = await Platform.open(dir);
    assert.equal(reopened.platformId, id);
    reopened.close();
    const b = await Platform.create(dir, { force: true });
    assert.notEqual(b.platformId, id);
    b.close();
  } finally {
    rmDir(dir);
  }
});

test("a platform whose secrets are readable by others is refused", async () => {
  const dir = tempDir();
  try {
    (await Platform.create(dir)).close();
    fs.chmodSync(path.join(dir, "secrets.bin"), 0o644);
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_FILE_PERMISSIONS" });
  } finally {
    rmDir(dir);
  }
});

test("opening refuses a missing, damaged or mismatched platform", async () => {
  const dir = tempDir();
  const other = tempDir();
  try {
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_NOT_FOUND" });
    (await Platform.create(dir)).close();
    (await Platform.create(other)).close();
    const secrets = fs.readFileSync(path.join(dir, "secrets.bin"));
    const damaged = Buffer.from(secrets);
    damaged[40] = (damaged[40] ?? 0) ^ 1;
    fs.writeFileSync(path.join(dir, "secrets.bin"), damaged);
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_CORRUPT" });
    fs.copyFileSync(path.join(other, "secrets.bin"), path.join(dir, "secrets.bin"));
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_CORRUPT" });
    fs.writeFileSync(path.join(dir, "secrets.bin"), secrets);
    fs.copyFileSync(path.join(other, "platform.cert"), path.join(dir, "platform.cert"));
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_CERT_MISMATCH" });
    const info = JSON.parse(fs.readFileSync(path.join(dir, "platform.json"), "utf8")) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, "platform.json"), JSON.stringify({ ...info, format: 2 }));
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_VERSION_UNSUPPORTED" });
    fs.writeFileSync(path.join(dir, "platform.json"), JSON.stringify({ ...info, extra: 1 }));
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_CORRUPT" });
    fs.rmSync(path.join(dir, "platform.json"));
    await assert.rejects(Platform.open(dir), { code: "PLATFORM_CORRUPT" });
  } finally {
    rmDir(dir);
    rmDir(other);
  }
});

test("secrets never appear in inspect, JSON, toString or errors", async () => {
  const dir = tempDir();
  try {
    const p = await Platform.create(dir);
    const raw = fs.readFileSync(path.join(dir, "secrets.bin"));
    const secrets = [raw.subarray(24, 56), raw.subarray(56, 88), raw.subarray(88, 120)];
    const caKey = fs.readFileSync(path.join(dir, "dev-ca", "ca.key")).subarray(24, 56);
    const ca = CertificateAuthority.open(path.join(dir, "dev-ca"));
    const texts = [
      inspect(p, { depth: 20, showHidden: true }),
      JSON.stringify(p),
      String(p),
      inspect(ca, { depth: 20, showHidden: true }),
      JSON.stringify(ca),
      inspect(p.servicesFor(identity()), { depth: 20, showHidden: true }),
    ];
    try {
      p.servicesFor(identity()).unseal(Buffer.alloc(200));
    } catch (e) {
      texts.push(inspect(e, { depth: 20, showHidden: true }));
    }
    for (const s of [...secrets, caKey]) {
      for (const t of texts) {
        for (const enc of ["hex", "base64", "base64url"] as const) assert.ok(!t.includes(s.toString(enc)), `secret leaked (${enc}) in ${t.slice(0, 80)}`);
      }
    }
    p.close();
  } finally {
    rmDir(dir);
  }
});

test("a fleet CA certifies a platform at init, and re-certifies a dev platform in place", async () => {
  const caDir = tempDir("selkie-ca-");
  const a = tempDir();
  const b = tempDir();
  try {
    const ca = CertificateAuthority.create(caDir);
    assert.throws(() => CertificateAuthority.create(caDir), (e: unknown) => e instanceof CaError && e.code === "CA_EXISTS");
    const caCert = readCaCertificate(path.join(caDir, "ca.cert"));
    const pa = await Platform.create(a, { ca: caDir });
    assert.equal(pa.dev, false);
    assert.equal(pa.caId, ca.caId.toString("hex"));
    assert.ok(!fs.existsSync(path.join(a, "dev-ca")));
    verifyQuote(pa.servicesFor(identity()).quote(reportDataFor(NONCE)), { ca: caCert, nonce: NONCE, anyEnclave: true });
    pa.close();
    const pb = await Platform.create(b);
    assert.equal(pb.dev, true);
    pb.close();
    const info = JSON.parse(fs.readFileSync(path.join(b, "platform.json"), "utf8")) as { platformId: string; attestationPublicKey: string };
    const cert = CertificateAuthority.open(caDir).issuePlatformCertificate({ platformId: Buffer.from(info.platformId, "hex"), publicKey: Buffer.from(info.attestationPublicKey, "hex") });
    assert.throws(() => Platform.installCertificate(a, cert.bytes), { code: "PLATFORM_CERT_MISMATCH" });
    Platform.installCertificate(b, cert.bytes);
    const pb2 = await Platform.open(b);
    assert.equal(pb2.dev, false);
    verifyQuote(pb2.servicesFor(identity()).quote(reportDataFor(NONCE)), { ca: caCert, nonce: NONCE, anyEnclave: true });
    pb2.close();
  } finally {
    [caDir, a, b].forEach(rmDir);
  }
});

test("a CA key readable by others or damaged is refused", () => {
  const caDir = tempDir("selkie-ca-");
  try {
    CertificateAuthority.create(caDir);
    fs.chmodSync(path.join(caDir, "ca.key"), 0o640);
    assert.throws(() => CertificateAuthority.open(caDir), { code: "CA_CORRUPT" });
    fs.chmodSync(path.join(caDir, "ca.key"), 0o600);
    const k = fs.readFileSync(path.join(caDir, "ca.key"));
    k[30] = (k[30] ?? 0) ^ 1;
    fs.writeFileSync(path.join(caDir, "ca.key"), k);
    assert.throws(() => CertificateAuthority.open(caDir), { code: "CA_CORRUPT" });
    assert.throws(() => CertificateAuthority.open(path.join(caDir, "nope")), { code: "CA_NOT_FOUND" });
  } finally {
    rmDir(caDir);
  }
});

test("init succeeds over the leftovers of a create that crashed before writing its secrets", async () => {
  const dir = tempDir();
  try {
    CertificateAuthority.create(path.join(dir, "dev-ca"), { dev: true }); // what a crashed create leaves
    fs.mkdirSync(path.join(dir, "mine"));
    const p = await Platform.create(dir);
    assert.equal(p.dev, true);
    p.close();
    assert.ok(fs.existsSync(path.join(dir, "mine")), "unrelated files are left alone");
  } finally {
    rmDir(dir);
  }
});
