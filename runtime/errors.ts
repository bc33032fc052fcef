/**
 * Every error Selkie raises extends SelkieError and carries a stable `code`.
 * Match on `err.code`, never on the message: messages say what to do and may change wording.
 *
 * Codes are grouped by layer: ENCLAVE_* (loader, ABI), MANIFEST_*, SQLITE_* (via SqliteError),
 * PLATFORM_*, SEAL_*, COUNTER_*, EPC_*, QUOTE_*, STORAGE_*, CLI_*.
 */
export class SelkieError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The enclave module or its ABI use is wrong: bad bytes, forbidden imports, missing exports. */
export class EnclaveLoadError extends SelkieError {}

/** The enclave's manifest is malformed or inconsistent with its module. */
export class ManifestError extends SelkieError {}

/** The enclave trapped or returned a value that breaks the ABI; it has been (or must be) restarted. */
export class EnclaveFault extends SelkieError {}

/** An ecall on an enclave that is closed or being restarted. */
export class EnclaveStateError extends SelkieError {}

/** EPC budget refusals: admission control and growth beyond a cap. */
export class EpcError extends SelkieError {}

/** A capability the enclave's manifest or the operator did not grant. Names the grant to add. */
export class PermissionDenied extends SelkieError {}

/** Misuse of the public API by the embedding program (wrong argument types, closed handles). */
export class UsageError extends SelkieError {}

/**
 * Snapshot images: capture, sealing, restore (runtime/enclave/snapshot/IMAGES.md lists the codes).
 * IMAGE_TAMPERED, IMAGE_ROLLBACK, IMAGE_WRONG_PLATFORM, IMAGE_WRONG_ENCLAVE, IMAGE_WRONG_INSTANCE,
 * IMAGE_VERSION_UNSUPPORTED, IMAGE_UPGRADE_REQUIRED, IMAGE_MISSING, IMAGE_IO, SNAPSHOT_BUSY,
 * SNAPSHOT_UNSUPPORTED, SNAPSHOT_STALE.
 */
export class SnapshotError extends SelkieError {}
