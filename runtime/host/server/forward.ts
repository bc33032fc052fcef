/**
 * UNTRUSTED (server). Forwarding a request for a database that moved to its new owner
 * (runtime/migration/forwarding/FORWARDING.md): the request goes on with its token, and the new
 * owner's answer comes back. Not a redirect: fetch drops Authorization on a cross-origin redirect.
 *
 * Invariants: only the listed headers travel each way; a request that has already crossed
 * MAX_HOPS servers is refused (FORWARD_LOOP); a peer that fails or stays silent past the deadline
 * is a 502 FORWARD_FAILED, never a local answer.
 */
import * as http from "node:http";
import * as https from "node:https";
import { HttpError } from "./errors.js";
import type { CoreRequest, CoreResponse } from "./http.js";

export const FORWARDED_HEADER = "x-selkie-forwarded";
export const FORWARDED_TO_HEADER = "x-selkie-forwarded-to";
export const MAX_HOPS = 8;
const REQUEST_HEADERS = ["authorization", "content-type", "accept"];
const RESPONSE_HEADERS = ["content-type", "retry-after"];

// Connections to new owners are kept alive and reused: forwarding adds one hop, not one handshake.
const agents = { "http:": new http.Agent({ keepAlive: true, maxSockets: 64 }), "https:": new https.Agent({ keepAlive: true, maxSockets: 64 }) };

export interface ForwardOptions {
  /** The new owner's base URL (no trailing slash). */
  to: string;
  /** Path to request on it (begins with /). */
  path: string;
  deadline: number;
  maxBodyBytes: number;
  maxResponseBytes: number;
}

function failed(to: string, why: string): HttpError {
  return new HttpError(502, "FORWARD_FAILED", `this database moved to ${to}, which did not answer (${why}); retry, or use that server's URL directly`, { "retry-after": "1" });
}

export async function forward(req: CoreRequest, o: ForwardOptions): Promise<CoreResponse> {
  const hops = Number(req.header(FORWARDED_HEADER) ?? "0");
  if (!Number.isInteger(hops) || hops < 0 || hops >= MAX_HOPS) {
    throw new HttpError(508, "FORWARD_LOOP", `the request crossed ${MAX_HOPS} forwarding servers: two servers forward this database to each other; fix their forwarding tables (GET /v1/forwarding)`);
  }
  const body = req.method === "GET" || req.method === "HEAD" ? Buffer.alloc(0) : await req.body(o.maxBodyBytes);
  const target = new URL(`${o.to}${o.path}`);
  const headers: Record<string, string> = { [FORWARDED_HEADER]: String(hops + 1), "content-length": String(body.length) };
  for (const h of REQUEST_HEADERS) {
    const v = req.header(h);
    if (v !== undefined) headers[h] = v;
  }
  const mod = target.protocol === "https:" ? https : http;
  const agent = agents[target.protocol as "http:" | "https:"];
  return new Promise<CoreResponse>((resolve, reject) => {
    const ms = Math.max(1, o.deadline - Date.now());
    const r = mod.request(target, { method: req.method, headers, agent, timeout: ms }, (res) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on("data", (c: Buffer) => {
        n += c.length;
        if (n > o.maxResponseBytes) {
          res.destroy();
          reject(failed(o.to, `its response is over ${o.maxResponseBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => {
        const out: Record<string, string> = { [FORWARDED_TO_HEADER]: o.to };
        for (const h of RESPONSE_HEADERS) {
          const v = res.headers[h];
          if (typeof v === "string") out[h] = v;
        }
        resolve({ status: res.statusCode ?? 502, headers: out, body: Buffer.concat(chunks, n) });
      });
      res.on("error", (e) => reject(failed(o.to, e.message)));
    });
    r.on("timeout", () => r.destroy(new Error(`no answer within ${ms} ms`)));
    r.on("error", (e: Error & { code?: string }) => reject(failed(o.to, e.code ?? e.message)));
    r.end(body);
  });
}
