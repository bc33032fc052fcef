/**
 * SentState (runtime/migration/protocol/source-files.ts): which bytes of the source's files a
 * pre-copy round sends, on real files. Read units (254 slots) whose digest did not change are
 * skipped whole; a changed slot inside one is found and sent alone; fileSha256 streams.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { SentState, fileSha256 } from "../../runtime/migration/protocol/source-files.js";
import { CHUNK_BYTES } from "../../runtime/migration/protocol/messages.js";
import { SLOT } from "../../runtime/storage/page-store.js";
import { tempDir } from "../helpers.js";

const UNIT_SLOTS = CHUNK_BYTES / SLOT;

function files(slots: number): { slots: string; log: string } {
  const dir = tempDir("selkie-sentstate-");
  const s = path.join(dir, "x.db");
  fs.writeFileSync(s, randomBytes(slots * SLOT));
  fs.writeFileSync(`${s}.log`, randomBytes(1000));
  return { slots: s, log: `${s}.log` };
}

function overwriteSlot(file: string, slot: number): void {
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, randomBytes(SLOT), 0, SLOT, slot * SLOT);
  fs.closeSync(fd);
}

const slotChunks = (d: ReturnType<SentState["delta"]>): { offset: number; length: number }[] =>
  d.chunks.filter((c) => c.file === "slots").map((c) => ({ offset: c.offset, length: c.bytes.length }));

test("a round after an unchanged round sends no slot, and one changed slot is sent alone", () => {
  const f = files(3 * UNIT_SLOTS + 10); // three whole read units and a partial one
  const sent = new SentState();
  const first = sent.delta(f.slots, f.log, true);
  assert.equal(slotChunks(first).reduce((n, c) => n + c.length, 0), (3 * UNIT_SLOTS + 10) * SLOT, "round 0 sends every slot");
  assert.deepEqual(slotChunks(sent.delta(f.slots, f.log, false)), [], "nothing changed, nothing sent");
  for (const s of [1, UNIT_SLOTS + 7, 3 * UNIT_SLOTS + 4]) overwriteSlot(f.slots, s);
  assert.deepEqual(
    slotChunks(sent.delta(f.slots, f.log, false)),
    [1, UNIT_SLOTS + 7, 3 * UNIT_SLOTS + 4].map((s) => ({ offset: s * SLOT, length: SLOT })),
    "exactly the changed slots, in the first, second and the partial unit",
  );
  assert.equal(sent.slotsResent, 3);
  assert.deepEqual(slotChunks(sent.delta(f.slots, f.log, false)), [], "and then nothing again");
  for (const s of [UNIT_SLOTS - 2, UNIT_SLOTS - 1, UNIT_SLOTS]) overwriteSlot(f.slots, s);
  assert.deepEqual(
    slotChunks(sent.delta(f.slots, f.log, false)),
    [
      { offset: (UNIT_SLOTS - 2) * SLOT, length: 2 * SLOT },
      { offset: UNIT_SLOTS * SLOT, length: SLOT },
    ],
    "adjacent changed slots travel as one chunk, cut at the read unit's end",
  );
});

test("a slot changed back to what was sent before is sent again, since the destination has the newer bytes", () => {
  const f = files(UNIT_SLOTS);
  const sent = new SentState();
  sent.delta(f.slots, f.log, true);
  const fd = fs.openSync(f.slots, "r+");
  const old = Buffer.alloc(SLOT);
  fs.readSync(fd, old, 0, SLOT, 5 * SLOT);
  fs.writeSync(fd, randomBytes(SLOT), 0, SLOT, 5 * SLOT);
  assert.deepEqual(slotChunks(sent.delta(f.slots, f.log, false)), [{ offset: 5 * SLOT, length: SLOT }]);
  fs.writeSync(fd, old, 0, SLOT, 5 * SLOT);
  fs.closeSync(fd);
  assert.deepEqual(slotChunks(sent.delta(f.slots, f.log, false)), [{ offset: 5 * SLOT, length: SLOT }], "the unit's digest matches an older round's, not the last one's");
});

test("fileSha256 of a file larger than its 1 MiB read buffer is the SHA-256 of its bytes", () => {
  const f = files(2 * UNIT_SLOTS + 3);
  assert.deepEqual(fileSha256(f.slots), createHash("sha256").update(fs.readFileSync(f.slots)).digest());
});
