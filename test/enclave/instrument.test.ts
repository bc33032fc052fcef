/**
 * Load-time instrumentation (runtime/enclave/instrument.ts, enclaves/ABI.md §1.1): every mutable
 * global exported, every memory.grow metered, results cached by module hash, SQLite untouched,
 * MRENCLAVE over the original bytes, and a memory+globals snapshot of the AssemblyScript enclave
 * (enclaves/counter-as) that answers exactly as the original, where a memory-only one does not.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { GROW_HOOKS, NS_SYS, OCALLS, WASM_PAGE } from "../../runtime/enclave/abi.js";
import { Enclave, type EpcAdmit } from "../../runtime/enclave/enclave.js";
import { clearInstrumentCache, GLOBAL_EXPORT_PREFIX, instrumentModule } from "../../runtime/enclave/instrument.js";
import { checkModule, loadEnclaveModule, measure, type CheckedModule } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { measureEnclave, sha256 } from "../../runtime/enclave/measure.js";
import { countMemoryGrow, parseGlobals, parseWasm } from "../../runtime/enclave/wasm-sections.js";
import { EpcManager } from "../../runtime/platform/epc.js";
import { SQLITE_ECALLS } from "../../runtime/sql/sqlite-module.js";
import { EnclaveLoadError } from "../../runtime/errors.js";
import { ROOT, rng, tempDir, wat } from "../helpers.js";

const AS_WASM = path.join(ROOT, "enclaves", "counter-as", "build", "counter.wasm");
const SQLITE_WASM = path.join(ROOT, "sqlite-wasm", "build", "sqlite3.wasm");

function readBuilt(file: string, how: string): Uint8Array {
  assert.ok(fs.existsSync(file), `${path.relative(ROOT, file)} is missing: build it with ${how} (tools/setup.sh does)`);
  return new Uint8Array(fs.readFileSync(file));
}
const asBytes = (): Uint8Array => readBuilt(AS_WASM, "node tools/build-as.mjs");
const asManifest = (epc: string | number = "16MiB") => {
  const raw = JSON.parse(fs.readFileSync(path.join(ROOT, "enclaves", "counter-as", "manifest.json"), "utf8")) as Record<string, unknown>;
  return parseManifest({ ...raw, epc }, "counter-as manifest");
};

/** Mutable defined globals, and how many of them are exported, read from the binary itself. */
function globalCensus(bytes: Uint8Array): { mutable: number; exported: number; exportNames: string[] } {
  const mutable = parseGlobals(bytes).filter((g) => g.mutable && !g.imported);
  const exports = parseWasm(bytes).exports.filter((e) => e.kind === "global");
  const exportedIdx = new Set(exports.map((e) => e.index));
  return { mutable: mutable.length, exported: mutable.filter((g) => exportedIdx.has(g.index)).length, exportNames: exports.map((e) => e.name) };
}

/** A meter that records every grant and takes refunds (negative deltas), capped at `budget` bytes. */
function recordingMeter(budget = Infinity) {
  const grants: number[] = [];
  let committed = 0;
  let refused = 0;
  const admit: EpcAdmit = (initial) => {
    committed = initial;
    return {
      grow: (delta: number) => {
        if (delta > 0 && committed + delta > budget) return refused++, false;
        if (delta > 0) grants.push(delta);
        committed += delta;
        return true;
      },
      release: () => void (committed = 0),
    };
  };
  return { admit, grants, get committed() { return committed; }, get refused() { return refused; } };
}

function globalValues(exports: WebAssembly.Exports, names: readonly string[]): (number | bigint)[] {
  return names.map((n) => {
    const g = exports[n];
    assert.ok(g instanceof WebAssembly.Global, `export ${n} is a global`);
    return g.value as number | bigint;
  });
}

