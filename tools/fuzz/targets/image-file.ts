/**
 * Snapshot image files (IMAGES.md v2: clear header, sealed msgpack manifest with the chunk table,
 * AES-GCM chunks), UNTRUSTED bytes in the snapshot folder. A real durable lineage of two images (a
 * full one and a delta) on a real platform; input byte 0 picks the file the rest replaces (even: the
 * newest, the delta; odd: its parent). Property: SnapshotError with a documented code, or exactly the
 * newest image's memory, globals and runtime state.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ImageStore, type DurableOptions, type SnapshotState } from "../../../runtime/enclave/snapshot/image-store.js";
import { imageFile } from "../../../runtime/enclave/snapshot/image-files.js";
import { SnapshotError } from "../../../runtime/errors.js";
import { Platform } from "../../../runtime/platform/platform.js";
import { bindingOf, identity } from "../../../test/enclave/image-workload.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

const CODES = ["IMAGE_TAMPERED", "IMAGE_ROLLBACK", "IMAGE_UPGRADE_REQUIRED", "IMAGE_WRONG_PLATFORM", "IMAGE_WRONG_ENCLAVE", "IMAGE_VERSION_UNSUPPORTED", "IMAGE_MISSING"];
const PAGE = 4096;

let dir = "";
let o: DurableOptions;
let files: Buffer[] = [];
let want: SnapshotState;

function same(got: { memory: Uint8Array; globals: unknown; runtime: unknown }): boolean {
  const norm = (g: unknown): string => JSON.stringify(g, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  return Buffer.from(got.memory).equals(Buffer.from(want.memory)) && norm(got.globals) === norm(want.globals) && norm(got.runtime) === norm(want.runtime);
}

export const target: Target = {
  name: "image-file",
  about: "snapshot image header, manifest, chunk table and chunks: SnapshotError or exactly the newest image",
  maxLength: 32 * 1024,
  async seeds() {
    const platform = await Platform.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-platform-")));
    const id = identity("fuzz-image");
    o = { services: platform.servicesFor(id), binding: bindingOf(id, platform.platformId) };
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-image-"));
    const store = ImageStore.openDurable(dir, o);
    const memory = new Uint8Array(2 * 65536);
    memory.fill(7, 0, PAGE);
    memory.fill(9, 5 * PAGE, 6 * PAGE);
    store.write({ memory, globals: [{ name: "g", type: "i32", value: 1 }, { name: "h", type: "i64", value: -5n }], runtime: { seq: 1, note: "full" } });
    const next = new Uint8Array(memory);
    next.fill(3, 17 * PAGE, 18 * PAGE);
    want = { memory: next, globals: [{ name: "g", type: "i32", value: 2 }, { name: "h", type: "i64", value: 2n ** 40n }], runtime: { seq: 2, note: "delta" } };
    store.write(want);
    files = [fs.readFileSync(imageFile(dir, 2)), fs.readFileSync(imageFile(dir, 1))];
    return files.map((f, i) => Buffer.concat([Buffer.from([i]), f]));
  },
  run(data) {
    if (data.length === 0) return;
    const which = data[0]! & 1;
    fs.writeFileSync(imageFile(dir, 2 - which), data.subarray(1));
    fs.writeFileSync(imageFile(dir, 1 + which), files[1 - which]!);
    const got = refusedOr(() => ImageStore.openDurable(dir, o).read(), [SnapshotError], CODES);
    if (got && !same(got)) throw new PropertyViolation("a changed image was accepted and restored a state that is not the newest image's");
  },
};
