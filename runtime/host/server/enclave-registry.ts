/**
 * UNTRUSTED (server). Custom enclaves a server hosts: `<dir>/enclaves/NAME/` holds `module.wasm`,
 * `manifest.json` and `signature.json` (the SIGSTRUCT, enclaves/ABI.md §6), as uploaded.
 *
 * An upload is verified before anything is stored: the module against the ABI (loadEnclaveModule:
 * forbidden imports are refused, naming them), the manifest (strict) and that it fits the module,
 * its EPC cap against the platform's budget, and the signature over name, version and the MRENCLAVE
 * computed here. Every load from disk (first use after a restart) verifies again.
 *
 * Each enclave runs as one instance, started on its first ecall and admitted through the platform's
 * EPC manager (503 EPC_ADMISSION_REFUSED when the budget is full). A trap drops the instance and
 * starts a fresh one (Enclave invariant 2); the call answers 500 ENCLAVE_TRAP. Permissions are the
 * manifest's requests that the operator granted (`selkie serve --allow-…`); a denied ocall fails
 * inside the enclave and the response names the grant that would allow it.
 *
 * EPC paging (runtime/enclave/snapshot/pager.ts): an instance between ecalls is idle, so under EPC
 * pressure the pager may hibernate it (memory and globals sealed into a volatile image, EPC released;
 * info().state "hibernated"); the next ecall resumes it exactly where it was. A wake the EPC cannot
 * hold is refused (503 EPC_ADMISSION_REFUSED) and the image kept; an image that fails verification
 * loses the instance's state: the call fails with the image's code and a fresh instance starts.
 *
 * Restarts: a graceful shutdown (closeAll) seals each instance's state, running or hibernated, into a
 * durable image in `NAME/state/` (key sealed to MRENCLAVE, bound to a platform counter). The first
 * ecall after the restart resumes from it and destroys that lineage (counter and files) before the
 * ecall runs, so the image is used at most once: a copy of the folder restored later is refused as a
 * rollback (IMAGE_ROLLBACK), never a second run of the same state. A crash (kill -9) leaves no image
 * of the state since the last start (nor does a crash while the shutdown was writing one); the
 * enclave then starts afresh, as it always did.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import type { Platform } from "../../platform/platform.js";
import { Enclave } from "../../enclave/enclave.js";
import { checkManifestFits, loadEnclaveModule, measure, type CheckedModule } from "../../enclave/loader.js";
import { formatBytes, parseManifest, type Manifest } from "../../enclave/manifest.js";
import { verifyEnclaveSignature } from "../../enclave/sigstruct.js";
import { exportedFunctionTypes, parseWasm, type FuncType } from "../../enclave/wasm-sections.js";
import { WASM_PAGE, type Permission } from "../../enclave/abi.js";
import { EnclaveFault, EnclaveLoadError, EpcError, ManifestError, SelkieError } from "../../errors.js";
import { enclaveIdentity } from "../../enclave/identity.js";
import { ImageStore, type ImageBinding, type SnapshotState } from "../../enclave/snapshot/image-store.js";
import { EpcPager, nextUse, type Pageable } from "../../enclave/snapshot/pager.js";
import { SigstructError } from "../../enclave/sigstruct.js";
import { badRequest, HttpError, notFound } from "./errors.js";
import { EPC_WAIT_MS, withEpcRoom } from "./epc-room.js";

export const ENCLAVE_NAME_RE = /^[a-z0-9._-]{1,64}$/;

export function checkEnclaveName(name: string): string {
  if (!ENCLAVE_NAME_RE.test(name) || name === "." || name === ".." || name.startsWith(".")) {
    throw badRequest("BAD_ENCLAVE_NAME", `enclave names are 1-64 characters of a-z 0-9 . _ - (not starting with '.'); got ${JSON.stringify(name.slice(0, 80))}`);
  }
  return name;
}

interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface EnclaveRegistryOptions {
  dir: string;
  platform: Platform;
  /** What the operator grants (deny by default). */
  grants: ReadonlySet<Permission>;
  logger: Log;
}

