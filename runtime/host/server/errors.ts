/**
 * UNTRUSTED (server). Errors the HTTP layer answers with: each carries its HTTP status and a stable
 * code, and becomes the JSON body `{"message", "code"}` (the Error structure of the Hrana spec, which
 * @libsql/client parses from any 4xx/5xx response whose content-type is application/json).
 */
import { SelkieError } from "../../errors.js";

export class HttpError extends SelkieError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    /** Extra response headers (Retry-After, Allow, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(code, message);
  }
}

export const badRequest = (code: string, message: string): HttpError => new HttpError(400, code, message);
export const notFound = (code: string, message: string): HttpError => new HttpError(404, code, message);

/** Every wrong or missing token gets exactly this: no hint of what exists. */
export const unauthorized = (): HttpError =>
  new HttpError(401, "UNAUTHORIZED", "authentication required: pass a valid token as 'Authorization: Bearer <token>'", { "www-authenticate": 'Bearer realm="selkie"' });

export const forbidden = (code: string, message: string): HttpError => new HttpError(403, code, message);

/**
 * A message for clients: absolute paths of the server's files (in storage, enclave and platform
 * errors) are cut to their last part, so clients learn nothing of the host's layout. The server's
 * log keeps the full message.
 */
export function clientMessage(message: string): string {
  return message.replace(/(?:[A-Za-z]:)?(?:[\\/][^\s\\/'"`,;()\[\]{}]+){2,}/g, (p) => p.split(/[\\/]/).pop() ?? "");
}
