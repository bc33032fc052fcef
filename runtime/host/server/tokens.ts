/**
 * UNTRUSTED (server). Bearer tokens for `selkie serve`, stored hashed in `<dir>/tokens.json` (0600).
 *
 * A token is `sk_` + 32 random bytes (base64url); only its SHA-256 is stored, with an id, a scope and
 * a creation time. Checking a token hashes it and compares that hash with every stored one using
 * crypto.timingSafeEqual, without stopping at a match, so the time taken says nothing about which
 * tokens exist. The file is re-read when it changes on disk, so `selkie token create|revoke` takes
 * effect on a running server (within 250 ms).
 *
 * Scopes: "admin" (management API, metrics, every database read-write); "read-write" or "read-only"
 * on one database (SQL over HTTP to that database only; read-only refuses any statement that is not
 * read-only, as SQLite's sqlite3_stmt_readonly judges it).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { UsageError } from "../../errors.js";

export const TOKENS_FILE = "tokens.json";
const FORMAT = 1;

export type TokenScope = "admin" | "read-write" | "read-only";

export interface TokenRecord {
  id: string;
  /** SHA-256 of the token, hex. */
  hash: string;
  scope: TokenScope;
  /** The database a read-write or read-only token is limited to (null for admin). */
  db: string | null;
  createdAt: string;
}

/** Who a request authenticated as. */
export interface Principal {
  tokenId: string;
  admin: boolean;
  db: string | null;
  readOnly: boolean;
}

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();
const SCOPES: readonly TokenScope[] = ["admin", "read-write", "read-only"];

export class TokenStore {
  readonly file: string;
  #records: TokenRecord[] = [];
  #hashes: Buffer[] = [];
  #stamp = "";
  #checkedAt = 0;

  constructor(dir: string) {
    this.file = path.join(path.resolve(dir), TOKENS_FILE);
    this.#reload(true);
  }

