/**
 * Issue 11's attacks on the sealed store, driven against the real PageStore over real files and a real
 * platform's counters (FORMAT.md v2 "What each attack yields").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { SelkieError } from "../../runtime/index.js";
import { Platform } from "../../runtime/platform/platform.js";
import { PageStore, SLOT, type StoreTrust } from "../../runtime/storage/page-store.js";
import { openDb, ROOT, rng, runUntilKilled, tempDir, testPlatform } from "../helpers.js";
import { FaultyFiles } from "./faulty-files.js";
import { files, readBlock, recordBoundaries, storeTrust, writeBlock } from "./store-helpers.js";

const trust = storeTrust(testPlatform);

function refused(fn: () => unknown, code: string | RegExp, what: string): SelkieError {
  let got: unknown;
  try {
    fn();
  } catch (e) {
    got = e;
  }
  assert.ok(got instanceof SelkieError, `${what}: refused with a typed error (got ${String(got)})`);
  assert.match(got.code, typeof code === "string" ? new RegExp(`^${code}$`) : code, `${what}: ${got.message}`);
  return got;
}

/** Opens `file` (read-only unless asked), reads block 0, closes. */
function block0(file: string, opts: { readonly?: boolean; trust?: StoreTrust } = {}): string {
  const s = PageStore.open(files, file, opts.trust ?? trust, { readonly: opts.readonly ?? true });
  try {
    return readBlock(s, 0);
  } finally {
    s.close();
  }
}

function saveFiles(file: string): [Buffer, Buffer] {
  return [fs.readFileSync(file), fs.readFileSync(`${file}.log`)];
}

function putFiles(file: string, [slots, log]: [Buffer, Buffer]): void {
  fs.writeFileSync(file, slots);
  fs.writeFileSync(`${file}.log`, log);
}

/** A trust whose counter increment dies, as a crash between the log fsync and the counter step would. */
function crashingCounter(t: StoreTrust): StoreTrust {
  return { ...t, incrementCounter: () => { throw new Error("killed before the counter step"); } };
}

test("open() refuses a log cut at its header, at every record boundary and inside the last record; it never serves an empty or older database", () => {
  const file = path.join(tempDir(), "cut.db");
  const s = PageStore.create(files, file, trust);
  for (let i = 1; i <= 6; i++) {
    writeBlock(s, 0, `commit ${i}`);
    writeBlock(s, i, `block ${i}`);
    s.commit();
  }
  s.close();
  const log = fs.readFileSync(`${file}.log`);
  const bounds = recordBoundaries(log);
  assert.equal(bounds[bounds.length - 1], log.length);
  assert.ok(bounds.length >= 8, `header + snapshot + 6 deltas (${bounds.length - 1} records)`);
  const cuts = new Set<number>(bounds.slice(0, -1));
  for (let at = bounds[bounds.length - 2]! + 1; at < log.length; at++) cuts.add(at);
  for (const at of cuts) {
    fs.writeFileSync(`${file}.log`, log.subarray(0, at));
    for (const readonly of [true, false]) {
      const what = `log cut at byte ${at} of ${log.length}${at === bounds[0] ? " (exactly its header)" : ""}, ${readonly ? "read-only" : "writable"}`;
      const e = refused(() => block0(file, { readonly }), /^STORAGE_(TAMPERED|ROLLBACK)$/, what);
      if (at === bounds[0]) {
        assert.equal(e.code, "STORAGE_TAMPERED", what);
        assert.match(e.message, /cut back to its header/, what);
      }
    }
  }
  fs.writeFileSync(`${file}.log`, log);
  assert.equal(block0(file, { readonly: false }), "commit 6", "the whole log opens at its last commit");
});

test("a log without records opens empty only when its database never committed", () => {
  const file = path.join(tempDir(), "fresh.db");
  PageStore.create(files, file, trust).close();
  const log = fs.readFileSync(`${file}.log`);
  fs.writeFileSync(`${file}.log`, log.subarray(0, recordBoundaries(log)[0]));
  assert.equal(block0(file), "", "never committed: the empty database, read-only");
  const s = PageStore.open(files, file, trust);
  assert.equal(s.size, 0);
  writeBlock(s, 0, "first");
  s.commit();
  s.close();
  assert.equal(block0(file), "first");
});

