#!/usr/bin/env node
// Builds the SQLite enclave: sqlite-wasm/build/sqlite3.wasm (see sqlite-wasm/README.md).
//
//   node tools/build-wasm.mjs [--force] [--no-cache] [--out DIR]
//   (--no-cache compiles sqlite3.c afresh instead of using the cached object: the reproducibility
//    test builds that way and compares bytes with the regular build)
//
// 1. checks the clang-19 / wasm32-wasi toolchain (installs it with apt-get when root on Debian);
// 2. takes SQLite's amalgamation from the npm package better-sqlite3@12.11.1 (`npm pack`, never
//    node_modules) into sqlite-wasm/.cache/ and verifies its pinned sha256;
// 3. compiles sqlite3.c once (object cached by source hash + flags + compiler version), compiles
//    our C, links a reactor module whose memory and every import belong to Selkie's namespaces;
// 4. checks the module against enclaves/ABI.md (imports, exports, signatures) and writes it
//    atomically. Skips everything when the output is up to date for the same inputs.
// Node built-ins only.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SCRIPT), "..");
const SRC_DIR = path.join(ROOT, "sqlite-wasm");
const CACHE_DIR = path.join(SRC_DIR, ".cache");
const SOURCES = ["selkie_vfs.c", "selkie_api.c"]; // link order is fixed: sqlite3.o, then these

const SQLITE_PKG = "better-sqlite3@12.11.1";
const SQLITE_C_SHA256 = "60d2f39a3726cd6b9021da6f4e868608d66fbb6528a9f513dc8ffcc640493422";
const SQLITE_H_SHA256 = "9e69a1353a4288450b0d5239ede11fc7f1f4c8e5eb07491fc8317eacb5b7de7e";

const CLANG = "clang-19";
const WASM_LD = "wasm-ld-19";
const WASI_LIBC = "/usr/lib/wasm32-wasi/libc.a";
const WASI_INCLUDE = "/usr/include/wasm32-wasi";
const BUILTINS_FALLBACK = "/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a";
const APT_PACKAGES = ["clang-19", "lld-19", "wasi-libc", "libclang-rt-19-dev-wasm32"];
const APT_INSTALL = `apt-get install -y --no-install-recommends ${APT_PACKAGES.join(" ")}`;

// Flags shared by every compile. -nostdlibinc: Debian's clang would otherwise search the host's
// /usr/include after the wasi headers, and a host header could leak into the wasm build.
const CFLAGS = ["--target=wasm32-wasi", "-O2", "-nostdlibinc", "-isystem", WASI_INCLUDE];

// SQLite compile-time options (why: sqlite-wasm/README.md).
const SQLITE_DEFINES = [
  "-DSQLITE_OS_OTHER=1",
  "-DSQLITE_THREADSAFE=0",
  "-DSQLITE_OMIT_LOAD_EXTENSION",
  "-DSQLITE_OMIT_WAL",
  "-DSQLITE_TEMP_STORE=3",
  "-DSQLITE_OMIT_DEPRECATED",
  "-DSQLITE_OMIT_SHARED_CACHE",
  "-DSQLITE_DQS=0",
  "-DSQLITE_ENABLE_MATH_FUNCTIONS",
  "-DSQLITE_OMIT_UTF16",
  "-DSQLITE_DEFAULT_CACHE_SIZE=-4000",
  "-DSQLITE_ENABLE_BATCH_ATOMIC_WRITE",
  "-DSQLITE_MAX_MMAP_SIZE=0",
  "-DSQLITE_DEFAULT_FOREIGN_KEYS=0",
  "-DSQLITE_ENABLE_API_ARMOR",
  "-DSQLITE_ENABLE_MEMORY_MANAGEMENT",
];

// Our own C is held to a higher standard than the amalgamation.
const OUR_CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror"];

const LDFLAGS = [
  "--target=wasm32-wasi",
  "-mexec-model=reactor",
  // Not -Wl,...: -Wl splits at commas, and the "module,name" form needs one.
  "-Xlinker", "--import-memory=selkie:sys,memory",
  "-Wl,--stack-first",
  "-Wl,-z,stack-size=1048576",
  "-Wl,--export=__stack_pointer",
  "-Wl,--strip-all",
];

