/**
 * Test harness for the migration channel: real platforms certified by real CAs, real enclave
 * identities (EINIT), a real HTTP server on loopback with the upgrade handler, and a scriptable
 * misbehaving peer that speaks the real inner TLS and frame format.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { CertificateAuthority, Platform, type EnclaveIdentity } from "../../runtime/platform/index.js";
import type { MigrationChannel } from "../../runtime/migration/channel-api.js";
import { attachMigrationChannel, type ChannelOptions } from "../../runtime/migration/channel/index.js";
import { CHANNEL_PROTOCOL } from "../../runtime/migration/channel/binding.js";
import { FramedChannel } from "../../runtime/migration/channel/channel.js";
import { tlsServer } from "../../runtime/migration/channel/tls-session.js";
import { h, identity, rmDir, tempDir } from "../platform/helpers.js";

export { h, identity };

const dirs: string[] = [];
const platforms: Platform[] = [];

export function cleanup(): void {
  platforms.splice(0).forEach((p) => p.close());
  dirs.splice(0).forEach(rmDir);
}

export function newCa(dev = false): CertificateAuthority {
  const d = tempDir("selkie-chan-ca-");
  dirs.push(d);
  return CertificateAuthority.create(d, { dev });
}

export async function newPlatform(ca: CertificateAuthority): Promise<Platform> {
  const d = tempDir("selkie-chan-p-");
  dirs.push(d);
  const p = await Platform.create(d, { ca });
  platforms.push(p);
  return p;
}

/** The enclave identity seeds of the tests (real measured enclaves, see test/platform/helpers). */
export const APP = { mrenclave: h("app-v3"), mrsigner: h("signer-a"), isvProdId: 1, isvSvn: 3, debug: false } satisfies EnclaveIdentity;

/** Channel options for an enclave `who` on platform `p`, trusting `ca`. */
export function sideOpts(p: Platform, ca: CertificateAuthority, who: Partial<EnclaveIdentity> = {}, more: Partial<ChannelOptions> = {}): ChannelOptions {
  return { services: p.servicesFor(identity({ ...APP, ...who })), fleetCa: ca.certificate, ...more };
}

export interface LogLine {
  level: "info" | "warn";
  obj: Record<string, unknown>;
}

export interface Destination {
  url: string;
  server: http.Server;
  channels: MigrationChannel[];
  log: LogLine[];
  /** Resolves with the next channel the destination accepts. */
  next(): Promise<MigrationChannel>;
  close(): Promise<void>;
}

export async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/** A real destination: node:http with the channel's upgrade handler. */
export async function destination(channel: ChannelOptions | null): Promise<Destination> {
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const channels: MigrationChannel[] = [];
  const log: LogLine[] = [];
  let waiting: ((c: MigrationChannel) => void) | undefined;
  attachMigrationChannel(server, {
    channel,
    onChannel: (c) => {
      channels.push(c);
      waiting?.(c);
      waiting = undefined;
    },
    logger: { info: (obj) => log.push({ level: "info", obj: obj as Record<string, unknown> }), warn: (obj) => log.push({ level: "warn", obj: obj as Record<string, unknown> }) },
  });
  const url = await listen(server);
  return {
    url,
    server,
    channels,
    log,
    next: () => new Promise((r) => (waiting = r)),
    close: async () => {
      channels.forEach((c) => c.close());
      await closeServer(server);
    },
  };
}

/** A misbehaving destination: upgrades, runs the real inner TLS, then hands the socket to `script`. */
export async function rogueDestination(script: (ch: FramedChannel, tls: TLSSocket) => Promise<void> | void, opts: { tls?: boolean } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer();
  const open: Duplex[] = [];
  server.on("upgrade", (_req, socket: Duplex) => {
    open.push(socket);
    socket.on("error", () => undefined);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_PROTOCOL}\r\n\r\n`);
    if (opts.tls === false) return; // says nothing more
    void tlsServer(socket, 5_000).then(
      async (t) => {
        const ch = new FramedChannel(t, { maxFrameBytes: 8 * 1024 * 1024, receiveTimeoutMs: 5_000 });
        try {
          await script(ch, t);
        } catch {
          // a rogue peer's own failures do not matter: the honest side's error is what is tested
        }
      },
      () => undefined,
    );
  });
  const url = await listen(server);
  return {
    url,
    close: async () => {
      open.forEach((s) => s.destroy());
      await closeServer(server);
    },
  };
}

import { randomBytes } from "node:crypto";
import { bindingReportData, exporterValue } from "../../runtime/migration/channel/binding.js";
import type { ChannelQuoter } from "../../runtime/migration/channel/index.js";

export interface RogueTweaks {
  role?: string;
  version?: number;
  /** Report data to quote instead of the honest binding (given the source's nonce and this session's exporter). */
  reportData?: (sourceNonce: Buffer, exporter: Buffer) => Buffer;
  /** A quote to send as it is (e.g. one recorded in an earlier session). */
  quote?: Buffer;
  /** Called with the honest quote this side made (to record it). */
  onQuote?: (q: Buffer) => void;
}

/** The destination's side of the handshake, done by hand with `tweaks`; resolves after both `accepted`. */
export async function rogueHandshake(ch: FramedChannel, t: TLSSocket, services: ChannelQuoter, tweaks: RogueTweaks = {}): Promise<void> {
  const exporter = exporterValue(t);
  await ch.send({ type: "hello", version: tweaks.version ?? 1, role: tweaks.role ?? "destination", nonce: randomBytes(32) });
  const hello = await ch.receive();
  const nonce = Buffer.from(hello.nonce as Uint8Array);
  const rd = tweaks.reportData?.(nonce, exporter) ?? bindingReportData(nonce, exporter, "destination");
  const q = tweaks.quote ?? services.quote(rd);
  tweaks.onQuote?.(q);
  await ch.send({ type: "quote", quote: q });
  await ch.receive();
  await ch.send({ type: "accepted" });
  await ch.receive();
}
