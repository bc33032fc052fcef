/**
 * TRUSTED. A small READ-ONLY reader of sealed store format version 1 (the format before FORMAT.md v2),
 * kept only so `selkie db upgrade` can convert old databases. It authenticates exactly as version 1
 * did: the data key sealed with the v1 header as AAD, every record under the data key with
 * (dbId, seq) as AAD, every slot with (dbId, block, version), and the log's last seq against the
 * platform counter (equal, or one ahead: v1's uncounted last commit). It never writes.
 */
import { createDecipheriv } from "node:crypto";
import type { FileHandle, FileLayer } from "../host/files.js";
import { StorageError } from "./errors.js";
import type { StoreTrust } from "./page-store.js";

const BLOCK = 4096;
const IV = 12;
const TAG = 16;
const SLOT = IV + BLOCK + TAG;
const NONE = 0xffffffff;
const MAGIC = Buffer.from("SELKIELOG", "ascii");
const AAD_SLOT = Buffer.from("selkie/slot/v1", "ascii");
const AAD_RECORD = Buffer.from("selkie/record/v1", "ascii");
const AAD_DATAKEY = Buffer.from("selkie/datakey/v1", "ascii");

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

export class PageStoreV1 {
  readonly size: number;
  readonly counterId: string;
  readonly #files: FileLayer;
  readonly #slotFile: FileHandle;
  readonly #key: Buffer;
  readonly #dbId: Buffer;
  readonly #table: Map<number, [number, number]>;

  private constructor(files: FileLayer, slotFile: FileHandle, key: Buffer, dbId: Buffer, counterId: string, size: number, table: Map<number, [number, number]>) {
    this.#files = files;
    this.#slotFile = slotFile;
    this.#key = key;
    this.#dbId = dbId;
    this.counterId = counterId;
    this.size = size;
    this.#table = table;
  }

  /** Opens the v1 store whose files are `slots` and `log`, checking integrity and freshness. */
  static open(files: FileLayer, slots: string, log: string, trust: StoreTrust): PageStoreV1 {
    const tampered = (what: string): never => {
      throw new StorageError("STORAGE_TAMPERED", `${log}: ${what}; restore the database from a sealed backup`, log);
    };
    const lh = files.open(log, { create: false, readonly: true });
    let bytes: Buffer;
    try {
      bytes = Buffer.alloc(files.size(lh));
      bytes = bytes.subarray(0, files.read(lh, bytes, 0));
    } finally {
      files.close(lh);
    }
    if (bytes.length < MAGIC.length + 1 + 16 + 2 + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC) || bytes[MAGIC.length] !== 1) tampered("not a format 1 table log");
    let o = MAGIC.length + 1;
    const dbId = Buffer.from(bytes.subarray(o, o + 16));
    o += 16;
    const cidLen = bytes.readUInt16BE(o);
    o += 2;
    if (o + cidLen + 4 > bytes.length) tampered("truncated header");
    const counterId = bytes.subarray(o, o + cidLen).toString("utf8");
    o += cidLen;
    const prefix = bytes.subarray(0, o);
    const keyLen = bytes.readUInt32BE(o);
    o += 4;
    if (keyLen > 4096 || o + keyLen > bytes.length) tampered("truncated header");
    const key = trust.unsealDataKey(Buffer.from(bytes.subarray(o, o + keyLen)), Buffer.concat([AAD_DATAKEY, prefix]));
    o += keyLen;
    const table = new Map<number, [number, number]>();
    let size = 0;
    let last = -1;
    let first = true;
    while (o < bytes.length) {
      const rest = bytes.length - o;
      const len = rest >= 4 ? bytes.readUInt32BE(o) : -1;
      const torn = len < IV + TAG + 21 || 4 + len > rest;
      let body: Buffer | undefined;
      if (!torn) {
        const rec = bytes.subarray(o + 4, o + 4 + len);
        const d = createDecipheriv("aes-256-gcm", key, rec.subarray(0, IV));
        d.setAAD(Buffer.concat([AAD_RECORD, dbId, u64(first ? 0 : last + 1)]));
        d.setAuthTag(rec.subarray(rec.length - TAG));
        try {
          body = Buffer.concat([d.update(rec.subarray(IV, rec.length - TAG)), d.final()]);
        } catch {
          body = undefined;
        }
      }
      if (!body) {
        if (first || (!torn && 4 + len < rest)) tampered("a table record failed authentication");
        break; // v1: a torn tail is a crash mid-append
      }
      const kind = body.readUInt8(0);
      const seq = Number(body.readBigUInt64BE(1));
      if ((first && kind !== 1) || (!first && (kind !== 2 || seq !== last + 1))) tampered("table records are out of order");
      size = Number(body.readBigUInt64BE(9));
      const n = body.readUInt32BE(17);
      if (21 + n * 16 !== body.length) tampered("a table record has a bad length");
      for (let i = 0, p = 21; i < n; i++, p += 16) {
        const b = body.readUInt32BE(p);
        const slot = body.readUInt32BE(p + 4);
        if (slot === NONE) table.delete(b);
        else table.set(b, [slot, Number(body.readBigUInt64BE(p + 8))]);
      }
      last = seq;
      first = false;
      o += 4 + len;
    }
    if (first) tampered("the log holds no table record");
    let c: number;
    try {
      c = trust.readCounter(counterId);
    } catch (e) {
      if ((e as { code?: string }).code === "COUNTER_NOT_FOUND") {
        throw new StorageError("STORAGE_DELETED", `${log}: this database's counter was destroyed (it was deleted or already upgraded); these files will not open`, log, { cause: e });
      }
      throw e;
    }
    if (last < c) throw new StorageError("STORAGE_ROLLBACK", `${log}: this is an older copy of the database (commit ${last}, counter ${c}); refusing to upgrade it`, log);
    if (last > c + 1) tampered(`the table log is ahead of the platform counter (${last} > ${c} + 1)`);
    const slotFile = files.open(slots, { create: false, readonly: true });
    return new PageStoreV1(files, slotFile, key, dbId, counterId, size, table);
  }

  /** The plaintext of block b (zeros when absent); throws STORAGE_TAMPERED when it fails authentication. */
  block(b: number): Buffer {
    const e = this.#table.get(b);
    if (!e) return Buffer.alloc(BLOCK);
    const buf = Buffer.alloc(SLOT);
    const path = this.#slotFile.path;
    if (this.#files.read(this.#slotFile, buf, e[0] * SLOT) !== SLOT) throw new StorageError("STORAGE_TAMPERED", `${path}: block ${b} is cut short on disk`, path);
    const d = createDecipheriv("aes-256-gcm", this.#key, buf.subarray(0, IV));
    d.setAAD(Buffer.concat([AAD_SLOT, this.#dbId, u32(b), u64(e[1])]));
    d.setAuthTag(buf.subarray(IV + BLOCK));
    try {
      return Buffer.concat([d.update(buf.subarray(IV, IV + BLOCK)), d.final()]);
    } catch {
      throw new StorageError("STORAGE_TAMPERED", `${path}: block ${b} failed authentication; restore the database from a sealed backup`, path);
    }
  }

  close(): void {
    this.#files.close(this.#slotFile);
  }
}
