import { SelkieError } from "../errors.js";

/**
 * The sealed store refused something: tampering (STORAGE_TAMPERED), an older copy
 * (STORAGE_ROLLBACK), a missing file (STORAGE_MISSING_FILE), an I/O failure (STORAGE_IO)...
 * `file` names the file concerned; the message says what the operator can do.
 */
export class StorageError extends SelkieError {
  constructor(code: string, message: string, readonly file: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
