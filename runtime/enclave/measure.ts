/**
 * MRENCLAVE (enclaves/ABI.md §5): SHA-256 over a domain tag, the module's SHA-256 and the
 * manifest's security-relevant fields in a fixed canonical order. Name and version are not measured,
 * and neither is the EPC size: a memory cap is runtime policy, not identity (v2 of the measurement;
 * `measureEnclaveV1`, which included it, is kept only to open data sealed before ABI revision 6).
 */
import { createHash } from "node:crypto";
import { ABI_VERSION } from "./abi.js";
import type { Manifest } from "./manifest.js";

const TAG = Buffer.from("selkie/mrenclave/v2\0", "utf8");
const TAG_V1 = Buffer.from("selkie/mrenclave/v1\0", "utf8");

export function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

export function measureEnclave(moduleSha256: Uint8Array, manifest: Pick<Manifest, "debug" | "permissions">): Buffer {
  const canonical = `{"abi":${ABI_VERSION},"debug":${manifest.debug},"permissions":${JSON.stringify([...manifest.permissions].sort())}}`;
  return createHash("sha256").update(TAG).update(moduleSha256).update(canonical, "utf8").digest();
}

/** The revision-5 measurement, which included the EPC size: only to recognise data sealed under it. */
export function measureEnclaveV1(moduleSha256: Uint8Array, manifest: Pick<Manifest, "debug" | "permissions">, epc: number): Buffer {
  const canonical = `{"abi":${ABI_VERSION},"debug":${manifest.debug},"epc":${epc},"permissions":${JSON.stringify([...manifest.permissions].sort())}}`;
  return createHash("sha256").update(TAG_V1).update(moduleSha256).update(canonical, "utf8").digest();
}