for (const readonlyBetween of [false, true]) {
  test(`a crash before the counter step, a copy kept, the record dropped and a later commit acknowledged: the copy is refused as a rollback${readonlyBetween ? " (with a read-only open in between)" : ""}`, () => {
    const file = path.join(tempDir(), "fork.db");
    const s = PageStore.create(files, file, trust);
    writeBlock(s, 0, "acked 1");
    s.commit();
    s.close();
    const beforeCrash = fs.readFileSync(`${file}.log`);
    const c = PageStore.open(files, file, crashingCounter(trust));
    writeBlock(c, 0, "never acknowledged");
    assert.throws(() => c.commit(), { code: "STORAGE_IO" });
    c.close();
    const copy = saveFiles(file); // holds the uncounted record
    if (readonlyBetween) assert.equal(block0(file), "acked 1", "a read-only open serves the counted state, not the uncounted record");
    // Drop the uncounted record (keep the log as it was before the crashed session's epoch + record).
    const withEpoch = fs.readFileSync(`${file}.log`);
    const bounds = recordBoundaries(withEpoch);
    fs.writeFileSync(`${file}.log`, withEpoch.subarray(0, bounds[bounds.length - 2]));
    assert.ok(bounds[bounds.length - 2]! > beforeCrash.length, "the crashed session's epoch stays");
    const w = PageStore.open(files, file, trust);
    writeBlock(w, 0, "acked 2");
    w.commit(); // acknowledged
    w.close();
    const live = saveFiles(file);
    putFiles(file, copy);
    for (const readonly of [true, false]) refused(() => block0(file, { readonly }), "STORAGE_ROLLBACK", `the restored copy (${readonly ? "read-only" : "writable"})`);
    putFiles(file, live);
    assert.equal(block0(file), "acked 2", "the real files still open");
  });
}

test("a read-only open does not apply an uncounted last record; a writable open counts it", () => {
  const file = path.join(tempDir(), "ro.db");
  const s = PageStore.create(files, file, trust);
  writeBlock(s, 0, "counted");
  s.commit();
  s.close();
  const c = PageStore.open(files, file, crashingCounter(trust));
  writeBlock(c, 0, "uncounted");
  assert.throws(() => c.commit(), { code: "STORAGE_IO" });
  c.close();
  assert.equal(block0(file), "counted");
  assert.equal(block0(file, { readonly: false }), "uncounted", "complete and authentic: the writable open counts it");
  assert.equal(block0(file), "uncounted");
});

test("a slot written by a failed commit cannot be spliced into a later acknowledged commit", () => {
  const file = path.join(tempDir(), "splice.db");
  const faulty = new FaultyFiles();
  const s = PageStore.create(faulty, file, trust);
  writeBlock(s, 0, "acked 1");
  s.commit();
  writeBlock(s, 0, "failed commit");
  faulty.arm("write-fails", 1); // the slot write succeeds, the log record's write fails
  assert.throws(() => s.commit(), { code: "STORAGE_IO" });
  faulty.disarm();
  const failedSlots = fs.readFileSync(file);
  s.rollback();
  writeBlock(s, 0, "acked 2");
  s.commit();
  s.close();
  const [slots, log] = saveFiles(file);
  assert.equal(block0(file), "acked 2");
  const n = Math.floor(failedSlots.length / SLOT);
  let tried = 0;
  for (let from = 0; from < n; from++) {
    for (let to = 0; to < Math.floor(slots.length / SLOT); to++) {
      const b = Buffer.from(slots);
      failedSlots.copy(b, to * SLOT, from * SLOT, (from + 1) * SLOT);
      fs.writeFileSync(file, b);
      try {
        assert.equal(block0(file), "acked 2", `failed slot ${from} spliced into slot ${to}`);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        refused(() => { throw e; }, "STORAGE_TAMPERED", `failed slot ${from} spliced into slot ${to}`);
      }
      tried++;
    }
  }
  assert.ok(tried > 0);
  putFiles(file, [slots, log]);
  assert.equal(block0(file), "acked 2");
});

test("swapped or copied databases are refused by name, and the victims' real files still open", () => {
  const dir = tempDir();
  const orders = path.join(dir, "orders.db");
  const users = path.join(dir, "users.db");
  for (const [f, v] of [[orders, "orders"], [users, "users"]] as const) {
    const d = openDb(f);
    d.exec(`CREATE TABLE t(v); INSERT INTO t VALUES ('${v}')`);
    d.close();
  }
  const o = saveFiles(orders);
  const u = saveFiles(users);
  const value = (f: string) => {
    const d = openDb(f, { readonly: true });
    try {
      return d.query<{ v: string }>("SELECT v FROM t")[0]!.v;
    } finally {
      d.close();
    }
  };
  // Both file sets renamed onto each other.
  putFiles(orders, u);
  putFiles(users, o);
  const e = refused(() => value(orders), "STORAGE_WRONG_NAME", "orders.db holding users.db's files");
  assert.match(e.message, /created as users\.db/);
  assert.match(e.message, /selkie db rename/);
  refused(() => value(users), "STORAGE_WRONG_NAME", "users.db holding orders.db's files");
  // One tenant's files copied over another's.
  putFiles(users, u);
  putFiles(orders, u);
  refused(() => value(orders), "STORAGE_WRONG_NAME", "users.db's files copied over orders.db");
  putFiles(orders, o);
  assert.equal(value(orders), "orders");
  assert.equal(value(users), "users");
});

