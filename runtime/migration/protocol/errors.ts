import { SelkieError } from "../../errors.js";

/**
 * A migration failed or was refused. Stable codes (PROTOCOL.md §8): MIGRATION_NO_SUCH_DATABASE,
 * MIGRATION_IN_PROGRESS, MIGRATION_MOVED, MIGRATION_TO_SELF, MIGRATION_NAME_TAKEN, MIGRATION_NO_DISK,
 * MIGRATION_NO_EPC, MIGRATION_POLICY, MIGRATION_REFUSED, MIGRATION_BAD_MESSAGE,
 * MIGRATION_TRANSFER_CORRUPT, MIGRATION_TRANSACTION_OPEN, MIGRATION_PEER_LOST, MIGRATION_ABORTED,
 * MIGRATION_IN_DOUBT, MIGRATION_JOURNAL_CORRUPT, MIGRATION_FROZEN_TOO_LONG. `peerCode` is the destination's code of a refusal.
 */
export class MigrationError extends SelkieError {
  readonly peerCode: string | undefined;
  constructor(code: string, message: string, options?: { cause?: unknown; peerCode?: string }) {
    super(code, message, options);
    this.peerCode = options?.peerCode;
  }
}
