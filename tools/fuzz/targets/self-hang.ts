/**
 * Not a parser: the engine's check of its per-input time bound. Its seed "HANG" never returns; the
 * engine must stop the worker, save that input as a "hang" finding with a command to reproduce it,
 * and carry on. Not part of `npm run fuzz` without its name.
 */
import type { Target } from "../target.js";

export const target: Target = {
  name: "self-hang",
  about: "the engine's own check: the input HANG never returns",
  maxLength: 8,
  seeds: () => [Buffer.from("HANG")],
  run(d) {
    if (Buffer.from(d).toString("latin1") === "HANG") for (;;);
  },
};
