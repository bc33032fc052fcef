/**
 * UNTRUSTED (server). The management API under /v1 (admin token; JSON in and out).
 *
 *   GET    /v1/databases               {databases: [{name, open, diskBytes}]}
 *   POST   /v1/databases {name}        201 {name, ...}: creates a sealed database (409 DB_EXISTS)
 *   GET    /v1/databases/NAME          its files, and when open its enclave (MRENCLAVE, EPC) and store
 *   POST   /v1/databases/NAME/snapshot  {full?}: waits for the database's in-flight requests (its
 *                                      lease), holds new ones, writes a durable sealed image of its
 *                                      enclave to <dir>/NAME.db.snapshot; 200 {image: ImageInfo}.
 *                                      409 SNAPSHOT_BUSY while a stream keeps a transaction open
 *   POST   /v1/databases/NAME/hibernate  the same wait, then pages the enclave out of the EPC; 200
 *                                      {hibernated: bool} (false when a statement holds a lock)
 *   DELETE /v1/databases/NAME          closes it (an open transaction is rolled back), removes its
 *                                      files and revokes the tokens limited to it
 *   GET    /v1/platform                the platform (id, certificate, EPC budget) and EPC usage
 *   GET    /v1/platform/epc            EPC usage: budget, committed, peak, per resident enclave; stats;
 *                                       paging: resident, hibernated, evictions, wakes, wake latency
 *   POST   /v1/platform/quote {nonce}  a quote of the SQLite enclave binding the nonce (hex, 8..1024 bytes)
 *   GET    /v1/tokens                  token ids, scopes and databases (never secrets or hashes)
 *   POST   /v1/tokens {scope, db}      201 {id, token, scope, db}: the secret is shown once
 *   DELETE /v1/tokens/ID               revokes
 *
 * Custom enclaves (enclave-registry.ts; module, manifest and SIGSTRUCT as in enclaves/ABI.md §4, §6):
 *   GET    /v1/enclaves                {enclaves: [info], grants}
 *   POST   /v1/enclaves                {manifest: {...}, module: "<base64 wasm>", signature: {...}}
 *                                      201 info. Verified first, each refusal a 400 with its own code:
 *                                      MANIFEST_* (manifest), ENCLAVE_* (module vs the ABI, e.g.
 *                                      ENCLAVE_FORBIDDEN_IMPORT naming the import),
 *                                      ENCLAVE_EPC_EXCEEDS_BUDGET, SIG_* (signature); 409 ENCLAVE_EXISTS
 *   GET    /v1/enclaves/NAME           info: MRENCLAVE, MRSIGNER, EPC, permissions requested and
 *                                      granted, state, ecalls with their signatures
 *   DELETE /v1/enclaves/NAME           stops its instance (EPC released) and removes its files
 *   POST   /v1/enclaves/NAME/ecall/FN  {args: [...]} (or a bare list): numbers as FN's signature
 *                                      requires (i32, f32/f64 numbers; i64 a safe integer or a
 *                                      decimal string), else 400 BAD_ECALL_ARGS. 200 {result,
 *                                      results, denied?}: i64 results as decimal strings; `denied`
 *                                      names the grant a refused ocall needed. A trap: 500
 *                                      ENCLAVE_TRAP (the instance restarts); EPC full: 503
 *                                      EPC_ADMISSION_REFUSED.
 */
import { Enclave } from "../../enclave/enclave.js";
import { loadSqliteEnclave } from "../../sql/sqlite-module.js";
import { sqliteSignature } from "../../sql/sqlite-signer.js";
import type { EnclaveServices } from "../../platform/services.js";
import type { Platform } from "../../platform/platform.js";
import { reportDataFor } from "../../platform/report.js";
import { badRequest, HttpError, notFound } from "./errors.js";
import { json, type CoreRequest, type CoreResponse } from "./http.js";
import type { ServerContext } from "./handler.js";
import { checkDbName } from "./registry.js";
import { epcUsage, pagingStats } from "./engine.js";
import type { TokenScope } from "./tokens.js";