test("a deleted database whose files are copied back does not open again", () => {
  const file = path.join(tempDir(), "gone.db");
  const s = PageStore.create(files, file, trust);
  writeBlock(s, 0, "data");
  s.commit();
  s.close();
  const copy = saveFiles(file);
  PageStore.destroy(files, file, trust);
  assert.ok(!fs.existsSync(file) && !fs.existsSync(`${file}.log`), "its files are gone");
  putFiles(file, copy);
  for (const readonly of [true, false]) {
    const e = refused(() => block0(file, { readonly }), "STORAGE_DELETED", "the copied-back files");
    assert.match(e.message, /deleted/);
  }
  PageStore.destroy(files, file, trust); // removes the copy
  assert.ok(!fs.existsSync(`${file}.log`));
});

test("rename() moves a database to a new name, bound to it; the old name is gone", () => {
  const dir = tempDir();
  const from = path.join(dir, "a.db");
  const to = path.join(dir, "b.db");
  const s = PageStore.create(files, from, trust);
  writeBlock(s, 0, "renamed data");
  s.commit();
  s.close();
  PageStore.rename(files, from, to, trust);
  assert.ok(!fs.existsSync(from) && !fs.existsSync(`${from}.log`));
  assert.equal(block0(to, { readonly: false }), "renamed data");
  const moved = saveFiles(to);
  putFiles(from, moved);
  refused(() => block0(from), "STORAGE_WRONG_NAME", "b.db's files put back under a.db");
});

test("a v1 log is refused with the command that upgrades it", () => {
  const file = path.join(tempDir(), "old.db");
  PageStore.create(files, file, trust).close();
  const log = fs.readFileSync(`${file}.log`);
  log[9] = 1;
  fs.writeFileSync(`${file}.log`, log);
  const e = refused(() => block0(file), "STORAGE_UPGRADE_REQUIRED", "a v1 log");
  assert.ok(e.message.includes(`selkie db upgrade ${file}`), e.message);
});

test("kill -9 at random instants of create() leaves each name absent or a valid empty database, and a retry succeeds", { timeout: 180_000 }, async () => {
  const platformDir = tempDir("selkie-create-crash-platform-");
  (await Platform.create(platformDir)).close();
  const fixture = path.join(ROOT, "dist", "test", "storage", "fixtures", "create-writer.js");
  const r = rng(20261203);
  let created = 0;
  let absent = 0;
  for (let trial = 0; trial < 12; trial++) {
    const dir = tempDir();
    const out = await runUntilKilled(fixture, [platformDir, dir], /^ready$/m, Math.floor(r() * 60));
    const acks = [...out.matchAll(/^created (\d+)$/gm)].map((m) => Number(m[1]));
    const last = acks.length ? acks[acks.length - 1]! : -1;
    const platform = await Platform.open(platformDir);
    try {
      const t = storeTrust(platform);
      for (let i = 0; i <= last + 1; i++) {
        const f = path.join(dir, `db-${i}.db`);
        if (PageStore.exists(files, f)) {
          const s = PageStore.open(files, f, t, { readonly: true });
          assert.equal(s.size, 0, `trial ${trial}: db-${i}.db is an empty database`);
          s.close();
          created++;
        } else {
          assert.ok(i === last + 1, `trial ${trial}: acknowledged db-${i}.db exists`);
          absent++;
          const s = PageStore.create(files, f, t); // the retry succeeds over any leftovers
          s.close();
          assert.ok(!fs.existsSync(`${f}.log.tmp`));
          assert.equal(block0(f, { trust: t }), "");
        }
      }
    } finally {
      platform.close();
    }
  }
  assert.ok(created > 0, `creates completed (${created}; ${absent} interrupted)`);
});

test("a database opened where a killed create() left an empty slot file and a NAME.log.tmp is created afresh", () => {
  const file = path.join(tempDir(), "left.db");
  fs.writeFileSync(file, "");
  fs.writeFileSync(`${file}.log.tmp`, "half a header");
  const db = openDb(file);
  db.exec("CREATE TABLE t(v); INSERT INTO t VALUES (1)");
  db.close();
  assert.ok(!fs.existsSync(`${file}.log.tmp`));
  fs.writeFileSync(path.join(path.dirname(file), "plain.db"), "x".repeat(100));
  assert.throws(() => openDb(path.join(path.dirname(file), "plain.db")), { code: "STORAGE_PLAIN_FILE" }, "a non-empty file without a log is still not mistaken for a leftover");
});
