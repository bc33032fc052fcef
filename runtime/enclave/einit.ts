/**
 * The loader's half of EINIT: the only code that turns a module it holds into a MeasuredEnclave,
 * the proof `Platform.servicesFor` demands (runtime/platform/einit.ts).
 *
 * Invariants:
 * - This module takes the platform's one-shot minting function when it is first imported and never
 *   exports it. Every MeasuredEnclave in the process was made here, from:
 *     MRENCLAVE = measureEnclave(SHA-256 of the module bytes it was given, the manifest) (ABI §5),
 *     MRSIGNER / ISVPRODID = those of a SIGSTRUCT that verifies over exactly that MRENCLAVE and the
 *       manifest's name and version (ABI §6), or UNSIGNED_MRSIGNER / 0 for an unsigned module,
 *     ISVSVN = the manifest's version, DEBUG = the manifest's debug flag.
 *   Nothing a caller passes can choose a measurement or a signer it does not have the bytes or the
 *   signature for.
 * - The EPC size is not part of the identity (a memory cap is runtime policy, ABI §5).
 * - `measureLegacyV1` recomputes, for the same module bytes, the revision-5 measurement that
 *   included the EPC size, so data sealed before revision 6 still opens; it finds the EPC value by
 *   trying every 64 KiB multiple against the blob's recorded MRENCLAVE (at most 65,536 hashes).
 */
import { createHash } from "node:crypto";
import { takeEinitMinter, type MeasuredEnclave } from "../platform/einit.js";
import { WASM_PAGE } from "./abi.js";
import type { CheckedModule } from "./loader.js";
import { MAX_EPC_BYTES, type Manifest } from "./manifest.js";
import { measureEnclave, measureEnclaveV1 } from "./measure.js";
import { verifyEnclaveSignature } from "./sigstruct.js";

const mint = takeEinitMinter();

/** MRSIGNER of every unsigned enclave: one shared value, so nothing should seal to it under MRSIGNER. */
export const UNSIGNED_MRSIGNER = createHash("sha256").update("selkie/unsigned-signer/v1").digest();

/**
 * Measures `module` with `manifest` and verifies `signature` (a SIGSTRUCT object, as parsed from
 * JSON) when given: throws SigstructError (SIG_*) if it does not verify over this measurement.
 */
export function measureEnclaveModule(module: CheckedModule, manifest: Manifest, signature?: unknown): MeasuredEnclave {
  const mrenclave = measureEnclave(module.sha256, manifest);
  const signer = signature === undefined ? { mrsigner: UNSIGNED_MRSIGNER, isvProdId: 0 } : verifyEnclaveSignature(signature, manifest, mrenclave);
  return mint({ mrenclave, mrsigner: signer.mrsigner, isvProdId: signer.isvProdId, isvSvn: manifest.version, debug: manifest.debug });
}

/**
 * The revision-5 identity of the same module (unsigned, MRENCLAVE over the EPC size too) whose
 * MRENCLAVE equals `sealedTo`, or undefined when no EPC size gives it (the module or a measured
 * manifest field changed since the data was sealed).
 */
export function measureLegacyV1(module: CheckedModule, manifest: Manifest, sealedTo: Uint8Array): MeasuredEnclave | undefined {
  const want = Buffer.from(sealedTo);
  const tryEpc = (epc: number): MeasuredEnclave | undefined =>
    measureEnclaveV1(module.sha256, manifest, epc).equals(want)
      ? mint({ mrenclave: want, mrsigner: UNSIGNED_MRSIGNER, isvProdId: 0, isvSvn: manifest.version, debug: manifest.debug })
      : undefined;
  const first = tryEpc(manifest.epc);
  if (first) return first;
  for (let epc = WASM_PAGE; epc <= MAX_EPC_BYTES; epc += WASM_PAGE) {
    const m = tryEpc(epc);
    if (m) return m;
  }
  return undefined;
}

/** The revision-5 identity of `module` at EPC size `epc` (for making v1 fixtures in tests and tools). */
export function measureLegacyV1At(module: CheckedModule, manifest: Manifest, epc: number): MeasuredEnclave {
  return mint({ mrenclave: measureEnclaveV1(module.sha256, manifest, epc), mrsigner: UNSIGNED_MRSIGNER, isvProdId: 0, isvSvn: manifest.version, debug: manifest.debug });
}
