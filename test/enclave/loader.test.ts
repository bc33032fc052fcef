import { test } from "node:test";
import assert from "node:assert/strict";
import { checkModule, checkManifestFits, loadEnclaveModule, measure } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { Enclave } from "../../runtime/enclave/enclave.js";
import { EnclaveLoadError, ManifestError } from "../../runtime/errors.js";
import { wat } from "../helpers.js";

const MEM = `(import "selkie:sys" "memory" (memory 1))`;
const manifest = (over: Record<string, unknown> = {}) =>
  parseManifest({ format: 1, name: "t", version: 1, epc: "1MiB", permissions: [], ...over });

test("checkModule accepts a module that imports only Selkie ocalls and its memory", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "clock_ms" (func (result f64))) ${MEM} (func (export "f") (result i32) i32.const 7))`);
  const m = checkModule(bytes, ["f"]);
  assert.deepEqual(m.ocalls, ["selkie:sys.clock_ms"]);
  assert.equal(m.minPages, 1);
});

test("checkModule refuses a forbidden import and names it", async () => {
  const bytes = await wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) ${MEM})`);
  assert.throws(() => checkModule(bytes), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_FORBIDDEN_IMPORT" && e.message.includes("wasi_snapshot_preview1.fd_write"));
});

test("checkModule refuses an unknown name inside a Selkie namespace", async () => {
  const bytes = await wat(`(module (import "selkie:fs" "exec_shell" (func)) ${MEM})`);
  assert.throws(() => checkModule(bytes), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_FORBIDDEN_IMPORT" && e.message.includes("selkie:fs.exec_shell"));
});

test("checkModule refuses an ocall imported with the wrong signature", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "random" (func (param i64) (result i32))) ${MEM})`);
  assert.throws(() => checkModule(bytes), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_BAD_IMPORT_TYPE");
});

test("checkModule refuses a global or table import", async () => {
  const g = await wat(`(module (import "selkie:sys" "epc_grow" (global i32)) ${MEM})`);
  assert.throws(() => checkModule(g), { code: "ENCLAVE_FORBIDDEN_IMPORT" });
});

test("checkModule refuses a module that exports its own memory", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "memory" (memory 1)) (export "memory" (memory 0)))`);
  assert.throws(() => checkModule(bytes), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_EXPORTS_MEMORY");
  const defined = await wat(`(module (memory (export "memory") 1))`);
  assert.throws(() => checkModule(defined), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_DEFINES_MEMORY");
});

