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
  /**
   * The channel options (or a function giving them at each upgrade), or null when migration is not
   * configured: then the upgrade is answered 503 MIGRATION_NOT_CONFIGURED.
   */
  channel: ChannelOptions | null | (() => ChannelOptions | null);
  /** A refusal to answer instead of upgrading (e.g. 503 while the server shuts down), or null. */
  refuse?: () => { status: number; code: string; message: string } | null;
  /** Receives each attested channel (the migration protocol's entry point). */
  onChannel(channel: MigrationChannel, info: { remoteAddress: string }): void;
  logger?: ChannelLogger;
}

export interface AttachedChannels {
  /** Channels handed to onChannel and not closed yet. */
  readonly open: number;
  /** Closes every channel and every handshake in progress (server shutdown). */
  closeAll(reason: string): void;
}

const REASONS: Record<number, string> = { 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable" };

function httpError(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ message, code });
  socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** Installs the migration channel's upgrade handler on `server` (its only `upgrade` listener). */
export function attachMigrationChannel(server: http.Server, opts: AttachOptions): AttachedChannels {
  const channels = new Set<MigrationChannel>();
  const handshaking = new Set<Duplex>();
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => undefined); // failures are reported through the handshake below
    const path = (req.url ?? "/").split("?")[0];
    const remoteAddress = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    if (path !== CHANNEL_PATH) return httpError(socket, 404, "NOT_FOUND", `no upgrade at ${path}; the migration channel is ${CHANNEL_PATH}`);
    if (String(req.headers.upgrade ?? "").toLowerCase() !== CHANNEL_PROTOCOL) {
      return httpError(socket, 400, "BAD_UPGRADE", `${CHANNEL_PATH} upgrades only to ${CHANNEL_PROTOCOL}`);
    }
    const refusal = opts.refuse?.();
    if (refusal) return httpError(socket, refusal.status, refusal.code, refusal.message);
    const channelOpts = typeof opts.channel === "function" ? opts.channel() : opts.channel;
    if (channelOpts === null) {
      return httpError(socket, 503, "MIGRATION_NOT_CONFIGURED", "this server does not accept migrations: start selkie serve with --fleet-ca FILE (the CA that certified the peers' platforms)");
    }
    (socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true); // small handshake frames: no Nagle delay
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    handshaking.add(socket);
    acceptAttested(socket, channelOpts).then(
      (ch) => {
        handshaking.delete(socket);
        channels.add(ch);
        socket.once("close", () => channels.delete(ch));
        opts.logger?.info({ event: "migration_channel_open", peer: remoteAddress, ...ch.peer }, "attested migration channel open");
        opts.onChannel(ch, { remoteAddress });
      },
      (e: unknown) => {
        handshaking.delete(socket);
        const code = e instanceof MigrationChannelError ? e.code : "CHANNEL_CLOSED";
        opts.logger?.warn({ event: "migration_channel_refused", peer: remoteAddress, code, err: (e as Error).message }, "migration channel refused");
        socket.destroy();
      },
    );
  });
  return {
    get open() {
      return [...channels].filter((c) => !c.closed).length;
    },
    closeAll(reason: string) {
      for (const c of channels) c.close(reason);
      for (const s of handshaking) s.destroy();
      channels.clear();
      handshaking.clear();
    },
  };
}
