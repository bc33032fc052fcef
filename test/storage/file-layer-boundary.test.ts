/**
 * Values the untrusted file layer returns are checked once, at the VFS boundary (STYLE 2): a byte
 * count outside [0, asked] or a size that is not a non-negative safe integer is an I/O error with a
 * typed StorageError, never a number handed on to SQLite as if it were true.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { NodeFileLayer, type FileHandle } from "../../runtime/host/files.js";
import { SelkieError } from "../../runtime/index.js";
import { openDb, tempDir } from "../helpers.js";

/** The real file layer, until `lie` is set: then reads and sizes of the database file are lies. */
class LyingFiles extends NodeFileLayer {
  lie: { read?: (n: number, asked: number) => number; size?: (n: number) => number } = {};
  override read(h: FileHandle, buf: Uint8Array, offset: number): number {
    const n = super.read(h, buf, offset);
    return this.lie.read && h.path.endsWith(".db") ? this.lie.read(n, buf.length) : n;
  }
  override size(h: FileHandle): number {
    const n = super.size(h);
    return this.lie.size && h.path.endsWith(".db") ? this.lie.size(n) : n;
  }
}

function seeded(files: LyingFiles): string {
  const file = path.join(tempDir(), "plain.db");
  const db = openDb(file, { plain: true, files });
  db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);");
  db.close();
  return file;
}

const refusedAtBoundary = (e: unknown): boolean =>
  e instanceof SelkieError && e.code === "STORAGE_FILE_LAYER" && /file layer/.test(e.message);

test("a read count outside [0, asked] from the file layer is refused at the VFS boundary", () => {
  for (const lie of [(_n: number, asked: number) => asked + 4096, () => -11, () => 1.5, () => Number.NaN]) {
    const files = new LyingFiles();
    const file = seeded(files);
    files.lie = { read: lie };
    assert.throws(() => {
      const db = openDb(file, { plain: true, files });
      try {
        db.query("SELECT count(*) AS n FROM t");
      } finally {
        db.close();
      }
    }, refusedAtBoundary, `read returning ${lie(100, 100)}`);
  }
});

test("a file size that is not a non-negative safe integer is refused at the VFS boundary", () => {
  for (const lie of [() => -11, () => 2 ** 60, () => Number.NaN, () => 0.5]) {
    const files = new LyingFiles();
    const file = seeded(files);
    files.lie = { size: lie };
    assert.throws(() => {
      const db = openDb(file, { plain: true, files });
      try {
        db.query("SELECT count(*) AS n FROM t");
      } finally {
        db.close();
      }
    }, refusedAtBoundary, `size returning ${lie()}`);
  }
});
