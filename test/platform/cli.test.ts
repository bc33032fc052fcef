import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { QUOTE_EXIT_CODES, QUOTING_IDENTITY } from "../../runtime/platform/index.js";
import { fixture, rmDir, tempDir } from "./helpers.js";

function selkie(args: string[], env: Record<string, string> = {}): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [fixture("cli.js"), ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const NONCE = "8d1e5c0a7f3b4e29";

function ok(r: { code: number | null; err: string }): void {
  assert.equal(r.code, 0, r.err);
}

test("selkie init, quote and verify-quote work end to end with a development CA", () => {
  const home = tempDir();
  try {
    const init = selkie(["init", "--epc", "64MiB"], { SELKIE_HOME: home });
    assert.equal(init.code, 0, init.err);
    assert.match(init.out, /created platform [0-9a-f]{32}/);
    assert.match(init.out, /64\.0 MiB/);
    const again = selkie(["init"], { SELKIE_HOME: home });
    assert.notEqual(again.code, 0);
    assert.match(again.err, /PLATFORM_EXISTS/);
    const q = path.join(home, "q.bin");
    const quote = selkie(["quote", "--nonce", NONCE, "--out", q], { SELKIE_HOME: home });
    assert.equal(quote.code, 0, quote.err);
    const ca = path.join(home, "dev-ca", "ca.cert");
    const none = selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--allow-dev"]);
    assert.equal(none.code, 2, "no enclave policy chosen");
    assert.match(none.err, /QUOTE_NO_POLICY/);
    const text = selkie(["verify-quote", q, "--ca", ca, "--nonce", "a nonce as text", "--allow-dev", "--any-enclave"]);
    assert.equal(text.code, 2, "a nonce is hex");
    const dev = selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--any-enclave"]);
    assert.equal(dev.code, QUOTE_EXIT_CODES.QUOTE_DEV_CA);
    assert.match(dev.err, /FAILED QUOTE_DEV_CA/);
    const good = selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--allow-dev", "--mrenclave", QUOTING_IDENTITY.mrenclave.toString("hex")]);
    assert.equal(good.code, 0, good.err);
    assert.match(good.out, /quote verified/);
    const nonce = selkie(["verify-quote", q, "--ca", ca, "--nonce", "a0a0a0a0a0a0a0a0", "--allow-dev", "--any-enclave"]);
    assert.equal(nonce.code, QUOTE_EXIT_CODES.QUOTE_NONCE_MISMATCH);
    const wrong = selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--allow-dev", "--mrsigner", "00".repeat(32), "--isvprodid", "0"]);
    assert.equal(wrong.code, QUOTE_EXIT_CODES.QUOTE_MRSIGNER_MISMATCH);
    const svn = selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--allow-dev", "--any-enclave", "--min-isvsvn", "9", "--json"]);
    assert.equal(svn.code, QUOTE_EXIT_CODES.QUOTE_SVN_TOO_LOW);
    assert.equal((JSON.parse(svn.out) as { code: string }).code, "QUOTE_SVN_TOO_LOW");
    // base64 on stdout is accepted too.
    const b64 = selkie(["quote", "--nonce", NONCE], { SELKIE_HOME: home });
    fs.writeFileSync(path.join(home, "q.txt"), b64.out);
    ok(selkie(["verify-quote", path.join(home, "q.txt"), "--ca", ca, "--nonce", NONCE, "--allow-dev", "--any-enclave"]));
    const tampered = fs.readFileSync(q);
    tampered[30] = (tampered[30] ?? 0) ^ 1;
    fs.writeFileSync(q, tampered);
    assert.equal(selkie(["verify-quote", q, "--ca", ca, "--nonce", NONCE, "--allow-dev", "--any-enclave"]).code, QUOTE_EXIT_CODES.QUOTE_BAD_SIGNATURE);
  } finally {
    rmDir(home);
  }
});

test("selkie ca init / issue / install certify platforms for a fleet", () => {
  const root = tempDir();
  const caDir = path.join(root, "ca");
  const p1 = path.join(root, "p1");
  const p2 = path.join(root, "p2");
  try {
    ok(selkie(["ca", "init", "--dir", caDir]));
    assert.notEqual(selkie(["ca", "init", "--dir", caDir]).code, 0);
    const ca = path.join(caDir, "ca.cert");
    ok(selkie(["init", "--dir", p1, "--ca", caDir]));
    const q1 = path.join(root, "q1.bin");
    ok(selkie(["quote", "--dir", p1, "--nonce", NONCE, "--out", q1]));
    ok(selkie(["verify-quote", q1, "--ca", ca, "--nonce", NONCE, "--any-enclave"]));
    // A remote platform: request, issue, install.
    ok(selkie(["init", "--dir", p2]));
    const cert = path.join(root, "p2.cert");
    const issue = selkie(["ca", "issue", "--ca", caDir, "--request", path.join(p2, "platform.json"), "--out", cert]);
    assert.equal(issue.code, 0, issue.err);
    assert.notEqual(selkie(["ca", "install", cert, "--dir", p1]).code, 0); // not p1's key
    ok(selkie(["ca", "install", cert, "--dir", p2]));
    const q2 = path.join(root, "q2.bin");
    ok(selkie(["quote", "--dir", p2, "--nonce", NONCE, "--out", q2]));
    ok(selkie(["verify-quote", q2, "--ca", ca, "--nonce", NONCE, "--any-enclave"]));
    // A CA that did not certify the platform.
    const other = path.join(root, "other-ca");
    selkie(["ca", "init", "--dir", other]);
    assert.equal(selkie(["verify-quote", q2, "--ca", path.join(other, "ca.cert"), "--nonce", NONCE, "--any-enclave"]).code, QUOTE_EXIT_CODES.QUOTE_UNTRUSTED_CA);
    // In place.
    ok(selkie(["ca", "issue", "--ca", other, "--platform", p1]));
    ok(selkie(["quote", "--dir", p1, "--nonce", NONCE, "--out", q1]));
    ok(selkie(["verify-quote", q1, "--ca", path.join(other, "ca.cert"), "--nonce", NONCE, "--any-enclave"]));
  } finally {
    rmDir(root);
  }
});

test("every platform command has help text, and bad arguments exit with a usage error", () => {
  for (const cmd of [["init"], ["ca"], ["ca", "init"], ["ca", "issue"], ["ca", "install"], ["quote"], ["verify-quote"]]) {
    const r = selkie([...cmd, "--help"]);
    assert.equal(r.code, 0, cmd.join(" "));
    assert.match(r.out, /Usage: selkie/);
    assert.ok(r.out.length > 200, `${cmd.join(" ")} help is too short`);
  }
  assert.match(selkie(["verify-quote", "--help"]).out, /19  QUOTE_MRENCLAVE_MISMATCH/);
  assert.equal(selkie(["init", "--epc", "lots"]).code, 2);
  assert.equal(selkie(["verify-quote", "x", "--ca", "y", "--nonce", NONCE, "--mrenclave", "abc"]).code, 2);
  const home = tempDir();
  try {
    ok(selkie(["init", "--dir", home]));
    assert.equal(selkie(["quote", "--dir", home, "--nonce", "short"]).code, 2);
    assert.equal(selkie(["init", "--dir", path.join(home, "x"), "--epc", "100"]).code, 2, "an out-of-range EPC is a usage error, as an unparsable one");
  } finally {
    rmDir(home);
  }
});
