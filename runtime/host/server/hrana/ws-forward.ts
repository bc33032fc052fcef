/**
 * UNTRUSTED (server). Hrana over WebSocket for a database that moved (FORWARDING.md): a client that
 * opens `ws://old/db/NAME` after NAME migrated gets a tunnel to `ws://new/db/NAME`. The upgrade
 * request goes on to the new owner with its WebSocket and authorization headers; its 101 answer comes
 * back, and from then on the bytes are piped both ways untouched (the new owner checks the token in
 * the client's hello, which the migration carried).
 *
 * Invariants: only the listed request headers travel; a request that has already crossed MAX_HOPS
 * servers is refused (FORWARD_LOOP); a new owner that refuses the upgrade has its status and body
 * passed back; one that fails or stays silent past the deadline is a 502 FORWARD_FAILED. Nothing is
 * ever answered locally for a forwarded name.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import { FORWARDED_HEADER, FORWARDED_TO_HEADER, MAX_HOPS } from "../forward.js";

const UPGRADE_HEADERS = ["authorization", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions", "origin", "user-agent"];

function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ message, code });
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/** Tunnels the WebSocket upgrade `req` (path `path`) to the new owner `to`. */
export function forwardUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, to: string, path: string, timeoutMs: number): void {
  const hops = Number(req.headers[FORWARDED_HEADER] ?? "0");
  if (!Number.isInteger(hops) || hops < 0 || hops >= MAX_HOPS) {
    return refuse(socket, 508, "FORWARD_LOOP", `this request crossed ${MAX_HOPS} servers forwarding a moved database; the forwarding tables of those servers form a loop`);
  }
  let target: URL;
  try {
    target = new URL(path, to);
  } catch {
    return refuse(socket, 502, "FORWARD_FAILED", `this database moved to ${to}, which is not a usable URL`);
  }
  const headers: Record<string, string> = { connection: "Upgrade", upgrade: "websocket", [FORWARDED_HEADER]: String(hops + 1) };
  for (const h of UPGRADE_HEADERS) {
    const v = req.headers[h];
    if (typeof v === "string") headers[h] = v;
  }
  const mod = target.protocol === "https:" ? https : http;
  const up = mod.request({ host: target.hostname.replace(/^\[|\]$/g, ""), port: target.port || (target.protocol === "https:" ? 443 : 80), path: target.pathname + target.search, method: "GET", headers, agent: false });
  const timer = setTimeout(() => {
    up.destroy();
    refuse(socket, 502, "FORWARD_FAILED", `this database moved to ${to}, which did not answer the WebSocket upgrade within ${timeoutMs} ms; use that server's URL directly`);
  }, timeoutMs);
  socket.once("close", () => up.destroy());
  up.on("upgrade", (res, upstream, upHead) => {
    clearTimeout(timer);
    const lines = [`HTTP/1.1 101 Switching Protocols`];
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
    }
    lines.push(`${FORWARDED_TO_HEADER}: ${to}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upstream.write(head);
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  up.on("response", (res) => {
    // The new owner refused the upgrade: its answer, as it gave it.
    clearTimeout(timer);
    const chunks: Buffer[] = [];
    let n = 0;
    res.on("data", (c: Buffer) => {
      n += c.length;
      if (n <= 64 * 1024) chunks.push(c);
    });
    res.on("end", () => {
      const body = Buffer.concat(chunks);
      socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ""}\r\ncontent-type: ${String(res.headers["content-type"] ?? "application/json")}\r\ncontent-length: ${body.length}\r\n${FORWARDED_TO_HEADER}: ${to}\r\nconnection: close\r\n\r\n`), body]));
    });
  });
  up.on("error", (e: Error & { code?: string }) => {
    clearTimeout(timer);
    refuse(socket, 502, "FORWARD_FAILED", `this database moved to ${to}, which did not answer (${e.code ?? e.message}); retry, or use that server's URL directly`);
  });
  up.end();
}