test("the raw AssemblyScript module keeps its state in mutable globals it does not export; instrumentation exports them all", async () => {
  const raw = asBytes();
  const before = globalCensus(raw);
  assert.ok(before.mutable >= 10, `asc emits many mutable globals (found ${before.mutable})`);
  assert.equal(before.exported, 0, "asc exports none of them");

  const r = await instrumentModule(raw);
  const after = globalCensus(r.bytes);
  assert.equal(after.mutable, before.mutable);
  assert.equal(after.exported, after.mutable, "every mutable global is exported after instrumentation");
  assert.equal(r.globals.length, before.mutable);
  assert.equal(r.exportedGlobals, before.mutable);
  for (const name of r.globals) assert.match(name, new RegExp(`^${GLOBAL_EXPORT_PREFIX}\\d+$`));
  assert.deepEqual(WebAssembly.Module.exports(new WebAssembly.Module(raw as Uint8Array<ArrayBuffer>)).filter((e) => e.kind === "global"), []);

  // Real state: ecalls change the globals' values (read through the new exports).
  const m = await loadEnclaveModule(raw);
  const enc = new Enclave({ module: m, manifest: asManifest() });
  enc.start();
  const initial = globalValues(enc.exports, m.instrumentation!.globals);
  const x = enc.exports as Record<string, (...a: number[]) => number | bigint>;
  x.add!(41);
  for (let i = 0; i < 100; i++) x.push!(i);
  const later = globalValues(enc.exports, m.instrumentation!.globals);
  const changed = later.filter((v, i) => v !== initial[i]).length;
  assert.ok(changed >= 3, `ecalls changed ${changed} globals (the total, the call count, allocator/GC state)`);
  assert.ok(later.includes(41n), "the i64 running total lives in a global");
  enc.close();
});

