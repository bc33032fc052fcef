/** Helpers for tests that drive the real PageStore over real files with a real platform's trust. */
import { createHash } from "node:crypto";
import { NodeFileLayer } from "../../runtime/host/files.js";
import { measuredIdentity } from "../platform/helpers.js";
import type { Platform } from "../../runtime/platform/platform.js";
import { BLOCK, type PageStore, type StoreTrust } from "../../runtime/storage/page-store.js";
import { storeTrustFor } from "../../runtime/storage/trust.js";
import { measureLegacyV1At } from "../../runtime/enclave/einit.js";
import type { CheckedModule } from "../../runtime/enclave/loader.js";
import type { Manifest } from "../../runtime/enclave/manifest.js";

const h = (s: string): Buffer => createHash("sha256").update(s).digest();

/** The identity the store tests seal under (stands for the SQLite enclave). */
export const STORE_IDENTITY = measuredIdentity({ mrenclave: h("store-test-enclave"), mrsigner: h("store-test-signer"), isvProdId: 7, isvSvn: 1, debug: false });

export const files = new NodeFileLayer();

export function storeTrust(platform: Platform): StoreTrust {
  return storeTrustFor(platform.servicesFor(STORE_IDENTITY));
}

export function writeBlock(store: PageStore, b: number, text: string): void {
  const buf = Buffer.alloc(BLOCK);
  buf.write(text, "utf8");
  store.write(buf, b * BLOCK);
}

export function readBlock(store: PageStore, b: number): string {
  const buf = Buffer.alloc(BLOCK);
  store.read(buf, b * BLOCK);
  return buf.toString("utf8").replace(/\0+$/, "");
}

/** Offsets in a v2 log where the header ends and where each record ends (the record boundaries). */
export function recordBoundaries(log: Buffer): number[] {
  let o = 9 + 1 + 16;
  o += 2 + log.readUInt16BE(o);
  o += 2 + log.readUInt16BE(o);
  o += 4 + log.readUInt32BE(o);
  const out = [o];
  while (o + 4 <= log.length) {
    o += 4 + log.readUInt32BE(o);
    if (o > log.length) break;
    out.push(o);
  }
  return out;
}

/**
 * The trust a pre-revision-6 Selkie gave the SQLite enclave `image` with an EPC of `epc` bytes: key
 * and counter sealed to its unsigned MRENCLAVE-v1 (which measured the EPC).
 */
export function legacyStoreTrust(platform: Platform, image: { module: CheckedModule; manifest: Manifest }, epc: number): StoreTrust {
  const legacy = platform.servicesFor(measureLegacyV1At(image.module, image.manifest, epc));
  return {
    sealDataKey: (key, aad) => legacy.seal(key, { policy: "MRENCLAVE", aad }),
    unsealDataKey: (blob, aad) => legacy.unseal(blob, { aad }),
    createCounter: () => legacy.counters.create({ policy: "MRENCLAVE" }).id,
    readCounter: (id) => legacy.counters.read(id),
    incrementCounter: (id) => legacy.counters.increment(id),
    advanceCounter: (id, value) => legacy.counters.advance(id, value),
    destroyCounter: (id) => legacy.counters.destroy(id),
  };
}