test("checkModule refuses a memory imported under another name", async () => {
  const bytes = await wat(`(module (import "env" "memory" (memory 1)))`);
  assert.throws(() => checkModule(bytes), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_FORBIDDEN_IMPORT" && e.message.includes("env.memory"));
});

test("checkModule refuses a start function that does more than initialize memory from constants", async () => {
  const bodies = {
    "a call": `(func $f) (func $s (call $f))`,
    "a global write": `(global $g (mut i32) (i32.const 0)) (func $s (global.set $g (i32.const 1)))`,
    "a store": `(func $s (i32.store (i32.const 0) (i32.const 1)))`,
    "a local": `(func $s (local i32) (memory.fill (local.get 0) (i32.const 0) (i32.const 1)))`,
    "a loop": `(func $s (loop $l (br $l)))`,
    "a memory.grow": `(func $s (drop (memory.grow (i32.const 1))))`,
    "a computed operand": `(func $s (memory.fill (i32.add (i32.const 1) (i32.const 2)) (i32.const 0) (i32.const 1)))`,
    "a nop": `(func $s nop)`,
  };
  for (const [what, funcs] of Object.entries(bodies)) {
    const bytes = await wat(`(module ${MEM} ${funcs} (start $s))`);
    assert.throws(() => checkModule(bytes), { code: "ENCLAVE_HAS_START" }, what);
  }
  const ocall = await wat(`(module (import "selkie:sys" "clock_ms" (func $c (result f64))) ${MEM} (func $s (drop (call $c))) (start $s))`);
  assert.throws(() => checkModule(ocall), { code: "ENCLAVE_HAS_START" }, "an ocall before the runtime is ready");
});

/** What wasm-ld emits with bulk memory and an imported memory: .bss zeroed, a passive segment copied. */
const INIT_ONLY = `(module ${MEM}
  (data $d "selkie")
  (func $init (memory.fill (i32.const 64) (i32.const 0) (i32.const 32)) (memory.init $d (i32.const 128) (i32.const 0) (i32.const 6)) (data.drop $d))
  (start $init)
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1))))`;

test("a start function that only initializes memory from constants (wasm-ld's bulk-memory .bss zeroing) is accepted and runs", async () => {
  const m = checkModule(await wat(INIT_ONLY), ["peek"]);
  const e = new Enclave({ module: m, manifest: manifest() });
  e.start();
  const x = e.exports as Record<string, (...a: number[]) => number>;
  assert.equal(String.fromCharCode(...[0, 1, 2, 3, 4, 5].map((i) => x.peek!(128 + i))), "selkie");
  e.close();
  // Through the instrumenting loader too (a hidden mutable global makes binaryen rewrite the module).
  const withGlobal = await loadEnclaveModule(await wat(INIT_ONLY.replace("(start $init)", "(start $init) (global $g (mut i32) (i32.const 0)) (func (export \"bump\") (global.set $g (i32.add (global.get $g) (i32.const 1))))")));
  assert.equal(withGlobal.instrumentation?.globals.length, 1, "binaryen ran");
  const f = new Enclave({ module: withGlobal, manifest: manifest() });
  f.start();
  assert.equal((f.exports as Record<string, (...a: number[]) => number>).peek!(128), "s".charCodeAt(0));
  f.close();
});

test("checkModule refuses bytes that are not wasm, truncated modules and empty input", async () => {
  const good = await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 1))`);
  for (const bad of [new Uint8Array(0), new TextEncoder().encode("#!/bin/sh\necho hi\n"), good.subarray(0, good.length - 3), good.subarray(0, 9)]) {
    assert.throws(() => checkModule(bad), (e: unknown) => e instanceof EnclaveLoadError && (e.code === "ENCLAVE_NOT_WASM" || e.code === "ENCLAVE_INVALID_MODULE"));
  }
});

test("checkModule refuses a module missing a required ecall", async () => {
  const bytes = await wat(`(module ${MEM} (func (export "sk_open")))`);
  assert.throws(() => checkModule(bytes, ["sk_open", "sk_step"]), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_MISSING_EXPORT" && e.message.includes("sk_step"));
});

test("a manifest whose EPC is smaller than the module's initial memory is refused", async () => {
  const m = checkModule(await wat(`(module (import "selkie:sys" "memory" (memory 32)))`));
  assert.throws(() => checkManifestFits(m, manifest({ epc: "1MiB" })), (e: unknown) => e instanceof ManifestError && e.code === "MANIFEST_EPC_TOO_SMALL" && /2 MiB/.test(e.message));
  checkManifestFits(m, manifest({ epc: "2MiB" }));
});

test("parseManifest refuses unknown keys, bad sizes, unknown permissions and formats", () => {
  assert.throws(() => manifest({ permisions: ["net"] }), { code: "MANIFEST_UNKNOWN_KEY" });
  assert.throws(() => manifest({ epc: "lots" }), { code: "MANIFEST_BAD_SIZE" });
  assert.throws(() => manifest({ epc: 1000 }), { code: "MANIFEST_BAD_SIZE" });
  assert.throws(() => manifest({ epc: "8GiB" }), { code: "MANIFEST_BAD_SIZE" });
  assert.throws(() => manifest({ permissions: ["root"] }), { code: "MANIFEST_BAD_PERMISSIONS" });
  assert.throws(() => manifest({ format: 2 }), { code: "MANIFEST_UNSUPPORTED_FORMAT" });
  assert.throws(() => manifest({ name: "../etc" }), { code: "MANIFEST_BAD_NAME" });
  assert.throws(() => parseManifest([1, 2]), { code: "MANIFEST_MALFORMED" });
  assert.equal(manifest({ epc: "93.5MiB" }).epc, 98041856);
});

test("MRENCLAVE changes with the module bytes and every security-relevant field, not with name, version or EPC cap", async () => {
  const a = checkModule(await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 1))`));
  const b = checkModule(await wat(`(module ${MEM} (func (export "f") (result i32) i32.const 2))`));
  const base = measure(a, manifest()).toString("hex");
  assert.equal(measure(a, manifest()).toString("hex"), base, "measurement is deterministic");
  assert.equal(measure(a, manifest({ name: "other", version: 9 })).toString("hex"), base);
  assert.notEqual(measure(b, manifest()).toString("hex"), base);
  // A memory cap is runtime policy, not identity (ABI §5, revision 6): data sealed by the enclave
  // must survive `--epc` changes.
  assert.equal(measure(a, manifest({ epc: "2MiB" })).toString("hex"), base);
  assert.equal(measure(a, manifest({ epc: "128MiB" })).toString("hex"), base);
  assert.notEqual(measure(a, manifest({ debug: true })).toString("hex"), base);
  assert.notEqual(measure(a, manifest({ permissions: ["clock"] })).toString("hex"), base);
  assert.equal(measure(a, manifest({ permissions: ["random", "clock"] })).toString("hex"), measure(a, manifest({ permissions: ["clock", "random"] })).toString("hex"));
});

