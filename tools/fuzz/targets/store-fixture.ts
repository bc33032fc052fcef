/**
 * An authentic sealed database for the store targets: created on a real platform (in a temp folder),
 * kept in memory files, with a history (a snapshot, deltas, a rollback, a reopen's epoch record, a
 * shrink) so the log holds every record kind. `expected` is what its latest commit holds.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Platform } from "../../../runtime/platform/platform.js";
import { BLOCK, PageStore, type StoreTrust } from "../../../runtime/storage/page-store.js";
import { StorageError } from "../../../runtime/storage/errors.js";
import { storeTrust } from "../../../test/storage/store-helpers.js";
import { MemoryFiles } from "../memory-files.js";
import { PropertyViolation, refusedOr } from "../target.js";

export const DB = "/fuzz/app.db";

export interface StoreFixture {
  files: MemoryFiles;
  trust: StoreTrust;
  slots: Buffer;
  log: Buffer;
  expected: Buffer;
}

let fixture: StoreFixture | undefined;

function block(text: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(text.repeat(Math.ceil(BLOCK / text.length)).slice(0, BLOCK));
  return b;
}

export async function storeFixture(): Promise<StoreFixture> {
  if (fixture) return fixture;
  const platform = await Platform.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-platform-")));
  const trust = storeTrust(platform);
  const files = new MemoryFiles();
  let s = PageStore.create(files, DB, trust);
  for (let b = 0; b < 4; b++) s.write(block(`first ${b} `), b * BLOCK);
  s.commit();
  s.write(block("second 1 "), 1 * BLOCK);
  s.commit();
  s.write(block("never committed "), 2 * BLOCK);
  s.rollback();
  s.close();
  s = PageStore.open(files, DB, trust); // a writable open appends an epoch record
  s.write(block("third 3 "), 3 * BLOCK);
  s.write(block("third 4 "), 4 * BLOCK);
  s.commit();
  s.truncate(4 * BLOCK);
  s.commit();
  const expected = readAllBlocks(s);
  s.close();
  fixture = { files, trust, slots: Buffer.from(files.files.get(DB)!), log: Buffer.from(files.files.get(`${DB}.log`)!), expected };
  return fixture;
}

export function readAllBlocks(s: PageStore): Buffer {
  const size = s.size;
  const out = Buffer.alloc(size);
  for (let o = 0; o < size; o += BLOCK) s.read(out.subarray(o, Math.min(size, o + BLOCK)), o);
  return out;
}

/**
 * Opens the store from these files (read-only, so the platform counter does not move) and reads every
 * block. Property: refused with a StorageError, or exactly the latest committed content.
 */
export function openAndCheck(f: StoreFixture, slots: Uint8Array, log: Uint8Array): void {
  f.files.files.clear();
  f.files.files.set(DB, Buffer.from(slots));
  f.files.files.set(`${DB}.log`, Buffer.from(log));
  const got = refusedOr(() => {
    const s = PageStore.open(f.files, DB, f.trust, { readonly: true });
    try {
      return readAllBlocks(s);
    } finally {
      s.close();
    }
  }, [StorageError]);
  if (got && !got.equals(f.expected)) {
    throw new PropertyViolation(`changed files were accepted and read back ${got.length} bytes that are not the last commit's ${f.expected.length}`);
  }
}
