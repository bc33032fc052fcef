/**
 * The source side (CHANNEL.md §1, §5): HTTP Upgrade to `selkie-migration/1` on the peer's serve port,
 * inner TLS 1.3, then the attestation handshake. One deadline covers every step.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import type { MigrationChannel } from "../channel-api.js";
import { attest, resolveOptions, type ChannelOptions } from "./attest.js";
import { CHANNEL_PROTOCOL } from "./binding.js";
import { MigrationChannelError } from "./errors.js";
import { tlsClient } from "./tls-session.js";

export const CHANNEL_PATH = "/v1/migration/channel";

export interface ConnectOptions extends ChannelOptions {
  /** TLS options for the outer connection when the URL is https:// (e.g. `ca` for the server's certificate). */
  outerTls?: https.RequestOptions;
}

function upgrade(url: URL, o: ConnectOptions, ms: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === "https:" ? https : http;
    const req = mod.request({
      ...(url.protocol === "https:" ? o.outerTls : {}),
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port || (url.protocol === "https:" ? 443 : 80),
      path: CHANNEL_PATH,
      method: "GET",
      headers: { Connection: "Upgrade", Upgrade: CHANNEL_PROTOCOL },
      agent: false,
    });
    const t = setTimeout(() => {
      req.destroy();
      reject(new MigrationChannelError("CHANNEL_TIMEOUT", `the peer ${url.origin} did not answer the migration upgrade within ${ms} ms`));
    }, ms);
    req.on("upgrade", (res, socket, head) => {
      clearTimeout(t);
      if (String(res.headers.upgrade ?? "").toLowerCase() !== CHANNEL_PROTOCOL) {
        socket.destroy();
        return reject(new MigrationChannelError("CHANNEL_UPGRADE_REFUSED", `the peer ${url.origin} upgraded to ${String(res.headers.upgrade)}, not ${CHANNEL_PROTOCOL}`));
      }
      if (head.length > 0) socket.unshift(head);
      (socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true); // small handshake frames: no Nagle delay
      resolve(socket);
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.length < 16 && chunks.push(c));
      res.on("end", () => {
        clearTimeout(t);
        let detail = `HTTP ${res.statusCode}`;
        try {
          const e = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { code?: string; message?: string };
          if (typeof e.code === "string") detail += ` ${e.code}: ${String(e.message ?? "")}`;
        } catch {
          // not JSON: the status says enough
        }
        reject(new MigrationChannelError("CHANNEL_UPGRADE_REFUSED", `the peer ${url.origin} refused the migration channel (${detail})`));
      });
    });
    req.on("error", (e: Error & { code?: string }) => {
      clearTimeout(t);
      reject(new MigrationChannelError("CHANNEL_CONNECT", `cannot reach the peer ${url.origin} (${e.code ?? e.message}); check the URL and that selkie serve runs there`, { cause: e }));
    });
    req.end();
  });
}

/** Opens an attested channel to the destination `url` (its selkie serve base URL), as the source. */
export async function connectAttested(url: string | URL, opts: ConnectOptions): Promise<MigrationChannel> {
  const o = resolveOptions(opts);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MigrationChannelError("CHANNEL_BAD_OPTIONS", `not a URL: ${String(url)}; give the peer's selkie serve URL, e.g. https://edge-b:7700`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new MigrationChannelError("CHANNEL_BAD_OPTIONS", `the peer URL must be http:// or https://, not ${u.protocol}`);
  const deadline = Date.now() + o.handshakeTimeoutMs;
  const stream = await upgrade(u, opts, o.handshakeTimeoutMs);
  const socket = await tlsClient(stream, Math.max(1, deadline - Date.now()));
  return attest(socket, "source", o, deadline);
}
