/**
 * UNTRUSTED (server). Management routes of live migration (migrations.ts), admin only:
 *   POST   /v1/databases/NAME/migrate  {to, waitMs?, rollbackOpenTransaction?}: migrates NAME to the
 *                                      peer `to` (its selkie serve URL) and answers when it is
 *                                      committed: 200 {name, to, stats: {mid, totalMs, frozenMs,
 *                                      attestMs, rounds, bytes: {precopy, final}, slotsResent}}.
 *                                      Refusals: 400 BAD_PEER_URL / MIGRATION_TO_SELF, 404 DB_NOT_FOUND,
 *                                      409 DB_MOVED / MIGRATION_IN_PROGRESS / MIGRATION_REFUSED (the
 *                                      destination's reason in the message and x-selkie-peer-code) /
 *                                      MIGRATION_TRANSACTION_OPEN, 502 CHANNEL_* (attestation failed) /
 *                                      MIGRATION_PEER_LOST, 503 MIGRATION_NOT_CONFIGURED (no --fleet-ca).
 *                                      On any failure before the commit the database serves here.
 *   GET    /v1/migrations              {configured, running: [...], recent: [...]}: each {mid, name,
 *                                      role, peer, phase, startedAt, round, bytes, diskBytes,
 *                                      elapsedMs, error?}
 *   DELETE /v1/databases/NAME          of a database being migrated: 409 MIGRATION_IN_PROGRESS
 * Returns null for every other route.
 */
import { badRequest, HttpError } from "./errors.js";
import { json, type CoreRequest, type CoreResponse } from "./http.js";
import type { ServerContext } from "./handler.js";
import { checkDbName } from "./registry.js";
import { readJson } from "./management.js";

export async function migrationRoutes(ctx: ServerContext, req: CoreRequest, parts: string[]): Promise<[string, CoreResponse] | null> {
  const [a, b, c] = parts;
  if (a === "migrations" && b === undefined) {
    if (req.method !== "GET") throw new HttpError(405, "METHOD_NOT_ALLOWED", `/v1/migrations takes GET, not ${req.method}`, { allow: "GET" });
    return ["v1_migrations", json(200, { configured: ctx.migrations.configured, ...ctx.migrations.list() })];
  }
  if (a === "databases" && b !== undefined && c === "migrate" && parts.length === 3) {
    if (req.method !== "POST") throw new HttpError(405, "METHOD_NOT_ALLOWED", `${req.pathname} takes POST, not ${req.method}`, { allow: "POST" });
    const name = checkDbName(b);
    const body = parseBody(await readJson(req));
    const r = await ctx.migrations.migrate(name, body);
    return ["v1_migrate", json(200, r)];
  }
  if (a === "databases" && b !== undefined && c === undefined && req.method === "DELETE") {
    if (ctx.migrations.list().running.some((m) => m.name === b)) {
      throw new HttpError(409, "MIGRATION_IN_PROGRESS", `database ${b} is being migrated; delete it once the migration ended (GET /v1/migrations)`);
    }
  }
  return null;
}

function parseBody(o: Record<string, unknown>): { to: string; waitMs?: number; rollbackOpenTransaction?: boolean } {
  for (const k of Object.keys(o)) {
    if (k !== "to" && k !== "waitMs" && k !== "rollbackOpenTransaction") throw badRequest("BAD_REQUEST", `unknown key ${JSON.stringify(k)}; give {"to", "waitMs"?, "rollbackOpenTransaction"?}`);
  }
  if (typeof o.to !== "string" || o.to.length === 0 || o.to.length > 2048) throw badRequest("BAD_PEER_URL", 'give the destination\'s selkie serve URL: {"to": "https://peer:7700"}');
  if (o.waitMs !== undefined && (typeof o.waitMs !== "number" || !Number.isInteger(o.waitMs) || o.waitMs < 0 || o.waitMs > 600_000)) {
    throw badRequest("BAD_REQUEST", "waitMs must be an integer number of milliseconds, 0 to 600000");
  }
  if (o.rollbackOpenTransaction !== undefined && typeof o.rollbackOpenTransaction !== "boolean") throw badRequest("BAD_REQUEST", "rollbackOpenTransaction must be true or false");
  return { to: o.to, ...(o.waitMs !== undefined ? { waitMs: o.waitMs as number } : {}), ...(o.rollbackOpenTransaction !== undefined ? { rollbackOpenTransaction: o.rollbackOpenTransaction as boolean } : {}) };
}
