import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { Database, SelkieError } from "../../runtime/index.js";
import { loadSqliteEnclave } from "../../runtime/sql/sqlite-module.js";
import { PageStore } from "../../runtime/storage/page-store.js";
import { upgradeStore } from "../../runtime/storage/upgrade.js";
import { openDb, tempDir, testPlatform } from "../helpers.js";
import { files, legacyStoreTrust, storeTrust } from "./store-helpers.js";
import { writeV1Store } from "./v1-fixture.js";

const trust = storeTrust(testPlatform);

function contents(file: string): Buffer {
  const s = PageStore.open(files, file, trust, { readonly: true });
  try {
    const b = Buffer.alloc(s.size);
    s.read(b, 0);
    return b;
  } finally {
    s.close();
  }
}

test("upgradeStore() converts a v1 store in place, and the old v1 files never open again", () => {
  const file = path.join(tempDir(), "old.db");
  const content = randomBytes(4096 * 3 + 1000);
  writeV1Store(file, trust, content);
  const v1 = [fs.readFileSync(file), fs.readFileSync(`${file}.log`)];
  assert.throws(() => PageStore.open(files, file, trust), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_UPGRADE_REQUIRED" && e.message.includes(`selkie db upgrade ${file}`));
  assert.equal(upgradeStore(files, file, trust), content.length);
  assert.ok(contents(file).equals(content), "every byte was copied");
  assert.deepEqual(fs.readdirSync(path.dirname(file)).sort(), ["old.db", "old.db.log"], "no temporary file is left");
  const v2 = [fs.readFileSync(file), fs.readFileSync(`${file}.log`)];
  fs.writeFileSync(file, v1[0]!);
  fs.writeFileSync(`${file}.log`, v1[1]!);
  assert.throws(() => upgradeStore(files, file, trust), { code: "STORAGE_DELETED" }, "the v1 counter was destroyed");
  fs.writeFileSync(file, v2[0]!);
  fs.writeFileSync(`${file}.log`, v2[1]!);
  assert.ok(contents(file).equals(content));
});

test("an upgrade interrupted after it moved the v1 files aside, or after the v2 store landed, resumes", () => {
  for (const stage of ["moved aside", "partial v2", "v2 landed"]) {
    const file = path.join(tempDir(), "r.db");
    const content = randomBytes(4096 * 2 + 5);
    writeV1Store(file, trust, content);
    fs.renameSync(`${file}.log`, `${file}.v1.log`);
    fs.renameSync(file, `${file}.v1`);
    if (stage === "partial v2") fs.writeFileSync(file, "half a slot file");
    if (stage === "v2 landed") {
      const s = PageStore.create(files, file, trust);
      s.write(content, 0);
      s.commit();
      s.close();
    }
    upgradeStore(files, file, trust);
    assert.ok(contents(file).equals(content), stage);
    assert.ok(!fs.existsSync(`${file}.v1.log`) && !fs.existsSync(`${file}.v1`), `${stage}: the v1 files are gone`);
  }
});

test("Database.upgradeStore() turns a v1 SQLite database into one that opens, after open() named the command", () => {
  const dir = tempDir();
  const plain = path.join(dir, "plain.sqlite");
  const p = openDb(plain, { plain: true });
  p.exec("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('from v1'), ('still here')");
  p.close();
  const file = path.join(dir, "legacy.db");
  const image = loadSqliteEnclave();
  // As a pre-revision-6 Selkie wrote it: key and counter sealed to the unsigned MRENCLAVE-v1 of this build.
  const sqliteTrust = legacyStoreTrust(testPlatform, image, image.manifest.epc);
  writeV1Store(file, sqliteTrust, fs.readFileSync(plain));
  assert.throws(() => openDb(file), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_UPGRADE_REQUIRED" && /selkie db upgrade/.test(e.message));
  Database.upgradeStore(file, { platform: testPlatform });
  const db = openDb(file);
  assert.deepEqual(db.query("SELECT v FROM t ORDER BY rowid"), [{ v: "from v1" }, { v: "still here" }]);
  assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  db.close();
});
