/**
 * Shared by the image tests and the crash writer: enclave identities, image bindings, a seeded
 * workload of snapshot states (page mutations, zeroed pages, memory growth), and file surgery.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { ImageBinding, SnapshotState } from "../../runtime/enclave/snapshot/image-store.js";
import type { EnclaveIdentity } from "../../runtime/platform/identity.js";
import type { MeasuredEnclave } from "../../runtime/platform/einit.js";
import { measuredIdentity } from "../platform/helpers.js";
import { rng } from "../../tools/rng.js";

export const WASM_PAGE = 65536;
export const PAGE = 4096;

/** The crash writer's lineage and workload (image-crash-writer.ts and its test). */
export const CRASH = { identity: "crash-writer", maxChain: 3, startPages: 1, maxPages: 6 } as const;

/** A measured identity (EINIT of a tiny module, test/platform/helpers.ts): the fields of `over` are seeds. */
export function identity(name: string, over: Partial<EnclaveIdentity> = {}): MeasuredEnclave {
  const h = (s: string): Buffer => createHash("sha256").update(s).digest();
  return measuredIdentity({ mrenclave: h(`mrenclave:${name}`), mrsigner: h(`mrsigner:${name}`), isvProdId: 7, isvSvn: 2, debug: false, ...over });
}

export function bindingOf(id: EnclaveIdentity, platformId: string): ImageBinding {
  return { mrenclave: id.mrenclave, mrsigner: id.mrsigner, isvProdId: id.isvProdId, isvSvn: id.isvSvn, platformId };
}

/**
 * State k of a deterministic sequence: state 0 is `startPages` wasm pages with some random content;
 * each step rewrites a few random 4 KiB pages (sometimes with zeros), sometimes grows memory by a wasm
 * page (up to `maxPages`). Replaying the same seed to the same step gives the same bytes.
 */
export class Workload {
  step = 0;
  memory: Uint8Array;
  readonly #r: () => number;
  readonly #maxPages: number;

  constructor(seed: number, startPages = 4, maxPages = 24) {
    this.#r = rng(seed);
    this.#maxPages = maxPages;
    this.memory = new Uint8Array(startPages * WASM_PAGE);
    for (let p = 0; p < this.memory.length / PAGE; p += 2) this.#fill(p);
  }

  /** Advances one step and returns the new state. */
  next(): SnapshotState {
    this.step++;
    const r = this.#r;
    if (r() < 0.15 && this.memory.length / WASM_PAGE < this.#maxPages) {
      const grown = new Uint8Array(this.memory.length + WASM_PAGE);
      grown.set(this.memory);
      this.memory = grown;
    }
    const pages = this.memory.length / PAGE;
    for (let i = 1 + Math.floor(r() * 6); i > 0; i--) {
      const p = Math.floor(r() * pages);
      if (r() < 0.2) this.memory.fill(0, p * PAGE, (p + 1) * PAGE);
      else this.#fill(p);
    }
    return this.state();
  }

  advanceTo(step: number): this {
    while (this.step < step) this.next();
    return this;
  }

  state(): SnapshotState {
    const k = this.step;
    return {
      memory: this.memory,
      globals: [
        { name: "g_i32", type: "i32", value: (k * 7919) | 0 },
        { name: "g_i64", type: "i64", value: BigInt(k) * 2n ** 40n - 3n },
        { name: "g_f32", type: "f32", value: Math.fround(k * 1.5) },
        { name: "g_f64", type: "f64", value: k / 3 },
      ],
      runtime: { step: k, name: `step ${k}`, ok: k % 2 === 0, tags: [k, String(k), null], blob: Buffer.from([k & 255, (k >> 8) & 255]) },
    };
  }

  #fill(p: number): void {
    const view = this.memory.subarray(p * PAGE, (p + 1) * PAGE);
    const r = this.#r;
    const seed = Math.floor(r() * 2 ** 31);
    for (let i = 0; i < PAGE; i += 4) {
      const x = Math.imul(seed ^ i, 0x9e3779b1) >>> 0;
      view[i] = x & 255;
      view[i + 1] = (x >> 8) & 255;
      view[i + 2] = (x >> 16) & 255;
      view[i + 3] = (x >> 24) | 1;
    }
  }
}

/** A copy of a state, so later steps cannot change it (globals and runtime are fresh per state()). */
export function snapshotOf(s: SnapshotState): SnapshotState {
  return { ...s, memory: Uint8Array.from(s.memory) };
}

export function imagePath(dir: string, seq: number): string {
  return path.join(dir, `${seq}.img`);
}

/** The image files in `dir`, by seq. */
export function imageSeqs(dir: string): number[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^\d+\.img$/.test(n))
    .map((n) => Number(n.slice(0, -4)))
    .sort((a, b) => a - b);
}

/** Where things are in an image file (IMAGES.md "File layout"), from its header. */
export function layoutOf(file: string, chunkPages: readonly number[]): { clear: number; chunks: Array<{ at: number; bytes: number }>; manifest: { at: number; bytes: number }; size: number } {
  const b = fs.readFileSync(file);
  const clear = 68 + b.readUInt32BE(60);
  const m = b.readUInt32BE(64);
  let at = clear;
  const chunks = chunkPages.map((pages) => {
    const c = { at, bytes: pages * PAGE + 16 };
    at += c.bytes;
    return c;
  });
  return { clear, chunks, manifest: { at: b.length - m, bytes: m }, size: b.length };
}

export function flipByte(file: string, at: number, mask = 0x01): void {
  const fd = fs.openSync(file, "r+");
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0]! ^= mask;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}