test("instrumentation keeps a global's own export name, skips imported globals, and refuses a squatted reserved name", async () => {
  const src = `(module
    (import "selkie:sys" "memory" (memory 1))
    (import "x" "g" (global $imp (mut i32)))
    (global $a (mut i32) (i32.const 1))
    (global $b i32 (i32.const 2))
    (global $c (mut i64) (i64.const 3))
    (global $d (mut f64) (f64.const 4))
    (export "mine" (global $c))
    (func (export "f") (result i32) (global.set $a (i32.const 9)) (global.get $a)))`;
  const r = await instrumentModule(await wat(src));
  // Index space: 0 imported, 1 $a, 2 $b (immutable), 3 $c (already exported), 4 $d.
  assert.deepEqual(r.globals, [`${GLOBAL_EXPORT_PREFIX}1`, "mine", `${GLOBAL_EXPORT_PREFIX}4`]);
  assert.equal(r.exportedGlobals, 2);
  assert.equal(r.growSites, 0);
  const names = WebAssembly.Module.exports(new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>)).map((e) => e.name);
  assert.deepEqual(names.sort(), ["__selkie_global_1", "__selkie_global_4", "f", "mine"]);

  const squat = await wat(`(module (import "selkie:sys" "memory" (memory 1)) (global $a (mut i32) (i32.const 1))
    (func $f) (export "${GLOBAL_EXPORT_PREFIX}0" (func $f)))`);
  await assert.rejects(instrumentModule(squat), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_RESERVED_EXPORT");
  await assert.rejects(instrumentModule(new TextEncoder().encode("not wasm at all")), { code: "ENCLAVE_NOT_WASM" });
  // Well-formed sections but an invalid body (i32.add on nothing), with a global to export:
  // binaryen refuses it, and the loader reports it as an invalid module.
  const invalid = await wat(`(module (import "selkie:sys" "memory" (memory 1)) (global (mut i32) (i32.const 0)) (func (drop (memory.grow (i32.const 1)))))`);
  const body = invalid.lastIndexOf(0x40); // the memory.grow opcode -> i32.add: pops a missing operand
  const broken = new Uint8Array(invalid);
  broken[body] = 0x6a;
  broken[body + 1] = 0x1a;
  await assert.rejects(instrumentModule(broken), (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_INVALID_MODULE");
});

test("the memory.grow finder decodes every instruction (immediates full of 0x40 bytes do not fool it) and agrees with binaryen", async () => {
  const src = `(module
    (import "selkie:sys" "memory" (memory 1))
    (type $t (func (param i32) (result i32)))
    (table 2 funcref)
    (global $g (mut i32) (i32.const 64))
    (func $id (type $t) (local.get 0))
    (func (export "f") (param $p i32) (result i32) (local $v v128) (local $x i64)
      (local.set $x (i64.const 0x4040404040404040))
      (drop (f64.const 3.0000000000000004))
      (drop (f32.const 3.0))
      (local.set $v (v128.const i32x4 0x40404040 0x40 0x40 0x40))
      (local.set $v (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 31 (local.get $v) (local.get $v)))
      (drop (i32x4.extract_lane 3 (local.get $v)))
      (memory.fill (i32.const 64) (i32.const 64) (i32.const 0))
      (memory.copy (i32.const 64) (i32.const 0) (i32.const 64))
      (drop (i32.load offset=64 align=4 (i32.const 64)))
      (drop (select (result i32) (i32.const 64) (i32.const 1) (local.get $p)))
      (block $a (block $b (br_table $a $b $a (local.get $p))))
      (drop (call_indirect (type $t) (i32.const 64) (i32.const 0)))
      (drop (i32.trunc_sat_f64_s (f64.const 64)))
      (drop (memory.grow (i32.const 0)))
      (if (i32.eqz (local.get $p)) (then (drop (memory.grow (i32.const 64)))))
      (loop $l (br_if $l (i32.eqz (i32.const 64))))
      (memory.grow (local.get $p))))`;
  const bytes = await wat(src);
  assert.equal(countMemoryGrow(bytes), 3);
  const r = await instrumentModule(bytes);
  assert.equal(r.growSites, 3);
  assert.ok(WebAssembly.validate(r.bytes as Uint8Array<ArrayBuffer>), "the instrumented module (SIMD inside) is valid for Node 20");
  const fns = WebAssembly.Module.imports(new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>)).map((i) => `${i.module}.${i.name}`);
  assert.deepEqual(fns.sort(), [`${NS_SYS}.${GROW_HOOKS.post}`, `${NS_SYS}.${GROW_HOOKS.pre}`, `${NS_SYS}.memory`].sort(), "only the two grow hooks are added: the pass's other env.* imports are removed");
  assert.deepEqual(OCALLS[NS_SYS]![GROW_HOOKS.pre], { params: ["i32", "i32"], results: ["i32"] });
  checkModule(r.bytes); // passes the ABI check
});

test("every memory.grow asks the meter: granted, refused by the budget, past the cap, huge, zero", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "memory" (memory 1))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
    (func (export "size") (result i32) (memory.size)))`);
  const m = await loadEnclaveModule(bytes, { requiredExports: ["grow"] });
  assert.equal(m.instrumentation!.growSites, 1);
  const meter = recordingMeter(4 * WASM_PAGE);
  const enc = new Enclave({ module: m, manifest: parseManifest({ format: 1, name: "g", version: 1, epc: 8 * WASM_PAGE }), epc: meter.admit });
  enc.start();
  const x = enc.exports as Record<string, (...a: number[]) => number>;
  assert.equal(x.grow!(1), 1, "granted: the old size");
  assert.deepEqual(meter.grants, [WASM_PAGE]);
  assert.equal(x.grow!(0), 2, "a zero grow is free");
  assert.equal(x.grow!(3), -1, "refused by the meter's budget: the grow yields -1, no trap");
  assert.equal(meter.refused, 1);
  assert.equal(x.size!(), 2);
  assert.equal(x.grow!(7), -1, "past the manifest cap: refused before the meter is asked");
  assert.equal(meter.refused, 1);
  assert.equal(x.grow!(-1), -1, "an absurd delta (2^32-1 pages) is refused");
  assert.equal(x.grow!(2), 2);
  assert.equal(meter.committed, 4 * WASM_PAGE);
  assert.equal(enc.committedBytes, 4 * WASM_PAGE, "the meter counts exactly the committed memory");
  enc.close();
});

test("a guest calling the grow hooks itself cannot pass its cap, and an unspent charge is refunded", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "memory" (memory 1))
    (import "selkie:sys" "memory_grow_pre" (func $pre (param i32 i32) (result i32)))
    (import "selkie:sys" "memory_grow_post" (func $post (param i32 i32) (result i32)))
    (func (export "pre") (param i32) (result i32) (call $pre (i32.const 7) (local.get 0)))
    (func (export "post") (result i32) (call $post (i32.const 7) (i32.const -1))))`);
  const meter = recordingMeter();
  const enc = new Enclave({ module: await loadEnclaveModule(bytes), manifest: parseManifest({ format: 1, name: "h", version: 1, epc: 4 * WASM_PAGE }), epc: meter.admit });
  enc.start();
  const x = enc.exports as Record<string, (...a: number[]) => number>;
  assert.equal(x.pre!(2), 2, "granted (charged) without growing");
  assert.equal(meter.committed, 3 * WASM_PAGE);
  assert.equal(x.post!(), -1);
  assert.equal(meter.committed, WASM_PAGE, "the charge for a grow that never happened is refunded");
  assert.equal(x.pre!(4), -1, "beyond the cap");
  enc.close();

  // With the platform's EPC manager (no refunds): the charge stays until release, within the cap.
  const epc = new EpcManager(1024 * 1024);
  const enc2 = new Enclave({
    module: await loadEnclaveModule(bytes),
    manifest: parseManifest({ format: 1, name: "h", version: 1, epc: 4 * WASM_PAGE }),
    epc: (initial, max, label) => epc.admit("h", label, initial, max),
  });
  enc2.start();
  const y = enc2.exports as Record<string, (...a: number[]) => number>;
  for (let i = 0; i < 10; i++) y.pre!(3);
  assert.ok(epc.committed <= 4 * WASM_PAGE, `charged ${epc.committed} bytes, never more than the cap`);
  enc2.close();
  assert.equal(epc.committed, 0, "released with the enclave");
});