// enclaves/ABI.md as signatures: params ":" results, with i = i32, I = i64, F = f64.
const OCALLS = {
  "selkie:sys": { epc_grow: "i:i", random: "ii:i", clock_ms: ":F", log: "iii:" },
  "selkie:fs": {
    open: "iiii:i", close: "i:i", read: "iiiF:i", write: "iiiF:i", truncate: "iF:i",
    sync: "ii:i", size: "i:F", lock: "ii:i", unlock: "ii:i", check_reserved: "i:i",
    file_control: "ii:i", device_characteristics: "i:i", delete: "iii:i", access: "iii:i",
  },
};
const ECALLS = {
  _initialize: ":",
  sk_malloc: "i:i", sk_free: "i:", sk_libversion: ":i",
  sk_open: "iiii:i", sk_close: "i:i", sk_errcode: "i:i", sk_errmsg: "i:i", sk_error_offset: "i:i",
  sk_exec: "iii:i", sk_prepare: "iiiiii:i", sk_finalize: "i:i", sk_reset: "i:i",
  sk_clear_bindings: "i:i", sk_step: "i:i",
  sk_bind_parameter_count: "i:i", sk_bind_parameter_name: "ii:i", sk_bind_null: "ii:i",
  sk_bind_int: "iiF:i", sk_bind_int64: "iiI:i", sk_bind_double: "iiF:i",
  sk_bind_text: "iiii:i", sk_bind_blob: "iiii:i",
  sk_column_count: "i:i", sk_column_name: "ii:i", sk_column_decltype: "ii:i", sk_column_type: "ii:i",
  sk_column_int: "ii:F", sk_column_int64: "ii:I", sk_column_double: "ii:F", sk_column_text: "ii:i",
  sk_column_blob: "ii:i", sk_column_bytes: "ii:i", sk_stmt_readonly: "i:i", sk_stmt_status: "iii:i", sk_run_info: "ii:",
  sk_changes: "i:F", sk_total_changes: "i:F", sk_last_insert_rowid: "i:I", sk_get_autocommit: "i:i",
  sk_memory_used: ":F", sk_memory_highwater: "i:F", sk_release_memory: "i:i",
  sk_set_deadline: "iF:i", sk_deadline_hit: ":i", sk_set_scope: "ii:i", sk_denied: ":i",
};
const GLOBAL_EXPORTS = ["__stack_pointer"];

// ---------------------------------------------------------------------------------------------

const say = (msg) => console.log(`build-wasm: ${msg}`);

class BuildError extends Error {}
const fail = (msg) => {
  throw new BuildError(msg);
};

/** Hides URLs and host names in text we pass on from other tools (npm, apt). */
const redact = (text) =>
  String(text)
    .replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, "<url>")
    .replace(/\b(?:[a-z0-9-]+\.)+(?:org|com|net|io|dev)\b/gi, "<host>");

const lastLines = (text, n = 15) => redact(text).trim().split("\n").slice(-n).join("\n");

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
}