export type EcallValue = number | string;

export interface EcallResult {
  /** The single result (undefined for none), i64 as a decimal string. */
  result: EcallValue | null;
  results: EcallValue[];
  /** A permission denied during the call, naming the grant that would allow it. */
  denied?: string;
}

class Hosted {
  calls = 0;
  traps = 0;
  hibernations = 0;
  wakes = 0;
  /** This instance continues the state saved at the last graceful shutdown. */
  restored = false;
  readonly enclave: Enclave;
  readonly #pager: EpcPager;
  #images: ImageStore | undefined;
  readonly #platform: Platform;
  /** Where a graceful shutdown leaves the state for the next start (see the header). */
  readonly #stateDir: string;
  readonly #log: Log;
  #lastUse = 0;
  #inCall = false;
  readonly pageable: Pageable;
  constructor(
    readonly name: string,
    readonly manifest: Manifest,
    readonly module: CheckedModule,
    readonly mrsigner: Buffer,
    readonly publicKey: Buffer,
    signature: unknown,
    readonly ecalls: Map<string, FuncType>,
    readonly uploadedAt: string,
    opts: EnclaveRegistryOptions,
    seq: () => number,
    dir: string,
  ) {
    this.enclave = new Enclave({
      module,
      manifest,
      signature, // verified again by the loader's EINIT (einit.ts): MRSIGNER comes only from there
      grants: opts.grants,
      epc: (initial, max, label) => opts.platform.epc.admit(`enclave:${label}#${seq()}`, `enclave:${label}`, initial, max),
      onLog: (code, message) => opts.logger.info({ event: "enclave_log", enclave: name, code }, message),
    });
    this.#platform = opts.platform;
    this.#log = opts.logger;
    this.#stateDir = path.join(dir, name, STATE_DIR);
    this.#pager = EpcPager.for(opts.platform.epc, path.join(opts.platform.dir, "paging"));
    const self = this;
    this.pageable = {
      pagingLabel: `enclave:${name}`,
      get lastUse() {
        return self.#lastUse;
      },
      get resident() {
        return self.enclave.state === "running";
      },
      get residentBytes() {
        return self.enclave.committedBytes;
      },
      canHibernate: () => this.enclave.state === "running" && !this.enclave.busy && !this.#inCall,
      hibernate: () => this.#hibernate(),
    };
  }

  #binding(): ImageBinding {
    const id = enclaveIdentity(this.enclave);
    return { mrenclave: id.mrenclave, mrsigner: id.mrsigner, isvProdId: id.isvProdId, isvSvn: id.isvSvn, platformId: this.#platform.platformId, instance: `enclave:${this.name}` };
  }

  #durableState(create: boolean): ImageStore {
    return ImageStore.openDurable(this.#stateDir, { services: this.#platform.servicesFor(enclaveIdentity(this.enclave)), binding: this.#binding(), maxChain: 1, create });
  }

