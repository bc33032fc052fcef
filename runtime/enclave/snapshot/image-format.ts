/**
 * TRUSTED. Encoding and checking of snapshot image format version 2 (IMAGES.md): the clear header, the
 * msgpack manifest, the AADs, chunk page runs and globals. No I/O and no keys here.
 *
 * Invariants:
 *  1. Every length, offset, count and field read from a file is checked against its range before it is
 *     used; a malformed value of any kind throws SnapshotError IMAGE_TAMPERED (an unknown format
 *     version IMAGE_VERSION_UNSUPPORTED), never a RangeError or a wrong value.
 *  2. msgpack options are pinned once (PACKR_OPTIONS) and shared by encoder and decoder.
 *  3. Decoded manifests are checked field by field, unknown fields refused, and agree with the header.
 */
import * as path from "node:path";
import { Packr } from "msgpackr";
import { SnapshotError } from "../../errors.js";
import { HASH_BYTES, PAGE } from "./page-digest.js";

export const MAGIC = Buffer.from("SKIM", "latin1");
export const FORMAT_VERSION = 2;
export const HEADER_FIXED = 68;
export const TAG = 16;
export const NONCE = 12;
export const ID_BYTES = 16;
export const CHUNK_PAGES = 256;
export const WASM_PAGE = 65536;
export const MAX_MEMORY = 65536 * WASM_PAGE;
export const MAX_SEALED_KEY = 4096;
export const MAX_MANIFEST = 256 * 1024 * 1024;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** AES-GCM messages per lineage key (random nonces; NIST SP 800-38D allows 2^32). */
export const MAX_KEY_USES = 2 ** 31;
/**
 * The most messages one write can seal (4 GiB of memory in 1 MiB chunks, plus the manifest): what a
 * crashed or failed attempt of unknown size is charged against the key budget (IMAGES.md "Keys").
 */
export const MAX_ATTEMPT_USES = MAX_MEMORY / (CHUNK_PAGES * 4096) + 1;
/** Longest instance name in a binding (bytes of UTF-8). */
export const MAX_INSTANCE = 1024;
const MAX_CHAIN = 0xffff;

export const AAD_KEY = Buffer.from("selkie/image-key/v2", "latin1");
const AAD_MANIFEST = Buffer.from("selkie/image-manifest/v2", "latin1");
const AAD_CHUNK = Buffer.from("selkie/image-chunk/v2", "latin1");

export type Mode = "durable" | "volatile";
const MODE_BYTE: Record<Mode, number> = { durable: 1, volatile: 2 };
export type GlobalType = "i32" | "i64" | "f32" | "f64";

/** The clear header's fields (IMAGES.md "File layout"). */
export interface Header {
  mode: Mode;
  lineage: Buffer;
  seq: number;
  imageId: Buffer;
  nonce: Buffer;
  sealedKey: Buffer;
  manifestLength: number;
  /** 68 + K: the clear header's length (the manifest's AAD) and where chunk 0 starts. */
  clearBytes: number;
  /** File size - M: where the manifest starts (and the chunks end). */
  manifestStart: number;
}

export interface EncodedGlobal {
  name: string;
  type: GlobalType;
  bits: Buffer;
}

export interface ChunkEntry {
  nonce: Buffer;
  /** Runs of u32 first, u32 count. */
  pages: Buffer;
}

export interface Manifest {
  format: number;
  mode: Mode;
  kind: "full" | "delta";
  lineage: Buffer;
  seq: number;
  identity: { mrenclave: Buffer; mrsigner: Buffer; isvProdId: number; isvSvn: number };
  platformId: string;
  /** The enclave instance (database, named enclave) the lineage belongs to (ImageBinding.instance). */
  instance: string;
  memoryBytes: number;
  pageHashes: Buffer;
  globals: EncodedGlobal[];
  runtime: Record<string, unknown>;
  chunks: ChunkEntry[];
  parent: { seq: number; digest: Buffer } | null;
  /** The lineage's newest image when this one was written (a delta: its parent); null for the first. */
  prev: { seq: number; digest: Buffer } | null;
  chainLength: number;
  changedPages: number;
  counter: { id: string; value: number } | null;
  keyUses: number;
}

const MANIFEST_FIELDS = [
  "format", "mode", "kind", "lineage", "seq", "identity", "platformId", "instance", "memoryBytes", "pageHashes", "globals",
  "runtime", "chunks", "parent", "prev", "chainLength", "changedPages", "counter", "keyUses",
] as const;

