/**
 * The SQLite enclave's sealing policy (README "Sealing policy", enclaves/ABI.md §6.1): a memory cap
 * is runtime policy, not identity; the data key and counter are sealed under MRSIGNER + ISVPRODID
 * with ISVSVN rules; databases sealed before (policy MRENCLAVE) still open.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database, Platform } from "../../runtime/index.js";
import { SQLITE_BUILD } from "../../runtime/sql/database.js";
import { loadSqliteEnclave } from "../../runtime/sql/sqlite-module.js";
import { SQLITE_ISVPRODID, sqliteMrsigner } from "../../runtime/sql/sqlite-signer.js";
import { legacyStoreTrust } from "../storage/store-helpers.js";
import { PageStore } from "../../runtime/storage/page-store.js";
import { NodeFileLayer } from "../../runtime/host/files.js";
import { inspectSealedBlob } from "../../runtime/platform/index.js";
import { generateSigningKey } from "../../runtime/enclave/sigstruct.js";
import { tempDir } from "../helpers.js";

const MiB = 1024 * 1024;

async function setup(): Promise<{ platform: Platform; file: string; dir: string }> {
  const dir = tempDir("selkie-policy-");
  const platform = await Platform.create(path.join(dir, "platform"));
  return { platform, file: path.join(dir, "app.db"), dir };
}

function rows(db: Database): unknown[] {
  return db.query("SELECT n FROM t ORDER BY n").map((r) => r.n);
}

/** The SQLite module with a custom section appended: another build, other bytes, same signer. */
function rebuiltModule(dir: string): string {
  const bytes = fs.readFileSync(loadSqliteEnclave().modulePath);
  const payload = Buffer.concat([Buffer.from([7]), Buffer.from("rebuild", "latin1"), Buffer.from("selkie test rebuild")]);
  const out = path.join(dir, "sqlite3-rebuilt.wasm");
  fs.writeFileSync(out, Buffer.concat([bytes, Buffer.from([0, payload.length]), payload]));
  return out;
}

test("a database created with --epc 32MiB reopens with the default EPC and with 128MiB", async () => {
  const { platform, file } = await setup();
  try {
    let db = new Database(file, { platform, epc: "32MiB" });
    db.exec("CREATE TABLE t(n); INSERT INTO t VALUES (1)");
    db.close();
    db = new Database(file, { platform });
    db.exec("INSERT INTO t VALUES (2)");
    db.close();
    db = new Database(file, { platform, epc: 128 * MiB });
    db.exec("INSERT INTO t VALUES (3)");
    assert.deepEqual(rows(db), [1, 2, 3]);
    db.close();
    db = new Database(file, { platform, epc: "32MiB" });
    assert.deepEqual(rows(db), [1, 2, 3]);
    db.close();
  } finally {
    platform.close();
  }
});

test("the data key is sealed under MRSIGNER policy by the signed SQLite enclave (ISVPRODID 1)", async () => {
  const { platform, file } = await setup();
  try {
    const db = new Database(file, { platform });
    db.exec("CREATE TABLE t(n)");
    db.close();
    const raw = fs.readFileSync(`${file}.log`);
    const at = raw.indexOf(Buffer.from("SKSL", "latin1"));
    assert.ok(at > 0, "the sealed key blob is in the log header");
    const info = inspectSealedBlob(raw.subarray(at, at + 128 + 32)); // a 32-byte data key
    assert.equal(info.policy, "MRSIGNER");
    assert.equal(info.isvProdId, SQLITE_ISVPRODID);
    assert.equal(info.binding, sqliteMrsigner(platform.dir).toString("hex"));
  } finally {
    platform.close();
  }
});

test("a rebuilt SQLite enclave of the same signer with ISVSVN >= the sealer's opens the data", async () => {
  const { platform, file, dir } = await setup();
  try {
    let db = new Database(file, { platform });
    db.exec("CREATE TABLE t(n); INSERT INTO t VALUES (1)");
    db.close();
    const modulePath = rebuiltModule(dir);
    db = new Database(file, { platform, [SQLITE_BUILD]: { modulePath } } as never);
    db.exec("INSERT INTO t VALUES (2)");
    db.close();
    db = new Database(file, { platform, [SQLITE_BUILD]: { modulePath, version: 2 } } as never);
    db.exec("INSERT INTO t VALUES (3)");
    assert.deepEqual(rows(db), [1, 2, 3]);
    db.close();
  } finally {
    platform.close();
  }
});

test("a lower ISVSVN is refused with STORAGE_ENCLAVE_TOO_OLD (no downgrade)", async () => {
  const { platform, file } = await setup();
  try {
    const db = new Database(file, { platform, [SQLITE_BUILD]: { version: 5 } } as never);
    db.exec("CREATE TABLE t(n); INSERT INTO t VALUES (1)");
    db.close();
    assert.throws(() => new Database(file, { platform }), (e: Error & { code?: string }) => {
      assert.equal(e.code, "STORAGE_ENCLAVE_TOO_OLD", e.message);
      assert.match(e.message, /ISVSVN 5/);
      return true;
    });
    const again = new Database(file, { platform, [SQLITE_BUILD]: { version: 5 } } as never);
    assert.deepEqual(rows(again), [1]);
    again.close();
  } finally {
    platform.close();
  }
});

test("a SQLite enclave of another signer is refused with STORAGE_WRONG_SIGNER", async () => {
  const { platform, file } = await setup();
  try {
    const db = new Database(file, { platform });
    db.exec("CREATE TABLE t(n); INSERT INTO t VALUES (1)");
    db.close();
    const keyFile = path.join(platform.dir, "sqlite-signer.key");
    const original = fs.readFileSync(keyFile);
    fs.writeFileSync(keyFile, generateSigningKey().pem, { mode: 0o600 });
    assert.throws(() => new Database(file, { platform }), { code: "STORAGE_WRONG_SIGNER" });
    fs.writeFileSync(keyFile, original, { mode: 0o600 });
    const back = new Database(file, { platform });
    assert.deepEqual(rows(back), [1]);
    back.close();
  } finally {
    platform.close();
  }
});

/** A database as ABI revision 5 made it: key and counter sealed to the unsigned MRENCLAVE-v1 (with its EPC). */
function legacyDatabase(platform: Platform, file: string, epc: number): void {
  const image = loadSqliteEnclave({ epc });
  const store = PageStore.create(new NodeFileLayer(), file, legacyStoreTrust(platform, image, epc));
  store.close();
}

test("a v1 database sealed to MRENCLAVE (any EPC it was made with) still opens, with every EPC", async () => {
  const { platform, file } = await setup();
  try {
    legacyDatabase(platform, file, 32 * MiB);
    let db = new Database(file, { platform });
    db.exec("CREATE TABLE t(n); INSERT INTO t VALUES (1)");
    db.close();
    db = new Database(file, { platform, epc: "128MiB" });
    db.exec("INSERT INTO t VALUES (2)");
    assert.deepEqual(rows(db), [1, 2]);
    db.close();
  } finally {
    platform.close();
  }
});

test("a v1 database opened by another SQLite build is refused with the command to move it", async () => {
  const { platform, file, dir } = await setup();
  try {
    legacyDatabase(platform, file, 64 * MiB);
    assert.throws(() => new Database(file, { platform, [SQLITE_BUILD]: { modulePath: rebuiltModule(dir) } } as never), (e: Error & { code?: string }) => {
      assert.equal(e.code, "STORAGE_WRONG_ENCLAVE", e.message);
      assert.match(e.message, /selkie db export .*selkie db import/);
      return true;
    });
  } finally {
    platform.close();
  }
});