  #hibernate(): void {
    const cap = this.enclave.capture();
    if (!this.#images) {
      this.#images = ImageStore.volatile(this.#pager.folderFor(`enclave-${this.name}-${randomBytes(8).toString("hex")}`), { binding: this.#binding(), maxChain: 1 });
    }
    this.#images.write({ memory: cap.memory, globals: cap.globals, runtime: { calls: this.calls } });
    this.enclave.suspend();
    this.hibernations++;
  }

  /** Makes the instance runnable: first start, resume from hibernation, or restart after a failure. */
  ready(): void {
    const e = this.enclave;
    this.#lastUse = nextUse();
    if (e.state === "running") return;
    this.#pager.register(this.pageable); // from its first start on (idempotent)
    if (e.state === "suspended" && this.#images) {
      const t0 = performance.now();
      const images = this.#images;
      try {
        e.resume((alloc) => images.read(alloc));
      } catch (err) {
        this.#pager.recordWake(performance.now() - t0, false, this.pageable);
        if (err instanceof EpcError && e.state === "suspended") throw err; // image kept: retry later
        this.#images = undefined;
        images.destroy();
        throw err; // the next call starts a fresh instance
      }
      this.wakes++;
      this.#pager.recordWake(performance.now() - t0, true, this.pageable);
      return;
    }
    if (e.state === "created" && fs.existsSync(this.#stateDir)) {
      this.#resumeSaved();
      return;
    }
    e.start(); // first use, or a restart that failed earlier: EPC admission
    this.#pager.recordWake(0, true, this.pageable); // resident again: the pager may consider it
  }

  /**
   * Resumes the state a graceful shutdown saved, then destroys its lineage before any ecall runs.
   * An EPC refusal keeps the image (the next call retries); an image that does not verify is
   * logged, removed and reported to this call; the next call starts a fresh instance.
   */
  #resumeSaved(): void {
    const e = this.enclave;
    let store: ImageStore | undefined;
    try {
      store = this.#durableState(false);
      const images = store;
      let runtime: Record<string, unknown> = {};
      e.resume((alloc) => {
        const r = images.read(alloc);
        runtime = r.runtime;
        return r;
      });
      store.destroy(); // used once: a copy of the folder is a rollback from now on
      if (typeof runtime.calls === "number" && Number.isSafeInteger(runtime.calls) && runtime.calls >= 0) this.calls = runtime.calls;
      this.restored = true;
      this.#pager.recordWake(0, true, this.pageable);
      this.#log.info({ event: "enclave_state_restored", enclave: this.name, bytes: e.committedBytes }, "resumed the state saved at the last shutdown");
    } catch (err) {
      if (err instanceof EpcError && e.state === "created") throw err;
      if (err instanceof SelkieError && err.code === "IMAGE_MISSING" && e.state === "created") {
        // No published image (a crash while the last shutdown was writing it): nothing was saved.
        fs.rmSync(this.#stateDir, { recursive: true, force: true });
        e.start();
        this.#pager.recordWake(0, true, this.pageable);
        return;
      }
      if (e.state === "running") e.fault(); // resumed but its image could not be retired: never serve it
      this.#log.warn({ event: "enclave_state_refused", enclave: this.name, code: (err as SelkieError).code, err: (err as Error).message }, "the saved state was refused and removed; the next call starts afresh");
      try {
        store?.destroy();
      } finally {
        fs.rmSync(this.#stateDir, { recursive: true, force: true });
      }
      throw err;
    }
  }

  /**
   * Graceful shutdown: seals the state of a running (idle) or hibernated instance into a durable
   * image for the next start. False when there is nothing to keep (never started, or faulted).
   */
  persist(): boolean {
    const e = this.enclave;
    let state: SnapshotState;
    if (e.state === "running" && !e.busy && !this.#inCall) {
      const cap = e.capture();
      state = { memory: cap.memory, globals: cap.globals, runtime: { calls: this.calls } };
    } else if (e.state === "suspended" && this.#images) {
      const r = this.#images.read();
      state = { memory: r.memory, globals: r.globals, runtime: r.runtime };
    } else {
      return false;
    }
    this.#durableState(true).write(state, { full: true });
    return true;
  }

  /** Destroys a saved state (its lineage and counter) without resuming it. */
  forgetSaved(): void {
    if (!fs.existsSync(this.#stateDir)) return;
    try {
      this.#durableState(false).destroy();
    } finally {
      fs.rmSync(this.#stateDir, { recursive: true, force: true });
    }
  }

  /** Runs an ecall with the instance marked busy (never hibernated mid-call). */
  call<T>(fn: () => T): T {
    this.#inCall = true;
    try {
      return fn();
    } finally {
      this.#inCall = false;
    }
  }

  close(): void {
    this.#pager.unregister(this.pageable);
    this.enclave.close();
    this.#images?.destroy();
    this.#images = undefined;
  }

  info(): Record<string, unknown> {
    const e = this.enclave;
    return {
      name: this.name,
      version: this.manifest.version,
      mrenclave: e.mrenclave.toString("hex"),
      mrsigner: this.mrsigner.toString("hex"),
      publicKey: this.publicKey.toString("base64"),
      moduleSha256: this.module.sha256.toString("hex"),
      moduleBytes: this.module.byteLength,
      epcBytes: this.manifest.epc,
      initialBytes: this.module.minPages * WASM_PAGE,
      committedBytes: e.committedBytes,
      permissions: this.manifest.permissions,
      granted: [...e.permissions],
      debug: this.manifest.debug,
      state: e.state === "suspended" ? "hibernated" : e.state,
      calls: this.calls,
      hibernations: this.hibernations,
      wakes: this.wakes,
      restored: this.restored,
      traps: this.traps,
      ecalls: [...this.ecalls].map(([n, t]) => ({ name: n, params: t.params, results: t.results })),
      uploadedAt: this.uploadedAt,
    };
  }
}

const FILES = { module: "module.wasm", manifest: "manifest.json", signature: "signature.json", meta: "uploaded.json" } as const;
const STATE_DIR = "state";

/** Turns verification refusals into 400s carrying their own code. */
function asBadRequest(e: unknown): never {
  if (e instanceof EnclaveLoadError || e instanceof ManifestError || e instanceof SigstructError) throw badRequest(e.code, e.message);
  throw e;
}

export class EnclaveRegistry {
  readonly dir: string;
  readonly #opts: EnclaveRegistryOptions;
  readonly #loaded = new Map<string, Hosted>();
  readonly #busy = new Set<string>();
  #seq = 0;

  constructor(opts: EnclaveRegistryOptions) {
    this.#opts = opts;
    this.dir = path.resolve(opts.dir);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  get grants(): ReadonlySet<Permission> {
    return this.#opts.grants;
  }

  exists(name: string): boolean {
    return fs.existsSync(path.join(this.dir, checkEnclaveName(name), FILES.manifest));
  }

  list(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((n) => ENCLAVE_NAME_RE.test(n) && !n.startsWith(".") && fs.existsSync(path.join(this.dir, n, FILES.manifest)))
      .sort();
  }

  hosted(): Hosted[] {
    return [...this.#loaded.values()];
  }

  /** Verifies module, manifest and signature; the verified enclave (not yet started). */
  async #verify(manifestRaw: unknown, bytes: Uint8Array, signatureRaw: unknown, uploadedAt: string): Promise<Hosted> {
    try {
      const manifest = parseManifest(manifestRaw, "manifest");
      const module = await loadEnclaveModule(bytes);
      checkManifestFits(module, manifest);
      const budget = this.#opts.platform.epc.budget;
      if (manifest.epc > budget) {
        throw badRequest(
          "ENCLAVE_EPC_EXCEEDS_BUDGET",
          `manifest "${manifest.name}" declares epc ${formatBytes(manifest.epc)}, more than this platform's whole EPC budget (${formatBytes(budget)}); lower epc`,
        );
      }
      const mrenclave = measure(module, manifest);
      const { mrsigner, publicKey } = verifyEnclaveSignature(signatureRaw, manifest, mrenclave);
      const ecalls = new Map([...exportedFunctionTypes(parseWasm(bytes))].filter(([n]) => n !== "_initialize" && !n.startsWith("__selkie_")));
      return new Hosted(manifest.name, manifest, module, mrsigner, publicKey, signatureRaw, ecalls, uploadedAt, this.#opts, () => ++this.#seq, this.dir);
    } catch (e) {
      asBadRequest(e);
    }
  }

  /** Verifies and stores an upload (409 ENCLAVE_EXISTS when the name is taken). */
  async upload(manifestRaw: unknown, bytes: Uint8Array, signatureRaw: unknown): Promise<Hosted> {
    const uploadedAt = new Date().toISOString();
    const h = await this.#verify(manifestRaw, bytes, signatureRaw, uploadedAt);
    const name = checkEnclaveName(h.name);
    if (this.#busy.has(name) || this.exists(name)) {
      throw new HttpError(409, "ENCLAVE_EXISTS", `enclave ${name} exists already; DELETE /v1/enclaves/${name} first to replace it`);
    }
    this.#busy.add(name);
    try {
      const tmp = path.join(this.dir, `.tmp-${name}-${randomBytes(6).toString("hex")}`);
      fs.mkdirSync(tmp, { mode: 0o700 });
      try {
        fs.writeFileSync(path.join(tmp, FILES.module), bytes);
        fs.writeFileSync(path.join(tmp, FILES.manifest), JSON.stringify(manifestRaw, null, 2));
        fs.writeFileSync(path.join(tmp, FILES.signature), JSON.stringify(signatureRaw, null, 2));
        fs.writeFileSync(path.join(tmp, FILES.meta), JSON.stringify({ uploadedAt }));
        fs.renameSync(tmp, path.join(this.dir, name));
      } catch (e) {
        fs.rmSync(tmp, { recursive: true, force: true });
        throw e;
      }
      this.#loaded.set(name, h);
      return h;
    } finally {
      this.#busy.delete(name);
    }
  }

  /** The enclave `name`, verified again from disk on first use (404 when absent). */
  async get(name: string): Promise<Hosted> {
    checkEnclaveName(name);
    const hit = this.#loaded.get(name);
    if (hit) return hit;
    if (!this.exists(name)) throw notFound("ENCLAVE_NOT_FOUND", `no enclave named ${name}; upload it with POST /v1/enclaves`);
    const d = path.join(this.dir, name);
    const read = (f: string): unknown => JSON.parse(fs.readFileSync(path.join(d, f), "utf8"));
    let uploadedAt = "";
    try {
      uploadedAt = String((read(FILES.meta) as { uploadedAt?: string }).uploadedAt ?? "");
    } catch {
      // optional
    }
    let h: Hosted;
    try {
      h = await this.#verify(read(FILES.manifest), fs.readFileSync(path.join(d, FILES.module)), read(FILES.signature), uploadedAt);
    } catch (e) {
      throw new SelkieError("ENCLAVE_STORE_INVALID", `stored enclave ${name} no longer verifies: ${(e as Error).message}`);
    }
    const again = this.#loaded.get(name);
    if (again) return again;
    this.#loaded.set(name, h);
    return h;
  }

  async remove(name: string): Promise<void> {
    if (!this.exists(name)) throw notFound("ENCLAVE_NOT_FOUND", `no enclave named ${name}`);
    if (fs.existsSync(path.join(this.dir, name, STATE_DIR))) {
      try {
        (await this.get(name)).forgetSaved(); // destroys its platform counter too
      } catch {
        // a state that no longer opens holds nothing to keep; its folder goes below
      }
    }
    this.#loaded.get(name)?.close();
    this.#loaded.delete(name);
    fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
  }

  /** Calls `func` with `args` (checked against its signature; 400 otherwise). */
  async ecall(name: string, func: string, args: unknown): Promise<EcallResult> {
    const h = await this.get(name);
    const type = h.ecalls.get(func);
    if (!type) {
      throw notFound("ECALL_NOT_FOUND", `enclave ${name} has no ecall ${JSON.stringify(func)}; its ecalls: ${[...h.ecalls.keys()].join(", ") || "none"}`);
    }
    const values = convertArgs(func, type, args);
    const odd = type.results.find((t) => !["i32", "i64", "f32", "f64"].includes(t));
    if (odd) throw badRequest("ECALL_UNSUPPORTED_TYPE", `${func} returns a ${odd}, which the generic ecall endpoint cannot return (only i32, i64, f32, f64)`);
    const e = h.enclave;
    await withEpcRoom(Date.now() + EPC_WAIT_MS, () => h.ready()); // a refused start or wake changes nothing
    h.ready(); // in the same tick as the call: the await above may have let the pager take it again
    const fn = e.exports[func] as (...a: unknown[]) => unknown;
    e.takeDenial();
    h.calls++;
    let out: unknown;
    try {
      out = h.call(() => fn(...values));
    } catch (err) {
      h.traps++;
      e.fault();
      let restarted = "a fresh instance was started";
      try {
        e.start();
      } catch (re) {
        restarted = `restarting it failed (${(re as Error).message}); the next call tries again`;
      }
      this.#opts.logger.warn({ event: "enclave_trap", enclave: name, ecall: func, err: (err as Error).message }, "an enclave trapped; its instance was dropped");
      throw new EnclaveFault("ENCLAVE_TRAP", `enclave ${name} trapped in ecall ${func}: ${(err as Error).message}; the instance was dropped and ${restarted}`);
    }
    const denied = e.takeDenial();
    if (denied) this.#opts.logger.warn({ event: "permission_denied", enclave: name, ecall: func }, denied);
    const raw = type.results.length === 0 ? [] : type.results.length === 1 ? [out] : (out as unknown[]);
    const results = raw.map((v) => (typeof v === "bigint" ? v.toString() : typeof v === "number" && !Number.isFinite(v) ? String(v) : (v as EcallValue)));
    return { result: results.length === 1 ? results[0]! : null, results, ...(denied ? { denied } : {}) };
  }

  /** Graceful shutdown: saves each instance's state for the next start (see the header), then closes it. */
  closeAll(): void {
    for (const h of this.#loaded.values()) {
      const t0 = performance.now();
      try {
        if (h.persist()) this.#opts.logger.info({ event: "enclave_state_saved", enclave: h.name, ms: Math.round(performance.now() - t0) }, "saved the enclave's state for the next start");
      } catch (e) {
        this.#opts.logger.error({ event: "enclave_state_not_saved", enclave: h.name, err: (e as Error).message }, "could not save the enclave's state; it starts afresh next time");
      }
      h.close();
    }
    this.#loaded.clear();
  }
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** JSON args -> wasm values, exactly as the export's signature requires. */
export function convertArgs(func: string, type: FuncType, args: unknown): unknown[] {
  if (!Array.isArray(args)) throw badRequest("BAD_ECALL_ARGS", `give the arguments as a list: {"args": [...]} (${func} takes ${type.params.length})`);
  if (args.length !== type.params.length) {
    throw badRequest("BAD_ECALL_ARGS", `${func} takes ${type.params.length} argument(s) (${type.params.join(", ") || "none"}), got ${args.length}`);
  }
  return type.params.map((t, i) => {
    const v = args[i];
    const bad = (want: string): never => {
      throw badRequest("BAD_ECALL_ARGS", `argument ${i} of ${func} is ${t}: want ${want}, got ${JSON.stringify(v)?.slice(0, 40) ?? typeof v}`);
    };
    switch (t) {
      case "i32":
        if (typeof v !== "number" || !Number.isInteger(v) || v < -(2 ** 31) || v > 2 ** 31 - 1) bad("an integer from -2^31 to 2^31-1");
        return v;
      case "i64": {
        let b: bigint | undefined;
        if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
        else if (typeof v === "string" && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
        if (b === undefined || b < I64_MIN || b > I64_MAX) bad("an integer (a safe-integer number, or a decimal string) within the signed 64-bit range");
        return b;
      }
      case "f32":
      case "f64":
        if (typeof v !== "number" || !Number.isFinite(v)) bad("a finite number");
        return v;
      default:
        throw badRequest("ECALL_UNSUPPORTED_TYPE", `${func} takes a ${t} argument, which the generic ecall endpoint cannot pass (only i32, i64, f32, f64)`);
    }
  });
}
