/**
 * Which lineage an image belongs to (IMAGES.md "Manifest", "Keys", "Upgrading from version 1"): images
 * of one instance are refused for another instance of the same enclave, a destroyed lineage stays
 * dead when its folder is copied back, key uses survive a reopen, version 1 images are refused with
 * what to do, and volatile images are readable by nothing but the store object that wrote them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createSecretKey } from "node:crypto";
import { ImageStore, type DurableOptions } from "../../runtime/enclave/snapshot/image-store.js";
import { keyAad, MAX_ATTEMPT_USES, parseHeader, type Manifest } from "../../runtime/enclave/snapshot/image-format.js";
import { openManifest } from "../../runtime/enclave/snapshot/image-manifest.js";
import { SelkieError } from "../../runtime/errors.js";
import { tempDir, testPlatform } from "../helpers.js";
import { bindingOf, flipByte, identity, imagePath, imageSeqs, snapshotOf, Workload } from "./image-workload.js";

function options(name: string, instance?: string): DurableOptions {
  const id = identity(name);
  return { services: testPlatform.servicesFor(id), binding: { ...bindingOf(id, testPlatform.platformId), ...(instance === undefined ? {} : { instance }) } };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SelkieError, `a typed error, not ${String(e)}`);
    return e.code;
  }
  return "(no error)";
}

/** The newest image's manifest, opened as the enclave would (its key unsealed by its own services). */
function newestManifest(dir: string, o: DurableOptions): Manifest {
  const seqs = imageSeqs(dir);
  const file = imagePath(dir, seqs[seqs.length - 1]!);
  const b = fs.readFileSync(file);
  const h = parseHeader(b.subarray(0, 68), b.length, file);
  const header = { ...h, sealedKey: b.subarray(68, h.clearBytes) };
  const key = createSecretKey(o.services.unseal(header.sealedKey, { aad: keyAad(h.lineage) }));
  return openManifest(key, header, b.subarray(0, h.clearBytes), b.subarray(h.manifestStart), file);
}

test("the images of one instance put in another instance's folder (same enclave, same platform) are refused with IMAGE_WRONG_INSTANCE", () => {
  const a = options("two-instances", "database:/srv/a/orders.db");
  const b = options("two-instances", "database:/srv/b/users.db");
  const dirA = tempDir("selkie-instance-a-");
  const dirB = tempDir("selkie-instance-b-");
  const w = new Workload(3, 2, 4);
  ImageStore.openDurable(dirA, a).write(snapshotOf(w.next()));
  ImageStore.openDurable(dirB, b).write(snapshotOf(w.next()));
  for (const f of fs.readdirSync(dirB)) fs.rmSync(path.join(dirB, f));
  for (const f of fs.readdirSync(dirA)) fs.copyFileSync(path.join(dirA, f), path.join(dirB, f));
  assert.equal(codeOf(() => ImageStore.openDurable(dirB, b).read()), "IMAGE_WRONG_INSTANCE");
  assert.equal(codeOf(() => ImageStore.openDurable(dirA, b)), "IMAGE_WRONG_INSTANCE", "in its own folder too");
  assert.equal(codeOf(() => ImageStore.openDurable(dirA, a).read()), "(no error)", "its own instance still reads it");
});

test("a destroyed lineage whose folder is copied back is refused (its counter is gone), also with create: true", () => {
  const o = options("destroyed");
  const dir = tempDir("selkie-destroyed-");
  const backup = tempDir("selkie-destroyed-copy-");
  const store = ImageStore.openDurable(dir, o);
  const w = new Workload(4, 2, 4);
  for (let i = 0; i < 3; i++) store.write(snapshotOf(w.next()));
  ImageStore.openDurable(dir, o).write(snapshotOf(w.next())); // a reopen: an epoch record is in the folder too
  fs.cpSync(dir, backup, { recursive: true });
  ImageStore.openDurable(dir, o).destroy();
  assert.equal(fs.existsSync(dir), false, "destroy() removed every file, the epoch record too");
  fs.cpSync(backup, dir, { recursive: true });
  assert.equal(codeOf(() => ImageStore.openDurable(dir, o)), "IMAGE_ROLLBACK");
  assert.equal(codeOf(() => ImageStore.openDurable(dir, { ...o, create: true })), "IMAGE_ROLLBACK");
});

test("key uses continue across reopens: a reopened lineage's next image counts every earlier message plus a crashed attempt's maximum", () => {
  const o = options("key-uses");
  const dir = tempDir("selkie-key-uses-");
  const w = new Workload(5, 2, 4);
  const store = ImageStore.openDurable(dir, o);
  store.write(snapshotOf(w.next()), { full: true });
  const first = newestManifest(dir, o).keyUses;
  store.write(snapshotOf(w.next()), { full: true });
  const second = newestManifest(dir, o);
  assert.equal(second.keyUses, first + second.chunks.length + 1, "each image adds its chunks and its manifest");
  const again = ImageStore.openDurable(dir, o);
  again.write(snapshotOf(w.next()), { full: true });
  const third = newestManifest(dir, o);
  assert.equal(third.keyUses, second.keyUses + MAX_ATTEMPT_USES + 1 + third.chunks.length + 1, "the reopen's burn is charged, nothing is reset");
  assert.ok(third.prev !== null && third.prev.seq === second.seq, "a full image names the image before it");
});

test("a version 1 image is refused with IMAGE_UPGRADE_REQUIRED, whose message says to take a new snapshot and what is lost", () => {
  const o = options("upgrade");
  const dir = tempDir("selkie-upgrade-");
  ImageStore.openDurable(dir, o).write(snapshotOf(new Workload(6, 2, 4).next()));
  const file = imagePath(dir, imageSeqs(dir)[0]!);
  flipByte(file, 4, 2 ^ 1); // version byte 2 -> 1
  try {
    ImageStore.openDurable(dir, o);
    assert.fail("opened a version 1 image");
  } catch (e) {
    assert.ok(e instanceof SelkieError);
    assert.equal(e.code, "IMAGE_UPGRADE_REQUIRED");
    assert.match(e.message, /delete the folder .* and take a new snapshot/);
    assert.match(e.message, /loses the state/);
  }
});

test("volatile images are readable by no other store: a second volatile store refuses the folder, a durable open refuses the images", () => {
  const id = identity("volatile-only");
  const dir = path.join(tempDir("selkie-volatile-"), "v");
  const v = ImageStore.volatile(dir, { binding: bindingOf(id, testPlatform.platformId), maxChain: 1 });
  const s = snapshotOf(new Workload(7, 2, 4).next());
  v.write(s);
  assert.equal(codeOf(() => ImageStore.volatile(dir, { binding: bindingOf(id, testPlatform.platformId) })), "IMAGE_DIR_IN_USE");
  assert.equal(codeOf(() => ImageStore.openDurable(dir, options("volatile-only"))), "IMAGE_TAMPERED");
  assert.ok(Buffer.from(v.read().memory).equals(Buffer.from(s.memory)), "the store that wrote it still reads it");
  v.destroy();
  assert.equal(fs.existsSync(dir), false);
});
