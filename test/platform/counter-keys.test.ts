import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { CounterStore } from "../../runtime/platform/counter-store.js";
import { rmDir, tempDir } from "./helpers.js";

// Format facts from runtime/platform/FORMATS.md §7, written out here so the test checks the files, not the code's view of them.
const genKey = (key: Buffer, gen: bigint): Buffer => {
  const info = Buffer.alloc(26);
  info.write("selkie/counters/v2", 0, "latin1");
  info.writeBigUInt64BE(gen, 18);
  return Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), info, 32));
};

function opens(key: Buffer, snap: Buffer): boolean {
  const len = snap.readUInt32BE(36);
  try {
    const d = createDecipheriv("aes-256-gcm", key, snap.subarray(24, 36));
    d.setAAD(snap.subarray(0, 40));
    d.setAuthTag(snap.subarray(40 + len));
    d.update(snap.subarray(40, 40 + len));
    d.final();
    return true;
  } catch {
    return false;
  }
}

const owner = { policy: 1 as const, isvProdId: 0, owner: Buffer.alloc(32, 7) };

test("each generation of the counter store is sealed under its own derived key, never the store key itself", () => {
  const dir = tempDir();
  try {
    const key = randomBytes(32);
    CounterStore.initialize(dir, key);
    const s = CounterStore.open(dir, key, { compactEvery: 3 });
    const { id } = s.create(owner, 0);
    for (let v = 1; v <= 10; v++) s.set(id, v); // several compactions
    s.close();
    const snap = fs.readFileSync(path.join(dir, "counters", "snapshot.bin"));
    const gen = snap.readBigUInt64BE(8);
    assert.equal(snap[4], 2, "format 2");
    assert.ok(gen > 3n, `compactions happened (generation ${gen})`);
    assert.ok(opens(genKey(key, gen), snap), "the snapshot opens under its generation's key");
    assert.ok(!opens(key, snap), "not under the store key");
    assert.ok(!opens(genKey(key, gen - 1n), snap), "not under another generation's key");
    const again = CounterStore.open(dir, key);
    assert.equal(again.get(id)?.value, 10);
    again.close();
  } finally {
    rmDir(dir);
  }
});

/** A format-1 store, as Selkie wrote it before generation keys: one counter at `value`, then a SET record to `value + 2`. */
function writeV1(dir: string, key: Buffer, id: Buffer, value: number): void {
  const seal = (aad: Buffer, pt: Buffer, iv = randomBytes(12)) => {
    const c = createCipheriv("aes-256-gcm", key, iv);
    c.setAAD(aad);
    return { iv, ct: Buffer.concat([c.update(pt), c.final()]), tag: c.getAuthTag() };
  };
  const cdir = path.join(dir, "counters");
  fs.mkdirSync(cdir, { recursive: true });
  const pt = Buffer.alloc(4 + 72);
  pt.writeUInt32BE(1, 0);
  id.copy(pt, 4);
  pt[4 + 16] = owner.policy;
  owner.owner.copy(pt, 4 + 24);
  pt.writeBigUInt64BE(BigInt(value), 4 + 56);
  const header = Buffer.alloc(40);
  header.write("SKCS", 0, "latin1");
  header[4] = 1;
  header.writeBigUInt64BE(5n, 8); // generation
  header.writeBigUInt64BE(100n, 16); // last sequence
  const iv = randomBytes(12);
  iv.copy(header, 24);
  header.writeUInt32BE(pt.length, 36);
  const snap = seal(header, pt, iv);
  fs.writeFileSync(path.join(cdir, "snapshot.bin"), Buffer.concat([header, snap.ct, snap.tag]));
  const logHeader = Buffer.alloc(16);
  logHeader.write("SKCL", 0, "latin1");
  logHeader[4] = 1;
  logHeader.writeBigUInt64BE(5n, 8);
  const rec = Buffer.alloc(72);
  rec[0] = 2; // SET
  rec[1] = owner.policy;
  rec.writeBigUInt64BE(101n, 8);
  id.copy(rec, 16);
  owner.owner.copy(rec, 32);
  rec.writeBigUInt64BE(BigInt(value + 2), 64);
  const aad = Buffer.alloc(12);
  aad.write("SKCR", 0, "latin1");
  aad.writeBigUInt64BE(5n, 4);
  const r = seal(aad, rec);
  fs.writeFileSync(path.join(cdir, "log-5.bin"), Buffer.concat([logHeader, Buffer.from("SKCR", "latin1"), r.iv, r.ct, r.tag]));
}

test("a format-1 counter store opens with every value and is rewritten in format 2 under generation keys", () => {
  const dir = tempDir();
  try {
    const key = randomBytes(32);
    const id = randomBytes(16);
    writeV1(dir, key, id, 40);
    const s = CounterStore.open(dir, key);
    assert.equal(s.get(id.toString("hex"))?.value, 42, "snapshot value plus the log's SET");
    s.set(id.toString("hex"), 43);
    s.close();
    const snap = fs.readFileSync(path.join(dir, "counters", "snapshot.bin"));
    assert.equal(snap[4], 2);
    assert.equal(snap.readBigUInt64BE(8), 6n, "compacted into the next generation");
    assert.ok(opens(genKey(key, 6n), snap) && !opens(key, snap));
    assert.ok(!fs.existsSync(path.join(dir, "counters", "log-5.bin")), "the format-1 log is gone");
    const again = CounterStore.open(dir, key);
    assert.equal(again.get(id.toString("hex"))?.value, 43);
    again.close();
  } finally {
    rmDir(dir);
  }
});
