/**
 * TRUSTED (enclave side). Sealed snapshot images of an enclave's memory, globals and runtime state, in
 * a lineage of full and delta images. Format, protocol and error codes: IMAGES.md (format version 2).
 *
 * Invariants:
 *  1. Only ciphertext and the clear header reach the folder (image-files.ts); the image key never
 *     leaves this object except sealed by the platform (durable) or not at all (volatile).
 *  2. write() returns only after its image is published under its final name — durable: fsynced, the
 *     folder fsynced, then the platform counter incremented to its seq. A crash at any instant leaves
 *     the previous image or the new one as the newest, never a mix (IMAGES.md "Write protocol").
 *  3. Freshness: the newest image is the one this object expects (seq and digest of its last write or
 *     open); durable, the platform counter holds the value this object counted last (`#counted`: the
 *     newest image's seq, or the value of the epoch record that names it), checked again before every
 *     read and write, so a stale copy is refused before it writes.
 *  4. Single use (durable): every counter value stands for at most one write attempt. A seq is used
 *     only as `#counted + 1` and only while the counter reads `#counted`; after an open, and after any
 *     write that failed once it could have left a complete image (a tmp or a published file), the next
 *     value is burned first (an epoch record counted at it, naming the newest image) before another
 *     image is written. So an image that was never counted can never be accepted once a later value
 *     was counted: open accepts only the object at the counter's value, or one value above it.
 *  5. Binding: an image names its enclave identity, platform and instance (ImageBinding), and the
 *     newest image before it (`prev`); a destroyed lineage's counter is gone, so its copy is refused.
 *  6. Key budget: every AES-GCM message under the lineage key is counted (`keyUses`, persisted in every
 *     manifest and epoch record; a failed or crashed attempt is charged its maximum), never reset by
 *     a reopen; beyond MAX_KEY_USES the store refuses to write.
 *  7. Parents are reached only by digest from the newest image, so the chain cannot be mixed.
 *  8. read() returns only bytes that passed AES-GCM; on any failure it throws a SnapshotError and
 *     leaves the destination wiped. Malformed files never raise anything but a SnapshotError.
 *
 * States:  EMPTY --write()--> CURRENT --write()/read()--> CURRENT
 *          open (durable) --> CURRENT(burn pending) --write(): burn, then write--> CURRENT
 *          CURRENT --a write failed after sealing began--> CURRENT(burn pending)     (#fail)
 *          CURRENT --a published image's counter increment or folder fsync failed--> BROKEN (reopen)
 *          any --destroy()--> DESTROYED (every call refused)
 */
