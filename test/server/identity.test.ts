/**
 * End to end on a spawned `selkie serve`: the quote of POST /v1/platform/quote verifies with
 * `selkie verify-quote` (a child process) and the same hex nonce, and only with it; databases
 * survive `--db-epc` changes (the EPC cap is not identity).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, tempDir } from "../helpers.js";
import { api, createDb, exec, pipeline, startServer } from "./harness.js";
import { QUOTE_EXIT_CODES } from "../../runtime/platform/index.js";

test("a quote fetched from selkie serve verifies with selkie verify-quote --nonce; wrong nonce, measurement or no policy are refused", async () => {
  const s = await startServer();
  try {
    const nonce = "5f0c8a3e9d1b47c2a6e0f4b8d2c61a97";
    const r = await api(s, s.adminToken, "POST", "/v1/platform/quote", { nonce });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.subject, "sqlite-enclave");
    assert.equal(r.json.isvProdId, 1);
    const file = path.join(tempDir(), "q.b64");
    fs.writeFileSync(file, r.json.quote);
    const ca = path.join(s.dir, "platform", "dev-ca", "ca.cert");
    const verify = (...args: string[]) => cli(["verify-quote", file, "--ca", ca, "--allow-dev", ...args]);
    const byEnclave = verify("--nonce", nonce, "--mrenclave", r.json.mrenclave);
    assert.equal(byEnclave.status, 0, byEnclave.stderr);
    assert.match(byEnclave.stdout, new RegExp(`mrenclave  ${r.json.mrenclave}`));
    const bySigner = verify("--nonce", nonce, "--mrsigner", r.json.mrsigner, "--isvprodid", "1", "--min-isvsvn", String(r.json.isvSvn));
    assert.equal(bySigner.status, 0, bySigner.stderr);
    assert.equal(verify("--nonce", nonce.toUpperCase(), "--mrenclave", r.json.mrenclave).status, 0, "hex is case-insensitive");
    assert.equal(verify("--nonce", "00".repeat(16), "--mrenclave", r.json.mrenclave).status, QUOTE_EXIT_CODES.QUOTE_NONCE_MISMATCH);
    assert.equal(verify("--nonce", nonce, "--mrenclave", "ab".repeat(32)).status, QUOTE_EXIT_CODES.QUOTE_MRENCLAVE_MISMATCH);
    assert.equal(verify("--nonce", nonce, "--mrsigner", "ab".repeat(32), "--isvprodid", "1").status, QUOTE_EXIT_CODES.QUOTE_MRSIGNER_MISMATCH);
    assert.equal(verify("--nonce", nonce, "--mrsigner", r.json.mrsigner, "--isvprodid", "1", "--min-isvsvn", String(r.json.isvSvn + 1)).status, QUOTE_EXIT_CODES.QUOTE_SVN_TOO_LOW);
    const none = verify("--nonce", nonce);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /QUOTE_NO_POLICY/);
    // The server's quote is of the enclave its databases run: the same MRENCLAVE as a database reports.
    await createDb(s, "app");
    const info = await api(s, s.adminToken, "GET", "/v1/databases/app");
    assert.equal(info.json.enclave.mrenclave, r.json.mrenclave);
  } finally {
    await s.stop();
  }
});

test("selkie serve --db-epc 32MiB, then the default, then 128MiB: the database opens each time", async () => {
  const dir = tempDir("selkie-serve-");
  let s = await startServer({ dir, args: ["--db-epc", "32MiB"] });
  const token = s.adminToken;
  try {
    await createDb(s, "app");
    const w = await pipeline(s, token, [exec("CREATE TABLE t(n)"), exec("INSERT INTO t VALUES (1)"), { type: "close" }]);
    assert.equal(w.status, 200, w.text);
    assert.equal(w.json.results[1].type, "ok", w.text);
    for (const args of [[], ["--db-epc", "128MiB"]]) {
      await s.stop();
      s = await startServer({ dir, args });
      const r = await pipeline(s, token, [exec("INSERT INTO t VALUES (2)"), exec("SELECT count(*) FROM t"), { type: "close" }]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.results[0].type, "ok", `${args.join(" ") || "default"}: ${r.text}`);
    }
  } finally {
    await s.stop();
  }
});
