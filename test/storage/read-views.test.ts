/**
 * The page store's read views (page-store.ts invariants 9 and 10; hrana/ISOLATION.md), against the
 * real PageStore over real files and a real platform's counters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { BLOCK, PageStore, SLOT, type ReadView } from "../../runtime/storage/page-store.js";
import { rng, tempDir, testPlatform } from "../helpers.js";
import { files, readBlock, storeTrust, writeBlock } from "./store-helpers.js";

const trust = storeTrust(testPlatform);

function viewBlock(s: PageStore, v: ReadView, b: number): string {
  const buf = Buffer.alloc(BLOCK);
  s.readView(v, buf, b * BLOCK);
  return buf.toString("utf8").replace(/\0+$/, "");
}

test("a view reads the commit it was opened at while later commits rewrite, add and cut blocks", () => {
  const file = path.join(tempDir(), "v.db");
  const s = PageStore.create(files, file, trust);
  for (let b = 0; b < 4; b++) writeBlock(s, b, `one-${b}`);
  s.commit();
  const v = s.openView();
  writeBlock(s, 1, "two-1");
  writeBlock(s, 5, "two-5");
  s.commit();
  s.truncate(2 * BLOCK);
  s.commit();
  assert.equal(readBlock(s, 1), "two-1");
  assert.equal(s.size, 2 * BLOCK);
  assert.equal(v.size, 4 * BLOCK);
  assert.equal(v.stale, true);
  for (let b = 0; b < 4; b++) assert.equal(viewBlock(s, v, b), `one-${b}`);
  assert.equal(s.readView(v, Buffer.alloc(BLOCK), 5 * BLOCK), 0, "past the view's end nothing is read");
  s.closeView(v);
  assert.equal(s.views, 0);
  s.close();
});

test("a view's old block swapped on disk for another is refused as tampered, never returned", () => {
  const file = path.join(tempDir(), "t.db");
  const s = PageStore.create(files, file, trust);
  writeBlock(s, 0, "zero");
  writeBlock(s, 1, "one");
  s.commit();
  const v = s.openView();
  writeBlock(s, 0, "zero-new");
  s.commit();
  // The view holds block 0's old slot; overwrite it with the sealed slot of block 1.
  const slots = fs.readFileSync(file);
  const n = slots.length / SLOT;
  const fd = fs.openSync(file, "r+");
  for (let i = 0; i < n; i++) fs.writeSync(fd, slots.subarray(((i + 1) % n) * SLOT, ((i + 1) % n) * SLOT + SLOT), 0, SLOT, i * SLOT);
  fs.closeSync(fd);
  assert.throws(() => viewBlock(s, v, 0), { code: "STORAGE_TAMPERED" });
  s.close();
});

test("random commits with views open and closed: every view reads exactly its commit, and the store reopens intact", () => {
  const file = path.join(tempDir(), "r.db");
  const s = PageStore.create(files, file, trust);
  const rand = rng(1407);
  let model = new Map<number, string>();
  let size = 0;
  const open: Array<{ v: ReadView; model: Map<number, string>; size: number }> = [];
  for (let step = 0; step < 150; step++) {
    const r = rand();
    if (r < 0.15) {
      open.push({ v: s.openView(), model: new Map(model), size });
    } else if (r < 0.25 && open.length > 0) {
      const i = Math.floor(rand() * open.length);
      s.closeView(open[i]!.v);
      open.splice(i, 1);
    } else {
      const writes = 1 + Math.floor(rand() * 6);
      for (let k = 0; k < writes; k++) {
        const b = Math.floor(rand() * 24);
        const text = `s${step}-b${b}-${k}`;
        writeBlock(s, b, text);
        model.set(b, text);
        size = Math.max(size, (b + 1) * BLOCK);
      }
      if (rand() < 0.1) {
        const keep = Math.floor(rand() * 24);
        s.truncate(keep * BLOCK);
        if (keep * BLOCK < size) {
          size = keep * BLOCK;
          model = new Map([...model].filter(([b]) => b < keep));
        }
      }
      s.commit();
    }
    for (const o of open) {
      assert.equal(o.v.size, o.size);
      for (let b = 0; b < o.size / BLOCK; b++) assert.equal(viewBlock(s, o.v, b), o.model.get(b) ?? "", `step ${step}, block ${b}`);
    }
  }
  for (const o of open) s.closeView(o.v);
  s.close();
  const again = PageStore.open(files, file, trust);
  assert.equal(again.size, size);
  for (let b = 0; b < size / BLOCK; b++) assert.equal(readBlock(again, b), model.get(b) ?? "");
  again.close();
});
