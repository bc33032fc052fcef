/**
 * Not a parser: the engine's own check. It breaks its property only for inputs that start with the
 * bytes "FUZZ", which a blind mutator of its seed ("FOO!") rarely makes but a coverage-guided one
 * finds in seconds, one byte at a time (each comparison below is an edge). Not part of `npm run fuzz`
 * without its name.
 */
import { PropertyViolation, type Target } from "../target.js";

export const target: Target = {
  name: "self-check",
  about: "the engine's own check: finds the input starting FUZZ",
  maxLength: 16,
  seeds: () => [Buffer.from("FOO!")],
  run(d) {
    if (d[0] === 0x46) {
      if (d[1] === 0x55) {
        if (d[2] === 0x5a) {
          if (d[3] === 0x5a) throw new PropertyViolation("found FUZZ");
        }
      }
    }
  },
};
