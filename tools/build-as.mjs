#!/usr/bin/env node
// Builds the AssemblyScript example enclave: enclaves/counter-as/build/counter.wasm
// (see enclaves/counter-as/README.md).
//
//   node tools/build-as.mjs [--force]
//
// 1. compiles enclaves/counter-as/assembly/index.ts with the pinned assemblyscript devDependency
//    (its JS API, no child process), as a reactor whose memory is imported;
// 2. the transform enclaves/counter-as/selkie-memory.mjs renames asc's fixed "env" "memory" import
//    to "selkie:sys" "memory" inside the compiler, so the module asc emits is already the enclave;
// 3. checks the module against enclaves/ABI.md (imports, exports) and writes it atomically.
// Skips everything when the output is up to date for the same inputs (sources, flags, compiler
// version, this script).

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SCRIPT), "..");
const SRC_DIR = path.join(ROOT, "enclaves", "counter-as");
const OUT_DIR = path.join(SRC_DIR, "build");
const OUT = path.join(OUT_DIR, "counter.wasm");
const STAMP = path.join(OUT_DIR, "counter.wasm.inputs");
const ENTRY = "assembly/index.ts"; // relative to SRC_DIR (asc's --baseDir)
const TRANSFORM = "selkie-memory.mjs";

// Why each flag:
//  --importMemory --noExportMemory : the runtime owns and caps the memory (ABI §1);
//  --exportStart _initialize       : no wasm start section (AssemblyScript's would run code, which
//                                    the loader refuses); the runtime calls _initialize once, and
//                                    never again on restore;
//  --use abort=                    : no env.abort import (not an ocall); a failed assertion or a
//                                    denied memory.grow becomes a trap, which the runtime handles;
//  --runtime incremental           : the default GC, whose state lives in mutable globals;
//  -O --noAssert                   : a release build.
const FLAGS = [
  ENTRY,
  "--baseDir", SRC_DIR,
  "--transform", `./${TRANSFORM}`,
  "-O", "--noAssert",
  "--runtime", "incremental",
  "--importMemory", "--noExportMemory",
  "--exportStart", "_initialize",
  "--use", "abort=",
  "--noColors",
];

// ABI.md §1 and enclaves/counter-as/README.md: the exports the example promises.
const ECALLS = ["_initialize", "add", "push", "sum", "count", "calls", "reset"];

const say = (msg) => console.log(`build-as: ${msg}`);
class BuildError extends Error {}
const fail = (msg) => {
  throw new BuildError(msg);
};
const sha256 = (data) => createHash("sha256").update(data).digest("hex");
const rel = (p) => path.relative(process.cwd(), p) || ".";

function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function listSources(dir, base = dir, out = []) {
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (name === "build" || name === "node_modules") continue;
    if (fs.statSync(p).isDirectory()) listSources(p, base, out);
    else if (/\.(ts|mjs|json)$/.test(name)) out.push(path.relative(base, p));
  }
  return out;
}

/** Refuses a module that the runtime's loader would refuse, or that misses an ecall. */
function checkModule(bytes) {
  const mod = new WebAssembly.Module(bytes);
  const problems = [];
  const imports = WebAssembly.Module.imports(mod);
  for (const { module, name, kind } of imports) {
    if (kind !== "memory" || module !== "selkie:sys" || name !== "memory") problems.push(`unexpected import ${module}.${name} (${kind})`);
  }
  if (imports.length !== 1) problems.push(`expected exactly one import (selkie:sys.memory), found ${imports.length}`);
  const exports = new Map(WebAssembly.Module.exports(mod).map((e) => [e.name, e.kind]));
  for (const name of ECALLS) if (exports.get(name) !== "function") problems.push(`missing export ${name}`);
  for (const [name, kind] of exports) if (!ECALLS.includes(name)) problems.push(`unexpected export ${name} (${kind})`);
  if (problems.length) fail(`the compiled module breaks enclaves/ABI.md:\n  ${problems.join("\n  ")}`);
}

async function main() {
  const t0 = performance.now();
  const force = process.argv.includes("--force");
  for (const a of process.argv.slice(2)) if (a !== "--force") fail(`unknown argument ${a} (usage: node tools/build-as.mjs [--force])`);

  let asc;
  try {
    asc = (await import("assemblyscript/asc")).default;
  } catch (e) {
    fail(`cannot load the AssemblyScript compiler (devDependency assemblyscript): ${e.message}; run npm ci first`);
  }
  const sources = listSources(SRC_DIR);
  const inputs = {
    sources: Object.fromEntries(sources.map((f) => [f, sha256(fs.readFileSync(path.join(SRC_DIR, f)))])),
    script: sha256(fs.readFileSync(SCRIPT)),
    flags: FLAGS.map((f) => (f === SRC_DIR ? "<enclave dir>" : f)),
    compiler: `assemblyscript ${asc.version}`,
  };
  const key = sha256(JSON.stringify(inputs));
  if (!force && fs.existsSync(OUT) && fs.existsSync(STAMP)) {
    try {
      const stamp = JSON.parse(fs.readFileSync(STAMP, "utf8"));
      const bytes = fs.readFileSync(OUT);
      if (stamp.key === key && stamp.sha256 === sha256(bytes)) {
        say(`${rel(OUT)} is up to date (${bytes.length} bytes, sha256 ${stamp.sha256})`);
        return;
      }
    } catch {
      // unreadable stamp: rebuild
    }
  }

  const outputs = new Map();
  const log = [];
  const stream = { write: (s) => (log.push(String(s)), true) };
  const { error } = await asc.main([...FLAGS, "--outFile", "counter.wasm"], {
    stdout: stream,
    stderr: stream,
    // Keep the output in memory: it is checked before it is written anywhere.
    writeFile: (name, contents) => void outputs.set(name, contents),
  });
  if (error) fail(`asc failed: ${error.message}\n${log.join("").trim()}`);
  const bytes = outputs.get("counter.wasm");
  if (!(bytes instanceof Uint8Array)) fail(`asc produced no module (outputs: ${[...outputs.keys()].join(", ") || "none"})`);
  checkModule(bytes);
  const hash = sha256(bytes);
  fs.mkdirSync(OUT_DIR, { recursive: true });
  writeAtomic(OUT, bytes);
  writeAtomic(STAMP, `${JSON.stringify({ key, sha256: hash, inputs }, null, 2)}\n`);
  say(`ABI check ok: imports only selkie:sys.memory, exports ${ECALLS.join(", ")}`);
  say(`wrote ${rel(OUT)}: ${bytes.length} bytes, sha256 ${hash}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

try {
  await main();
} catch (e) {
  if (!(e instanceof BuildError)) throw e;
  console.error(`build-as: error: ${e.message}`);
  process.exit(1);
}
