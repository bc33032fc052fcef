/** Shared helpers for the platform tests: temp dirs, identities, a platform per test. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { EnclaveIdentity } from "../../runtime/platform/index.js";

export function tempDir(prefix = "selkie-platform-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

export function h(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

export function identity(over: Partial<EnclaveIdentity> = {}): EnclaveIdentity {
  return { mrenclave: h("enclave-a"), mrsigner: h("signer-a"), isvProdId: 1, isvSvn: 3, debug: false, ...over };
}

/** The compiled fixtures live next to the compiled tests. */
export function fixture(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}
