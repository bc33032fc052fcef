/**
 * TRUSTED. One PageStore per database file per process, shared by every connection to it (so they
 * see one committed table and one set of pending writes, ordered by SQLite's locks).
 */
import type { FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";
import { PageStore, type StoreTrust } from "./page-store.js";

const open = new Map<string, { store: PageStore; refs: number }>();

export interface AcquireOptions {
  files: FileLayer;
  trust: StoreTrust;
  readonly: boolean;
  create: boolean;
}

/** Opens (or creates, when allowed and absent) the store of `path`, or shares the open one. */
export function acquireStore(path: string, o: AcquireOptions): { store: PageStore; release: () => void } {
  let entry = open.get(path);
  if (!entry) {
    let store: PageStore;
    if (PageStore.exists(o.files, path)) store = PageStore.open(o.files, path, o.trust, { readonly: o.readonly });
    else if (o.files.exists(path) && !PageStore.isCreateLeftover(o.files, path)) {
      throw new StorageError(
        "STORAGE_PLAIN_FILE",
        `${path} is not a sealed Selkie database (no ${path}.log beside it); if it is a plain SQLite file, seal it into a new database with: selkie db import ${path} NEW.db`,
        path,
      );
    } else if (o.create && !o.readonly) store = PageStore.create(o.files, path, o.trust);
    else throw new StorageError("STORAGE_MISSING_FILE", `${path} does not exist (open it without readonly/create=false to create it)`, path);
    entry = { store, refs: 0 };
    open.set(path, entry);
  }
  entry.refs++;
  const e = entry;
  let released = false;
  return {
    store: e.store,
    release: () => {
      if (released) return;
      released = true;
      if (--e.refs === 0) {
        open.delete(path);
        e.store.close();
      }
    },
  };
}
