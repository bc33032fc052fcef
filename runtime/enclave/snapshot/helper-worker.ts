/**
 * TRUSTED. The helper thread of helper.ts: hashes windows of pages, opens sealed chunks and seals
 * chunks that the main thread put in shared slots (protocol: helper.ts). It never exits by itself;
 * main unrefs it. Its copy of the lineage key lives only for one task and is wiped after it.
 */
import { workerData } from "node:worker_threads";
import { openInPlace, sealInPlace } from "./chunk-cipher.js";
import { hashPagesInto, PAGE } from "./page-digest.js";
import { at, AUX_CIPHER, AUX_LEN, BELL, BUSY, COUNT, DONE, KIND, KIND_HASH, KIND_OPEN, KIND_SEAL_HASH, READY, RESULT, SLOT_AUX, SLOT_DATA, SLOTS, STATE } from "./helper-slots.js";

const { ctrl, data, aux, key } = workerData as { ctrl: SharedArrayBuffer; data: SharedArrayBuffer; aux: SharedArrayBuffer; key: SharedArrayBuffer };
const st = new Int32Array(ctrl);
const dataOf = (s: number): Uint8Array => new Uint8Array(data, s * SLOT_DATA, SLOT_DATA);
const auxOf = (s: number): Uint8Array => new Uint8Array(aux, s * SLOT_AUX, SLOT_AUX);

function run(s: number): void {
  const n = st[at(s, COUNT)]!;
  const kind = st[at(s, KIND)];
  if (kind === KIND_HASH) {
    hashPagesInto(dataOf(s), auxOf(s), 0, n);
    return;
  }
  const a = auxOf(s);
  const nonce = a.subarray(AUX_CIPHER, AUX_CIPHER + 12);
  const aad = a.subarray(AUX_CIPHER + 12, AUX_CIPHER + st[at(s, AUX_LEN)]!);
  const k = Buffer.from(new Uint8Array(key));
  try {
    if (kind === KIND_OPEN) {
      st[at(s, RESULT)] = openInPlace(dataOf(s), n * PAGE, k, nonce, aad) ? 1 : 0;
      return;
    }
    if (kind === KIND_SEAL_HASH) hashPagesInto(dataOf(s), a, 0, n);
    sealInPlace(dataOf(s), n * PAGE, k, nonce, aad);
    st[at(s, RESULT)] = 1;
  } finally {
    k.fill(0);
  }
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