/** The one msgpack configuration of format 2 (IMAGES.md "Manifest"); never change it within a version. */
export const PACKR_OPTIONS = Object.freeze({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: "bigint",
  useFloat32: 0,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
} as const);
const packr = new Packr({ ...PACKR_OPTIONS });

export function tampered(file: string, what: string): SnapshotError {
  return new SnapshotError("IMAGE_TAMPERED", `${file}: ${what}; the image was changed or damaged on disk and nothing was restored from it. Restore the folder from a sealed backup, or start the enclave afresh`);
}

// ---- header -------------------------------------------------------------------------------------

export function encodeHeader(h: Omit<Header, "clearBytes" | "manifestStart">): Buffer {
  const b = Buffer.alloc(HEADER_FIXED + h.sealedKey.length);
  MAGIC.copy(b, 0);
  b[4] = FORMAT_VERSION;
  b[5] = MODE_BYTE[h.mode];
  h.lineage.copy(b, 8);
  b.writeBigUInt64BE(BigInt(h.seq), 24);
  h.imageId.copy(b, 32);
  h.nonce.copy(b, 48);
  b.writeUInt32BE(h.sealedKey.length, 60);
  b.writeUInt32BE(h.manifestLength, 64);
  h.sealedKey.copy(b, HEADER_FIXED);
  return b;
}

/** Checks the fixed 68 bytes against the file's size (IMAGES.md "Checks" 1); the sealed key is read later. */
export function parseHeader(b: Buffer, fileSize: number, file: string): Omit<Header, "sealedKey"> {
  if (b.length < HEADER_FIXED || fileSize < HEADER_FIXED) throw tampered(file, `the file is too short to be an image (${fileSize} bytes)`);
  if (!b.subarray(0, 4).equals(MAGIC)) throw tampered(file, "it is not a Selkie snapshot image (bad magic)");
  if (b[4] === 1) {
    throw new SnapshotError(
      "IMAGE_UPGRADE_REQUIRED",
      `${file}: image format version 1 is no longer read (its image numbers could be reused after a crash, so an image that was never acknowledged could replace one that was; IMAGES.md "Upgrading from version 1"). ` +
        `An image is a cache of running state: delete the folder ${path.dirname(file)} and take a new snapshot (a database loses nothing: its commits live in its sealed store; a custom enclave of selkie serve starts afresh and loses the state it kept only in this image)`,
    );
  }
  if (b[4] !== FORMAT_VERSION) {
    throw new SnapshotError("IMAGE_VERSION_UNSUPPORTED", `${file}: image format version ${b[4]} is not supported (this runtime reads version ${FORMAT_VERSION}); restore it with a matching Selkie release`);
  }
  const mode = b[5] === 1 ? "durable" : b[5] === 2 ? "volatile" : undefined;
  if (mode === undefined) throw tampered(file, `unknown image mode ${b[5]}`);
  if (b[6] !== 0 || b[7] !== 0) throw tampered(file, "reserved header bytes are not zero");
  const seq = b.readBigUInt64BE(24);
  if (seq < 1n || seq > BigInt(MAX_SEQ)) throw tampered(file, "the header's sequence number is out of range");
  const k = b.readUInt32BE(60);
  const m = b.readUInt32BE(64);
  if (mode === "durable" ? k < 1 || k > MAX_SEALED_KEY : k !== 0) throw tampered(file, `the sealed key length ${k} is out of range`);
  if (m < TAG + 1 || m > MAX_MANIFEST) throw tampered(file, `the manifest length ${m} is out of range`);
  if (HEADER_FIXED + k + m > fileSize) throw tampered(file, `the file is cut short (${fileSize} bytes; header and manifest alone need ${HEADER_FIXED + k + m})`);
  return {
    mode,
    lineage: Buffer.from(b.subarray(8, 24)),
    seq: Number(seq),
    imageId: Buffer.from(b.subarray(32, 48)),
    nonce: Buffer.from(b.subarray(48, 60)),
    manifestLength: m,
    clearBytes: HEADER_FIXED + k,
    manifestStart: fileSize - m,
  };
}

// ---- AADs ---------------------------------------------------------------------------------------

export function manifestAad(clearHeader: Uint8Array): Buffer {
  return Buffer.concat([AAD_MANIFEST, clearHeader]);
}