import { createHash, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { SelkieError, SnapshotError, UsageError } from "../../errors.js";
import type { EnclaveServices } from "../../platform/services.js";
import {
  checkAlloc, checkBinding, checkMaxChain, checkState, infoOf,
  type DurableOptions, type GlobalValue, type ImageBinding, type ImageInfo, type SnapshotState, type VolatileOptions,
} from "./image-api.js";
import { ChunkSealer, planRead, restoreInto, sealNonZeroPages, type ChainImage } from "./image-chunks.js";
import { openEpoch, sealEpoch, type Epoch } from "./image-epoch.js";
import { EPOCH_NAME, imageFile, linkNoReplace, listSeqs, openForRead, readAt, readEpoch, removeDirIfEmpty, removeEpoch, removeQuietly, syncDir, TmpWriter, tmpFile, writeEpoch } from "./image-files.js";
import { CHUNK_PAGES, decodeGlobalBits, HEADER_FIXED, ID_BYTES, keyAad, MAX_ATTEMPT_USES, MAX_KEY_USES, parseHeader, tampered, type Header, type Manifest, type Mode } from "./image-format.js";
import { openManifest, sealManifest, unsealFailure } from "./image-manifest.js";
import { diffHashes, HASH_BYTES, isZeroPage, PAGE, pageHashes } from "./pages.js";

export { changedPagesByCompare, changedPagesByHash, pageHashes } from "./pages.js";
export type { DurableOptions, GlobalValue, ImageBinding, ImageInfo, SnapshotState, VolatileOptions } from "./image-api.js";

/** What this object knows of the newest image (invariant 3). */
interface Newest {
  info: ImageInfo;
  digest: Buffer;
  hashes: Buffer;
  /** Seqs of the chain, oldest (the full image) first. */
  chain: number[];
  keyUses: number;
}

interface Lineage {
  id: Buffer;
  key: KeyObject;
  /** The platform-sealed key blob (durable); empty for volatile. */
  sealedKey: Buffer;
  counterId: string | undefined;
}

function io(what: string, e: unknown): SnapshotError {
  return new SnapshotError("IMAGE_IO", `${what}: ${(e as Error).message}; the previous image is still the newest. Free space or fix the folder's permissions and write again`, { cause: e });
}

export class ImageStore {
  readonly dir: string;
  readonly mode: Mode;
  readonly #binding: ImageBinding;
  readonly #maxChain: number;
  readonly #services: EnclaveServices | undefined;
  #lineage: Lineage | undefined;
  #newest: Newest | undefined;
  #broken: string | undefined;
  #destroyed = false;
  /** Durable: the counter value this store counted last (invariant 3); the next image gets one more. */
  #counted = 0;
  /** Durable: the next value must be burned before an image is written (invariant 4). */
  #burn = false;
  /** AES-GCM messages sealed under the lineage key so far, failed attempts charged (invariant 6). */
  #keyUses = 0;

  private constructor(dir: string, mode: Mode, binding: ImageBinding, maxChain: number | undefined, services?: EnclaveServices) {
    this.dir = dir;
    this.mode = mode;
    this.#binding = checkBinding(binding);
    this.#maxChain = checkMaxChain(maxChain);
    this.#services = services;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Durable lineage in `dir` (created if absent): key sealed with policy MRENCLAVE, one MRENCLAVE counter. */
  static openDurable(dir: string, o: DurableOptions): ImageStore {
    if (!o || typeof o.services?.seal !== "function") throw new UsageError("IMAGE_BAD_STATE", "openDurable needs the enclave's services");
    const store = new ImageStore(dir, "durable", o.binding, o.maxChain, o.services);
    store.#openExisting(o.create !== false);
    return store;
  }

  /** Volatile lineage for EPC paging: key and freshness only in this object; `dir` must hold no images. */
  static volatile(dir: string, o: VolatileOptions): ImageStore {
    const store = new ImageStore(dir, "volatile", o?.binding, o?.maxChain);
    if (listSeqs(dir, "img").length > 0 || listSeqs(dir, "tmp").length > 0) {
      throw new UsageError("IMAGE_DIR_IN_USE", `${dir} already holds images; give each volatile store a folder of its own`);
    }
    store.#lineage = { id: randomBytes(ID_BYTES), key: createSecretKey(randomBytes(32)), sealedKey: Buffer.alloc(0), counterId: undefined };
    return store;
  }

  get latest(): ImageInfo | undefined {
    return this.#destroyed ? undefined : this.#newest && { ...this.#newest.info };
  }

  /** The lineage's id (hex), once it has one (durable: after the first write or an open of images). */
  get lineageId(): string | undefined {
    return this.#lineage?.id.toString("hex");
  }

  #usable(): void {
    if (this.#destroyed) throw new UsageError("IMAGE_STORE_DESTROYED", `the image store for ${this.dir} was destroyed; open a new one`);
    if (this.#broken) throw new SnapshotError("IMAGE_IO", `${this.#broken}; reopen the store (its newest image is accepted then)`);
  }

  // ---- open (durable) ---------------------------------------------------------------------------

  #openExisting(create: boolean): void {
    for (const seq of listSeqs(this.dir, "tmp")) removeQuietly(tmpFile(this.dir, seq)); // crashed writes
    removeEpoch(this.dir, true);
    const seqs = listSeqs(this.dir, "img");
    if (seqs.length === 0) {
      if (readEpoch(this.dir) !== undefined) {
        throw new SnapshotError("IMAGE_MISSING", `${this.dir} holds a lineage's epoch record but none of its images: they were deleted; restore the folder from a sealed backup`);
      }
      if (!create) throw new SnapshotError("IMAGE_MISSING", `${this.dir} holds no snapshot image; restore the folder, or open it with create: true to start a new lineage`);
      return;
    }
    const top = this.#load(seqs[0]!);
    this.#lineage!.counterId = top.manifest.counter!.id;
    let chain: ChainImage[] = [top];
    let current: ChainImage & { digest: Buffer } = top;
    let counted: number;
    let keyUses = top.manifest.keyUses;
    try {
      this.#checkBinding(top.manifest, top.file);
      const epoch = this.#epoch();
      const at = this.#current(top, epoch);
      if (top.header.seq !== seqs[0]) throw tampered(top.file, `it holds image ${top.header.seq}, not ${seqs[0]!}`);
      counted = at.value;
      if (epoch) keyUses = Math.max(keyUses, epoch.keyUses);
      if (at.epoch) {
        // The newest image is the one the epoch record names; images above it were never counted.
        const n = at.epoch.newest;
        closeAll(chain);
        chain = [];
        if (n.seq === 0) throw tampered(path.join(this.dir, EPOCH_NAME), "the epoch record names no image");
        current = this.#load(n.seq, n.digest, (_h, file) => tampered(file, `it is not the image ${n.seq} that the lineage's epoch record names`));
        chain = [current];
        this.#checkBinding(current.manifest, current.file);
        keyUses = Math.max(keyUses, current.manifest.keyUses);
      }
      chain = this.#loadChain(current);
      if (at.count) this.#count(counted); // published or burned, not yet counted (IMAGES.md "Open")
    } finally {
      closeAll(chain);
    }
    const newest = this.#newestOf(chain, current.digest, 0);
    this.#newest = newest;
    this.#counted = counted;
    this.#keyUses = keyUses;
    this.#burn = true;
    this.#collect(newest.chain);
  }

  /** The lineage's epoch record, checked; undefined when there is none. */
  #epoch(): Epoch | undefined {
    const b = readEpoch(this.dir);
    return b === undefined ? undefined : openEpoch(this.#lineage!, b, path.join(this.dir, EPOCH_NAME));
  }

  /**
   * IMAGES.md "Open": which object the counter's value `c` stands for. The newest image `s` or the epoch
   * record `e`: at c + 1 (published or burned, then the crash fell before the count: count it), else
   * at c. Anything older is a rollback; anything further ahead was not written by this lineage here.
   */
  #current(top: ChainImage, e: Epoch | undefined): { value: number; count: boolean; epoch?: Epoch } {
    const s = top.header.seq;
    const c = this.#counterValue(top.manifest.counter!.id, top.file);
    if (s > c + 1) throw tampered(top.file, `it is image ${s}, ahead of the platform counter (${c}); it was not written by this lineage on this platform`);
    if (e && e.value > c + 1) throw tampered(path.join(this.dir, EPOCH_NAME), `the epoch record is at ${e.value}, ahead of the platform counter (${c})`);
    if (s === c + 1) return { value: s, count: true };
    if (e?.value === c + 1) return { value: e.value, count: true, epoch: e };
    if (s === c) return { value: s, count: false };
    if (e?.value === c) return { value: c, count: false, epoch: e };
    throw new SnapshotError(
      "IMAGE_ROLLBACK",
      `${top.file}: this is image ${s} but the platform counter says ${c}: an older copy of the lineage (the newest image was deleted, or an old image or one that was never acknowledged was put in its place). Refusing it; restore the current files`,
    );
  }

  #counterValue(id: string, file: string): number {
    try {
      return this.#services!.counters.read(id);
    } catch (e) {
      if ((e as { code?: unknown }).code !== "COUNTER_NOT_FOUND") throw e;
      throw new SnapshotError("IMAGE_ROLLBACK", `${file}: the lineage's platform counter no longer exists: it was destroyed or migrated away, and this is a stale copy that must not run`, { cause: e });
    }
  }

  /** Durable: the counter still at the value this store counted, else another copy of the lineage moved it (a fork). */
  #expectCounter(): void {
    const want = this.#counted;
    const c = this.#counterValue(this.#lineage!.counterId!, this.dir);
    if (c !== want) {
      throw new SnapshotError("IMAGE_ROLLBACK", `${this.dir}: the platform counter moved from ${want} to ${c}: another copy of this lineage wrote images, so this one is stale; never run two copies of an enclave`);
    }
  }

  #checkBinding(m: Manifest, file: string): void {
    const b = this.#binding;
    const id = m.identity;
    if (!id.mrenclave.equals(b.mrenclave) || !id.mrsigner.equals(b.mrsigner) || id.isvProdId !== b.isvProdId || id.isvSvn !== b.isvSvn) {
      throw new SnapshotError(
        "IMAGE_WRONG_ENCLAVE",
        `${file}: the image was taken of enclave ${id.mrenclave.toString("hex").slice(0, 16)}… (signer ${id.mrsigner.toString("hex").slice(0, 16)}…, product ${id.isvProdId}, version ${id.isvSvn}), not of this one (${b.mrenclave.toString("hex").slice(0, 16)}…, version ${b.isvSvn}); restore it into the enclave it was taken of`,
      );
    }
    if (m.platformId !== b.platformId) {
      throw new SnapshotError("IMAGE_WRONG_PLATFORM", `${file}: the image was written on platform ${m.platformId}, not ${b.platformId}; open it there, or move it with a migration`);
    }
    if (m.instance !== b.instance) {
      throw new SnapshotError(
        "IMAGE_WRONG_INSTANCE",
        `${file}: the image belongs to ${JSON.stringify(m.instance)}, not to ${JSON.stringify(b.instance)} (the images of one database or enclave were put in another's folder); restore each instance's own folder`,
      );
    }
  }

  // ---- loading images ---------------------------------------------------------------------------

  /**
   * Opens image `seq` and checks header and manifest (IMAGES.md "Checks" 1-3). With `expect`, its
   * digest must match or `mismatch` names the error. The caller closes the returned fd.
   */
  #load(seq: number, expect?: Buffer, mismatch?: (h: Omit<Header, "sealedKey">, file: string) => SnapshotError): ChainImage & { digest: Buffer } {
    const file = imageFile(this.dir, seq);
    let f: { fd: number; size: number } | undefined;
    try {
      f = openForRead(file);
    } catch (e) {
      throw new SnapshotError("IMAGE_IO", `${file}: cannot open the image (${(e as Error).message}); fix the folder's permissions`, { cause: e });
    }
    if (f === undefined) throw new SnapshotError("IMAGE_MISSING", `${file} is missing: the lineage's image ${seq} was deleted; restore the folder from a sealed backup`);
    try {
      const fixed = Buffer.alloc(HEADER_FIXED);
      readAt(f.fd, fixed.subarray(0, Math.min(HEADER_FIXED, f.size)), 0);
      const h = parseHeader(fixed, f.size, file);
      const clear = Buffer.allocUnsafe(h.clearBytes);
      const sealed = Buffer.allocUnsafe(h.manifestLength);
      fixed.copy(clear);
      if (!readAt(f.fd, clear.subarray(HEADER_FIXED), HEADER_FIXED) || !readAt(f.fd, sealed, h.manifestStart)) throw tampered(file, "the file is cut short");
      const digest = createHash("sha256").update(clear).update(sealed).digest();
      if (expect && !digest.equals(expect)) throw mismatch!(h, file);
      if (h.mode !== this.mode) throw tampered(file, `it is a ${h.mode} image in a ${this.mode} lineage`);
      const header: Header = { ...h, sealedKey: clear.subarray(HEADER_FIXED) };
      const manifest = openManifest(this.#keyFor(header, file), header, clear, sealed, file);
      return { file, fd: f.fd, size: f.size, header, manifest, digest };
    } catch (e) {
      fs.closeSync(f.fd);
      throw e;
    }
  }

  /** The lineage key for an image: known, or (durable open) unsealed from the newest image's header. */
  #keyFor(h: Header, file: string): KeyObject {
    const l = this.#lineage;
    if (l) {
      if (!h.lineage.equals(l.id)) throw tampered(file, "it belongs to another lineage");
      return l.key;
    }
    let raw: Buffer;
    try {
      raw = this.#services!.unseal(h.sealedKey, { aad: keyAad(h.lineage) });
    } catch (e) {
      throw unsealFailure(e, file);
    }
    if (raw.length !== 32) throw tampered(file, "its sealed key is not a 32-byte key");
    const key = createSecretKey(raw);
    raw.fill(0);
    this.#lineage = { id: h.lineage, key, sealedKey: h.sealedKey, counterId: undefined };
    return key;
  }

  /** The chain of `newest`, oldest first, each parent reached by the digest its child names (invariant 4). */
  #loadChain(newest: ChainImage): ChainImage[] {
    const chain: ChainImage[] = [newest];
    try {
      for (let child = newest; child.manifest.parent !== null; ) {
        const p = child.manifest.parent;
        const parent = this.#load(p.seq, p.digest, (_h, file) => tampered(file, `it is not the image ${p.seq} that image ${child.header.seq} was written after`));
        chain.unshift(parent);
        const m = parent.manifest;
        if (parent.header.seq !== p.seq || m.chainLength !== child.manifest.chainLength - 1 || m.memoryBytes > child.manifest.memoryBytes) {
          throw tampered(parent.file, `it does not fit in the chain of image ${child.header.seq}`);
        }
        child = parent;
      }
    } catch (e) {
      closeAll(chain.slice(0, chain.length - 1));
      throw e;
    }
    return chain;
  }

  #newestOf(chain: readonly ChainImage[], digest: Buffer, writeMs: number): Newest {
    const top = chain[chain.length - 1]!;
    const m = top.manifest;
    return { info: infoOf(m, top.size, writeMs), digest, hashes: Buffer.from(m.pageHashes), chain: chain.map((c) => c.header.seq), keyUses: m.keyUses };
  }

  // ---- write ------------------------------------------------------------------------------------

  /**
   * Seals `state` as the next image (IMAGES.md "Write protocol"): a delta of the changed pages when
   * the parent's page digests are known, the chain has room, memory did not shrink and at most half
   * the pages changed; otherwise (or with opts.full) a full image.
   */
  write(state: SnapshotState, opts: { full?: boolean } = {}): ImageInfo {
    this.#usable();
    const t0 = performance.now();
    const { memory, globals, runtime } = checkState(state);
    const parent = this.#newest;
    const attempt = Math.ceil(memory.length / PAGE / CHUNK_PAGES) + 1; // the most messages this write seals
    this.#checkBudget(attempt);
    if (this.mode === "durable" && parent) {
      this.#expectCounter();
      if (this.#burn) this.#burnNext();
    }
    const plan = planPages(memory, parent, opts.full === true, this.#maxChain);
    const lineage = this.#lineageForWrite();
    const seq = this.mode === "durable" ? this.#counted + 1 : (parent?.info.seq ?? 0) + 1;
    this.#checkBudget(attempt);
    const imageId = randomBytes(ID_BYTES);
    const b = this.#binding;
    let digest: Buffer | undefined;
    let hashes: Buffer | undefined;
    let manifest: Manifest | undefined;
    let out: TmpWriter;
    try {
      out = this.#writeTmp(seq, HEADER_FIXED + lineage.sealedKey.length, (w) => {
        // A full image without a plan finds its pages as it seals them, and hashes each chunk where it
        // seals it; a lineage that never takes deltas (maxChain 1: EPC paging) needs no digests at all
        // (hashing a page costs more than sealing it).
        const digests = plan.stored || this.#maxChain === 1 ? undefined : Buffer.allocUnsafe((memory.length / PAGE) * HASH_BYTES);
        const bytes = plan.stored ? plan.stored.length * PAGE : memory.length;
        const sealer = new ChunkSealer(w, lineage.key, { lineage: lineage.id, imageId, seq }, memory, { bytes, ...(digests ? { digests } : {}) });
        try {
          if (plan.stored) for (const p of plan.stored) sealer.add(p);
          else sealNonZeroPages(memory, sealer, digests);
          sealer.finish();
        } finally {
          sealer.close();
        }
        hashes = plan.stored ? plan.hashes! : (digests ?? Buffer.alloc(0));
        manifest = {
          format: 2,
          mode: this.mode,
          kind: plan.kind,
          lineage: lineage.id,
          seq,
          identity: { mrenclave: b.mrenclave, mrsigner: b.mrsigner, isvProdId: b.isvProdId, isvSvn: b.isvSvn },
          platformId: b.platformId,
          instance: b.instance!,
          memoryBytes: memory.length,
          pageHashes: hashes,
          globals,
          runtime,
          chunks: sealer.entries,
          parent: plan.kind === "delta" ? { seq: parent!.info.seq, digest: parent!.digest } : null,
          prev: parent ? { seq: parent.info.seq, digest: parent.digest } : null,
          chainLength: plan.kind === "delta" ? parent!.info.chainLength + 1 : 1,
          changedPages: plan.changed,
          counter: lineage.counterId === undefined ? null : { id: lineage.counterId, value: seq },
          keyUses: this.#keyUses + sealer.entries.length + 1,
        };
        const { clear, sealed } = sealManifest(lineage, manifest, imageId);
        w.write(sealed);
        w.writeAt(clear, 0);
        digest = createHash("sha256").update(clear).update(sealed).digest();
      });
      this.#publish(out.file, seq);
    } catch (e) {
      this.#fail(attempt, parent !== undefined);
      throw e;
    }
    if (this.mode === "durable") this.#count(seq);
    this.#counted = seq;
    this.#keyUses = manifest!.keyUses;
    const chain = plan.kind === "delta" ? [...parent!.chain, seq] : [seq];
    const info: ImageInfo = { ...infoOf(manifest!, out.bytes, 0), writeMs: performance.now() - t0 };
    this.#newest = { info, digest: digest!, hashes: hashes!, chain, keyUses: manifest!.keyUses };
    this.#collect(chain);
    return { ...info };
  }

  #checkBudget(attempt: number): void {
    if (this.#keyUses + attempt > MAX_KEY_USES) {
      throw new SnapshotError("SNAPSHOT_UNSUPPORTED", `the lineage in ${this.dir} has used its key for about ${MAX_KEY_USES} messages; start a new lineage (destroy this one, or use a new folder)`);
    }
  }

  /**
   * A write failed after sealing began: it may have left a complete image (a tmp the host copied, or a
   * published file), so its seq is never used again (invariant 4) and its messages are charged.
   */
  #fail(attempt: number, hadImage: boolean): void {
    this.#keyUses += attempt;
    if (this.mode !== "durable") return;
    if (hadImage) {
      this.#burn = true;
      return;
    }
    if (this.#broken !== undefined) return; // image 1 was published: a reopen counts it
    // The first write of a new lineage: there is no image for an epoch record to name, so the lineage
    // is dropped instead (its counter destroyed: a copy of anything it wrote is refused) and the next
    // write starts a new one.
    const id = this.#lineage?.counterId;
    this.#lineage = undefined;
    this.#counted = 0;
    if (id !== undefined) {
      try {
        this.#services!.counters.destroy(id);
      } catch {
        /* left allocated (IMAGES.md "Limits"); nothing was counted on it */
      }
    }
  }

  /**
   * Burns the next counter value (IMAGES.md "Epoch record"): an epoch record at `#counted + 1` naming
   * the newest image, written durably, then counted. A crashed or failed attempt may have used that
   * value for an image; once it is counted here that image can never be accepted.
   */
  #burnNext(): void {
    const l = this.#lineage!;
    const n = this.#newest!;
    const value = this.#counted + 1;
    const keyUses = this.#keyUses + MAX_ATTEMPT_USES + 1; // a crashed attempt of unknown size, and this record
    this.#checkBudget(MAX_ATTEMPT_USES + 1);
    try {
      writeEpoch(this.dir, sealEpoch(l, { value, newest: { seq: n.info.seq, digest: n.digest }, keyUses }));
    } catch (e) {
      this.#keyUses = keyUses;
      throw io(`writing the epoch record of ${this.dir} failed`, e);
    }
    this.#keyUses = keyUses;
    this.#count(value);
    this.#counted = value;
    this.#burn = false;
  }

  /** The lineage, created on the first durable write: key sealed MRENCLAVE, counter MRENCLAVE at 0. */
  #lineageForWrite(): Lineage {
    if (this.#lineage) return this.#lineage;
    const s = this.#services!;
    const raw = randomBytes(32);
    const id = randomBytes(ID_BYTES);
    const sealedKey = s.seal(raw, { policy: "MRENCLAVE", aad: keyAad(id) });
    const key = createSecretKey(raw);
    raw.fill(0);
    const counterId = s.counters.create({ policy: "MRENCLAVE" }).id;
    this.#lineage = { id, key, sealedKey, counterId };
    return this.#lineage;
  }

  /** Writes `<seq>.tmp` (`body` appends from `start` and fills the header last); durable: fsynced. */
  #writeTmp(seq: number, start: number, body: (out: TmpWriter) => void): TmpWriter {
    const file = tmpFile(this.dir, seq);
    let out: TmpWriter;
    try {
      out = new TmpWriter(file, start);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") {
        throw new SnapshotError("IMAGE_IO", `${file} exists: another process is writing images to ${this.dir}; only one store may use a folder`, { cause: e });
      }
      throw io(`cannot create ${file}`, e);
    }
    try {
      body(out);
      if (this.mode === "durable") out.sync();
      out.close();
    } catch (e) {
      out.discard();
      throw e instanceof SelkieError ? e : io(`writing ${file} failed`, e);
    }
    return out;
  }

  /** Links tmp to `<seq>.img` (never replacing one), then durable: fsyncs the folder. */
  #publish(tmp: string, seq: number): void {
    const final = imageFile(this.dir, seq);
    try {
      linkNoReplace(tmp, final);
    } catch (e) {
      removeQuietly(tmp);
      if ((e as NodeJS.ErrnoException).code === "EEXIST") {
        throw new SnapshotError("IMAGE_ROLLBACK", `${final} already exists: another copy of this lineage is writing to ${this.dir}; never run two copies of an enclave`, { cause: e });
      }
      throw io(`publishing ${final} failed`, e);
    }
    if (this.mode !== "durable") return;
    try {
      syncDir(this.dir);
    } catch (e) {
      this.#broken = `image ${seq} was written but the folder could not be synced (${(e as Error).message})`;
      throw new SnapshotError("IMAGE_IO", `${this.#broken}; reopen the store`, { cause: e });
    }
  }

  /** Increments the lineage counter to `seq` (IMAGES.md "Write protocol" 5): an image's seq or a burned value. */
  #count(seq: number): void {
    const id = this.#lineage!.counterId!;
    let v: number;
    try {
      v = this.#services!.counters.increment(id);
    } catch (e) {
      this.#broken = `image number ${seq} was written but the platform counter could not be incremented (${(e as Error).message})`;
      throw new SnapshotError("IMAGE_IO", `${this.#broken}; reopen the store (the image is accepted then)`, { cause: e });
    }
    if (v !== seq) {
      this.#broken = `the platform counter reads ${v} after image ${seq}`;
      throw new SnapshotError("IMAGE_ROLLBACK", `${this.dir}: ${this.#broken}: another copy of this lineage is in use; never run two copies of an enclave`);
    }
  }

  /** Deletes every image not in `chain` (stale after a consolidation or a crash). */
  #collect(chain: readonly number[]): void {
    const keep = new Set(chain);
    for (const seq of listSeqs(this.dir, "img")) if (!keep.has(seq)) removeQuietly(imageFile(this.dir, seq));
  }

  // ---- read -------------------------------------------------------------------------------------

  /**
   * Verifies and restores the newest image, applying its chain. `alloc(memoryBytes)` may supply the
   * destination (exactly memoryBytes long); it is called after every header and manifest passed.
   */
  read(alloc?: (memoryBytes: number) => Uint8Array): { memory: Uint8Array; globals: GlobalValue[]; runtime: Record<string, unknown>; info: ImageInfo } {
    this.#usable();
    const t0 = performance.now();
    const newest = this.#newest;
    if (newest === undefined) throw new SnapshotError("IMAGE_MISSING", `${this.dir} holds no snapshot image yet; write one first`);
    const seq = newest.info.seq;
    if (this.mode === "durable") this.#expectCounter();
    const top = this.#load(seq, newest.digest, (h, file) =>
      h.seq < seq
        ? new SnapshotError("IMAGE_ROLLBACK", `${file}: it holds the older image ${h.seq} where image ${seq} should be (an old copy was put back); restore the current files`)
        : tampered(file, `it is not the image ${seq} this store wrote or opened`),
    );
    let chain: ChainImage[] = [top];
    try {
      chain = this.#loadChain(top);
      const plan = planRead(chain);
      const memory = alloc ? checkAlloc(alloc(plan.memoryBytes), plan.memoryBytes) : new Uint8Array(plan.memoryBytes);
      try {
        restoreInto(plan, this.#lineage!.key, memory, alloc === undefined);
      } catch (e) {
        memory.fill(0);
        throw e;
      }
      const m = top.manifest;
      const globals = m.globals.map((g) => ({ name: g.name, type: g.type, value: decodeGlobalBits(g.type, g.bits) }));
      return { memory, globals, runtime: m.runtime, info: { ...newest.info, readMs: performance.now() - t0 } };
    } finally {
      closeAll(chain);
    }
  }

  // ---- destroy ----------------------------------------------------------------------------------

  /** Deletes every image file (durable: first destroys the counter, so no copy can run again). */
  destroy(): void {
    if (this.#destroyed) return;
    const id = this.#lineage?.counterId;
    if (this.mode === "durable" && id !== undefined) {
      try {
        this.#services!.counters.destroy(id);
      } catch (e) {
        if ((e as { code?: unknown }).code !== "COUNTER_NOT_FOUND") throw e;
      }
    }
    this.#destroyed = true;
    this.#newest = undefined;
    this.#lineage = undefined;
    for (const kind of ["tmp", "img"] as const) {
      for (const seq of listSeqs(this.dir, kind)) removeQuietly(kind === "img" ? imageFile(this.dir, seq) : tmpFile(this.dir, seq));
    }
    removeEpoch(this.dir, false);
    removeDirIfEmpty(this.dir);
  }
}

