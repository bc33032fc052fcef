/**
 * The sealed store's slot file (FORMAT.md: AES-GCM sealed 4 KiB blocks), UNTRUSTED bytes on disk.
 * Input: the whole slot file; the log stays authentic. Property: StorageError, or exactly the last
 * commit's blocks.
 */
import type { Target } from "../target.js";
import { openAndCheck, storeFixture, type StoreFixture } from "./store-fixture.js";

let f: StoreFixture;

export const target: Target = {
  name: "store-slots",
  about: "sealed store slot file (sealed blocks): StorageError or exactly the last commit",
  maxLength: 128 * 1024,
  async seeds() {
    f = await storeFixture();
    return [f.slots];
  },
  run(data) {
    openAndCheck(f, data, f.log);
  },
};
