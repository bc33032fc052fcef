import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database, SelkieError } from "../../runtime/index.js";
import { PageStore, SLOT } from "../../runtime/storage/page-store.js";
import { openDb, rng, tempDir } from "../helpers.js";

const MARK_TEXT = "SELKIE-MARKER-7f3a9c-confidential";
const MARK_BLOB = Buffer.from("c0ffee-5ea1-b10b-MARK-0123456789abcdef", "utf8");

/** Every file in dir (the store's files, journals, anything else it wrote). */
function filesIn(dir: string): string[] {
  return fs.readdirSync(dir).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile());
}

function seed(file: string, rows = 300): void {
  const db = openDb(file);
  db.exec("CREATE TABLE secrets(id INTEGER PRIMARY KEY, note TEXT, data BLOB); CREATE INDEX secrets_note ON secrets(note);");
  const ins = db.prepare("INSERT INTO secrets(note, data) VALUES (?, ?)");
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(`${MARK_TEXT} row ${i}`, Buffer.concat([MARK_BLOB, Buffer.from([i & 255])]));
  })();
  db.close();
}

/**
 * Everything the database says, as one string: what a reader would get back. Read-only: a writable
 * open appends a counted epoch record (FORMAT.md v2), after which the saved copy is an older one.
 */
function dump(file: string): string {
  const db = openDb(file, { readonly: true });
  try {
    const ok = db.query("PRAGMA integrity_check");
    const rows = db.query("SELECT id, note, hex(data) AS d FROM secrets ORDER BY id");
    return JSON.stringify([ok, rows]);
  } finally {
    db.close();
  }
}

test("no plaintext reaches the disk: marker strings, blobs, schema and SQLite's header are absent from every file", () => {
  const dir = tempDir();
  const file = path.join(dir, "s.db");
  seed(file);
  const db = openDb(file);
  db.transaction(() => {
    for (let i = 0; i < 50; i++) db.run("UPDATE secrets SET note = ? WHERE id = ?", `${MARK_TEXT} updated`, i + 1);
  })();
  db.exec("DELETE FROM secrets WHERE id % 7 = 0; VACUUM;");
  db.close();
  const written = filesIn(dir);
  assert.deepEqual(written.map((f) => path.basename(f)).sort(), ["s.db", "s.db.log"], "no journal or temp file was left on disk");
  for (const f of written) {
    const bytes = fs.readFileSync(f);
    for (const marker of [Buffer.from(MARK_TEXT), Buffer.from("SELKIE-MARKER"), MARK_BLOB, Buffer.from("secrets_note"), Buffer.from("CREATE TABLE"), Buffer.from("SQLite format 3")]) {
      assert.equal(bytes.indexOf(marker), -1, `${path.basename(f)} contains ${marker.toString()}`);
    }
  }
});

test("journals never touch the disk during a transaction, even one that spills SQLite's cache", () => {
  const dir = tempDir();
  const file = path.join(dir, "j.db");
  const db = openDb(file);
  db.exec("PRAGMA cache_size = 10; CREATE TABLE t(x BLOB)");
  db.exec("BEGIN");
  for (let i = 0; i < 400; i++) db.run("INSERT INTO t VALUES (randomblob(3000))");
  assert.deepEqual(filesIn(dir).map((f) => path.basename(f)).sort(), ["j.db", "j.db.lock", "j.db.log"]);
  db.exec("COMMIT");
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 400);
  db.close();
});