test("the EPC meter sees every growth of the AssemblyScript enclave (the raw module, whose growth it would not see, is refused)", async () => {
  const raw = asBytes();
  const m = await loadEnclaveModule(raw);
  assert.equal(m.instrumentation!.growSites, countMemoryGrow(raw));
  assert.ok(m.instrumentation!.growSites >= 1);
  const meter = recordingMeter();
  const enc = new Enclave({ module: m, manifest: asManifest("16MiB"), epc: meter.admit });
  enc.start();
  const x = enc.exports as Record<string, (...a: number[]) => number | bigint>;
  const start = enc.committedBytes;
  const sizes = new Set<number>([start]);
  for (let i = 0; i < 200_000; i++) {
    x.push!(i);
    sizes.add(enc.committedBytes);
  }
  assert.equal(x.count!(), 200_000);
  assert.equal(x.sum!(), BigInt((199_999 * 200_000) / 2));
  assert.ok(enc.committedBytes > 8 * start, `memory grew (${start} -> ${enc.committedBytes} bytes)`);
  assert.equal(meter.grants.length, sizes.size - 1, "one grant per growth");
  assert.equal(start + meter.grants.reduce((a, b) => a + b, 0), enc.committedBytes, "the grants add up to the memory's size");
  assert.equal(meter.committed, enc.committedBytes);
  enc.close();

  // The same module without instrumentation would grow behind the meter's back (it makes no ocall
  // at all): it is refused before it can run.
  const rawMeter = recordingMeter();
  assert.throws(
    () => new Enclave({ module: checkModule(raw), manifest: asManifest("16MiB"), epc: rawMeter.admit }),
    (e: unknown) => e instanceof EnclaveLoadError && e.code === "ENCLAVE_UNMETERED_GROW" && /loadEnclaveModule/.test(e.message),
  );
  assert.deepEqual(rawMeter.grants, [], "nothing was admitted");
});

test("a growth past the EPC budget fails inside the AssemblyScript enclave (a trap); the runtime survives and restarts it", async () => {
  const m = await loadEnclaveModule(asBytes());
  const epc = new EpcManager(1024 * 1024); // the platform's budget: 1 MiB for this enclave's 16 MiB cap
  let seq = 0;
  const enc = new Enclave({ module: m, manifest: asManifest("16MiB"), epc: (initial, max, label) => epc.admit(`${label}#${++seq}`, label, initial, max) });
  enc.start();
  const x = enc.exports as Record<string, (...a: number[]) => number | bigint>;
  assert.equal(x.add!(5), 5n);
  let pushed = 0;
  let trap: unknown;
  try {
    for (; pushed < 1_000_000; pushed++) x.push!(pushed);
  } catch (e) {
    trap = e;
  }
  assert.ok(trap instanceof WebAssembly.RuntimeError, `a denied grow traps in AssemblyScript's allocator (got ${String(trap)})`);
  assert.ok(pushed > 1000, `it worked until the budget ran out (${pushed} pushes)`);
  assert.ok(enc.committedBytes <= epc.budget, `memory ${enc.committedBytes} stayed within the 1 MiB budget`);
  assert.ok(epc.committed <= epc.budget);
  assert.ok(epc.stats().growRefusals >= 1, "the meter refused a growth");

  enc.fault(); // the runtime drops the trapped instance and its lease
  assert.equal(epc.committed, 0);
  enc.restart();
  const y = enc.exports as Record<string, (...a: number[]) => number | bigint>;
  assert.equal(y.add!(2), 2n, "a fresh instance answers");
  assert.equal(y.push!(1), 1);
  enc.close();
});

