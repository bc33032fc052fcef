/** Shared helpers for the platform tests: temp dirs, identities, a platform per test. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash, createPrivateKey } from "node:crypto";
import type { EnclaveIdentity, MeasuredEnclave } from "../../runtime/platform/index.js";
import { checkModule } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { measureEnclave } from "../../runtime/enclave/measure.js";
import { measureEnclaveModule } from "../../runtime/enclave/einit.js";
import { signEnclave } from "../../runtime/enclave/sigstruct.js";

export function tempDir(prefix = "selkie-platform-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

export function h(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/**
 * A real enclave identity, made the only way there is (EINIT, runtime/enclave/einit.ts): a tiny
 * module whose bytes carry `mrenclave` as a seed (so each seed measures differently), a manifest
 * with ISVSVN and debug, signed by an Ed25519 key derived from the `mrsigner` seed with ISVPRODID.
 * The measured MRENCLAVE / MRSIGNER are NOT the seeds; equal seeds give equal identities.
 */
export function identity(over: Partial<EnclaveIdentity> = {}): MeasuredEnclave {
  return measuredIdentity({ mrenclave: h("enclave-a"), mrsigner: h("signer-a"), isvProdId: 1, isvSvn: 3, debug: false, ...over });
}

const measuredCache = new Map<string, MeasuredEnclave>();

export function measuredIdentity(seed: EnclaveIdentity): MeasuredEnclave {
  const k = `${Buffer.from(seed.mrenclave).toString("hex")}|${Buffer.from(seed.mrsigner).toString("hex")}|${seed.isvProdId}|${seed.isvSvn}|${seed.debug}`;
  const hit = measuredCache.get(k);
  if (hit) return hit;
  const module = checkModule(seedModule(seed.mrenclave));
  const manifest = parseManifest({ format: 1, name: "test-enclave", version: seed.isvSvn, epc: 65536, debug: seed.debug });
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), h(`signer-key:${Buffer.from(seed.mrsigner).toString("hex")}`)]), format: "der", type: "pkcs8" });
  const signature = signEnclave(manifest, measureEnclave(module.sha256, manifest), key, { isvProdId: seed.isvProdId });
  const m = measureEnclaveModule(module, manifest, signature);
  measuredCache.set(k, m);
  return m;
}

/** (module (import "selkie:sys" "memory" (memory 1))) with a custom section "seed" holding `seed`. */
function seedModule(seed: Uint8Array): Buffer {
  const name = (s: string): Buffer => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, "latin1")]);
  const custom = Buffer.concat([name("seed"), Buffer.from(seed)]);
  const imports = Buffer.concat([Buffer.from([1]), name("selkie:sys"), name("memory"), Buffer.from([0x02, 0x00, 0x01])]);
  return Buffer.concat([Buffer.from("0061736d01000000", "hex"), Buffer.from([0, custom.length]), custom, Buffer.from([2, imports.length]), imports]);
}

/** The compiled fixtures live next to the compiled tests. */
export function fixture(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}
