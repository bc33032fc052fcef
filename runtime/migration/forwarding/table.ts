/**
 * The durable forwarding table (FORWARDING.md): databases that moved to another peer, and where.
 *
 * Invariants: the file on disk is always a complete table (tmp + fsync + rename + fsync folder);
 * record() and remove() return only once the change is durable; memory changes only after the file
 * did, so a failed write leaves both at the old table.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SelkieError } from "../../errors.js";
import { writeFileAtomic } from "../../platform/files.js";
import { checkDbName } from "../../host/server/registry.js";

export const FORWARDING_FILE = "forwarding.json";
export const FORWARDING_FORMAT = 1;

export type ForwardingErrorCode = "FORWARDING_CORRUPT" | "FORWARDING_VERSION_UNSUPPORTED" | "FORWARDING_BAD_URL" | "FORWARDING_BAD_NAME";

export class ForwardingError extends SelkieError {
  declare readonly code: ForwardingErrorCode;
  constructor(code: ForwardingErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface ForwardingEntry {
  readonly name: string;
  /** The new owner's selkie serve base URL, no trailing slash. */
  readonly to: string;
  /** ISO time the entry was recorded. */
  readonly since: string;
}

/** Checks and normalizes a peer base URL (http/https, no credentials, query or fragment). */
export function normalizePeerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ForwardingError("FORWARDING_BAD_URL", `not a URL: ${JSON.stringify(String(url).slice(0, 200))}; give the new owner's selkie serve URL, e.g. https://edge-b:7700`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ForwardingError("FORWARDING_BAD_URL", `the new owner's URL must be http:// or https://, not ${u.protocol}`);
  if (u.username !== "" || u.password !== "") throw new ForwardingError("FORWARDING_BAD_URL", "the new owner's URL must not carry credentials");
  if (u.search !== "" || u.hash !== "") throw new ForwardingError("FORWARDING_BAD_URL", "the new owner's URL must not have a query or fragment");
  return `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
}

function checkName(name: string): string {
  try {
    return checkDbName(name);
  } catch (e) {
    throw new ForwardingError("FORWARDING_BAD_NAME", (e as Error).message);
  }
}

export class ForwardingTable {
  readonly file: string;
  #entries = new Map<string, ForwardingEntry>();
  #requests = new Map<string, number>();

  private constructor(file: string) {
    this.file = file;
  }

  /** Opens (reads) the table of the server directory `dir`; an absent file is an empty table. */
  static open(dir: string): ForwardingTable {
    const t = new ForwardingTable(path.join(path.resolve(dir), FORWARDING_FILE));
    let text: string;
    try {
      text = fs.readFileSync(t.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return t;
      throw e;
    }
    const corrupt: (why: string) => never = (why) => {
      throw new ForwardingError("FORWARDING_CORRUPT", `${t.file} is not a valid forwarding table (${why}); fix or remove it (removing it makes clients of moved databases get 404 here)`);
    };
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      corrupt((e as Error).message);
    }
    if (v === null || typeof v !== "object") corrupt("not an object");
    const o = v as { format?: unknown; databases?: unknown };
    if (o.format !== FORWARDING_FORMAT) {
      throw new ForwardingError("FORWARDING_VERSION_UNSUPPORTED", `${t.file} has format ${JSON.stringify(o.format)}; this Selkie reads format ${FORWARDING_FORMAT}`);
    }
    if (o.databases === null || typeof o.databases !== "object" || Array.isArray(o.databases)) corrupt("no databases map");
    for (const [name, e] of Object.entries(o.databases as Record<string, unknown>)) {
      const x = e as { to?: unknown; since?: unknown } | null;
      if (x === null || typeof x !== "object" || typeof x.to !== "string" || typeof x.since !== "string" || Number.isNaN(Date.parse(x.since))) corrupt(`entry ${JSON.stringify(name)}`);
      try {
        t.#entries.set(checkName(name), { name, to: normalizePeerUrl(x.to), since: x.since });
      } catch (err) {
        corrupt(`entry ${JSON.stringify(name)}: ${(err as Error).message}`);
      }
    }
    return t;
  }

  get(name: string): ForwardingEntry | undefined {
    return this.#entries.get(name);
  }

  get size(): number {
    return this.#entries.size;
  }

  list(): Array<ForwardingEntry & { requests: number }> {
    return [...this.#entries.values()].sort((a, b) => a.name.localeCompare(b.name)).map((e) => ({ ...e, requests: this.#requests.get(e.name) ?? 0 }));
  }

  /** Counts a forwarded request (GET /v1/forwarding, /metrics). */
  counted(name: string): void {
    this.#requests.set(name, (this.#requests.get(name) ?? 0) + 1);
  }

  /** Records that `name` now lives at `peerUrl`; durable when it returns. Idempotent. */
  record(name: string, peerUrl: string, now = new Date()): ForwardingEntry {
    const n = checkName(name);
    const to = normalizePeerUrl(peerUrl);
    const old = this.#entries.get(n);
    if (old !== undefined && old.to === to) return old;
    const entry: ForwardingEntry = { name: n, to, since: now.toISOString() };
    const next = new Map(this.#entries);
    next.set(n, entry);
    this.#write(next);
    this.#entries = next;
    return entry;
  }

  /** Removes the entry of `name` (durable when it returns); false when there was none. */
  remove(name: string): boolean {
    if (!this.#entries.has(name)) return false;
    const next = new Map(this.#entries);
    next.delete(name);
    this.#write(next);
    this.#entries = next;
    this.#requests.delete(name);
    return true;
  }

  #write(entries: Map<string, ForwardingEntry>): void {
    const databases: Record<string, { to: string; since: string }> = {};
    for (const e of [...entries.values()].sort((a, b) => a.name.localeCompare(b.name))) databases[e.name] = { to: e.to, since: e.since };
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.file, `${JSON.stringify({ format: FORWARDING_FORMAT, databases }, null, 2)}\n`, 0o600);
  }
}

/** What the migration protocol calls when a migration of `name` to `peerUrl` commits (durable on return). */
export function recordForwarding(table: ForwardingTable, name: string, peerUrl: string): ForwardingEntry {
  return table.record(name, peerUrl);
}
