/**
 * Enclave snapshots at the lifecycle level (runtime/enclave/enclave.ts: capture, suspend, resume)
 * with sealed images (runtime/enclave/snapshot/image-store.ts), on the non-C example enclave
 * (enclaves/counter-as, AssemblyScript: its state lives in globals) and on hand-written modules.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Enclave } from "../../runtime/enclave/enclave.js";
import { enclaveIdentity } from "../../runtime/enclave/identity.js";
import { checkModule, loadEnclaveModule, type CheckedModule } from "../../runtime/enclave/loader.js";
import { parseManifest, type Manifest } from "../../runtime/enclave/manifest.js";
import { ImageStore, type ImageBinding } from "../../runtime/enclave/snapshot/image-store.js";
import { EpcManager } from "../../runtime/platform/epc.js";
import { SelkieError } from "../../runtime/errors.js";
import { ROOT, rng, tempDir, testPlatform, wat } from "../helpers.js";

const AS_WASM = path.join(ROOT, "enclaves", "counter-as", "build", "counter.wasm");

async function counterAs(epc = "16MiB"): Promise<{ module: CheckedModule; manifest: Manifest }> {
  assert.ok(fs.existsSync(AS_WASM), "enclaves/counter-as/build/counter.wasm is missing: node tools/build-as.mjs builds it");
  const raw = JSON.parse(fs.readFileSync(path.join(ROOT, "enclaves", "counter-as", "manifest.json"), "utf8")) as Record<string, unknown>;
  const module = await loadEnclaveModule(new Uint8Array(fs.readFileSync(AS_WASM)));
  return { module, manifest: parseManifest({ ...raw, epc }, "counter-as manifest") };
}

type Calls = Record<string, (...a: number[]) => number | bigint | void>;
const calls = (e: Enclave): Calls => e.exports as unknown as Calls;

function bindingOf(e: Enclave): ImageBinding {
  const id = enclaveIdentity(e);
  return { mrenclave: id.mrenclave, mrsigner: id.mrsigner, isvProdId: id.isvProdId, isvSvn: id.isvSvn, platformId: testPlatform.platformId };
}

/** One step of the AssemblyScript workload and what it answered. */
function step(x: Calls, r: () => number): string {
  const k = Math.floor(r() * 10);
  if (k < 3) return `add:${x.add!(Math.floor(r() * 2000) - 1000)}`;
  if (k < 7) {
    let out = "";
    for (let i = Math.floor(r() * 300); i >= 0; i--) out = `push:${x.push!(Math.floor(r() * 1e6))}`;
    return out;
  }
  if (k < 8) return `sum:${x.sum!()},count:${x.count!()}`;
  if (k < 9) return `calls:${x.calls!()}`;
  x.reset!();
  return "reset";
}

for (const seed of [1, 2, 3]) {
  test(`AssemblyScript enclave ${seed}: sealed images, suspend/resume and restores into fresh instances at random points answer exactly as an uninterrupted run`, async () => {
    const { module, manifest } = await counterAs();
    const ref = new Enclave({ module, manifest });
    ref.start();
    const epc = new EpcManager(64 * 1024 * 1024);
    let n = 0;
    const admit = (i: number, m: number, l: string) => epc.admit(`as-${++n}`, l, i, m);
    let sub = new Enclave({ module, manifest, epc: admit });
    sub.start();
    const store = ImageStore.openDurable(tempDir(), { services: testPlatform.servicesFor(enclaveIdentity(sub)), binding: bindingOf(sub) });
    const volatile = ImageStore.volatile(tempDir(), { binding: bindingOf(sub) });
    const rr = rng(seed);
    const rs = rng(seed);
    const pick = rng(seed + 99);
    let restores = 0;
    try {
      for (let i = 0; i < 300; i++) {
        const u = pick();
        if (u < 0.15) {
          // Suspend and resume the same enclave from a volatile (paging) image.
          const cap = sub.capture();
          volatile.write({ memory: cap.memory, globals: cap.globals, runtime: {} });
          sub.suspend();
          assert.equal(sub.state, "suspended");
          assert.equal(epc.committed, 0, "a suspended enclave holds no EPC");
          sub.resume((alloc) => volatile.read(alloc));
          restores++;
        } else if (u < 0.25) {
          // Seal a durable image and continue in a brand-new enclave restored from it.
          const cap = sub.capture();
          store.write({ memory: cap.memory, globals: cap.globals, runtime: { step: i } });
          sub.close();
          sub = new Enclave({ module, manifest, epc: admit });
          let runtime: Record<string, unknown> = {};
          sub.resume((alloc) => {
            const r = store.read(alloc);
            runtime = r.runtime;
            return r;
          });
          assert.deepEqual(runtime, { step: i });
          restores++;
        }
        assert.equal(step(calls(sub), rs), step(calls(ref), rr), `seed ${seed}, step ${i}`);
        assert.equal(epc.committed, sub.committedBytes, "the EPC meter counts exactly the resident memory");
      }
      assert.ok(restores > 40, `restored ${restores} times`);
    } finally {
      ref.close();
      sub.close();
      store.destroy();
      volatile.destroy();
    }
  });
}