test("an enclave's memory cannot grow past its EPC cap, even by memory.grow in the module", async () => {
  const m = await loadEnclaveModule(await wat(`(module ${MEM}
    (import "selkie:sys" "epc_grow" (func $grow (param i32) (result i32)))
    (func (export "via_ocall") (param i32) (result i32) local.get 0 call $grow)
    (func (export "direct") (param i32) (result i32) local.get 0 memory.grow))`));
  const granted: number[] = [];
  const e = new Enclave({ module: m, manifest: manifest({ epc: "256KiB" }), epc: () => ({ grow: (d) => (granted.push(d), true), release: () => {} }) });
  e.start();
  const x = e.exports as { via_ocall(n: number): number; direct(n: number): number };
  assert.equal(x.via_ocall(2), 1, "grows from 1 to 3 pages");
  assert.deepEqual(granted, [2 * 65536], "the meter saw the growth");
  assert.equal(x.via_ocall(2), -1, "refused past the 4-page cap");
  assert.equal(x.direct(2), -1, "memory.grow past the cap fails too");
  assert.equal(x.direct(1), 3);
  assert.equal(e.committedBytes, 4 * 65536);
  assert.deepEqual(granted, [2 * 65536, 65536], "the meter saw the module's own memory.grow too");
});

test("a denied permission is answered inside the enclave and names the grant", async () => {
  const m = checkModule(await wat(`(module ${MEM}
    (import "selkie:sys" "clock_ms" (func $clock (result f64)))
    (func (export "now") (result f64) call $clock))`));
  const requested = new Enclave({ module: m, manifest: manifest({ permissions: ["clock"] }), grants: new Set() });
  requested.start();
  assert.equal((requested.exports as { now(): number }).now(), -1);
  assert.match(requested.takeDenial() ?? "", /--allow-clock/);
  const granted = new Enclave({ module: m, manifest: manifest({ permissions: ["clock"] }) });
  granted.start();
  assert.ok(Math.abs((granted.exports as { now(): number }).now() - Date.now()) < 5000);
  const unrequested = new Enclave({ module: m, manifest: manifest() });
  unrequested.start();
  assert.equal((unrequested.exports as { now(): number }).now(), -1);
  assert.match(unrequested.takeDenial() ?? "", /manifest must request "clock"/);
});

