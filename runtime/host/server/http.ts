/**
 * UNTRUSTED (server). The small request/response shape the handler works on, and its two bindings:
 * web-standard Request/Response (createHandler) and node:http (serve). Keeping the core off the
 * web classes lets node:http skip building a Request and a Response per call.
 */
import { randomBytes } from "node:crypto";
import { HttpError } from "./errors.js";

export interface CoreRequest {
  method: string;
  /** The URL path, percent-encoded as received. */
  pathname: string;
  header(name: string): string | undefined;
  /** The whole body; rejects with 413 BODY_TOO_LARGE past `limit` bytes. */
  body(limit: number): Promise<Buffer>;
}

export interface CoreResponse {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

export function tooLarge(limit: number): HttpError {
  return new HttpError(413, "BODY_TOO_LARGE", `the request body is over the limit of ${limit} bytes (selkie serve --max-body)`, { connection: "close" });
}

/**
 * JSON has no Infinity: JSON.stringify writes null, which Hrana clients refuse for a float (and
 * sqld's serde_json does the same). A float value of +-Infinity is written as the JSON number
 * 1e999 / -1e999 instead: valid JSON, and JSON.parse (so @libsql/client) reads it back as
 * +-Infinity. encodeValue puts a per-process random placeholder string in the value; json()
 * replaces it in the text, so no client-chosen text can collide with it.
 */
const NON_FINITE = `selkie-nonfinite-${randomBytes(12).toString("hex")}`;
export function infinityPlaceholder(v: number): string {
  return v > 0 ? `${NON_FINITE}+` : `${NON_FINITE}-`;
}

function stringify(value: unknown): string {
  const s = JSON.stringify(value);
  if (!s.includes(NON_FINITE)) return s;
  return s.replaceAll(`"${NON_FINITE}+"`, "1e999").replaceAll(`"${NON_FINITE}-"`, "-1e999");
}

/**
 * JSON response. The content type is exactly "application/json": @libsql/client only parses an
 * error body as a Hrana Error when it is (no charset parameter).
 */
export function json(status: number, value: unknown, headers: Record<string, string> = {}): CoreResponse {
  return { status, headers: { "content-type": "application/json", ...headers }, body: stringify(value) };
}

export function text(status: number, body: string, headers: Record<string, string> = {}): CoreResponse {
  return { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers }, body };
}

/** Adapts a web-standard Request. */
export function fromWebRequest(req: Request): CoreRequest {
  const url = new URL(req.url);
  return {
    method: req.method,
    pathname: url.pathname,
    header: (n) => req.headers.get(n) ?? undefined,
    body: async (limit) => {
      const declared = Number(req.headers.get("content-length") ?? "0");
      if (declared > limit) throw tooLarge(limit);
      if (!req.body) return Buffer.alloc(0);
      const reader = req.body.getReader();
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          await reader.cancel().catch(() => {});
          throw tooLarge(limit);
        }
        chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      }
      return Buffer.concat(chunks, total);
    },
  };
}

export function toWebResponse(r: CoreResponse): Response {
  const body = r.status === 204 || r.status === 304 ? null : typeof r.body === "string" ? r.body : new Uint8Array(r.body);
  return new Response(body, { status: r.status, headers: r.headers });
}
