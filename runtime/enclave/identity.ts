/**
 * The identity an enclave presents to the platform (what EINIT establishes): its measurement, its
 * signer, its product and its version, as the loader measured them (einit.ts). A signed enclave
 * (ABI §6) reports the MRSIGNER and ISVPRODID of its verified signature; an unsigned one the shared
 * UNSIGNED_MRSIGNER and ISVPRODID 0, so its own data must use policy MRENCLAVE.
 */
import type { MeasuredEnclave } from "../platform/einit.js";
import type { Enclave } from "./enclave.js";

export { UNSIGNED_MRSIGNER } from "./einit.js";

export function enclaveIdentity(e: Enclave): MeasuredEnclave {
  return e.measured;
}
