/**
 * Public API of the emulated SGX platform (trusted layer). Formats: FORMATS.md.
 *
 * Host (untrusted) code may use: Platform.create/open/close, quoteSelf(), EpcManager usage, the CA
 * and the verifier. Platform.servicesFor (EINIT) takes only a MeasuredEnclave, which only the
 * enclave loader makes (runtime/enclave/einit.ts). Nothing exported here yields a key.
 */
export { Platform, readPlatformInfo, PLATFORM_JSON, PLATFORM_CERT, DEV_CA_DIR } from "./platform.js";
export type { PlatformCreateOptions, PlatformOpenOptions, PlatformInfo } from "./platform.js";
export type { EnclaveServices } from "./services.js";
export type { EnclaveIdentity, TargetInfo } from "./identity.js";
export { MeasuredEnclave, isMeasured } from "./einit.js";
export { checkIdentity, fromHex, toHex, identityToJSON } from "./identity.js";
export { RUNTIME_VERSION, SealPolicy } from "./keys.js";
export type { SealPolicyName } from "./keys.js";
export { inspectSealedBlob, SEAL_OVERHEAD, SEAL_HEADER_LEN } from "./seal.js";
export type { SealOptions, UnsealOptions, SealedBlobInfo } from "./seal.js";
export { DEFAULT_COUNTER_QUOTA } from "./counters.js";
export type { CounterService, CounterInfo, CreateCounterOptions } from "./counters.js";
export { EpcManager, DEFAULT_EPC_BYTES, MAX_EPC_BYTES, MIN_EPC_BYTES, parseSize, checkEpcBudget, formatBytes } from "./epc.js";
export type { EpcLease, EpcUsage, EpcStats, EpcEvictor } from "./epc.js";
export { CertificateAuthority, readCaCertificate, parseCaCertificate, DEFAULT_CA_DAYS, DEFAULT_PLATFORM_CERT_DAYS } from "./ca.js";
export { parseCertificate, describeCertificate, CertKind } from "./cert.js";
export type { Certificate } from "./cert.js";
export { reportDataFor, nonceDigest, VerifiedReport, REPORT_DATA_LEN, REPORT_LEN } from "./report.js";
export { QUOTING_IDENTITY, QUOTING_TARGET } from "./quote.js";
export { verifyQuote, VerifiedQuote } from "./verify.js";
export type { VerifyQuoteOptions } from "./verify.js";
export { defaultPlatformDir } from "./files.js";
export * from "./errors.js";
