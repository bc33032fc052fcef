/** The migration protocol (PROTOCOL.md, version 1): the library's entry points. */
export { migrateOut, movedTo, checkSource, type MigrateOutOptions, type MigrationSource, type MigrationStats, type MigrationProgress } from "./source.js";
export { acceptMigration, type AcceptOptions, type Accepted, type Offer } from "./destination.js";
export { recoverMigrations, serveMigrationPeer, outcomeOf, pendingMigrations, type RecoveryOptions, type Recovered, type Outcome, type PeerOptions } from "./recovery.js";
export { MigrationError } from "./errors.js";
export { SOURCE_CRASH_POINTS, DESTINATION_CRASH_POINTS } from "./crash-points.js";
export { PROTOCOL_VERSION } from "./messages.js";
export type { MigrationChannel, MigrationMessage, PeerInfo } from "../channel-api.js";
export { DatabaseSource } from "./database-source.js";
