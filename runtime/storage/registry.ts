/**
 * TRUSTED. One PageStore per database file per process, shared by every connection to it (so they
 * see one committed table and one set of pending writes, ordered by SQLite's locks).
 *
 * Invariants:
 *  1. Sharing never skips the unseal check. The first opener opens the store, which unseals the
 *     data key with its trust (platform + enclave identity). Every later opener, before it is handed
 *     the shared store, proves the same: its trust opens the store's files read-only (through
 *     PageStore.open, so the header's sealed key is unsealed, and the log and counter checked,
 *     exactly as a first open would), and the proof store is closed at once. A mismatch is refused
 *     with the very error a first open gives (STORAGE_WRONG_PLATFORM, STORAGE_WRONG_ENCLAVE,
 *     STORAGE_TAMPERED, ...). Keying the share by (path, platform, identity) instead would let two
 *     identities that may both unseal the key (one signer, two SVNs) hold two stores of one file.
 *  2. A trust object that has proved itself once for an entry is not asked again (the proof costs a
 *     read-only open: the log is read and its records opened).
 */
import type { FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";
import { PageStore, type StoreTrust } from "./page-store.js";

interface Entry {
  store: PageStore;
  refs: number;
  /** Trusts that opened or proved they can open this store (invariant 2). */
  proven: WeakSet<StoreTrust>;
}

const open = new Map<string, Entry>();

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
    entry = { store, refs: 0, proven: new WeakSet([o.trust]) };
    open.set(path, entry);
  } else if (!entry.proven.has(o.trust)) {
    // Invariant 1: the opener must be able to unseal this store itself. Throws the first open's error.
    PageStore.open(o.files, path, o.trust, { readonly: true }).close();
    entry.proven.add(o.trust);
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
