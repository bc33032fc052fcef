/**
 * Enclave manifests (enclaves/ABI.md §3: JSON), UNTRUSTED when uploaded (POST /v1/enclaves) or read
 * from disk. Bytes -> JSON.parse (a syntax error is the caller's own refusal) -> parseManifest.
 * Property: only ManifestError; an accepted manifest has a sane name, version, EPC and permissions.
 */
import { MAX_EPC_BYTES, parseManifest } from "../../../runtime/enclave/manifest.js";
import { ManifestError } from "../../../runtime/errors.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

export const target: Target = {
  name: "enclave-manifest",
  about: "enclave manifests (JSON): only ManifestError, accepted ones are in range",
  maxLength: 2048,
  seeds: () => [
    { format: 1, name: "sqlite", version: 3, epc: "64MiB", permissions: ["clock", "random"], debug: false, module: "build/sqlite.wasm" },
    { format: 1, name: "counter-as", version: 0, epc: 1048576 },
    { format: 1, name: "x.y_z-1", version: 65535, epc: "4GiB", permissions: [], debug: true },
  ].map((m) => Buffer.from(JSON.stringify(m))),
  run(data) {
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(data).toString("utf8"));
    } catch {
      return;
    }
    const m = refusedOr(() => parseManifest(raw), [ManifestError]);
    if (!m) return;
    if (!/^[a-z0-9._-]{1,64}$/.test(m.name)) throw new PropertyViolation(`accepted name ${JSON.stringify(m.name)}`);
    if (!Number.isInteger(m.version) || m.version < 0 || m.version > 65535) throw new PropertyViolation(`accepted version ${m.version}`);
    if (!Number.isSafeInteger(m.epc) || m.epc < 0 || m.epc % 65536 !== 0 || m.epc > MAX_EPC_BYTES) throw new PropertyViolation(`accepted epc ${m.epc}`);
  },
};
