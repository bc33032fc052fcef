/**
 * UNTRUSTED (server). Management routes of the forwarding table (FORWARDING.md), admin only:
 *   GET    /v1/forwarding          {forwarding: [{name, to, since, requests}]}
 *   DELETE /v1/forwarding/NAME     removes an entry
 *   any    /v1/databases/NAME[/..] of a moved database: 410 DB_MOVED naming where it lives
 * Returns null for every other route (management.ts answers those).
 */
import { HttpError, notFound } from "./errors.js";
import { json, type CoreRequest, type CoreResponse } from "./http.js";
import type { ServerContext } from "./handler.js";

export async function forwardingRoutes(ctx: ServerContext, req: CoreRequest, parts: string[]): Promise<[string, CoreResponse] | null> {
  const [a, b, c] = parts;
  if (a === "forwarding") {
    if (b === undefined) {
      if (req.method !== "GET") throw new HttpError(405, "METHOD_NOT_ALLOWED", `/v1/forwarding takes GET, not ${req.method}`, { allow: "GET" });
      return ["v1_forwarding", json(200, { forwarding: ctx.forwarding.list() })];
    }
    if (c === undefined) {
      if (req.method !== "DELETE") throw new HttpError(405, "METHOD_NOT_ALLOWED", `/v1/forwarding/NAME takes DELETE, not ${req.method}`, { allow: "DELETE" });
      if (!ctx.forwarding.remove(b)) throw notFound("NOT_FORWARDED", `${b} is not in the forwarding table (GET /v1/forwarding lists it)`);
      ctx.logger.info({ event: "forwarding_removed", db: b }, "forwarding entry removed");
      return ["v1_forwarding", json(200, { removed: b })];
    }
    throw notFound("NOT_FOUND", `no route for ${req.method} /v1/${parts.join("/")}`);
  }
  if (a === "databases" && b !== undefined) {
    const moved = ctx.forwarding.get(b);
    if (moved !== undefined) {
      throw new HttpError(410, "DB_MOVED", `the database ${b} moved to ${moved.to} (${moved.since}); manage it there (its clients are forwarded)`, { location: `${moved.to}/v1/databases/${encodeURIComponent(b)}` });
    }
  }
  return null;
}
