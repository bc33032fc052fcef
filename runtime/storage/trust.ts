/**
 * TRUSTED. The page store's view of the platform: its data key sealed to the SQLite enclave's
 * identity (policy MRENCLAVE: only this exact enclave, on this platform, can unseal it) and one
 * monotonic counter per database, owned by the same identity.
 *
 * Why MRENCLAVE and not SGX's default MRSIGNER: enclaves are not signed yet, so every enclave would
 * share one "unsigned" signer, and any module an operator loads could unseal the database key.
 * A new Selkie build that changes the SQLite enclave's bytes therefore opens older databases only
 * through `selkie db export` / `import` (or, later, migration to the new identity).
 */
import type { EnclaveServices } from "../platform/services.js";
import type { StoreTrust } from "./page-store.js";

export function storeTrustFor(services: EnclaveServices): StoreTrust {
  return {
    sealDataKey: (key, aad) => services.seal(key, { policy: "MRENCLAVE", aad }),
    unsealDataKey: (blob, aad) => services.unseal(blob, { aad }),
    createCounter: () => services.counters.create({ policy: "MRENCLAVE" }).id,
    readCounter: (id) => services.counters.read(id),
    incrementCounter: (id) => services.counters.increment(id),
    advanceCounter: (id, value) => services.counters.advance(id, value),
    destroyCounter: (id) => services.counters.destroy(id),
  };
}
