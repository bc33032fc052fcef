/**
 * MRENCLAVE (enclaves/ABI.md §5): SHA-256 over a domain tag, the module's SHA-256 and the
 * manifest's security-relevant fields in a fixed canonical order. Name and version are not measured.
 */
import { createHash } from "node:crypto";
import { ABI_VERSION } from "./abi.js";
import type { Manifest } from "./manifest.js";

const TAG = Buffer.from("selkie/mrenclave/v1\0", "utf8");

export function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

export function measureEnclave(moduleSha256: Uint8Array, manifest: Manifest): Buffer {
  const canonical = `{"abi":${ABI_VERSION},"debug":${manifest.debug},"epc":${manifest.epc},"permissions":${JSON.stringify([...manifest.permissions].sort())}}`;
  return createHash("sha256").update(TAG).update(moduleSha256).update(canonical, "utf8").digest();
}