function runOrFail(what, cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  if (r.error) fail(`${what}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`${what} failed (${cmd} exited ${r.status ?? r.signal}):\n${lastLines(`${r.stdout}\n${r.stderr}`, 40)}`);
  }
  return r;
}

const sha256 = (data) => createHash("sha256").update(data).digest("hex");
const sha256File = (file) => sha256(fs.readFileSync(file));
const rel = (p) => path.relative(process.cwd(), p) || ".";
const seconds = (t0) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** Writes `data` to `file` through a temporary file in the same folder and a rename. */
function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

// ---- toolchain ------------------------------------------------------------------------------

function firstLine(r) {
  return r.error || r.status !== 0 ? undefined : r.stdout.split("\n")[0].trim();
}

function probeToolchain() {
  const clang = firstLine(run(CLANG, ["--version"]));
  const lld = firstLine(run(WASM_LD, ["--version"]));
  let builtins = BUILTINS_FALLBACK;
  if (clang) {
    const r = run(CLANG, ["--target=wasm32-wasi", "--rtlib=compiler-rt", "-print-libgcc-file-name"]);
    if (!r.error && r.status === 0 && r.stdout.trim()) builtins = r.stdout.trim();
  }
  const missing = [];
  if (!clang) missing.push(`${CLANG} (package clang-19)`);
  if (!lld) missing.push(`${WASM_LD} (package lld-19)`);
  if (!fs.existsSync(WASI_LIBC)) missing.push(`${WASI_LIBC} (package wasi-libc)`);
  if (!fs.existsSync(builtins)) missing.push(`${builtins} (package libclang-rt-19-dev-wasm32)`);
  return { clang, lld, missing };
}

function aptGet(args) {
  say(`running: apt-get ${args.join(" ")}`);
  const r = run("apt-get", args, { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (r.error || r.status !== 0) {
    fail(`apt-get ${args[0]} failed:\n${lastLines(`${r.stdout ?? ""}\n${r.stderr ?? r.error?.message ?? ""}`)}`);
  }
}

function ensureToolchain() {
  let tc = probeToolchain();
  if (tc.missing.length === 0) return tc;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot || !fs.existsSync("/etc/debian_version")) {
    fail(
      `the wasm toolchain is missing: ${tc.missing.join(", ")}.\n` +
        `It needs Debian 12 (bookworm) or later. Install it as root (or with sudo):\n` +
        `  apt-get update && ${APT_INSTALL}\n` +
        `then run this build again.`,
    );
  }
  say(`toolchain missing (${tc.missing.join(", ")}); installing it`);
  aptGet(["update"]);
  aptGet(APT_INSTALL.split(" ").slice(1));
  tc = probeToolchain();
  if (tc.missing.length) fail(`still missing after apt-get install: ${tc.missing.join(", ")} (Debian 12 or later is needed)`);
  return tc;
}

// ---- SQLite amalgamation --------------------------------------------------------------------

function amalgamationOk() {
  const c = path.join(CACHE_DIR, "sqlite3.c");
  const h = path.join(CACHE_DIR, "sqlite3.h");
  return fs.existsSync(c) && fs.existsSync(h) && sha256File(c) === SQLITE_C_SHA256 && sha256File(h) === SQLITE_H_SHA256;
}

function ensureAmalgamation() {
  if (amalgamationOk()) return;
  say(`fetching SQLite's amalgamation: npm pack ${SQLITE_PKG}`);
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(CACHE_DIR, "fetch-"));
  try {
    // npm's own output is not shown (it can name the registry); only its errors, redacted.
    runOrFail("npm pack", "npm", ["pack", SQLITE_PKG, "--pack-destination", tmp, "--silent"], { cwd: tmp });
    const tgz = fs.readdirSync(tmp).find((f) => f.endsWith(".tgz"));
    if (!tgz) fail("npm pack produced no tarball");
    const members = ["package/deps/sqlite3/sqlite3.c", "package/deps/sqlite3/sqlite3.h"];
    runOrFail("extracting the amalgamation", "tar", ["-xzf", tgz, ...members], { cwd: tmp });
    const c = path.join(tmp, members[0]);
    const h = path.join(tmp, members[1]);
    for (const [file, want] of [[c, SQLITE_C_SHA256], [h, SQLITE_H_SHA256]]) {
      const got = sha256File(file);
      if (got !== want) {
        fail(`${path.basename(file)} from ${SQLITE_PKG} has sha256 ${got}, expected ${want}: refusing to build`);
      }
    }
    fs.renameSync(h, path.join(CACHE_DIR, "sqlite3.h"));
    fs.renameSync(c, path.join(CACHE_DIR, "sqlite3.c"));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  say("amalgamation verified (sha256 pinned)");
}

// ---- checking the module against ABI.md -----------------------------------------------------

/** Reads the function signatures of a module's imports and exports ("params:results"). */
function signatures(bytes) {
  let pos = 8;
  const u8 = () => bytes[pos++];
  const leb = () => {
    let result = 0, shift = 0, b;
    do {
      b = u8();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return result;
  };
  const name = () => {
    const n = leb();
    const s = Buffer.from(bytes.subarray(pos, pos + n)).toString("utf8");
    pos += n;
    return s;
  };
  const valtype = { 0x7f: "i", 0x7e: "I", 0x7c: "F", 0x7d: "f" };
  const types = [];
  const funcTypes = []; // type of each function index (imports first)
  const imports = {};
  const exports = {};
  let memoryMin;
  while (pos < bytes.length) {
    const id = u8();
    const size = leb();
    const end = pos + size;
    if (id === 1) {
      for (let n = leb(); n > 0; n--) {
        if (u8() !== 0x60) fail("unexpected type form in the type section");
        const params = Array.from({ length: leb() }, () => valtype[u8()] ?? "?").join("");
        const results = Array.from({ length: leb() }, () => valtype[u8()] ?? "?").join("");
        types.push(`${params}:${results}`);
      }
    } else if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        const key = `${name()}.${name()}`;
        const kind = u8();
        if (kind === 0) {
          funcTypes.push(types[leb()]);
          imports[key] = funcTypes.at(-1);
        } else if (kind === 1) {
          u8();
          if (u8() & 1) leb();
          leb();
        } else if (kind === 2) {
          const flags = u8();
          memoryMin = leb();
          if (flags & 1) leb();
        } else if (kind === 3) {
          u8();
          u8();
        }
      }
    } else if (id === 3) {
      for (let n = leb(); n > 0; n--) funcTypes.push(types[leb()]);
    } else if (id === 7) {
      for (let n = leb(); n > 0; n--) {
        const key = name();
        const kind = u8();
        const index = leb();
        if (kind === 0) exports[key] = funcTypes[index];
      }
    }
    pos = end;
  }
  return { imports, exports, memoryMin };
}

