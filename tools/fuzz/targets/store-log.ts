/**
 * The sealed store's log file (FORMAT.md: header, then sealed table records), UNTRUSTED bytes on
 * disk. Input: the whole NAME.log; the slot file stays authentic. Property: StorageError, or the
 * database reads back exactly its last commit (never a wrong or older value as if authentic).
 */
import type { Target } from "../target.js";
import { openAndCheck, storeFixture, type StoreFixture } from "./store-fixture.js";

let f: StoreFixture;

export const target: Target = {
  name: "store-log",
  about: "sealed store header and log records: StorageError or exactly the last commit",
  maxLength: 64 * 1024,
  async seeds() {
    f = await storeFixture();
    return [f.log];
  },
  run(data) {
    openAndCheck(f, f.slots, data);
  },
};