// ---- helpers -------------------------------------------------------------------------------------

function closeAll(chain: readonly ChainImage[]): void {
  for (const c of chain) {
    try {
      fs.closeSync(c.fd);
    } catch {
      /* already closed */
    }
  }
}

/**
 * Which pages the next image stores (IMAGES.md "Write protocol" 1). `stored` undefined: a full image
 * whose pages and digests sealNonZeroPages finds while it seals.
 */
function planPages(
  memory: Uint8Array,
  parent: Newest | undefined,
  full: boolean,
  maxChain: number,
): { kind: "full" | "delta"; changed: number; stored?: number[]; hashes?: Buffer } {
  const total = memory.length / PAGE;
  if (!parent || full || parent.info.chainLength >= maxChain || total < parent.info.totalPages || parent.hashes.length === 0) return { kind: "full", changed: total };
  const hashes = pageHashes(memory);
  const changed = diffHashes(hashes, parent.hashes);
  if (changed.length * 2 <= total) return { kind: "delta", changed: changed.length, stored: changed.filter((p) => !isZeroPage(hashes, p)), hashes };
  const stored: number[] = [];
  for (let p = 0; p < total; p++) if (!isZeroPage(hashes, p)) stored.push(p);
  return { kind: "full", changed: total, stored, hashes };
}

