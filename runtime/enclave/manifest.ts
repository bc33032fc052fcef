/**
 * Enclave manifests (enclaves/ABI.md §4, format 1): parsed strictly, so a typo cannot silently drop
 * a restriction. Sizes are normalised to bytes; permissions to a sorted, de-duplicated list.
 */
import { ManifestError } from "../errors.js";
import { PERMISSIONS, WASM_PAGE, type Permission } from "./abi.js";

export const MANIFEST_FORMAT = 1;
export const MAX_EPC_BYTES = 4 * 1024 ** 3;

export interface Manifest {
  readonly format: 1;
  readonly name: string;
  /** ISVSVN: the enclave's security version. */
  readonly version: number;
  /** Module path relative to the manifest's folder (absent for manifests built in code). */
  readonly module?: string;
  /** Maximum linear memory, bytes, a multiple of 64 KiB. */
  readonly epc: number;
  readonly permissions: readonly Permission[];
  readonly debug: boolean;
}

const KEYS = new Set(["format", "name", "version", "module", "epc", "permissions", "debug"]);
const UNITS: Record<string, number> = { "": 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "64MiB" | "93.5MiB" | 1048576 -> bytes. Throws ManifestError on anything else. */
export function parseSize(value: unknown, what = "size"): number {
  let bytes: number;
  if (typeof value === "number") bytes = value;
  else if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) {
      throw new ManifestError("MANIFEST_BAD_SIZE", `${what} "${value}" is not a size: use bytes or a number with KiB, MiB or GiB (e.g. "64MiB")`);
    }
    bytes = Math.round(Number(m[1]) * unit);
  } else {
    throw new ManifestError("MANIFEST_BAD_SIZE", `${what} must be a number of bytes or a string such as "64MiB"`);
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new ManifestError("MANIFEST_BAD_SIZE", `${what} must be a positive whole number of bytes`);
  }
  return bytes;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(2)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(2)} KiB`;
  return `${n} B`;
}

/** Validate a manifest object (as read from JSON). */
export function parseManifest(raw: unknown, source = "manifest"): Manifest {
  const fail = (code: string, msg: string): never => {
    throw new ManifestError(code, `${source}: ${msg}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("MANIFEST_MALFORMED", "must be a JSON object");
  const m = raw as Record<string, unknown>;
  for (const k of Object.keys(m)) {
    if (!KEYS.has(k)) fail("MANIFEST_UNKNOWN_KEY", `unknown key "${k}" (allowed: ${[...KEYS].join(", ")})`);
  }
  if (m.format !== MANIFEST_FORMAT) fail("MANIFEST_UNSUPPORTED_FORMAT", `format must be ${MANIFEST_FORMAT}, got ${JSON.stringify(m.format)}`);
  if (typeof m.name !== "string" || !/^[a-z0-9._-]{1,64}$/.test(m.name)) {
    fail("MANIFEST_BAD_NAME", `name must be 1-64 characters of a-z 0-9 . _ -`);
  }
  if (!Number.isInteger(m.version) || (m.version as number) < 0 || (m.version as number) > 65535) {
    fail("MANIFEST_BAD_VERSION", "version (the ISVSVN) must be an integer from 0 to 65535");
  }
  if (m.module !== undefined && (typeof m.module !== "string" || m.module.length === 0)) {
    fail("MANIFEST_BAD_MODULE", "module must be a non-empty relative path");
  }
  const epc = parseSize(m.epc, `${source}: epc`);
  if (epc % WASM_PAGE !== 0) fail("MANIFEST_BAD_SIZE", `epc must be a multiple of 64 KiB, got ${epc} bytes`);
  if (epc > MAX_EPC_BYTES) fail("MANIFEST_BAD_SIZE", `epc ${formatBytes(epc)} exceeds the 4 GiB a wasm32 memory can address`);
  const perms = m.permissions ?? [];
  if (!Array.isArray(perms)) fail("MANIFEST_BAD_PERMISSIONS", "permissions must be a list");
  for (const p of perms as unknown[]) {
    if (typeof p !== "string" || !(PERMISSIONS as readonly string[]).includes(p)) {
      fail("MANIFEST_BAD_PERMISSIONS", `unknown permission ${JSON.stringify(p)} (known: ${PERMISSIONS.join(", ")})`);
    }
  }
  if (m.debug !== undefined && typeof m.debug !== "boolean") fail("MANIFEST_MALFORMED", "debug must be true or false");
  const base = {
    format: MANIFEST_FORMAT,
    name: m.name as string,
    version: m.version as number,
    epc,
    permissions: [...new Set(perms as Permission[])].sort(),
    debug: (m.debug as boolean | undefined) ?? false,
  } as const;
  return m.module === undefined ? base : { ...base, module: m.module as string };
}
