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
   * The migration protocol's entry point: receives each attested channel (this server is the
   * destination) with the server's context. Without it, a channel is closed at once and logged.
   */
  onChannel?: (channel: MigrationChannel, info: { remoteAddress: string; context: ServerContext }) => void;
}

export function attachMigrationEndpoint(server: http.Server, ctx: ServerContext, opts: MigrationServeOptions | undefined, draining: () => boolean): AttachedChannels {
  const fleetCa = opts?.fleetCa;
  return attachMigrationChannel(server, {
    channel: () => (fleetCa === undefined ? null : { ...opts?.channel, services: sqliteQuoter(ctx.platform), fleetCa, allowDevCa: opts?.allowDevCa === true }),
    refuse: () => (draining() ? { status: 503, code: "SHUTTING_DOWN", message: "the server is shutting down; migrate to another peer or retry later" } : null),
    onChannel: (ch, info) => {
      if (opts?.onChannel === undefined) {
        ctx.logger.warn({ event: "migration_channel_unused", peer: info.remoteAddress }, "an attested migration channel arrived, but no migration protocol is installed in this server; closed");
        ch.close("no migration protocol is installed in this server");
        return;
      }
      opts.onChannel(ch, { ...info, context: ctx });
    },
    logger: ctx.logger,
  });
}
