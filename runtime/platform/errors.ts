/**
 * Typed errors of the emulated SGX platform. Match on `err.code` (stable); messages may change.
 *
 * Invariant: no message, cause or property of these errors ever carries secret material (root
 * secrets, derived keys, plaintext). Messages name files, ids and hashes only.
 */
import { SelkieError } from "../errors.js";

export { EpcError } from "../errors.js";

/** Platform creation, opening, files and certificates of the platform itself. */
export type PlatformErrorCode =
  | "PLATFORM_EXISTS"
  | "PLATFORM_NOT_FOUND"
  | "PLATFORM_CORRUPT"
  | "PLATFORM_FILE_PERMISSIONS"
  | "PLATFORM_VERSION_UNSUPPORTED"
  | "PLATFORM_BAD_OPTION"
  | "PLATFORM_CERT_MISMATCH"
  | "PLATFORM_CLOSED"
  | "PLATFORM_BAD_IDENTITY"
  | "PLATFORM_NOT_MEASURED"
  | "PLATFORM_EINIT_TAKEN";
export class PlatformError extends SelkieError {
  declare readonly code: PlatformErrorCode;
  constructor(code: PlatformErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The provisioning CA: its files and issuing. */
export type CaErrorCode = "CA_EXISTS" | "CA_NOT_FOUND" | "CA_CORRUPT" | "CA_BAD_REQUEST" | "CA_VERSION_UNSUPPORTED";
export class CaError extends SelkieError {
  declare readonly code: CaErrorCode;
  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Key derivation (EGETKEY) refusals, sealing and unsealing. */
export type SealErrorCode =
  | "SEAL_SVN_TOO_HIGH"
  | "SEAL_CPUSVN_TOO_HIGH"
  | "SEAL_BAD_REQUEST"
  | "SEAL_TRUNCATED"
  | "SEAL_MALFORMED"
  | "SEAL_VERSION_UNSUPPORTED"
  | "SEAL_OTHER_PLATFORM"
  | "SEAL_WRONG_ENCLAVE"
  | "SEAL_WRONG_SIGNER"
  | "SEAL_WRONG_PRODUCT"
  | "SEAL_DEBUG_MISMATCH"
  | "SEAL_ENCLAVE_TOO_OLD"
  | "SEAL_RUNTIME_TOO_OLD"
  | "SEAL_AUTH_FAILED";
export class SealError extends SelkieError {
  declare readonly code: SealErrorCode;
  constructor(code: SealErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Monotonic counters and their store. */
export type CounterErrorCode =
  | "COUNTER_NOT_FOUND"
  | "COUNTER_ACCESS_DENIED"
  | "COUNTER_QUOTA_EXCEEDED"
  | "COUNTER_OVERFLOW"
  | "COUNTER_BAD_REQUEST"
  | "COUNTER_STORE_LOCKED"
  | "COUNTER_STORE_CORRUPT"
  | "COUNTER_STORE_CLOSED"
  | "COUNTER_VERSION_UNSUPPORTED";
export class CounterError extends SelkieError {
  declare readonly code: CounterErrorCode;
  constructor(code: CounterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Local reports (EREPORT) and their verification by the target enclave. */
export type ReportErrorCode = "REPORT_MALFORMED" | "REPORT_VERSION_UNSUPPORTED" | "REPORT_BAD_MAC" | "REPORT_BAD_REQUEST";
export class ReportError extends SelkieError {
  declare readonly code: ReportErrorCode;
  constructor(code: ReportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Quote verification: the code names the first check that failed (FORMATS.md §6.3). */
export type QuoteErrorCode =
  | "QUOTE_MALFORMED"
  | "QUOTE_VERSION_UNSUPPORTED"
  | "QUOTE_UNTRUSTED_CA"
  | "QUOTE_CERT_BAD_SIGNATURE"
  | "QUOTE_CERT_NOT_YET_VALID"
  | "QUOTE_CERT_EXPIRED"
  | "QUOTE_BAD_SIGNATURE"
  | "QUOTE_DEV_CA"
  | "QUOTE_NONCE_MISMATCH"
  | "QUOTE_MRENCLAVE_MISMATCH"
  | "QUOTE_MRSIGNER_MISMATCH"
  | "QUOTE_PRODID_MISMATCH"
  | "QUOTE_SVN_TOO_LOW"
  | "QUOTE_CPUSVN_TOO_LOW"
  | "QUOTE_DEBUG_ENCLAVE"
  | "QUOTE_BAD_OPTIONS"
  | "QUOTE_NO_POLICY";
export class QuoteError extends SelkieError {
  declare readonly code: QuoteErrorCode;
  constructor(code: QuoteErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * Exit codes of `selkie verify-quote`, one per failed check. Fixed numbers (never reorder):
 * scripts match on them. 0 = verified, 1 = any other error (usage, unreadable file).
 */
export const QUOTE_EXIT_CODES: Readonly<Record<QuoteErrorCode, number>> = Object.freeze({
  QUOTE_MALFORMED: 10,
  QUOTE_VERSION_UNSUPPORTED: 11,
  QUOTE_UNTRUSTED_CA: 12,
  QUOTE_CERT_BAD_SIGNATURE: 13,
  QUOTE_CERT_NOT_YET_VALID: 14,
  QUOTE_CERT_EXPIRED: 15,
  QUOTE_BAD_SIGNATURE: 16,
  QUOTE_DEV_CA: 17,
  QUOTE_NONCE_MISMATCH: 18,
  QUOTE_MRENCLAVE_MISMATCH: 19,
  QUOTE_MRSIGNER_MISMATCH: 20,
  QUOTE_PRODID_MISMATCH: 21,
  QUOTE_SVN_TOO_LOW: 22,
  QUOTE_CPUSVN_TOO_LOW: 23,
  QUOTE_DEBUG_ENCLAVE: 24,
  QUOTE_BAD_OPTIONS: 2,
  QUOTE_NO_POLICY: 2,
});
