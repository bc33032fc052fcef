/**
 * What an enclave reaches through its trusted ocalls: sealing, counters, reports and quotes, bound to
 * one enclave identity (the EINIT result). Built only by Platform.servicesFor.
 *
 * Invariants: the object exposes operations, never keys: sealers, the reporter and the counter store
 * stay in this closure. Every call fails with PLATFORM_CLOSED once the platform is closed.
 */
import type { CounterService } from "./counters.js";
import type { EnclaveIdentity, TargetInfo } from "./identity.js";
import type { Reporter, VerifiedReport } from "./report.js";
import type { Sealer, SealOptions, UnsealOptions } from "./seal.js";

export interface EnclaveServices {
  readonly identity: EnclaveIdentity;
  /** sgx_seal_data: default policy MRSIGNER. Returns the sealed blob (FORMATS.md §5). */
  seal(data: Uint8Array, opts?: SealOptions): Buffer;
  /** sgx_unseal_data: the plaintext, or a SealError naming why not. */
  unseal(blob: Uint8Array, opts?: UnsealOptions): Buffer;
  readonly counters: CounterService;
  /** This enclave as a report target (SGX TARGETINFO). */
  targetInfo(): TargetInfo;
  /** EREPORT: a local report for `target` with 64 bytes of report data. */
  report(target: TargetInfo, reportData: Uint8Array): Buffer;
  /** Checks a local report targeted at this enclave. */
  verifyReport(report: Uint8Array): VerifiedReport;
  /** A quote of this enclave with `reportData` (see reportDataFor): report to the quoting identity, then quote. */
  quote(reportData: Uint8Array): Buffer;
}

export interface ServiceDeps {
  identity: EnclaveIdentity;
  cpuSvn: number;
  sealer: Sealer;
  reporter: Reporter;
  counters: CounterService;
  quotingTarget: TargetInfo;
  quote(report: Buffer): Buffer;
  alive(): void;
}

export function makeServices(d: ServiceDeps): EnclaveServices {
  const { identity, sealer, reporter, alive } = d;
  const self: TargetInfo = Object.freeze({ mrenclave: identity.mrenclave, debug: identity.debug });
  const counters: CounterService = Object.freeze({
    create: (o?: Parameters<CounterService["create"]>[0]) => (alive(), d.counters.create(o)),
    increment: (id: string) => (alive(), d.counters.increment(id)),
    advance: (id: string, value: number) => (alive(), d.counters.advance(id, value)),
    read: (id: string) => (alive(), d.counters.read(id)),
    destroy: (id: string) => (alive(), d.counters.destroy(id)),
    list: () => (alive(), d.counters.list()),
  });
  return Object.freeze({
    identity,
    seal: (data: Uint8Array, opts?: SealOptions) => (alive(), sealer.seal(data, opts)),
    unseal: (blob: Uint8Array, opts?: UnsealOptions) => (alive(), sealer.unseal(blob, opts)),
    counters,
    targetInfo: () => self,
    report: (target: TargetInfo, reportData: Uint8Array) => (alive(), reporter.report(identity, d.cpuSvn, target, reportData)),
    verifyReport: (report: Uint8Array) => (alive(), reporter.verify(self, report)),
    quote: (reportData: Uint8Array) => (alive(), d.quote(reporter.report(identity, d.cpuSvn, d.quotingTarget, reportData))),
  });
}
