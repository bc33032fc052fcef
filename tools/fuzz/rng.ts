import { rng as mulberry } from "../rng.js";

export interface Rng {
  /** An integer in [0, n). */
  int(n: number): number;
}

export function makeRng(seed: number): Rng {
  const next = mulberry(seed);
  return { int: (n) => Math.floor(next() * n) };
}