/** Refuses a module that the runtime's loader would refuse, or that misses an ecall. */
function checkModule(bytes) {
  const mod = new WebAssembly.Module(bytes);
  const sigs = signatures(bytes);
  const problems = [];
  const imports = WebAssembly.Module.imports(mod);
  const exports = WebAssembly.Module.exports(mod);
  for (const { module, name, kind } of imports) {
    const key = `${module}.${name}`;
    if (kind === "memory") {
      if (key !== "selkie:sys.memory") problems.push(`memory imported as ${key}, not selkie:sys.memory`);
    } else if (kind !== "function" || !OCALLS[module]?.[name]) {
      problems.push(`forbidden import ${key} (${kind})`);
    } else if (sigs.imports[key] !== OCALLS[module][name]) {
      problems.push(`import ${key} has type ${sigs.imports[key]}, ABI says ${OCALLS[module][name]}`);
    }
  }
  if (!imports.some((i) => i.kind === "memory")) problems.push("memory is not imported");
  if (!imports.some((i) => i.module === "selkie:sys" && i.name === "epc_grow")) {
    problems.push("no selkie:sys.epc_grow import: the sbrk override was not linked");
  }
  const exported = new Map(exports.map((e) => [e.name, e.kind]));
  for (const [name, sig] of Object.entries(ECALLS)) {
    if (exported.get(name) !== "function") problems.push(`missing export ${name}`);
    else if (sigs.exports[name] !== sig) problems.push(`export ${name} has type ${sigs.exports[name]}, ABI says ${sig}`);
  }
  for (const [name, kind] of exported) {
    if (ECALLS[name] || (kind === "global" && GLOBAL_EXPORTS.includes(name))) continue;
    problems.push(`unexpected export ${name} (${kind})`);
  }
  for (const name of GLOBAL_EXPORTS) if (exported.get(name) !== "global") problems.push(`missing export ${name}`);
  if (problems.length) fail(`the linked module breaks enclaves/ABI.md:\n  ${problems.join("\n  ")}`);
  return { imports, exports, memoryMin: sigs.memoryMin };
}

// ---- build ----------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { force: false, noCache: false, outDir: path.join(SRC_DIR, "build") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--force") opts.force = true;
    else if (a === "--no-cache") opts.noCache = opts.force = true;
    else if (a === "--out" && argv[i + 1]) opts.outDir = path.resolve(argv[++i]);
    else if (a.startsWith("--out=")) opts.outDir = path.resolve(a.slice(6));
    else if (a === "--help" || a === "-h") {
      console.log("usage: node tools/build-wasm.mjs [--force] [--no-cache] [--out DIR]");
      process.exit(0);
    } else fail(`unknown argument ${a} (usage: node tools/build-wasm.mjs [--force] [--no-cache] [--out DIR])`);
  }
  return opts;
}

function compile(what, src, obj, flags) {
  runOrFail(`compiling ${what}`, CLANG, [...flags, "-c", src, "-o", obj], { cwd: ROOT });
}