  /** Re-reads the file when its size or mtime changed (looked at most every 250 ms). */
  #reload(force = false): void {
    const now = Date.now();
    if (!force && now - this.#checkedAt < 250) return;
    this.#checkedAt = now;
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    const stamp = st ? `${st.mtimeMs}:${st.size}:${st.ino}` : "none";
    if (!force && stamp === this.#stamp) return;
    this.#stamp = stamp;
    this.#records = st ? parseTokens(fs.readFileSync(this.file, "utf8"), this.file) : [];
    this.#hashes = this.#records.map((r) => Buffer.from(r.hash, "hex"));
  }

  list(): TokenRecord[] {
    this.#reload();
    return this.#records.map((r) => ({ ...r }));
  }

  hasAdmin(): boolean {
    return this.list().some((r) => r.scope === "admin");
  }

  /** Creates a token; returns its record and the secret (shown once, never stored). */
  create(scope: TokenScope, db: string | null): { record: TokenRecord; token: string } {
    if (!SCOPES.includes(scope)) throw new UsageError("BAD_TOKEN_SCOPE", `token scope must be one of ${SCOPES.join(", ")}`);
    if (scope === "admin" && db !== null) throw new UsageError("BAD_TOKEN_SCOPE", "an admin token is not limited to one database; omit --db");
    if (scope !== "admin" && db === null) throw new UsageError("BAD_TOKEN_SCOPE", "a database token needs --db NAME");
    this.#reload();
    const token = `sk_${randomBytes(32).toString("base64url")}`;
    const record: TokenRecord = { id: `tok_${randomBytes(6).toString("hex")}`, hash: sha256(token).toString("hex"), scope, db, createdAt: new Date().toISOString() };
    this.#write([...this.#records, record]);
    return { record, token };
  }

  /** Removes a token by id; false when there is none. */
  revoke(id: string): boolean {
    this.#reload();
    const rest = this.#records.filter((r) => r.id !== id);
    if (rest.length === this.#records.length) return false;
    this.#write(rest);
    return true;
  }

  /** Removes every token limited to `db` (the database was deleted). */
  revokeForDb(db: string): number {
    this.#reload();
    const rest = this.#records.filter((r) => r.db !== db);
    const n = this.#records.length - rest.length;
    if (n > 0) this.#write(rest);
    return n;
  }

  /** The records (hashes, never secrets) of the tokens limited to `db`: what a migration carries. */
  forDb(db: string): TokenRecord[] {
    return this.list().filter((r) => r.db === db && r.scope !== "admin");
  }

  /**
   * Adds the token records a migration brought with database `db` (untrusted input from the peer):
   * only well-formed read-write or read-only tokens limited to `db`; never an admin token; ids or
   * hashes already known here are skipped. Returns how many were added.
   */
  adopt(db: string, records: unknown): number {
    if (!Array.isArray(records)) return 0;
    this.#reload(true);
    const ids = new Set(this.#records.map((r) => r.id));
    const hashes = new Set(this.#records.map((r) => r.hash));
    const add: TokenRecord[] = [];
    for (const x of records.slice(0, 1000)) {
      const r = x as Partial<TokenRecord> | null;
      if (r === null || typeof r !== "object") continue;
      if (r.db !== db || (r.scope !== "read-write" && r.scope !== "read-only")) continue;
      if (typeof r.id !== "string" || !/^tok_[0-9a-f]{12}$/.test(r.id) || typeof r.hash !== "string" || !/^[0-9a-f]{64}$/.test(r.hash)) continue;
      if (ids.has(r.id) || hashes.has(r.hash)) continue;
      const createdAt = typeof r.createdAt === "string" && r.createdAt.length <= 40 ? r.createdAt : new Date().toISOString();
      add.push({ id: r.id, hash: r.hash, scope: r.scope, db, createdAt });
      ids.add(r.id);
      hashes.add(r.hash);
    }
    if (add.length > 0) this.#write([...this.#records, ...add]);
    return add.length;
  }

  /** The principal for a presented token, or undefined. Constant-time over all stored tokens. */
  authenticate(token: string): Principal | undefined {
    this.#reload();
    const h = sha256(token);
    let found = -1;
    for (let i = 0; i < this.#hashes.length; i++) {
      const stored = this.#hashes[i]!;
      if (stored.length === h.length && timingSafeEqual(stored, h) && found < 0) found = i;
    }
    const r = found >= 0 ? this.#records[found] : undefined;
    if (!r) return undefined;
    return { tokenId: r.id, admin: r.scope === "admin", db: r.db, readOnly: r.scope === "read-only" };
  }

  #write(records: TokenRecord[]): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify({ format: FORMAT, tokens: records }, null, 2)}\n`, { mode: 0o600 });
    fs.chmodSync(tmp, 0o600);
    const fd = fs.openSync(tmp, "r");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.file);
    this.#reload(true);
  }
}

function parseTokens(text: string, file: string): TokenRecord[] {
  const bad = (why: string): never => {
    throw new UsageError("TOKENS_CORRUPT", `${file} is not a valid token file (${why}); fix or remove it, then create tokens again`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return bad("not JSON");
  }
  if (doc === null || typeof doc !== "object") return bad("not an object");
  const d = doc as { format?: unknown; tokens?: unknown };
  if (d.format !== FORMAT) return bad(`format ${String(d.format)}, expected ${FORMAT}`);
  if (!Array.isArray(d.tokens)) return bad("no tokens array");
  return d.tokens.map((t: unknown, i) => {
    const r = t as Partial<TokenRecord>;
    if (!r || typeof r.id !== "string" || typeof r.hash !== "string" || !/^[0-9a-f]{64}$/.test(r.hash)) return bad(`token ${i}`);
    if (!SCOPES.includes(r.scope as TokenScope)) return bad(`token ${i} scope`);
    if (r.db !== null && typeof r.db !== "string") return bad(`token ${i} db`);
    return { id: r.id, hash: r.hash, scope: r.scope as TokenScope, db: r.db ?? null, createdAt: String(r.createdAt ?? "") };
  });
}