export function keyAad(lineage: Buffer): Buffer {
  return Buffer.concat([AAD_KEY, lineage]);
}

export function chunkAad(lineage: Buffer, imageId: Buffer, seq: number, index: number, pages: Buffer): Buffer {
  const b = Buffer.alloc(AAD_CHUNK.length + 32 + 16 + pages.length);
  let o = AAD_CHUNK.copy(b, 0);
  o += lineage.copy(b, o);
  o += imageId.copy(b, o);
  b.writeBigUInt64BE(BigInt(seq), o);
  b.writeUInt32BE(index, o + 8);
  b.writeUInt32BE(pages.length / 8, o + 12);
  pages.copy(b, o + 16);
  return b;
}

// ---- page runs ----------------------------------------------------------------------------------

export interface Run {
  first: number;
  count: number;
}

/** The runs of ascending page numbers (one chunk's worth), merged where they touch. */
export function encodeRuns(pages: readonly number[]): { pages: Buffer; runs: Run[] } {
  const runs: Run[] = [];
  for (const p of pages) {
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === p) last.count++;
    else runs.push({ first: p, count: 1 });
  }
  const b = Buffer.alloc(runs.length * 8);
  runs.forEach((r, k) => {
    b.writeUInt32BE(r.first, k * 8);
    b.writeUInt32BE(r.count, k * 8 + 4);
  });
  return { pages: b, runs };
}

/**
 * Decodes a chunk's runs, checking them (IMAGES.md "Pages and chunks"): 1..256 pages in all, ascending,
 * not touching each other, above `after` (the previous chunk's last page) and below `totalPages`.
 */
export function decodeRuns(pages: Buffer, totalPages: number, after: number, file: string): Run[] {
  if (pages.length === 0 || pages.length % 8 !== 0) throw tampered(file, "a chunk's page list has a bad length");
  const runs: Run[] = [];
  let sum = 0;
  let prevEnd = after + 1; // the next run must start past this page (runs of one chunk never touch)
  for (let o = 0; o < pages.length; o += 8) {
    const first = pages.readUInt32BE(o);
    const count = pages.readUInt32BE(o + 4);
    if (count < 1 || first < prevEnd || (o > 0 && first === prevEnd) || first + count > totalPages) throw tampered(file, "a chunk's page runs are out of order or out of range");
    sum += count;
    if (sum > CHUNK_PAGES) throw tampered(file, `a chunk holds more than ${CHUNK_PAGES} pages`);
    runs.push({ first, count });
    prevEnd = first + count;
  }
  return runs;
}

// ---- globals ------------------------------------------------------------------------------------

const GLOBAL_BYTES: Record<GlobalType, number> = { i32: 4, f32: 4, i64: 8, f64: 8 };

/** Encodes a global value exactly (its wasm little-endian bits); undefined when value and type disagree. */
export function encodeGlobalBits(type: GlobalType, value: unknown): Buffer | undefined {
  const b = Buffer.alloc(GLOBAL_BYTES[type]);
  if (type === "i64") {
    if (typeof value !== "bigint" || value < -(2n ** 63n) || value >= 2n ** 64n) return undefined;
    b.writeBigUInt64LE(BigInt.asUintN(64, value));
  } else if (typeof value !== "number") {
    return undefined;
  } else if (type === "i32") {
    if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 32) return undefined;
    b.writeInt32LE(value | 0);
  } else if (type === "f32") {
    if (!Number.isNaN(value) && Math.fround(value) !== value) return undefined;
    b.writeFloatLE(value);
  } else {
    b.writeDoubleLE(value);
  }
  return b;
}

export function decodeGlobalBits(type: GlobalType, bits: Buffer): number | bigint {
  if (type === "i64") return bits.readBigInt64LE(0);
  if (type === "i32") return bits.readInt32LE(0);
  return type === "f32" ? bits.readFloatLE(0) : bits.readDoubleLE(0);
}

// ---- manifest ----------------------------------------------------------------------------------

/** msgpack of the manifest (a view into msgpackr's shared buffer: seal it before the next pack). */
export function packManifest(m: Manifest | Record<string, unknown>): Buffer {
  return packr.pack(m);
}

type Check = (ok: boolean, field: string) => void;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

function isUint(v: unknown, max = MAX_SEQ): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function isBin(v: unknown, len?: number): v is Buffer {
  return Buffer.isBuffer(v) && (len === undefined || v.length === len);
}

