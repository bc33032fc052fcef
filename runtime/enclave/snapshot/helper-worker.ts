/**
 * TRUSTED. The helper thread of helper.ts: hashes windows of pages and opens sealed chunks that the
 * main thread put in shared slots (protocol: helper.ts). It never exits by itself; main unrefs it.
 */
import { workerData } from "node:worker_threads";
import { openInPlace } from "./chunk-cipher.js";
import { hashPagesInto, PAGE } from "./page-digest.js";
import { at, AUX_LEN, BELL, BUSY, COUNT, DONE, KIND, KIND_HASH, READY, RESULT, SLOT_AUX, SLOT_DATA, SLOTS, STATE } from "./helper-slots.js";

const { ctrl, data, aux, key } = workerData as { ctrl: SharedArrayBuffer; data: SharedArrayBuffer; aux: SharedArrayBuffer; key: SharedArrayBuffer };
const st = new Int32Array(ctrl);
const dataOf = (s: number): Uint8Array => new Uint8Array(data, s * SLOT_DATA, SLOT_DATA);
const auxOf = (s: number): Uint8Array => new Uint8Array(aux, s * SLOT_AUX, SLOT_AUX);

function run(s: number): void {
  const n = st[at(s, COUNT)]!;
  if (st[at(s, KIND)] === KIND_HASH) {
    hashPagesInto(dataOf(s), auxOf(s), 0, n);
    return;
  }
  const a = auxOf(s);
  const ok = openInPlace(dataOf(s), n * PAGE, Buffer.from(new Uint8Array(key)), a.subarray(0, 12), a.subarray(12, st[at(s, AUX_LEN)]!));
  st[at(s, RESULT)] = ok ? 1 : 0;
}

let rung = Atomics.load(st, BELL);
for (;;) {
  let worked = false;
  for (let s = 0; s < SLOTS; s++) {
    if (Atomics.compareExchange(st, at(s, STATE), READY, BUSY) !== READY) continue;
    run(s);
    Atomics.store(st, at(s, STATE), DONE);
    Atomics.notify(st, at(s, STATE));
    worked = true;
  }
  if (!worked) {
    Atomics.wait(st, BELL, rung);
    rung = Atomics.load(st, BELL);
  }
}
