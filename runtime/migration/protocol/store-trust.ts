/**
 * TRUSTED. The sealed store's trust for the platform's SQLite enclave (the identity that seals
 * database keys and owns their counters, MRSIGNER policy), for migration code that runs outside a
 * Database: the same identity Database and `selkie db upgrade` use (runtime/storage/trust.ts).
 */
import { Enclave } from "../../enclave/enclave.js";
import type { Platform } from "../../platform/platform.js";
import type { EnclaveServices } from "../../platform/services.js";
import { sqliteSignature } from "../../sql/sqlite-signer.js";
import { loadSqliteEnclave } from "../../sql/sqlite-module.js";
import type { StoreTrust } from "../../storage/page-store.js";
import { storeTrustFor } from "../../storage/trust.js";

const cache = new WeakMap<Platform, { trust: StoreTrust; services: EnclaveServices }>();

function load(platform: Platform): { trust: StoreTrust; services: EnclaveServices } {
  let t = cache.get(platform);
  if (t) return t;
  const image = loadSqliteEnclave();
  const enclave = new Enclave({ module: image.module, manifest: image.manifest, signature: sqliteSignature(platform.dir, image) });
  try {
    const services = platform.servicesFor(enclave.measured);
    t = { trust: storeTrustFor(services), services };
  } finally {
    enclave.close();
  }
  cache.set(platform, t);
  return t;
}

export function sqliteTrust(platform: Platform): StoreTrust {
  return load(platform).trust;
}

/** A counter of the SQLite enclave starting at `initialValue` (a migrated database's fence, PROTOCOL.md §5). */
export function createCounterAt(platform: Platform, initialValue: number): string {
  return load(platform).services.counters.create({ policy: "MRSIGNER", initialValue }).id;
}

/** The SQLite enclave's services on `platform` (its identity and quotes attest the migration channel). */
export function sqliteServices(platform: Platform): EnclaveServices {
  return load(platform).services;
}
