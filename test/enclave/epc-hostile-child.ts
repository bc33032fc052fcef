/**
 * Child process for epc-hostile.test.ts: loads hostile enclave modules under a 1 MiB EPC, the way
 * an attacker would try to take host memory past the meter, and prints one JSON line with how each
 * attempt ended (a refusal's code, or what the enclave saw) and how much resident memory the
 * process gained. Run alone so that its RSS is its own.
 */
import { Enclave, type EpcAdmit } from "../../runtime/enclave/enclave.js";
import { checkModule, loadEnclaveModule } from "../../runtime/enclave/loader.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { EpcManager } from "../../runtime/platform/epc.js";
import { wat } from "../helpers.js";

const MEM = `(import "selkie:sys" "memory" (memory 1))`;
const MiB = 1024 * 1024;
const epc = new EpcManager(1 * MiB);
let seq = 0;
const admit: EpcAdmit = (initial, max, label) => epc.admit(`${label}#${++seq}`, label, initial, max);
const manifest = (name: string, size: string) => parseManifest({ format: 1, name, version: 1, epc: size, permissions: [] });
/** Every enclave that started stays referenced until the end, so whatever it holds is counted. */
const alive: Enclave[] = [];
type Fns = Record<string, (...a: number[]) => number>;

async function attempt(name: string, bytes: Uint8Array, size: string, instrument = true): Promise<{ code: string; e?: Fns }> {
  try {
    const module = instrument ? await loadEnclaveModule(bytes) : checkModule(bytes);
    const e = new Enclave({ module, manifest: manifest(name, size), epc: admit });
    e.start();
    alive.push(e);
    return { code: "ACCEPTED", e: e.exports as unknown as Fns };
  } catch (err) {
    return { code: (err as { code?: string }).code ?? `${(err as Error).constructor.name}: ${(err as Error).message}` };
  }
}

const rss = (): number => process.memoryUsage().rss;

// Build every module first, and load binaryen (the memory.grow module needs instrumenting), so
// that neither counts as what the attacks took.
const growWat = `(module ${MEM} (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))) (func (export "pages") (result i32) memory.size))`;
const modules = {
  tableMin: await wat(`(module ${MEM} (table 10000000 funcref) (func (export "f") (result i32) i32.const 1))`),
  tableGrow: await wat(`(module ${MEM} (table $t 1 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`),
  tableGrowMax: await wat(`(module ${MEM} (table $t 1 10000000 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`),
  ownMemory: await wat(`(module (memory 1) (func (export "f") (result i32) i32.const 1))`),
  secondMemory: await wat(`(module ${MEM} (memory 1) (func (export "f") (result i32) i32.const 1))`),
  grow: await wat(growWat),
  rawGrow: await wat(growWat.replace(`"pages"`, `"pages2"`)), // other bytes: not the cached instrumented module
};
await loadEnclaveModule(await wat(`(module ${MEM} (func (export "warm") (result i32) (memory.grow (i32.const 0))))`));
const rss0 = rss();

const out: Record<string, unknown> = {};
// Four "64 KiB" enclaves declaring a 10-million-entry table each.
out.tableMin = [];
for (let i = 0; i < 4; i++) (out.tableMin as string[]).push((await attempt(`table-min-${i}`, modules.tableMin, "64KiB")).code);
// Four "128 KiB" enclaves (one page of memory and a one-entry table) growing their table, which
// declares no maximum, by 2.5 million entries each.
out.tableGrow = [];
for (let i = 0; i < 4; i++) {
  const r = await attempt(`table-grow-${i}`, modules.tableGrow, "128KiB");
  const results: number[] = [];
  for (let k = 0; r.e && k < 10; k++) results.push(r.e.grow!(250_000));
  (out.tableGrow as unknown[]).push({ code: r.code, results });
}
// A table whose declared maximum is 10 million entries, grown to it.
{
  const r = await attempt("table-grow-max", modules.tableGrowMax, "128KiB");
  const results: number[] = [];
  for (let k = 0; r.e && k < 10; k++) results.push(r.e.grow!(1_000_000));
  out.tableGrowMax = { code: r.code, results };
}
out.ownMemory = (await attempt("own-memory", modules.ownMemory, "64KiB")).code;
out.secondMemory = (await attempt("second-memory", modules.secondMemory, "64KiB")).code;
// memory.grow past what the platform's EPC has free (the manifest allows 16 MiB): instrumented and raw.
for (const [key, bytes, instrument] of [["grow", modules.grow, true], ["rawGrow", modules.rawGrow, false]] as const) {
  const r = await attempt(key.toLowerCase(), bytes, "16MiB", instrument);
  const results: number[] = [];
  const committed: number[] = [];
  for (let k = 0; r.e && k < 32; k++) {
    results.push(r.e.grow!(1));
    committed.push(epc.committed);
  }
  out[key] = { code: r.code, results, committed, pages: r.e ? r.e.pages!() : 0 };
}
out.rssGrowth = rss() - rss0;
// Released memories the runtime keeps for reuse are host memory no lease counts: 48 enclaves of
// distinct shapes (12.6 MiB to 15.5 MiB each), started and closed one after the other.
{
  const roomy = new EpcManager(16 * MiB);
  const before = rss();
  for (let k = 0; k < 48; k++) {
    const module = checkModule(await wat(`(module (import "selkie:sys" "memory" (memory ${201 + k})) (func (export "f") (result i32) i32.const 1))`));
    const e = new Enclave({ module, manifest: manifest(`shape-${k}`, "16MiB"), epc: (i, m, label) => roomy.admit(`${label}#${++seq}`, label, i, m) });
    e.start();
    e.close();
  }
  out.pooledGrowth = rss() - before;
  out.roomyCommitted = roomy.committed;
}
out.epcCommitted = epc.committed;
out.epcBudget = epc.budget;
process.stdout.write(JSON.stringify(out) + "\n");
for (const e of alive) e.close();
