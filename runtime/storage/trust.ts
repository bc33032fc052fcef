/**
 * TRUSTED. The page store's view of the platform: its data key sealed by the SQLite enclave and one
 * monotonic counter per database, owned by the same enclave.
 *
 * Sealing policy (README "Sealing policy", enclaves/ABI.md §6.1): MRSIGNER + ISVPRODID with ISVSVN
 * rules, as SGX's sgx_seal_data default. The SQLite enclave is signed by its platform's SQLite
 * signer (runtime/sql/sqlite-signer.ts), so the key and counter survive what deployments change: a
 * different EPC cap (not measured at all), a rebuilt module, an upgraded Selkie with an ISVSVN at
 * least the sealer's. Another signer (STORAGE_WRONG_SIGNER) or a lower ISVSVN
 * (STORAGE_ENCLAVE_TOO_OLD) is refused. The sealed key blob records its policy in its header.
 *
 * Databases sealed before ABI revision 6 (policy MRENCLAVE, unsigned, a measurement that included
 * the EPC size) still open: `legacy` rebuilds that exact identity for the same module bytes (the
 * loader's measureLegacyV1), and their counter stays with it. A different module cannot open them:
 * STORAGE_WRONG_ENCLAVE with the way out.
 */
import type { EnclaveServices } from "../platform/services.js";
import { inspectSealedBlob } from "../platform/seal.js";
import { StorageError } from "./errors.js";
import type { StoreTrust } from "./page-store.js";

export interface StoreTrustOptions {
  /** The database file, named in errors. */
  file: string;
  /** Services of the pre-revision-6 identity whose MRENCLAVE is `sealedTo`, if this module has one. */
  legacy?: (sealedTo: Buffer) => EnclaveServices | undefined;
}

export function storeTrustFor(services: EnclaveServices, opts: StoreTrustOptions = { file: "" }): StoreTrust {
  let active = services;
  const file = opts.file;
  const refuse = (e: unknown): never => {
    const code = (e as { code?: string }).code ?? "";
    if (code === "SEAL_WRONG_SIGNER") {
      throw new StorageError(
        "STORAGE_WRONG_SIGNER",
        `${file}: the database's key is sealed to a SQLite enclave of another signer; this platform's SQLite signer is ${services.identity.mrsigner.toString("hex")} (its key is sqlite-signer.key in the platform folder), or the sealed key's header was changed. Put back the platform's original sqlite-signer.key, or open the database on the platform (and signer) that created it`,
        file,
        { cause: e },
      );
    }
    if (code === "SEAL_ENCLAVE_TOO_OLD") {
      throw new StorageError(
        "STORAGE_ENCLAVE_TOO_OLD",
        `${file}: the database was sealed by a newer SQLite enclave (ISVSVN ${inspectSafe(e)}) than this one (ISVSVN ${services.identity.isvSvn}); a downgrade cannot open it (or the sealed key's header was changed): use the Selkie version that wrote it, or a newer one`,
        file,
        { cause: e },
      );
    }
    throw e;
  };
  const inspectSafe = (e: unknown): string => /needs ISVSVN >= (\d+)/.exec((e as Error).message)?.[1] ?? "higher";
  return {
    sealDataKey: (key, aad) => services.seal(key, { policy: "MRSIGNER", aad }),
    unsealDataKey: (blob, aad) => {
      let info;
      try {
        info = inspectSealedBlob(blob);
      } catch {
        return services.unseal(blob, { aad }); // the platform names what is wrong with it
      }
      if (info.policy === "MRENCLAVE" && opts.legacy !== undefined && info.binding !== services.identity.mrenclave.toString("hex")) {
        const old = opts.legacy(Buffer.from(info.binding, "hex"));
        if (old === undefined) {
          throw new StorageError(
            "STORAGE_WRONG_ENCLAVE",
            `${file}: the database was sealed by an older Selkie to one exact SQLite enclave build (policy MRENCLAVE ${info.binding}), and this build's SQLite module differs; open it with the Selkie build that created it and run \`selkie db export ${file} plain.sqlite\`, then here \`selkie db import plain.sqlite NEW.db\``,
            file,
          );
        }
        active = old;
      }
      try {
        return active.unseal(blob, { aad });
      } catch (e) {
        return refuse(e);
      }
    },
    createCounter: () => services.counters.create({ policy: "MRSIGNER" }).id,
    readCounter: (id) => active.counters.read(id),
    incrementCounter: (id) => active.counters.increment(id),
    advanceCounter: (id, value) => active.counters.advance(id, value),
    destroyCounter: (id) => active.counters.destroy(id),
  };
}
