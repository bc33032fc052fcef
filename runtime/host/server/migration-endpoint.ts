/**
 * UNTRUSTED (server). The migration channel's endpoint on `selkie serve`'s own port
 * (runtime/migration/channel/CHANNEL.md §1): HTTP Upgrade to `selkie-migration/1` at
 * /v1/migration/channel, authenticated by the mutual attestation, quoting the SQLite enclave the
 * server runs. Each attested channel goes to the migration protocol's hook.
 */
import type * as http from "node:http";
import type { Certificate } from "../../platform/cert.js";
import type { MigrationChannel } from "../../migration/channel-api.js";
import { attachMigrationChannel, type AttachedChannels, type ChannelOptions } from "../../migration/channel/index.js";
import type { ServerContext } from "./handler.js";
import { sqliteQuoter } from "./management.js";

export interface MigrationServeOptions {
  /** The fleet CA peers must be certified by (`--fleet-ca FILE`). Without it, upgrades get 503 MIGRATION_NOT_CONFIGURED. */
  fleetCa?: Certificate;
  /** Accept peers certified by a development CA (`--allow-dev-ca`). */
  allowDevCa?: boolean;
  /** Channel tuning (timeouts, frame size) for tests and operators. */
  channel?: Pick<ChannelOptions, "handshakeTimeoutMs" | "receiveTimeoutMs" | "sendTimeoutMs" | "maxFrameBytes" | "minRuntimeVersion" | "policy">;
  /**
   * The URL peers reach this server at (`selkie serve --advertise URL`), sent to destinations so
   * they can ask for a migration's outcome; default: the URL it listens on.
   */
  advertise?: string;
  /**
   * Replaces the built-in migration protocol (migrations.ts): receives each attested channel with
   * the server's context.
   */
  onChannel?: (channel: MigrationChannel, info: { remoteAddress: string; context: ServerContext }) => void;
}

export function attachMigrationEndpoint(server: http.Server, ctx: ServerContext, opts: MigrationServeOptions | undefined, draining: () => boolean): AttachedChannels {
  const fleetCa = opts?.fleetCa;
  return attachMigrationChannel(server, {
    channel: () => (fleetCa === undefined ? null : { ...opts?.channel, services: sqliteQuoter(ctx.platform), fleetCa, allowDevCa: opts?.allowDevCa === true }),
    refuse: () => (draining() ? { status: 503, code: "SHUTTING_DOWN", message: "the server is shutting down; migrate to another peer or retry later" } : null),
    onChannel: (ch, info) => {
      if (opts?.onChannel !== undefined) opts.onChannel(ch, { ...info, context: ctx });
      else ctx.migrations.onChannel(ch, info.remoteAddress);
    },
    logger: ctx.logger,
    sharedServer: true, // Hrana over WebSocket answers every other upgrade path (hrana/ws.ts)
  });
}