test("instrumented modules are cached by hash: in memory and on disk (atomic, self-checking), same bytes", async () => {
  const raw = asBytes();
  const dir = path.join(tempDir("selkie-modcache-"), "module-cache");
  clearInstrumentCache();
  const cold = await instrumentModule(raw, { cacheDir: dir });
  assert.equal(cold.from, "binaryen");
  assert.equal(cold.cacheError, undefined);
  const file = path.join(dir, `${sha256(raw).toString("hex")}.wasm`);
  assert.ok(fs.existsSync(file), "written as <sha256>.wasm");
  assert.deepEqual(fs.readdirSync(dir), [path.basename(file)], "no temporary file left behind");

  const warm = await instrumentModule(raw, { cacheDir: dir });
  assert.equal(warm.from, "memory");
  assert.deepEqual(Buffer.from(warm.bytes), Buffer.from(cold.bytes));

  clearInstrumentCache();
  const disk = await instrumentModule(raw, { cacheDir: dir });
  assert.equal(disk.from, "disk");
  assert.deepEqual(Buffer.from(disk.bytes), Buffer.from(cold.bytes), "same bytes from disk");
  assert.deepEqual(disk.globals, cold.globals);
  assert.equal(disk.growSites, cold.growSites);
  assert.ok(disk.ms < cold.ms && warm.ms < cold.ms, `cached loads are faster (cold ${cold.ms.toFixed(1)} ms, disk ${disk.ms.toFixed(2)} ms, memory ${warm.ms.toFixed(3)} ms)`);
  console.log(`# instrument counter-as: ${raw.length} -> ${cold.bytes.length} bytes; cold ${cold.ms.toFixed(1)} ms, disk ${disk.ms.toFixed(2)} ms, memory ${warm.ms.toFixed(3)} ms`);

  // A damaged entry is ignored and rebuilt; so is an entry holding another module's output.
  const good = fs.readFileSync(file);
  const flipped = Buffer.from(good);
  flipped[100] = flipped[100]! ^ 0x01;
  for (const bad of [flipped, good.subarray(0, good.length - 10), Buffer.alloc(0)]) {
    fs.writeFileSync(file, bad);
    clearInstrumentCache();
    const again = await instrumentModule(raw, { cacheDir: dir });
    assert.equal(again.from, "binaryen", "a damaged cache entry is not used");
    assert.deepEqual(Buffer.from(again.bytes), Buffer.from(cold.bytes));
    assert.deepEqual(fs.readFileSync(file), good, "and is rewritten");
  }
  const other = await wat(`(module (import "selkie:sys" "memory" (memory 1)) (global (mut i32) (i32.const 1)))`);
  const otherFile = path.join(dir, `${sha256(other).toString("hex")}.wasm`);
  fs.copyFileSync(file, otherFile);
  clearInstrumentCache();
  const o = await instrumentModule(other, { cacheDir: dir });
  assert.equal(o.from, "binaryen", "an entry made for another module is not used");
  assert.deepEqual(o.globals, [`${GLOBAL_EXPORT_PREFIX}0`]);

  // An unwritable cache folder costs the cache, not the load.
  const blocker = path.join(tempDir("selkie-modcache-"), "file");
  fs.writeFileSync(blocker, "");
  clearInstrumentCache();
  const nocache = await instrumentModule(raw, { cacheDir: path.join(blocker, "sub") });
  assert.ok(nocache.cacheError);
  assert.deepEqual(Buffer.from(nocache.bytes), Buffer.from(cold.bytes));
});

test("the SQLite module passes through unchanged (no binaryen, no cache file), with the same MRENCLAVE", async () => {
  const bytes = readBuilt(SQLITE_WASM, "npm run build:wasm");
  const dir = tempDir("selkie-modcache-");
  clearInstrumentCache();
  const r = await instrumentModule(bytes, { cacheDir: dir });
  assert.equal(r.changed, false);
  assert.equal(r.from, "scan");
  assert.equal(r.bytes, bytes, "the very same bytes");
  assert.deepEqual(r.globals, ["__stack_pointer"]);
  assert.equal(r.growSites, 0);
  assert.deepEqual(fs.readdirSync(dir), []);
  console.log(`# instrument sqlite3.wasm (${bytes.length} bytes): pass-through scan ${r.ms.toFixed(1)} ms`);

  const loaded = await loadEnclaveModule(bytes, { requiredExports: SQLITE_ECALLS });
  const sync = checkModule(bytes, SQLITE_ECALLS);
  assert.equal(loaded.module, sync.module, "the same compiled module as the synchronous path");
  const manifest = parseManifest({ format: 1, name: "sqlite", version: 1, epc: "64MiB", permissions: ["clock", "random"] });
  assert.deepEqual(measure(loaded, manifest), measure(sync, manifest));
});

