/** Every fuzz target, by name: the module that exports it as `target` (see ../target.ts). */
const TARGETS: Record<string, string> = {
  "hrana-pipeline": "./hrana-pipeline.js",
  "hrana-protobuf": "./hrana-protobuf.js",
  "migration-frame": "./migration-frame.js",
  "store-log": "./store-log.js",
  "store-slots": "./store-slots.js",
  "image-file": "./image-file.js",
  "quote": "./quote.js",
  "certificate": "./certificate.js",
  "enclave-manifest": "./enclave-manifest.js",
  "wasm-module": "./wasm-module.js",
  "self-check": "./self-check.js",
  "self-hang": "./self-hang.js",
};

/** The project's targets (what `npm run fuzz` runs with no name); self-* are the engine's own tests. */
export const TARGET_NAMES = Object.keys(TARGETS).filter((n) => !n.startsWith("self-"));

export function targetModule(name: string): string {
  const m = TARGETS[name];
  if (!m) throw new Error(`unknown fuzz target ${name}: one of ${TARGET_NAMES.join(", ")}`);
  return new URL(m, import.meta.url).href;
}
