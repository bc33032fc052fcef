/**
 * Writes a sealed store in format 1 (the format before FORMAT.md v2), exactly as the v1 PageStore did:
 * header, a snapshot record (seq 0) and one delta (seq 1, counted), for upgrade tests. Test-only: the
 * runtime keeps only a v1 reader.
 */
import { createCipheriv, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import type { StoreTrust } from "../../runtime/storage/page-store.js";

const BLOCK = 4096;

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function gcm(key: Buffer, aad: Buffer, plain: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(aad);
  return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
}

/** Seals `content` as a v1 store at `path` (slot file) and `path.log`. Returns its counter id. */
export function writeV1Store(path: string, trust: StoreTrust, content: Buffer): string {
  const key = randomBytes(32);
  const dbId = randomBytes(16);
  const counterId = trust.createCounter();
  const cid = Buffer.from(counterId, "utf8");
  const prefix = Buffer.concat([Buffer.from("SELKIELOG"), Buffer.from([1]), dbId, Buffer.from([cid.length >> 8, cid.length & 255]), cid]);
  const sealedKey = trust.sealDataKey(key, Buffer.concat([Buffer.from("selkie/datakey/v1"), prefix]));
  const blocks = Math.ceil(content.length / BLOCK);
  const slot = (b: number, version: number): Buffer => {
    const plain = Buffer.alloc(BLOCK);
    content.copy(plain, 0, b * BLOCK, Math.min(content.length, (b + 1) * BLOCK));
    return gcm(key, Buffer.concat([Buffer.from("selkie/slot/v1"), dbId, u32(b), u64(version)]), plain);
  };
  const slots: Buffer[] = [];
  for (let b = 0; b < blocks; b++) slots.push(slot(b, 0));
  slots.push(slot(0, 1)); // the delta rewrites block 0 into a new slot
  const record = (kind: number, seq: number, entries: Array<[number, number, number]>, aadSeq: number): Buffer => {
    const body = Buffer.alloc(21 + entries.length * 16);
    body.writeUInt8(kind, 0);
    body.writeBigUInt64BE(BigInt(seq), 1);
    body.writeBigUInt64BE(BigInt(content.length), 9);
    body.writeUInt32BE(entries.length, 17);
    entries.forEach(([b, s, v], i) => {
      body.writeUInt32BE(b, 21 + i * 16);
      body.writeUInt32BE(s, 25 + i * 16);
      body.writeBigUInt64BE(BigInt(v), 29 + i * 16);
    });
    const sealed = gcm(key, Buffer.concat([Buffer.from("selkie/record/v1"), dbId, u64(aadSeq)]), body);
    return Buffer.concat([u32(sealed.length), sealed]);
  };
  const snapshot = record(1, 0, [...Array(blocks).keys()].map((b) => [b, b, 0] as [number, number, number]), 0);
  const delta = record(2, 1, [[0, blocks, 1]], 1);
  fs.writeFileSync(path, Buffer.concat(slots));
  fs.writeFileSync(`${path}.log`, Buffer.concat([prefix, u32(sealedKey.length), sealedKey, snapshot, delta]));
  trust.incrementCounter(counterId);
  return counterId;
}