test("checkModule refuses a second memory import, and a memory section even beside the imported memory", async () => {
  const two = await wat(`(module ${MEM} (import "selkie:sys" "memory" (memory 1)))`);
  assert.throws(() => checkModule(two), (e: unknown) => e instanceof EnclaveLoadError && (e.code === "ENCLAVE_BAD_MEMORY" || e.code === "ENCLAVE_INVALID_MODULE"));
  const own = await wat(`(module ${MEM} (memory 2))`);
  assert.throws(() => checkModule(own), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_DEFINES_MEMORY" && e.message.includes("selkie:sys.memory"));
  await assert.rejects(loadEnclaveModule(own), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_DEFINES_MEMORY", "refused before instrumentation too");
});

test("tables count against the manifest's EPC: charged per entry of their maximum, pinned at their minimum without one", async () => {
  const { TABLE_ENTRY_BYTES } = await import("../../runtime/enclave/loader.js");
  const pinned = checkModule(await wat(`(module ${MEM} (table $t 100 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))) (func (export "size") (result i32) (table.size $t)))`));
  assert.equal(pinned.tableBytes, 100 * TABLE_ENTRY_BYTES);
  const e = new Enclave({ module: pinned, manifest: manifest({ epc: "1MiB" }) });
  e.start();
  const x = e.exports as { grow(n: number): number; size(): number };
  assert.equal(x.grow(1), -1, "a table without a declared maximum does not grow past its minimum");
  assert.equal(x.size(), 100);
  e.close();

  const bounded = checkModule(await wat(`(module ${MEM} (table $t 1 1000 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`));
  assert.equal(bounded.tableBytes, 1000 * TABLE_ENTRY_BYTES, "a declared maximum is charged in full");
  const charged: number[] = [];
  const b = new Enclave({ module: bounded, manifest: manifest({ epc: "1MiB" }), epc: (initial, max) => (charged.push(initial, max), { grow: () => true, release: () => {} }) });
  b.start();
  assert.deepEqual(charged, [65536 + 1000 * TABLE_ENTRY_BYTES, Math.floor((1024 * 1024 - 1000 * TABLE_ENTRY_BYTES) / 65536) * 65536 + 1000 * TABLE_ENTRY_BYTES], "admitted with its tables; memory capped at the EPC less the tables");
  assert.equal((b.exports as { grow(n: number): number }).grow(999), 1, "growth within the charged maximum works");
  b.close();

  const huge = checkModule(await wat(`(module ${MEM} (table 100000 funcref))`));
  assert.throws(() => checkManifestFits(huge, manifest({ epc: "1MiB" })), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_TABLE_TOO_LARGE" && /raise epc/.test(e.message));
  assert.throws(() => new Enclave({ module: huge, manifest: manifest({ epc: "1MiB" }) }), { code: "ENCLAVE_TABLE_TOO_LARGE" });
  checkManifestFits(huge, manifest({ epc: "8MiB" }));
});

test("an Enclave refuses a module whose memory.grow the EPC meter would not see; a refused metered grow is -1 inside and charges nothing", async () => {
  const src = await wat(`(module ${MEM} (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
  assert.throws(() => new Enclave({ module: checkModule(src), manifest: manifest() }), { code: "ENCLAVE_UNMETERED_GROW" });
  const m = await loadEnclaveModule(src);
  let committed = 65536;
  let allow = true;
  const e = new Enclave({ module: m, manifest: manifest(), epc: (initial) => ((committed = initial), { grow: (d) => (allow || d < 0 ? ((committed += d), true) : false), release: () => {} }) });
  e.start();
  const x = e.exports as { grow(n: number): number };
  assert.equal(x.grow(1), 1);
  allow = false;
  assert.equal(x.grow(1), -1, "the meter's refusal fails the grow inside the enclave");
  assert.equal(committed, 2 * 65536, "and charges nothing");
  assert.equal(e.committedBytes, 2 * 65536, "the memory did not grow");
  e.close();
});

test("only a call of the runtime's pre-hook right before memory.grow counts as metered, whoever emitted it", async () => {
  const src = await wat(`(module ${MEM}
    (import "selkie:sys" "memory_grow_pre" (func $pre (param i32 i32) (result i32)))
    (func $fake (param i32 i32) (result i32) local.get 1)
    (func (export "hooked") (param i32) (result i32) (memory.grow (call $pre (i32.const 0) (local.get 0))))
    (func (export "faked") (param i32) (result i32) (memory.grow (call $fake (i32.const 0) (local.get 0))))
    (func (export "raw") (param i32) (result i32) (memory.grow (local.get 0))))`);
  const raw = checkModule(src);
  assert.equal(raw.unmeteredGrows, 2, "the call of a look-alike and the bare grow are unmetered; the hooked one is not");
  assert.throws(() => new Enclave({ module: raw, manifest: manifest() }), { code: "ENCLAVE_UNMETERED_GROW" });
  const m = await loadEnclaveModule(src);
  assert.equal(m.unmeteredGrows, 0, "instrumentation meters every grow, the module's own hook import included");
  const granted: number[] = [];
  const e = new Enclave({ module: m, manifest: manifest({ epc: "256KiB" }), epc: () => ({ grow: (d) => (granted.push(d), true), release: () => {} }) });
  e.start();
  const x = e.exports as { hooked(n: number): number; faked(n: number): number; raw(n: number): number };
  assert.equal(x.raw(1), 1);
  assert.equal(x.faked(1), 2);
  assert.equal(x.hooked(1), 3);
  assert.equal(x.raw(1), -1, "past the 4-page cap");
  // The module's own hook call charges too (the grow it feeds is wrapped again); the next hook
  // call refunds what did not grow, to a meter that takes refunds.
  assert.equal(granted.reduce((a, b) => a + b, 0), 3 * 65536, "net, the meter was charged for exactly the pages that grew");
  e.close();
});