test("a bit flipped anywhere in any file is refused with a typed error, never answered with different data", () => {
  const dir = tempDir();
  const file = path.join(dir, "f.db");
  seed(file, 120);
  const expected = dump(file);
  const pristine = new Map(filesIn(dir).map((f) => [f, fs.readFileSync(f)]));
  const r = rng(42);
  let refused = 0;
  let harmless = 0;
  for (const [f, bytes] of pristine) {
    for (let trial = 0; trial < 40; trial++) {
      const at = Math.floor(r() * bytes.length);
      const bad = Buffer.from(bytes);
      bad[at]! ^= 1 << Math.floor(r() * 8);
      fs.writeFileSync(f, bad);
      try {
        const got = dump(file);
        assert.equal(got, expected, `flip at ${path.basename(f)}:${at} changed what the database returned`);
        harmless++; // a byte no live version uses (a free slot)
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e instanceof SelkieError, `flip at ${path.basename(f)}:${at} gave an untyped error: ${String(e)}`);
        assert.ok(/^STORAGE_(TAMPERED|ROLLBACK|UNSUPPORTED_FORMAT|WRONG_PLATFORM|WRONG_ENCLAVE|WRONG_SIGNER|ENCLAVE_TOO_OLD)$/.test(e.code), `flip at ${path.basename(f)}:${at}: code ${e.code}`);
        refused++;
      } finally {
        fs.writeFileSync(f, bytes);
      }
    }
  }
  assert.ok(refused > 60, `most flips are caught (${refused} refused, ${harmless} in unused bytes)`);
  assert.equal(dump(file), expected, "the restored files read back intact");
});

test("truncated files, swapped slots, a duplicated slot and a deleted file are each refused with a typed error", () => {
  const dir = tempDir();
  const file = path.join(dir, "t.db");
  seed(file, 200);
  const expected = dump(file);
  const slots = fs.readFileSync(file);
  const log = fs.readFileSync(`${file}.log`);
  const nSlots = slots.length / SLOT;
  assert.ok(Number.isInteger(nSlots) && nSlots > 4);
  const cases: Array<[string, () => void]> = [
    ["slot file truncated by one slot", () => fs.writeFileSync(file, slots.subarray(0, slots.length - SLOT))],
    ["slot file truncated to nothing", () => fs.writeFileSync(file, Buffer.alloc(0))],
    ["log truncated to its header", () => fs.writeFileSync(`${file}.log`, log.subarray(0, 40))],
    ["log truncated by one byte", () => fs.writeFileSync(`${file}.log`, log.subarray(0, log.length - 1))],
    // The last slots hold blocks of the last commit: live ones (earlier slots may be free).
    ["two live slots swapped", () => {
      const b = Buffer.from(slots);
      const [x, y] = [nSlots - 1, nSlots - 2];
      slots.copy(b, x * SLOT, y * SLOT, (y + 1) * SLOT);
      slots.copy(b, y * SLOT, x * SLOT, (x + 1) * SLOT);
      fs.writeFileSync(file, b);
    }],
    ["a live slot duplicated over another", () => {
      const b = Buffer.from(slots);
      slots.copy(b, (nSlots - 1) * SLOT, (nSlots - 2) * SLOT, (nSlots - 1) * SLOT);
      fs.writeFileSync(file, b);
    }],
    ["slot file deleted", () => fs.rmSync(file)],
    ["log deleted", () => fs.rmSync(`${file}.log`)],
  ];
  for (const [what, damage] of cases) {
    damage();
    try {
      assert.throws(() => dump(file), (e: unknown) => e instanceof SelkieError && /^STORAGE_/.test(e.code), what);
    } finally {
      fs.writeFileSync(file, slots);
      fs.writeFileSync(`${file}.log`, log);
    }
  }
  assert.equal(dump(file), expected);
});

