/**
 * UNTRUSTED (server). The databases a server hosts: `<dir>/databases/<name>.db` (plus its `.log`),
 * each opened on first use on the server's platform and kept open (a primary connection, and more
 * while streams overlap: db-host.ts) until it is deleted or the server shuts down.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Database } from "../../sql/database.js";
import type { Platform } from "../../platform/platform.js";
import { HttpError, notFound } from "./errors.js";
import { DbHost } from "./db-host.js";

/** Database names: a letter or digit, then letters, digits, '_', '-', '.'; at most 64. */
export const DB_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkDbName(name: string): string {
  if (!DB_NAME_RE.test(name) || name.includes("..")) {
    throw new HttpError(400, "BAD_DB_NAME", `database names are 1-64 characters: a letter or digit, then letters, digits, '_', '-' or '.'; got ${JSON.stringify(name.slice(0, 80))}`);
  }
  return name;
}

export interface RegistryOptions {
  /** Where database files live. */
  dir: string;
  platform: Platform;
  /** EPC size of each database's enclave (default: the SQLite manifest's). */
  epc?: number | string;
}

export class DatabaseRegistry {
  readonly dir: string;
  readonly #open = new Map<string, DbHost>();
  readonly #opts: RegistryOptions;

  constructor(opts: RegistryOptions) {
    this.#opts = opts;
    this.dir = path.resolve(opts.dir);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** EPC size of each database's enclave, as configured (undefined: the SQLite manifest's). */
  get epc(): number | string | undefined {
    return this.#opts.epc;
  }

  fileFor(name: string): string {
    return path.join(this.dir, `${checkDbName(name)}.db`);
  }

  exists(name: string): boolean {
    const f = this.fileFor(name);
    return fs.existsSync(f) || fs.existsSync(`${f}.log`);
  }

  /** Names of every database on disk, sorted. */
  list(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((f) => f.endsWith(".db") && DB_NAME_RE.test(f.slice(0, -3)))
      .map((f) => f.slice(0, -3))
      .sort();
  }

  get openCount(): number {
    return this.#open.size;
  }

  openHosts(): DbHost[] {
    return [...this.#open.values()];
  }

  isOpen(name: string): boolean {
    return this.#open.has(name);
  }

  /** The open database `name`, opening it on first use (404 when it does not exist). */
  get(name: string): DbHost {
    checkDbName(name);
    const host = this.#open.get(name);
    if (host && !host.closed) return host;
    if (host) this.#open.delete(name); // its enclave could not be restarted: open it afresh
    if (!this.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; create it with POST /v1/databases`);
    return this.#openHost(name, false);
  }

  /** Creates database `name` (409 when it exists) and keeps it open. */
  create(name: string): DbHost {
    if (this.exists(name)) throw new HttpError(409, "DB_EXISTS", `database ${name} exists already`);
    try {
      return this.#openHost(name, true);
    } catch (e) {
      // Refused (EPC full, ...): leave no half-created files behind.
      const f = this.fileFor(name);
      for (const p of [f, `${f}.log`, `${f}.snapshot`]) fs.rmSync(p, { force: true, recursive: true });
      throw e;
    }
  }

  #openHost(name: string, create: boolean): DbHost {
    const db = new Database(this.fileFor(name), {
      platform: this.#opts.platform,
      create,
      ...(this.#opts.epc !== undefined ? { epc: this.#opts.epc } : {}),
    });
    // More connections to the same file, for concurrent streams (hrana/ISOLATION.md).
    // A spare (opened ahead of need) only when the EPC holds it without paging another enclave out.
    const more = (spare: boolean): Database | undefined => {
      if (spare && this.#opts.platform.epc.free < 2 * db.enclave.committedBytes) return undefined;
      return new Database(this.fileFor(name), { platform: this.#opts.platform, create: false, ...(this.#opts.epc !== undefined ? { epc: this.#opts.epc } : {}) });
    };
    const host = new DbHost(name, db, more);
    this.#open.set(name, host);
    return host;
  }

  /** Closes `name` if open (rolling back an open transaction). */
  close(name: string): void {
    const host = this.#open.get(name);
    if (!host) return;
    this.#open.delete(name);
    host.close();
  }

  /** Closes and removes `name`'s files. */
  remove(name: string): void {
    if (!this.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them, POST /v1/databases creates one`);
    this.close(name);
    const f = this.fileFor(name);
    // Destroys its counter before its files, so a copy of them never opens again (STORAGE_DELETED).
    new Database(f, { platform: this.#opts.platform, create: false, ...(this.#opts.epc !== undefined ? { epc: this.#opts.epc } : {}) }).destroy();
    fs.rmSync(`${f}.snapshot`, { force: true, recursive: true });
  }

  closeAll(): void {
    const errors: unknown[] = [];
    for (const name of [...this.#open.keys()]) {
      try {
        this.close(name);
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw errors[0];
  }
}