test("instrumentation is measure-neutral: MRENCLAVE is over the original bytes", async () => {
  const raw = asBytes();
  const m = await loadEnclaveModule(raw);
  const manifest = asManifest();
  assert.ok(m.instrumentation!.changed);
  assert.deepEqual(m.sha256, sha256(raw));
  assert.equal(m.byteLength, raw.length);
  assert.deepEqual(m.instrumentation!.sha256, sha256((await instrumentModule(raw)).bytes));
  assert.deepEqual(measure(m, manifest), measureEnclave(sha256(raw), manifest));
  assert.notDeepEqual(measure(m, manifest), measureEnclave(m.instrumentation!.sha256, manifest));
  assert.deepEqual(new Enclave({ module: m, manifest }).mrenclave, measureEnclave(sha256(raw), manifest));
});

/** Instantiates the instrumented module WITHOUT _initialize, memory grown to the snapshot's size. */
function restore(m: CheckedModule, snap: { memory: Uint8Array; globals: (number | bigint)[] }, withGlobals: boolean): Record<string, (...a: number[]) => number | bigint> {
  const memory = new WebAssembly.Memory({ initial: m.minPages, maximum: 256 });
  const hooks = { [GROW_HOOKS.pre]: (_s: number, d: number) => d, [GROW_HOOKS.post]: (_s: number, r: number) => r };
  const instance = new WebAssembly.Instance(m.module, { [NS_SYS]: { memory, ...hooks } });
  // After instantiation: instantiating re-applies the data segments.
  memory.grow(snap.memory.length / WASM_PAGE - memory.buffer.byteLength / WASM_PAGE);
  new Uint8Array(memory.buffer).set(snap.memory);
  if (withGlobals) {
    m.instrumentation!.globals.forEach((name, i) => {
      (instance.exports[name] as WebAssembly.Global).value = snap.globals[i]!;
    });
  }
  return instance.exports as Record<string, (...a: number[]) => number | bigint>;
}

test("a memory+globals snapshot of the AssemblyScript enclave answers exactly as the original; memory alone does not", async () => {
  const m = await loadEnclaveModule(asBytes());
  const enc = new Enclave({ module: m, manifest: asManifest() });
  enc.start();
  const x = enc.exports as Record<string, (...a: number[]) => number | bigint>;
  const rand = rng(20260);
  for (let i = 0; i < 60_000; i++) {
    const r = rand();
    if (r < 0.3) x.add!(Math.floor(rand() * 1000) - 300);
    else if (r < 0.99995) x.push!(Math.floor(rand() * 2 ** 31));
    else x.reset!();
  }
  const snap = { memory: enc.memory.u8.slice(), globals: globalValues(enc.exports, m.instrumentation!.globals) };
  assert.ok(snap.memory.length > m.minPages * WASM_PAGE, "the heap grew before the snapshot");

  // The same continued workload on the original, the full restore and the memory-only restore.
  const workload = (e: Record<string, (...a: number[]) => number | bigint>): unknown[] => {
    const out: unknown[] = [];
    const r2 = rng(99);
    try {
      out.push(e.count!(), e.sum!(), e.calls!());
      for (let i = 0; i < 5000; i++) {
        const r = r2();
        if (r < 0.4) out.push(e.add!(Math.floor(r2() * 100)));
        else out.push(e.push!(Math.floor(r2() * 1e6)));
      }
      out.push(e.sum!(), e.count!(), e.calls!());
    } catch (err) {
      out.push(`trap: ${(err as Error).message}`);
    }
    return out;
  };
  const full = workload(restore(m, snap, true));
  const memOnly = workload(restore(m, snap, false));
  const original = workload(x);
  assert.deepEqual(full, original, "memory + every global: exactly the original's answers");
  assert.notDeepEqual(memOnly, original, "memory only: wrong answers (the globals were part of the state)");
  enc.close();
});
