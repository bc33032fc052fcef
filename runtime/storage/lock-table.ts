/**
 * SQLite's file locks (NONE < SHARED < RESERVED < PENDING < EXCLUSIVE) between the connections of
 * one process, keyed by file. Mirrors the rules of os_unix.c's unixLock:
 *  - SHARED is granted unless someone holds PENDING or EXCLUSIVE;
 *  - RESERVED needs SHARED and is held by at most one connection;
 *  - PENDING/EXCLUSIVE need RESERVED (or go straight from SHARED); EXCLUSIVE needs no other SHARED.
 * With `views` (sealed files, whose readers read a pinned read view of the page store, see
 * runtime/host/server/hrana/ISOLATION.md): SHARED is always granted and EXCLUSIVE does not wait for
 * readers; RESERVED and above stay one connection's at a time.
 */
export const LOCK_NONE = 0;
export const LOCK_SHARED = 1;
export const LOCK_RESERVED = 2;
export const LOCK_PENDING = 3;
export const LOCK_EXCLUSIVE = 4;

interface FileLocks {
  shared: number;
  writer: object | undefined; // holder of RESERVED, PENDING or EXCLUSIVE
  writerLevel: number;
}

export class LockTable {
  #files = new Map<string, FileLocks>();
  #levels = new Map<object, number>();

  #entry(key: string): FileLocks {
    let e = this.#files.get(key);
    if (!e) {
      e = { shared: 0, writer: undefined, writerLevel: LOCK_NONE };
      this.#files.set(key, e);
    }
    return e;
  }

  level(owner: object): number {
    return this.#levels.get(owner) ?? LOCK_NONE;
  }

  /** Raise owner's lock on key to `level`; false means busy (nothing changed). */
  lock(key: string, owner: object, level: number, views = false): boolean {
    const cur = this.level(owner);
    if (level <= cur) return true;
    const e = this.#entry(key);
    if (level === LOCK_SHARED) {
      if (!views && e.writer !== undefined && e.writerLevel >= LOCK_PENDING) return false;
      e.shared++;
      this.#levels.set(owner, LOCK_SHARED);
      return true;
    }
    if (cur < LOCK_SHARED) return false; // SQLite never asks this; refuse rather than guess
    if (e.writer !== undefined && e.writer !== owner) return false;
    if (level === LOCK_EXCLUSIVE && e.shared > 1 && !views) {
      // Others still read: hold PENDING so no new reader enters, and report busy.
      e.writer = owner;
      e.writerLevel = LOCK_PENDING;
      this.#levels.set(owner, LOCK_PENDING);
      return false;
    }
    e.writer = owner;
    e.writerLevel = level;
    this.#levels.set(owner, level);
    return true;
  }

  /** Lower owner's lock to `level` (SHARED or NONE). */
  unlock(key: string, owner: object, level: number): void {
    const cur = this.level(owner);
    if (level >= cur) return;
    const e = this.#entry(key);
    if (cur >= LOCK_RESERVED && e.writer === owner) {
      e.writer = undefined;
      e.writerLevel = LOCK_NONE;
    }
    if (level === LOCK_NONE && cur >= LOCK_SHARED) {
      e.shared--;
      this.#levels.delete(owner);
      if (e.shared === 0 && e.writer === undefined) this.#files.delete(key);
    } else {
      this.#levels.set(owner, level);
    }
  }

  /** True when no connection holds any lock on `key`. */
  idle(key: string): boolean {
    return !this.#files.has(key);
  }

  reserved(key: string): boolean {
    const e = this.#files.get(key);
    return e !== undefined && e.writer !== undefined;
  }
}

/** One table per process: every enclave's connections see each other's locks. */
export const processLocks = new LockTable();
