/**
 * The identity an enclave presents to the platform (what EINIT establishes): its measurement, its
 * signer, and its version.
 *
 * A signed enclave (ABI §6, sigstruct.ts) reports the MRSIGNER of its verified signature; every
 * unsigned enclave (the built-in SQLite enclave among them) reports the same fixed "unsigned"
 * MRSIGNER. Anything bound to an unsigned enclave's own data therefore uses policy MRENCLAVE (see
 * runtime/storage/trust.ts).
 */
import { createHash } from "node:crypto";
import type { EnclaveIdentity } from "../platform/identity.js";
import type { Enclave } from "./enclave.js";

export const UNSIGNED_MRSIGNER = createHash("sha256").update("selkie/unsigned-signer/v1").digest();

export function enclaveIdentity(e: Enclave): EnclaveIdentity {
  return {
    mrenclave: e.mrenclave,
    mrsigner: e.opts.mrsigner ?? UNSIGNED_MRSIGNER,
    isvProdId: 0,
    isvSvn: e.manifest.version,
    debug: e.manifest.debug,
  };
}
