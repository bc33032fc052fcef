/** The attested migration channel (CHANNEL.md, version 1). */
export { connectAttested, CHANNEL_PATH } from "./connect.js";
export type { ConnectOptions } from "./connect.js";
export { acceptAttested, attachMigrationChannel } from "./accept.js";
export type { AttachOptions, AttachedChannels, ChannelLogger } from "./accept.js";
export { CHANNEL_VERSION, DEFAULT_HANDSHAKE_TIMEOUT_MS } from "./attest.js";
export type { ChannelOptions, ChannelQuoter } from "./attest.js";
export { CHANNEL_PROTOCOL } from "./binding.js";
export { DEFAULT_MAX_FRAME_BYTES } from "./frames.js";
export { DEFAULT_RECEIVE_TIMEOUT_MS } from "./channel.js";
export { defaultPeerPolicy } from "./peer-policy.js";
export type { PeerPolicy, Role } from "./peer-policy.js";
export { MigrationChannelError, CHANNEL_CODES } from "./errors.js";
export type { ChannelErrorCode } from "./errors.js";
