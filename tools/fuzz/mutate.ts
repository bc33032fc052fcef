/**
 * Byte-level mutations in the style of libFuzzer/AFL "havoc": flips, interesting values, arithmetic
 * on 8/16/32-bit fields in both byte orders, block insert/delete/copy, splicing with another corpus
 * entry, and the words the compare hooks saw the code under test compare against (its dictionary).
 */
import type { Rng } from "./rng.js";

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

export function mutate(input: Uint8Array, rng: Rng, words: readonly Uint8Array[], corpus: readonly Uint8Array[], maxLength: number): Uint8Array {
  let b: Buffer = Buffer.from(input);
  const stack = 1 << rng.int(4);
  for (let i = 0; i < stack; i++) b = once(b, rng, words, corpus);
  return b.length > maxLength ? b.subarray(0, maxLength) : b;
}

function once(b: Buffer, rng: Rng, words: readonly Uint8Array[], corpus: readonly Uint8Array[]): Buffer {
  const pos = (extra = 0): number => rng.int(Math.max(1, b.length - extra));
  switch (rng.int(12)) {
    case 0: // flip a bit
      if (b.length) b[pos()]! ^= 1 << rng.int(8);
      return b;
    case 1: // a random byte
      if (b.length) b[pos()] = rng.int(256);
      return b;
    case 2: { // an interesting value, 1/2/4 bytes, either order
      const v = INTERESTING[rng.int(INTERESTING.length)]!;
      const w = [1, 2, 4][rng.int(3)]!;
      if (b.length < w) return b;
      const at = pos(w - 1);
      const le = rng.int(2) === 0;
      for (let k = 0; k < w; k++) b[at + (le ? k : w - 1 - k)] = (v >>> (8 * k)) & 0xff;
      return b;
    }
    case 3: { // add or subtract a little, 1/2/4 bytes big-endian (the project's formats are BE)
      const w = [1, 2, 4][rng.int(3)]!;
      if (b.length < w) return b;
      const at = pos(w - 1);
      const d = rng.int(35) - 17 || 1;
      const v = b.readUIntBE(at, w) + d;
      b.writeUIntBE(((v % 2 ** (8 * w)) + 2 ** (8 * w)) % 2 ** (8 * w), at, w);
      return b;
    }
    case 4: { // delete a block
      if (b.length < 2) return b;
      const at = pos();
      const n = 1 + rng.int(Math.min(b.length - at, 1 + rng.int(64)));
      return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
    }
    case 5: { // insert random bytes or a repeated byte
      const n = 1 + rng.int(rng.int(2) ? 4 : 64);
      const ins = Buffer.alloc(n, rng.int(2) ? rng.int(256) : 0);
      if (rng.int(2)) for (let k = 0; k < n; k++) ins[k] = rng.int(256);
      const at = rng.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
    }
    case 6: { // copy a block within the input
      if (b.length < 2) return b;
      const from = pos();
      const n = 1 + rng.int(Math.min(b.length - from, 64));
      const to = pos();
      const chunk = Buffer.from(b.subarray(from, from + n));
      if (rng.int(2)) return Buffer.concat([b.subarray(0, to), chunk, b.subarray(to)]);
      chunk.copy(b, to);
      return b;
    }
    case 7: // cut the end
      return b.subarray(0, rng.int(b.length + 1));
    case 8:
    case 9: { // a dictionary word, inserted or written over
      if (!words.length) return b;
      const w = words[rng.int(words.length)]!;
      const at = rng.int(b.length + 1);
      if (rng.int(2)) return Buffer.concat([b.subarray(0, at), w, b.subarray(at)]);
      const out = Buffer.from(b);
      Buffer.from(w).copy(out, Math.min(at, Math.max(0, out.length - w.length)));
      return out;
    }
    case 10: { // splice with another corpus entry
      if (!corpus.length) return b;
      const o = corpus[rng.int(corpus.length)]!;
      const cut = rng.int(b.length + 1);
      const from = rng.int(o.length + 1);
      return Buffer.concat([b.subarray(0, cut), o.subarray(from)]);
    }
    default: { // an ASCII digit run replaced by an interesting number (text formats)
      const s = rng.int(Math.max(1, b.length));
      let i = s;
      while (i < b.length && !(b[i]! >= 0x30 && b[i]! <= 0x39)) i++;
      if (i >= b.length) return b;
      let j = i;
      while (j < b.length && b[j]! >= 0x30 && b[j]! <= 0x39) j++;
      const nums = ["0", "-1", "1", "255", "4294967296", "9007199254740993", "1e999", "-0", "2147483648", "18446744073709551616", "1.5"];
      return Buffer.concat([b.subarray(0, i), Buffer.from(nums[rng.int(nums.length)]!), b.subarray(j)]);
    }
  }
}