function main() {
  const t0 = performance.now();
  const opts = parseArgs(process.argv.slice(2));
  const out = path.join(opts.outDir, "sqlite3.wasm");
  const stampFile = path.join(opts.outDir, "sqlite3.wasm.inputs");

  const tc = ensureToolchain();
  // Paths inside the checkout are written relative to it, so the build does not depend on where
  // the checkout lives (nothing path-like survives --strip-all anyway).
  const prefixMap = [`-ffile-prefix-map=${ROOT}${path.sep}=`, `-ffile-prefix-map=${ROOT}=.`];
  const compiler = { clang: tc.clang, lld: tc.lld };

  // Everything the output depends on. The script itself is included: it holds the flags and checks.
  const ourFiles = [...SOURCES, ...fs.readdirSync(SRC_DIR).filter((f) => f.endsWith(".h")).sort()];
  const inputs = {
    sqlite: { c: SQLITE_C_SHA256, h: SQLITE_H_SHA256 },
    sources: Object.fromEntries(ourFiles.map((f) => [f, sha256File(path.join(SRC_DIR, f))])),
    script: sha256File(SCRIPT),
    flags: { CFLAGS, SQLITE_DEFINES, OUR_CFLAGS, LDFLAGS },
    compiler,
  };
  const key = sha256(JSON.stringify(inputs));

  if (!opts.force && fs.existsSync(out) && fs.existsSync(stampFile)) {
    try {
      const stamp = JSON.parse(fs.readFileSync(stampFile, "utf8"));
      const bytes = fs.readFileSync(out);
      if (stamp.key === key && stamp.sha256 === sha256(bytes)) {
        say(`${rel(out)} is up to date (${bytes.length} bytes, sha256 ${stamp.sha256})`);
        return;
      }
    } catch {
      // unreadable stamp: rebuild
    }
  }
  say(`toolchain: ${tc.clang}`);
  ensureAmalgamation();

  // sqlite3.c: compiled once per (source, flags, compiler).
  const objDir = path.join(CACHE_DIR, "obj");
  fs.mkdirSync(objDir, { recursive: true });
  const sqliteFlags = [...CFLAGS, ...SQLITE_DEFINES];
  const objKey = sha256(JSON.stringify({ sqlite: inputs.sqlite, sqliteFlags, compiler })).slice(0, 24);
  const sqliteObj = opts.noCache ? path.join(fs.mkdtempSync(path.join(CACHE_DIR, "nocache-")), "sqlite3.o") : path.join(objDir, `sqlite3-${objKey}.o`);
  if (!opts.noCache && fs.existsSync(sqliteObj)) {
    say("sqlite3.c: cached object");
  } else {
    const t = performance.now();
    say("compiling sqlite3.c (about 20-30 s)...");
    const tmpObj = `${sqliteObj}.${process.pid}.tmp`;
    compile("sqlite3.c", path.relative(ROOT, path.join(CACHE_DIR, "sqlite3.c")), tmpObj, [...sqliteFlags, ...prefixMap]);
    fs.renameSync(tmpObj, sqliteObj);
    say(`sqlite3.c compiled in ${seconds(t)}`);
  }

  const work = fs.mkdtempSync(path.join(CACHE_DIR, "build-"));
  try {
    const objs = [sqliteObj];
    for (const src of SOURCES) {
      const obj = path.join(work, src.replace(/\.c$/, ".o"));
      const flags = [...sqliteFlags, ...OUR_CFLAGS, "-I", path.relative(ROOT, CACHE_DIR), ...prefixMap];
      compile(src, path.relative(ROOT, path.join(SRC_DIR, src)), obj, flags);
      objs.push(obj);
    }
    say(`compiled ${SOURCES.join(", ")}; linking`);
    fs.mkdirSync(opts.outDir, { recursive: true });
    const tmpOut = path.join(work, "sqlite3.wasm");
    runOrFail("linking", CLANG, [...LDFLAGS, ...objs.map((o) => path.relative(ROOT, o)), "-o", tmpOut], { cwd: ROOT });

    const bytes = fs.readFileSync(tmpOut);
    const { imports, memoryMin } = checkModule(bytes);
    const hash = sha256(bytes);
    writeAtomic(out, bytes);
    writeAtomic(stampFile, `${JSON.stringify({ key, sha256: hash, inputs }, null, 2)}\n`);
    const fns = imports.filter((i) => i.kind === "function").length;
    say(`ABI check ok: memory selkie:sys.memory (min ${memoryMin} pages), ${fns} ocall imports, ${Object.keys(ECALLS).length} exports`);
    say(`wrote ${rel(out)}: ${bytes.length} bytes (${(bytes.length / 1048576).toFixed(2)} MiB), sha256 ${hash}, in ${seconds(t0)}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    if (opts.noCache) fs.rmSync(path.dirname(sqliteObj), { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  if (!(e instanceof BuildError)) throw e;
  console.error(`build-wasm: error: ${e.message}`);
  process.exit(1);
}