test("an older copy of the database, or of only one of its files, is refused as a rollback", () => {
  const dir = tempDir();
  const file = path.join(dir, "r.db");
  seed(file, 50);
  const oldSlots = fs.readFileSync(file);
  const oldLog = fs.readFileSync(`${file}.log`);
  const db = openDb(file);
  db.run("UPDATE secrets SET note = 'changed' WHERE id = 1");
  db.run("INSERT INTO secrets(note) VALUES ('newer')");
  db.close();
  const newSlots = fs.readFileSync(file);
  const newLog = fs.readFileSync(`${file}.log`);

  fs.writeFileSync(file, oldSlots);
  fs.writeFileSync(`${file}.log`, oldLog);
  assert.throws(() => openDb(file), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_ROLLBACK" && /older copy/.test(e.message) && e.message.includes(file));

  fs.writeFileSync(file, newSlots);
  fs.writeFileSync(`${file}.log`, oldLog);
  assert.throws(() => openDb(file), { code: "STORAGE_ROLLBACK" });

  fs.writeFileSync(file, oldSlots);
  fs.writeFileSync(`${file}.log`, newLog);
  assert.throws(() => dump(file), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_TAMPERED");

  fs.writeFileSync(file, newSlots);
  fs.writeFileSync(`${file}.log`, newLog);
  const again = openDb(file);
  assert.equal(again.query("SELECT note FROM secrets WHERE id = 1")[0]!.note, "changed");
  again.close();
});

test("a sealed database does not open on another platform, and a plain file is not mistaken for one", async () => {
  const { Platform } = await import("../../runtime/platform/platform.js");
  const dir = tempDir();
  const file = path.join(dir, "p.db");
  seed(file, 5);
  const other = await Platform.create(tempDir("selkie-other-platform-"));
  try {
    assert.throws(() => new Database(file, { platform: other }), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_WRONG_PLATFORM" && /--platform/.test(e.message));
  } finally {
    other.close();
  }
  const plain = path.join(dir, "plain.db");
  const p = openDb(plain, { plain: true });
  p.exec("CREATE TABLE t(x)");
  p.close();
  assert.throws(() => openDb(plain), (e: unknown) => e instanceof SelkieError && e.code === "STORAGE_PLAIN_FILE" && /selkie db import/.test(e.message));
});

test("under a long update-heavy workload the store stays within 2x of the live data, and VACUUM shrinks it", () => {
  const file = path.join(tempDir(), "space.db");
  const db = openDb(file);
  db.exec("CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB)");
  db.transaction(() => {
    for (let i = 0; i < 2000; i++) db.run("INSERT INTO kv VALUES (?, randomblob(200))", i);
  })();
  const r = rng(7);
  let worst = 0;
  for (let t = 0; t < 1500; t++) {
    db.transaction(() => {
      for (let j = 0; j < 5; j++) db.run("UPDATE kv SET v = randomblob(200) WHERE k = ?", Math.floor(r() * 2000));
    })();
    if (t % 100 === 99) {
      const s = db.storage!;
      const pageBytes = (db.query("PRAGMA page_count")[0]!.page_count as number) * (db.query("PRAGMA page_size")[0]!.page_size as number);
      worst = Math.max(worst, s.diskBytes / pageBytes);
    }
  }
  assert.ok(worst > 0 && worst <= 2, `store / live database stayed <= 2x (worst ${worst.toFixed(2)}x)`);
  const before = db.storage!.diskBytes;
  db.exec("DELETE FROM kv WHERE k >= 200");
  db.exec("VACUUM");
  const after = db.storage!.diskBytes;
  assert.ok(after < before / 3, `VACUUM shrank the store from ${before} to ${after} bytes`);
  assert.deepEqual(db.query("PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  db.close();
});

test("the store's cache of decrypted blocks stays bounded after a large commit", () => {
  const file = path.join(tempDir(), "big.db");
  const db = openDb(file);
  db.exec("CREATE TABLE t(b BLOB)");
  db.transaction(() => {
    for (let i = 0; i < 3000; i++) db.run("INSERT INTO t VALUES (randomblob(2000))");
  })();
  const s = db.storage!;
  assert.ok(s.liveBytes / 4096 > 2 * PageStore.CACHE_BLOCKS, "the commit wrote far more blocks than the cache holds");
  assert.ok(s.cachedBlocks <= PageStore.CACHE_BLOCKS, `cache holds ${s.cachedBlocks} blocks`);
  assert.equal(db.query("SELECT count(*) AS n FROM t")[0]!.n, 3000);
  assert.ok(db.storage!.cachedBlocks <= PageStore.CACHE_BLOCKS);
  db.close();
});
