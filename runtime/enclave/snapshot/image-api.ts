/**
 * TRUSTED. The image store's public types and the checks of what its caller hands in (state, binding,
 * options, alloc results): misuse is a UsageError naming the problem (IMAGES.md "Error codes").
 */
import { UsageError } from "../../errors.js";
import type { EnclaveServices } from "../../platform/services.js";
import { encodeGlobalBits, MAX_INSTANCE, MAX_MEMORY, packManifest, WASM_PAGE, type GlobalType, type Manifest } from "./image-format.js";
import { PAGE } from "./pages.js";

export interface GlobalValue {
  name: string;
  type: GlobalType;
  value: number | bigint;
}

export interface SnapshotState {
  /** Whole linear memory; length a multiple of 65536. */
  memory: Uint8Array;
  /** Every mutable global, in module order. */
  globals: GlobalValue[];
  /** The runtime's per-enclave state: plain msgpack-able data (IMAGES.md "Limits"). */
  runtime: Record<string, unknown>;
}

export interface ImageBinding {
  mrenclave: Buffer;
  mrsigner: Buffer;
  isvProdId: number;
  isvSvn: number;
  /** Hex. */
  platformId: string;
  /**
   * The enclave instance the lineage belongs to: a database's path, a named enclave of `selkie serve`.
   * Two instances of one enclave build share its identity; this keeps the images of one from being
   * served for the other (IMAGE_WRONG_INSTANCE). Default "".
   */
  instance?: string;
}

export interface ImageInfo {
  seq: number;
  kind: "full" | "delta";
  chainLength: number;
  memoryBytes: number;
  /** Pages that differ from the parent (a full image: every page). */
  changedPages: number;
  totalPages: number;
  /** Pages whose ciphertext this image holds (changed and non-zero). */
  storedPages: number;
  fileBytes: number;
  /** Time write() took; 0 for an image this object did not write. */
  writeMs: number;
  /** Set on the info read() returns: the time it took. */
  readMs?: number;
}

export interface DurableOptions {
  services: EnclaveServices;
  binding: ImageBinding;
  /** Images in a chain, the full one included (default 8; 1 = every image is full). */
  maxChain?: number;
  /** Default true. false: a folder without images is IMAGE_MISSING instead of a new, empty lineage. */
  create?: boolean;
}

export interface VolatileOptions {
  binding: ImageBinding;
  maxChain?: number;
}

export const DEFAULT_MAX_CHAIN = 8;

export function badState(what: string): UsageError {
  return new UsageError("IMAGE_BAD_STATE", `cannot seal this snapshot: ${what}`);
}

export function checkMaxChain(v: number | undefined): number {
  if (v === undefined) return DEFAULT_MAX_CHAIN;
  if (!Number.isInteger(v) || v < 1 || v > 1024) throw new UsageError("IMAGE_BAD_STATE", "maxChain must be an integer 1..1024");
  return v;
}

export function checkBinding(b: ImageBinding): ImageBinding {
  const ok =
    b !== null &&
    typeof b === "object" &&
    b.mrenclave instanceof Uint8Array &&
    b.mrenclave.length === 32 &&
    b.mrsigner instanceof Uint8Array &&
    b.mrsigner.length === 32 &&
    Number.isInteger(b.isvProdId) &&
    b.isvProdId >= 0 &&
    b.isvProdId <= 0xffff &&
    Number.isInteger(b.isvSvn) &&
    b.isvSvn >= 0 &&
    b.isvSvn <= 0xffff &&
    typeof b.platformId === "string" &&
    /^[0-9a-f]{1,128}$/.test(b.platformId) &&
    (b.instance === undefined || (typeof b.instance === "string" && Buffer.byteLength(b.instance) <= MAX_INSTANCE));
  if (!ok) throw new UsageError("IMAGE_BAD_STATE", `binding must hold mrenclave and mrsigner (32 bytes), isvProdId and isvSvn (0..65535), platformId (lowercase hex) and optionally instance (a string of at most ${MAX_INSTANCE} bytes)`);
  return { mrenclave: Buffer.from(b.mrenclave), mrsigner: Buffer.from(b.mrsigner), isvProdId: b.isvProdId, isvSvn: b.isvSvn, platformId: b.platformId, instance: b.instance ?? "" };
}

export function checkState(state: SnapshotState): { memory: Uint8Array; globals: Manifest["globals"]; runtime: Record<string, unknown> } {
  if (state === null || typeof state !== "object") throw badState("state must be an object { memory, globals, runtime }");
  const { memory, globals, runtime } = state;
  if (!(memory instanceof Uint8Array) || memory.length % WASM_PAGE !== 0 || memory.length > MAX_MEMORY) {
    throw badState("memory must be a Uint8Array whose length is a multiple of 65536 and at most 4 GiB");
  }
  if (!Array.isArray(globals)) throw badState("globals must be an array");
  const encoded = globals.map((g, i) => {
    const type = (g as GlobalValue | null)?.type;
    const bits = typeof g?.name === "string" && (type === "i32" || type === "i64" || type === "f32" || type === "f64") ? encodeGlobalBits(type, g.value) : undefined;
    if (bits === undefined) throw badState(`global ${i} must be { name, type: i32|i64|f32|f64, value } with a value of that type (i64: bigint)`);
    return { name: g.name, type: type!, bits };
  });
  if (runtime === null || typeof runtime !== "object" || Array.isArray(runtime)) throw badState("runtime must be a plain object");
  try {
    packManifest(runtime); // fails before any side effect (a new lineage's counter), not after the chunks
  } catch (e) {
    throw badState(`runtime state is not plain msgpack data (${(e as Error).message})`);
  }
  return { memory, globals: encoded, runtime };
}

export function checkAlloc(view: unknown, bytes: number): Uint8Array {
  if (!(view instanceof Uint8Array) || view.length !== bytes) {
    throw new UsageError("IMAGE_BAD_ALLOC", `read()'s alloc must return a Uint8Array of exactly ${bytes} bytes (the image's memory)`);
  }
  return view;
}

/** What ImageInfo says of an image, from its manifest. */
export function infoOf(m: Manifest, fileBytes: number, writeMs: number): ImageInfo {
  let stored = 0;
  for (const c of m.chunks) for (let o = 4; o < c.pages.length; o += 8) stored += c.pages.readUInt32BE(o);
  return {
    seq: m.seq,
    kind: m.kind,
    chainLength: m.chainLength,
    memoryBytes: m.memoryBytes,
    changedPages: m.changedPages,
    totalPages: m.memoryBytes / PAGE,
    storedPages: stored,
    fileBytes,
    writeMs,
  };
}

