/**
 * Selkie's public API: `import { Database } from "selkie"`.
 */
export { Database, type DatabaseOptions, type EnclaveInfo } from "./sql/database.js";
export { Statement, type Row, type RunResult, type BindArgs } from "./sql/statement.js";
export type { SqlValue, BindValue } from "./sql/ecalls.js";
export { SqlReal } from "./sql/ecalls.js";
export { SqliteError, StatementInterruptedError, StatementTimeoutError, SqlNotAuthorizedError, type SqlScope } from "./sql/errors.js";
export { sqliteCodeName } from "./sql/codes.js";
export {
  SelkieError,
  EnclaveLoadError,
  ManifestError,
  EnclaveFault,
  EnclaveStateError,
  EpcError,
  PermissionDenied,
  UsageError,
} from "./errors.js";
export { DatabaseLockedError } from "./host/process-lock.js";
export { Enclave, type EnclaveOptions, type EpcMeter, type EpcAdmit } from "./enclave/enclave.js";
export { checkModule, type CheckedModule } from "./enclave/loader.js";
export { parseManifest, parseSize, type Manifest } from "./enclave/manifest.js";
export type { FileLayer, FileHandle } from "./host/files.js";
export { NodeFileLayer } from "./host/files.js";
export { StorageError } from "./storage/errors.js";
export { Platform } from "./platform/platform.js";
export { defaultPlatformDir, openDefaultPlatform } from "./host/default-platform.js";
export { createHandler, serve, attachHranaWebSockets, TokenStore, DEFAULT_LIMITS, HttpError } from "./host/server/index.js";
export type { HandlerOptions, SelkieHandler, ServeOptions, RunningServer, HranaWebSockets, Limits, Logger, TokenScope } from "./host/server/index.js";
// Migration: the protocol (runtime/migration/protocol/PROTOCOL.md).
export {
  migrateOut,
  acceptMigration,
  recoverMigrations,
  serveMigrationPeer,
  movedTo,
  MigrationError,
  DatabaseSource,
  type MigrateOutOptions,
  type MigrationSource,
  type MigrationStats,
  type AcceptOptions,
  type Accepted,
  type RecoveryOptions,
  type Recovered,
} from "./migration/protocol/index.js";
// Migration: the attested channel (runtime/migration/channel/CHANNEL.md) and forwarding (FORWARDING.md).
export type { MigrationChannel, MigrationMessage, PeerInfo } from "./migration/channel-api.js";
export { connectAttested, acceptAttested, attachMigrationChannel, MigrationChannelError, defaultPeerPolicy } from "./migration/channel/index.js";
export type { ChannelOptions, ConnectOptions, ChannelErrorCode, PeerPolicy } from "./migration/channel/index.js";
export { ForwardingTable, ForwardingError, recordForwarding } from "./migration/forwarding/index.js";
export type { ForwardingEntry } from "./migration/forwarding/index.js";
export type { MigrationServeOptions } from "./host/server/migration-endpoint.js";
export { migrateViaServer } from "./host/cli/migrate-command.js";
export type { MigrateRequest, MigrateResult, MigrationRecord, ServerMigrations } from "./host/server/migrations.js";
