/**
 * TRUSTED. `selkie db upgrade PATH`: converts a format 1 sealed store to format 2 (FORMAT.md
 * "Upgrading from version 1"). Steps, each durable before the next:
 *  1. move the v1 files aside: PATH.log -> PATH.v1.log, PATH -> PATH.v1 (v1 does not bind names);
 *  2. read them with the v1 reader (integrity and freshness checked) and build a complete v2 store
 *     in the folder .NAME.upgrade beside them (same basename, so its header names NAME);
 *  3. move its slot file, then its log, to PATH (the database exists again once the log lands);
 *  4. destroy the v1 counter (no copy of the v1 files can open again), remove the v1 files.
 * Running it again after a crash resumes: a complete v2 PATH with PATH.v1.log beside it goes on with 4;
 * otherwise any partial v2 files are removed and it restarts at 2 from PATH.v1.
 */
import { basename, dirname, join } from "node:path";
import * as fs from "node:fs";
import type { FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";
import { BLOCK, logFormatVersion, PageStore, type StoreTrust } from "./page-store.js";
import { PageStoreV1 } from "./page-store-v1.js";

/** Blocks per v2 commit while copying (16 MiB). */
const CHUNK = 4096;

function readLogVersion(files: FileLayer, log: string): number | undefined {
  const h = files.open(log, { create: false, readonly: true });
  try {
    const b = Buffer.alloc(16);
    return logFormatVersion(b.subarray(0, files.read(h, b, 0)));
  } finally {
    files.close(h);
  }
}

/** Upgrades the v1 store at `path` in place; returns the number of bytes copied. */
export function upgradeStore(files: FileLayer, path: string, trust: StoreTrust, into: StoreTrust = trust): number {
  const v1 = `${path}.v1`;
  const work = join(dirname(path), `.${basename(path)}.upgrade`);
  if (files.exists(`${v1}.log`)) {
    // Resuming. A complete v2 at PATH (its log landed) is kept; anything less is removed.
    if (!(files.exists(path) && files.exists(`${path}.log`) && readLogVersion(files, `${path}.log`) === 2)) {
      for (const f of [path, `${path}.log`]) if (files.exists(f)) files.remove(f, false);
    }
  } else {
    if (!files.exists(`${path}.log`)) throw new StorageError("STORAGE_MISSING_FILE", `${path}.log does not exist: nothing to upgrade`, `${path}.log`);
    const version = readLogVersion(files, `${path}.log`);
    if (version !== 1) throw new StorageError("STORAGE_NOT_V1", `${path} is not a format 1 database (its log says format ${version ?? "unknown"}); nothing to upgrade`, path);
    PageStoreV1.open(files, path, `${path}.log`, trust).close(); // authenticate before moving anything
    files.rename(`${path}.log`, `${v1}.log`);
    files.rename(path, v1);
  }
  let old: PageStoreV1;
  try {
    old = PageStoreV1.open(files, v1, `${v1}.log`, trust);
  } catch (e) {
    // A crash after the v1 counter was destroyed: only the removal of the v1 files was left to do.
    if (!(e instanceof StorageError && e.code === "STORAGE_DELETED" && files.exists(`${path}.log`))) throw e;
    for (const f of [`${v1}.log`, v1]) if (files.exists(f)) files.remove(f, false);
    return 0;
  }
  let copied = 0;
  try {
    if (!files.exists(`${path}.log`)) {
      fs.rmSync(work, { recursive: true, force: true });
      fs.mkdirSync(work, { mode: 0o700 });
      const target = join(work, basename(path));
      const store = PageStore.create(files, target, into);
      try {
        const blocks = Math.ceil(old.size / BLOCK);
        for (let b = 0; b < blocks; b++) {
          const plain = old.block(b);
          const n = Math.min(BLOCK, old.size - b * BLOCK);
          store.write(plain.subarray(0, n), b * BLOCK);
          copied += n;
          if (b % CHUNK === CHUNK - 1) store.commit();
        }
        store.commit();
      } finally {
        store.close();
      }
      files.rename(target, path);
      files.rename(`${target}.log`, `${path}.log`);
      fs.rmSync(work, { recursive: true, force: true });
    }
  } finally {
    old.close();
  }
  // The v2 store is complete and in place: the v1 files must never open again.
  trust.destroyCounter(old.counterId);
  for (const f of [`${v1}.log`, v1]) if (files.exists(f)) files.remove(f, false);
  files.syncDir(dirname(path));
  return copied;
}
