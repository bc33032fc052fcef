/**
 * The destination side (CHANNEL.md §1, §5): the `upgrade` handler `selkie serve` installs on its own
 * port, and acceptAttested for an already upgraded stream.
 *
 * Invariant: a channel reaches `onChannel` only after attest() verified the peer; every refusal is
 * logged with the peer's address and its code, and closes the connection.
 */
import type * as http from "node:http";
import type { Duplex } from "node:stream";
import type { MigrationChannel } from "../channel-api.js";
import { attest, resolveOptions, type ChannelOptions } from "./attest.js";
import { CHANNEL_PROTOCOL } from "./binding.js";
import { CHANNEL_PATH } from "./connect.js";
import { MigrationChannelError } from "./errors.js";
import { tlsServer } from "./tls-session.js";

/** Runs the destination side on an upgraded stream. */
export async function acceptAttested(stream: Duplex, opts: ChannelOptions): Promise<MigrationChannel> {
  const o = resolveOptions(opts);
  const deadline = Date.now() + o.handshakeTimeoutMs;
  const socket = await tlsServer(stream, o.handshakeTimeoutMs);
  return attest(socket, "destination", o, deadline);
}

export interface ChannelLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface AttachOptions {
  /** The channel options, or null when migration is not configured (503 MIGRATION_NOT_CONFIGURED). */
  channel: ChannelOptions | null;
  /** Receives each attested channel (the migration protocol's entry point). */
  onChannel(channel: MigrationChannel, info: { remoteAddress: string }): void;
  logger?: ChannelLogger;
}

function httpError(socket: Duplex, status: number, reason: string, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** Installs the migration channel's upgrade handler on `server` (its only `upgrade` listener). */
export function attachMigrationChannel(server: http.Server, opts: AttachOptions): void {
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => undefined); // failures are reported through the handshake below
    const path = (req.url ?? "/").split("?")[0];
    const remoteAddress = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    if (path !== CHANNEL_PATH) return httpError(socket, 404, "Not Found", "NOT_FOUND", `no upgrade at ${path}; the migration channel is ${CHANNEL_PATH}`);
    if (String(req.headers.upgrade ?? "").toLowerCase() !== CHANNEL_PROTOCOL) {
      return httpError(socket, 400, "Bad Request", "BAD_UPGRADE", `${CHANNEL_PATH} upgrades only to ${CHANNEL_PROTOCOL}`);
    }
    const channelOpts = opts.channel;
    if (channelOpts === null) {
      return httpError(socket, 503, "Service Unavailable", "MIGRATION_NOT_CONFIGURED", "this server does not accept migrations: start selkie serve with --fleet-ca FILE (the CA that certified the peers' platforms)");
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    acceptAttested(socket, channelOpts).then(
      (ch) => {
        opts.logger?.info({ event: "migration_channel_open", peer: remoteAddress, ...ch.peer }, "attested migration channel open");
        opts.onChannel(ch, { remoteAddress });
      },
      (e: unknown) => {
        const code = e instanceof MigrationChannelError ? e.code : "CHANNEL_CLOSED";
        opts.logger?.warn({ event: "migration_channel_refused", peer: remoteAddress, code, err: (e as Error).message }, "migration channel refused");
        socket.destroy();
      },
    );
  });
}