const MAX_JSON_BODY = 64 * 1024;

export async function readJson(req: CoreRequest): Promise<Record<string, unknown>> {
  const body = await req.body(MAX_JSON_BODY);
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw badRequest("BAD_JSON", `the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw badRequest("BAD_REQUEST", "the request body must be a JSON object");
  return v as Record<string, unknown>;
}

/** JSON bodies of uploads carry the module: bounded by the server's body limit, not MAX_JSON_BODY. */
async function readJsonUpTo(req: CoreRequest, limit: number): Promise<unknown> {
  const body = await req.body(limit);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw badRequest("BAD_JSON", `the request body is not valid JSON: ${(e as Error).message}`);
  }
}

async function enclaveRoutes(ctx: ServerContext, req: CoreRequest, parts: string[]): Promise<[string, CoreResponse]> {
  const [, name, op, func, extra] = parts;
  const m = req.method;
  const reg = ctx.enclaves;
  if (name === undefined) {
    if (m === "GET") {
      const list = [];
      for (const n of reg.list()) {
        try {
          list.push((await reg.get(n)).info());
        } catch (e) {
          list.push({ name: n, error: (e as Error).message });
        }
      }
      return ["v1_enclaves", json(200, { enclaves: list, grants: [...reg.grants].sort() })];
    }
    if (m === "POST") {
      const body = await readJsonUpTo(req, ctx.limits.maxBodyBytes);
      if (body === null || typeof body !== "object" || Array.isArray(body)) throw badRequest("BAD_REQUEST", "the request body must be a JSON object");
      const b = body as Record<string, unknown>;
      for (const k of Object.keys(b)) {
        if (k !== "manifest" && k !== "module" && k !== "signature") throw badRequest("BAD_REQUEST", `unknown key ${JSON.stringify(k)}; give {"manifest": {...}, "module": "<base64>", "signature": {...}}`);
      }
      if (typeof b.module !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(b.module) || b.module.length === 0) {
        throw badRequest("BAD_MODULE", "module must be the enclave's WebAssembly module in base64");
      }
      if (b.manifest === undefined) throw badRequest("MANIFEST_MALFORMED", "give the manifest: {\"manifest\": {...}}");
      if (b.signature === undefined) throw badRequest("SIG_MISSING", "give the signature (selkie enclave sign): {\"signature\": {...}}; unsigned enclaves are not accepted");
      const h = await reg.upload(b.manifest, Buffer.from(b.module, "base64"), b.signature);
      ctx.logger.info({ event: "enclave_uploaded", enclave: h.name, mrenclave: h.enclave.mrenclave.toString("hex"), mrsigner: h.mrsigner.toString("hex") }, "enclave uploaded");
      return ["v1_enclaves", json(201, h.info())];
    }
    throw methodNotAllowed(req, ["GET", "POST"]);
  }
  if (op === undefined) {
    if (m === "GET") return ["v1_enclave", json(200, (await reg.get(name)).info())];
    if (m === "DELETE") {
      await reg.remove(name);
      ctx.logger.info({ event: "enclave_deleted", enclave: name }, "enclave deleted");
      return ["v1_enclave", json(200, { deleted: name })];
    }
    throw methodNotAllowed(req, ["GET", "DELETE"]);
  }
  if (op === "ecall" && func !== undefined && extra === undefined) {
    if (m !== "POST") throw methodNotAllowed(req, ["POST"]);
    const body = await readJsonUpTo(req, MAX_JSON_BODY);
    const args = Array.isArray(body) ? body : body !== null && typeof body === "object" ? ((body as Record<string, unknown>).args ?? []) : body;
    const r = await reg.ecall(name, func, args);
    return ["v1_ecall", json(200, r, r.denied ? { "x-selkie-denied": r.denied.replace(/[^\x20-\x7e]/g, "?") } : {})];
  }
  throw notFound("NOT_FOUND", `no route for ${m} ${req.pathname}`);
}

function methodNotAllowed(req: CoreRequest, allowed: string[]): HttpError {
  return new HttpError(405, "METHOD_NOT_ALLOWED", `${req.pathname} takes ${allowed.join(" or ")}, not ${req.method}`, { allow: allowed.join(", ") });
}

/** A database's state, from the thread that hosts it (engine.ts). */
function dbInfo(ctx: ServerContext, name: string): Promise<Record<string, unknown>> {
  return ctx.engine.info(name);
}

/** The SQLite enclave measured once per platform for the quote endpoint (a loaded, signed, measured instance). */
const quoters = new WeakMap<Platform, EnclaveServices>();
/** The SQLite enclave's services, held for the server's life: what quotes it (here and on the migration channel). */
export function sqliteQuoter(platform: Platform): EnclaveServices {
  let s = quoters.get(platform);
  if (s === undefined) {
    const image = loadSqliteEnclave();
    const enclave = new Enclave({ module: image.module, manifest: image.manifest, signature: sqliteSignature(platform.dir, image) });
    s = platform.servicesFor(enclave.measured);
    quoters.set(platform, s);
  }
  return s;
}

export async function management(ctx: ServerContext, req: CoreRequest, parts: string[]): Promise<[string, CoreResponse]> {
  const [a, b, c] = parts;
  const m = req.method;
  if (a === "databases" && b === undefined) {
    if (m === "GET") return ["v1_databases", json(200, { databases: await Promise.all(ctx.registry.list().map((n) => dbInfo(ctx, n))) })];
    if (m === "POST") {
      const body = await readJson(req);
      if (typeof body.name !== "string") throw badRequest("BAD_REQUEST", "give the new database's name: {\"name\": \"...\"}");
      const name = checkDbName(body.name);
      const moved = ctx.forwarding.get(name);
      if (moved !== undefined) {
        throw new HttpError(409, "DB_MOVED", `a database named ${name} moved to ${moved.to} (${moved.since}) and this server forwards its clients there; to reuse the name here, first DELETE /v1/forwarding/${name}`);
      }
      if (ctx.registry.exists(name)) throw new HttpError(409, "DB_EXISTS", `database ${name} exists already`);
      const info = await ctx.engine.create(name);
      ctx.logger.info({ event: "db_created", db: name }, "database created");
      return ["v1_databases", json(201, info)];
    }
    throw methodNotAllowed(req, ["GET", "POST"]);
  }
  if (a === "databases" && b !== undefined && c === undefined) {
    const name = checkDbName(b);
    if (m === "GET") {
      if (!ctx.registry.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them, POST /v1/databases creates one`);
      return ["v1_database", json(200, await dbInfo(ctx, name))];
    }
    if (m === "DELETE") {
      if (!ctx.registry.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them, POST /v1/databases creates one`);
      await ctx.engine.remove(name);
      const revoked = ctx.tokens.revokeForDb(name);
      ctx.logger.info({ event: "db_deleted", db: name, revokedTokens: revoked }, "database deleted");
      return ["v1_database", json(200, { deleted: name, revokedTokens: revoked })];
    }
    throw methodNotAllowed(req, ["GET", "DELETE"]);
  }
  if (a === "databases" && b !== undefined && (c === "snapshot" || c === "hibernate") && parts.length === 3) {
    if (m !== "POST") throw methodNotAllowed(req, ["POST"]);
    const name = checkDbName(b);
    if (!ctx.registry.exists(name)) throw notFound("DB_NOT_FOUND", `no database named ${name}; GET /v1/databases lists them, POST /v1/databases creates one`);
    const raw = await req.body(MAX_JSON_BODY);
    const body = raw.length === 0 ? {} : await readJson({ ...req, body: async () => raw });
    const out = await ctx.engine.image(name, c, body.full === true);
    if (c === "snapshot") {
      const image = out.image as { seq?: number; kind?: string; fileBytes?: number };
      ctx.logger.info({ event: "db_snapshot", db: name, seq: image.seq, kind: image.kind, bytes: image.fileBytes }, "snapshot written");
    }
    return ["v1_database", json(200, out)];
  }
  if (a === "platform" && b === undefined) {
    if (m !== "GET") throw methodNotAllowed(req, ["GET"]);
    return ["v1_platform", json(200, { platform: ctx.platform.toJSON(), epc: epcUsage(ctx.platform, ctx.engine), epcStats: ctx.platform.epc.stats() })];
  }
  if (a === "platform" && b === "epc" && c === undefined) {
    if (m !== "GET") throw methodNotAllowed(req, ["GET"]);
    return ["v1_platform", json(200, { ...epcUsage(ctx.platform, ctx.engine), stats: ctx.platform.epc.stats(), paging: pagingStats(ctx.platform, ctx.engine) })];
  }
  if (a === "platform" && b === "quote" && c === undefined) {
    if (m !== "POST") throw methodNotAllowed(req, ["POST"]);
    const body = await readJson(req);
    if (typeof body.nonce !== "string" || !/^([0-9a-fA-F]{2}){8,1024}$/.test(body.nonce)) {
      throw badRequest("BAD_NONCE", "give the nonce as hex, 8 to 1024 bytes: {\"nonce\": \"<hex>\"} (use at least 16 random bytes)");
    }
    const nonce = Buffer.from(body.nonce, "hex");
    // A quote of the SQLite enclave this server runs databases with: the loader measured it and
    // verified its signature (EINIT), and its services, held for the server's life, ask the
    // platform's quoting service for a report binding the nonce (FORMATS.md §6). No identity is
    // ever made up here: Platform.servicesFor takes only what the loader measured.
    const services = sqliteQuoter(ctx.platform);
    const quote = services.quote(reportDataFor(nonce));
    const id = services.identity;
    return [
      "v1_quote",
      json(200, {
        quote: quote.toString("base64"),
        nonce: body.nonce.toLowerCase(),
        subject: "sqlite-enclave",
        mrenclave: id.mrenclave.toString("hex"),
        mrsigner: id.mrsigner.toString("hex"),
        isvProdId: id.isvProdId,
        isvSvn: id.isvSvn,
      }),
    ];
  }
  if (a === "tokens" && b === undefined) {
    if (m === "GET") return ["v1_tokens", json(200, { tokens: ctx.tokens.list().map(({ hash: _h, ...r }) => r) })];
    if (m === "POST") {
      const body = await readJson(req);
      const scope = body.scope ?? "read-write";
      if (scope !== "admin" && scope !== "read-write" && scope !== "read-only") throw badRequest("BAD_REQUEST", "scope must be admin, read-write or read-only");
      let db: string | null = null;
      if (scope !== "admin") {
        if (typeof body.db !== "string") throw badRequest("BAD_REQUEST", "a read-write or read-only token needs {\"db\": NAME}");
        db = checkDbName(body.db);
      }
      const { record, token } = ctx.tokens.create(scope as TokenScope, db);
      ctx.logger.info({ event: "token_created", id: record.id, scope, db }, "token created");
      return ["v1_tokens", json(201, { id: record.id, token, scope, db })];
    }
    throw methodNotAllowed(req, ["GET", "POST"]);
  }
  if (a === "tokens" && b !== undefined && c === undefined) {
    if (m !== "DELETE") throw methodNotAllowed(req, ["DELETE"]);
    if (!ctx.tokens.revoke(b)) throw notFound("TOKEN_NOT_FOUND", `no token with id ${b}`);
    ctx.logger.info({ event: "token_revoked", id: b }, "token revoked");
    return ["v1_tokens", json(200, { revoked: b })];
  }
  if (a === "enclaves") return enclaveRoutes(ctx, req, parts);
  throw notFound("NOT_FOUND", `no route for ${m} ${req.pathname}`);
}
