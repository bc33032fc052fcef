/**
 * Finds, checks and describes the SQLite enclave: the module built by `npm run build:wasm` and its
 * manifest in enclaves/sqlite/manifest.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { EnclaveLoadError } from "../errors.js";
import { checkModule, type CheckedModule } from "../enclave/loader.js";
import { parseManifest, parseSize, type Manifest } from "../enclave/manifest.js";

/** Ecalls the SQL layer uses (enclaves/ABI.md §3). */
export const SQLITE_ECALLS = [
  "sk_malloc", "sk_free", "sk_libversion", "sk_open", "sk_close", "sk_errcode", "sk_errmsg", "sk_error_offset",
  "sk_exec", "sk_prepare", "sk_finalize", "sk_reset", "sk_clear_bindings", "sk_step", "sk_bind_parameter_count",
  "sk_bind_parameter_name", "sk_bind_null", "sk_bind_int", "sk_bind_int64", "sk_bind_double", "sk_bind_text",
  "sk_bind_blob", "sk_column_count", "sk_column_name", "sk_column_decltype", "sk_column_type", "sk_column_int",
  "sk_column_int64", "sk_column_double", "sk_column_text", "sk_column_blob", "sk_column_bytes", "sk_stmt_readonly", "sk_stmt_status",
  "sk_changes", "sk_total_changes", "sk_last_insert_rowid", "sk_run_info", "sk_get_autocommit", "sk_memory_used",
  "sk_memory_highwater", "sk_release_memory", "sk_set_deadline", "sk_deadline_hit", "sk_set_scope", "sk_denied",
] as const;

/** The package root: the folder holding selkie's package.json (works from runtime/ and dist/runtime/). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, "utf8")).name === "selkie") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find selkie's package.json above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export interface SqliteEnclaveImage {
  module: CheckedModule;
  manifest: Manifest;
  modulePath: string;
}

let cached: { key: string; image: SqliteEnclaveImage } | undefined;

/**
 * Loads the SQLite enclave; `epc` overrides the manifest's EPC size (runtime policy: it does not
 * change MRENCLAVE). `modulePath` and `version` (the ISVSVN) stand for another build of the enclave
 * (tests of upgrades and downgrades).
 */
export function loadSqliteEnclave(opts: { epc?: number | string; modulePath?: string; version?: number } = {}): SqliteEnclaveImage {
  const root = packageRoot();
  const manifestPath = path.join(root, "enclaves", "sqlite", "manifest.json");
  const raw = JSON.parse(fs.readFileSync(manifestPath, "utf8")) as Record<string, unknown>;
  if (opts.epc !== undefined) raw.epc = typeof opts.epc === "number" ? opts.epc : parseSize(opts.epc, "epc");
  if (opts.version !== undefined) raw.version = opts.version;
  const manifest = parseManifest(raw, manifestPath);
  const modulePath = opts.modulePath ?? path.resolve(path.dirname(manifestPath), manifest.module ?? "sqlite3.wasm");
  const key = `${modulePath}|${manifest.epc}|${manifest.version}`;
  if (cached?.key === key) return cached.image;
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(modulePath);
  } catch {
    throw new EnclaveLoadError("ENCLAVE_MODULE_MISSING", `the SQLite enclave module ${modulePath} is missing; build it with: npm run build:wasm`);
  }
  const image = { module: checkModule(bytes, SQLITE_ECALLS), manifest, modulePath };
  cached = { key, image };
  return image;
}

