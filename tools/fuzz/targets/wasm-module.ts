/**
 * Enclave modules (enclaves/ABI.md §1): the loader's own wasm section reader, the ABI checks and the
 * start-function and memory.grow scans, over UNTRUSTED module bytes (uploaded enclaves). Seeds: the
 * counter-as enclave build when present, and small modules made from WAT. Property: only
 * EnclaveLoadError; an accepted module compiles and imports its memory.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { checkModule } from "../../../runtime/enclave/loader.js";
import { EnclaveLoadError } from "../../../runtime/errors.js";
import { createRequire } from "node:module";
import { ROOT } from "../engine.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

type Wabt = { parseWat(name: string, text: string): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void } };

async function wat(text: string): Promise<Uint8Array> {
  const wabt = await (createRequire(import.meta.url)("wabt") as () => Promise<Wabt>)();
  const m = wabt.parseWat("seed.wat", text);
  try {
    return m.toBinary({}).buffer;
  } finally {
    m.destroy();
  }
}

const WATS = [
  `(module (import "env" "memory" (memory 1 16)) (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`,
  `(module (import "env" "memory" (memory 1)) (global $g (mut i32) (i32.const 5)) (global (export "h") (mut i64) (i64.const 1))
     (table 2 funcref) (elem (i32.const 0) $f $f) (data (i32.const 16) "hello")
     (func $f (result i32) (drop (memory.grow (i32.const 1))) global.get $g) (export "f" (func $f)) (start $init)
     (func $init (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))))`,
];

export const target: Target = {
  name: "wasm-module",
  about: "enclave wasm modules (section reader, ABI checks): only EnclaveLoadError",
  maxLength: 64 * 1024,
  async seeds() {
    const out: Uint8Array[] = [];
    for (const w of WATS) out.push(await wat(w));
    const counter = path.join(ROOT, "enclaves", "counter-as", "build", "counter.wasm");
    if (fs.existsSync(counter)) out.push(fs.readFileSync(counter));
    return out;
  },
  run(data) {
    const m = refusedOr(() => checkModule(data), [EnclaveLoadError]);
    if (!m) return;
    if (!(m.module instanceof WebAssembly.Module)) throw new PropertyViolation("an accepted module did not compile");
  },
};