test("a restore sets memory and globals before any ecall and never runs _initialize again", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "memory" (memory 1))
    (global $inits (mut i32) (i32.const 0))
    (global $big (mut i64) (i64.const 0))
    (global $f (mut f64) (f64.const 0))
    (func (export "_initialize") (global.set $inits (i32.add (global.get $inits) (i32.const 1))) (i32.store (i32.const 16) (i32.const 7)))
    (func (export "bump") (result i64) (global.set $big (i64.add (global.get $big) (i64.const 0x100000001))) (global.set $f (f64.add (global.get $f) (f64.const 0.5))) (global.get $big))
    (func (export "inits") (result i32) (global.get $inits))
    (func (export "f") (result f64) (global.get $f))
    (func (export "mem") (result i32) (i32.load (i32.const 16)))
    (export "g0" (global $inits)) (export "g1" (global $big)) (export "g2" (global $f)))`);
  const module = checkModule(bytes);
  assert.deepEqual(module.stateGlobals, [{ name: "g0", type: "i32" }, { name: "g1", type: "i64" }, { name: "g2", type: "f64" }]);
  const manifest = parseManifest({ format: 1, name: "g", version: 1, epc: 1 << 20 });
  const a = new Enclave({ module, manifest });
  a.start();
  const x = calls(a);
  x.bump!();
  x.bump!();
  const cap = a.capture();
  const memory = Uint8Array.from(cap.memory);
  const b = new Enclave({ module, manifest });
  b.resume((alloc) => (alloc(memory.length).set(memory), { globals: cap.globals }));
  const y = calls(b);
  assert.equal(y.inits!(), 1, "_initialize ran once, in the original");
  assert.equal(y.mem!(), 7);
  assert.equal(y.bump!(), 3n * 0x100000001n);
  assert.equal(y.f!(), 1.5);
  a.close();
  b.close();
});

test("a restore keeps memory that a memory-initializing start function would overwrite", async () => {
  const module = checkModule(await wat(`(module (import "selkie:sys" "memory" (memory 1))
    (data $d "abc")
    (func $init (memory.fill (i32.const 64) (i32.const 0) (i32.const 16)) (memory.init $d (i32.const 128) (i32.const 0) (i32.const 3)))
    (start $init)
    (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
    (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1))))`));
  const manifest = parseManifest({ format: 1, name: "s", version: 1, epc: 1 << 20 });
  const a = new Enclave({ module, manifest });
  a.start();
  calls(a).poke!(64, 9);
  calls(a).poke!(128, 0x7a);
  const cap = a.capture();
  const memory = Uint8Array.from(cap.memory);
  const b = new Enclave({ module, manifest });
  b.resume((alloc) => (alloc(memory.length).set(memory), { globals: cap.globals }));
  assert.equal(calls(b).peek!(64), 9, "the start function's zeroing ran before the image was written, not after");
  assert.equal(calls(b).peek!(128), 0x7a);
  assert.equal(calls(b).peek!(129), "b".charCodeAt(0));
  a.close();
  b.close();
});

test("a module that hides a mutable global cannot be snapshotted; wrong globals are refused", async () => {
  const hidden = checkModule(await wat(`(module (import "selkie:sys" "memory" (memory 1)) (global $g (mut i32) (i32.const 0)) (func (export "f") (global.set $g (i32.const 1))))`));
  assert.equal(hidden.stateGlobals, undefined);
  const manifest = parseManifest({ format: 1, name: "h", version: 1, epc: 1 << 20 });
  const e = new Enclave({ module: hidden, manifest });
  e.start();
  assert.throws(() => e.capture(), (err: unknown) => err instanceof SelkieError && err.code === "SNAPSHOT_UNSUPPORTED");
  e.close();

  const shown = checkModule(await wat(`(module (import "selkie:sys" "memory" (memory 1)) (global $g (mut i32) (i32.const 0)) (export "g" (global $g)))`));
  const f = new Enclave({ module: shown, manifest });
  const page = new Uint8Array(65536);
  assert.throws(
    () => f.resume((alloc) => (alloc(page.length).set(page), { globals: [{ name: "g", type: "i64", value: 1n }] })),
    (err: unknown) => err instanceof SelkieError && err.code === "IMAGE_WRONG_ENCLAVE",
  );
  assert.equal(f.state, "faulted");
  const g = new Enclave({ module: shown, manifest });
  assert.throws(() => g.resume((alloc) => (alloc(3 << 20), { globals: [] })), (err: unknown) => err instanceof SelkieError && err.code === "SNAPSHOT_UNSUPPORTED", "more memory than the manifest allows");
  assert.equal(g.state, "created", "refused before an instance existed: nothing changed");
  assert.throws(() => g.resume((alloc) => (alloc(1000), { globals: [] })), (err: unknown) => err instanceof SelkieError && err.code === "IMAGE_TAMPERED");
});

test("an enclave is never captured inside one of its own ecalls (a growth asking the EPC for room)", async () => {
  const bytes = await wat(`(module (import "selkie:sys" "memory" (memory 1))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
  const module = await loadEnclaveModule(bytes);
  const epc = new EpcManager(2 * 1024 * 1024);
  const manifest = parseManifest({ format: 1, name: "busy", version: 1, epc: 4 << 20 });
  const e = new Enclave({ module, manifest, epc: (i, m, l) => epc.admit("busy", l, i, m) });
  e.start();
  let seen: unknown;
  epc.setEvictor(() => {
    assert.equal(e.busy, true);
    try {
      e.capture();
    } catch (err) {
      seen = err;
    }
    return 0;
  });
  assert.equal(calls(e).grow!(40), -1, "no room: the grow fails inside the enclave");
  assert.ok(seen instanceof SelkieError && seen.code === "SNAPSHOT_BUSY", "capture inside the ecall was refused");
  assert.equal(e.busy, false);
  e.capture();
  e.close();
});