/** Decodes and checks a manifest against its header (IMAGES.md "Checks" 3). */
export function unpackManifest(plain: Buffer, h: Header, file: string): Manifest {
  let v: unknown;
  try {
    v = packr.unpack(plain);
  } catch {
    throw tampered(file, "its manifest is not valid msgpack");
  }
  const check: Check = (ok, field) => {
    if (!ok) throw tampered(file, `its manifest field ${field} is missing or invalid`);
  };
  check(isObject(v), "(root)");
  const m = v as Record<string, unknown>;
  for (const k of Object.keys(m)) check((MANIFEST_FIELDS as readonly string[]).includes(k), k);
  check(m.format === FORMAT_VERSION, "format");
  check(m.mode === h.mode, "mode");
  check(m.kind === "full" || m.kind === "delta", "kind");
  check(isBin(m.lineage, ID_BYTES) && m.lineage.equals(h.lineage), "lineage");
  check(m.seq === h.seq, "seq");
  checkIdentity(m.identity, check);
  check(typeof m.platformId === "string" && /^[0-9a-f]{1,128}$/.test(m.platformId), "platformId");
  check(typeof m.instance === "string" && Buffer.byteLength(m.instance) <= MAX_INSTANCE, "instance");
  check(isUint(m.memoryBytes, MAX_MEMORY) && m.memoryBytes % WASM_PAGE === 0, "memoryBytes");
  // Empty only in a full image written without digests (a lineage that never takes deltas).
  check(isBin(m.pageHashes, ((m.memoryBytes as number) / PAGE) * HASH_BYTES) || (m.kind === "full" && isBin(m.pageHashes, 0)), "pageHashes");
  checkGlobals(m.globals, check);
  check(isObject(m.runtime), "runtime");
  check(Array.isArray(m.chunks) && m.chunks.length <= (m.memoryBytes as number) / PAGE, "chunks");
  for (const c of m.chunks as unknown[]) check(isObject(c) && Object.keys(c).length === 2 && isBin(c.nonce, NONCE) && isBin(c.pages), "chunks");
  check(isUint(m.chainLength, MAX_CHAIN) && m.chainLength >= 1 && (m.kind === "full") === (m.chainLength === 1), "chainLength");
  const p = m.parent;
  if (m.kind === "full") check(p === null, "parent");
  else check(isRef(p, h.seq), "parent");
  const q = m.prev;
  check(q === null || isRef(q, h.seq), "prev");
  if (m.kind === "delta") check(q !== null && (q as Ref).seq === (p as Ref).seq && (q as Ref).digest.equals((p as Ref).digest), "prev");
  check(isUint(m.changedPages, (m.memoryBytes as number) / PAGE), "changedPages");
  const c = m.counter;
  if (h.mode === "volatile") check(c === null, "counter");
  else check(isObject(c) && Object.keys(c).length === 2 && typeof c.id === "string" && /^[0-9a-f]{32}$/.test(c.id) && c.value === h.seq, "counter");
  check(isUint(m.keyUses, MAX_KEY_USES) && m.keyUses >= (m.chunks as unknown[]).length + 1, "keyUses");
  return m as unknown as Manifest;
}

type Ref = { seq: number; digest: Buffer };

/** `{ seq, digest }` of an earlier image (seq below `below`). */
function isRef(v: unknown, below: number): v is Ref {
  return isObject(v) && Object.keys(v).length === 2 && isUint(v.seq) && v.seq >= 1 && v.seq < below && isBin(v.digest, 32);
}

function checkIdentity(v: unknown, check: Check): void {
  check(isObject(v) && Object.keys(v).length === 4, "identity");
  const id = v as Record<string, unknown>;
  check(isBin(id.mrenclave, 32) && isBin(id.mrsigner, 32) && isUint(id.isvProdId, 0xffff) && isUint(id.isvSvn, 0xffff), "identity");
}

function checkGlobals(v: unknown, check: Check): void {
  check(Array.isArray(v), "globals");
  for (const g of v as unknown[]) {
    const ok =
      isObject(g) &&
      Object.keys(g).length === 3 &&
      typeof g.name === "string" &&
      typeof g.type === "string" &&
      Object.hasOwn(GLOBAL_BYTES, g.type) &&
      isBin(g.bits, GLOBAL_BYTES[g.type as GlobalType]);
    check(ok, "globals");
  }
}
