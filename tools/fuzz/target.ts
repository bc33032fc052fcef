/**
 * A fuzz target: bytes an attacker controls in, one of the project's typed errors or a correct value
 * out. `run` returns normally when the input was refused with an allowed error or accepted with the
 * right value; anything it throws is a finding (a property broke). See README "Fuzzing".
 */
export interface Target {
  name: string;
  /** What the input is and what must hold, one line (printed by `npm run fuzz -- --list`). */
  about: string;
  /** Longest input the mutator makes for this target. */
  maxLength: number;
  /** Inputs made at start-up (authentic files, valid requests), in addition to test/fuzz/corpus/<name>/. */
  seeds(): Uint8Array[] | Promise<Uint8Array[]>;
  run(data: Uint8Array): void;
}

/** A property that broke on an input: always a finding, whatever else the target allows. */
export class PropertyViolation extends Error {
  override name = "PropertyViolation";
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Runs `fn` and returns its value, or undefined when it threw one of `allowed` (optionally with a code
 * from `codes`). Any other throw becomes a PropertyViolation naming what was thrown.
 */
export function refusedOr<T>(fn: () => T, allowed: readonly ErrorClass[], codes?: readonly string[]): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PropertyViolation) throw e;
    if (allowed.some((c) => e instanceof c)) {
      const code = (e as { code?: unknown }).code;
      if (codes && !codes.includes(String(code))) throw new PropertyViolation(`refused with an unexpected code ${String(code)}: ${(e as Error).message}`, { cause: e });
      return undefined;
    }
    const what = e instanceof Error ? `${e.constructor.name}: ${e.message}` : `a non-Error ${typeof e}: ${String(e)}`;
    throw new PropertyViolation(`not a typed error: ${what}`, { cause: e });
  }
}
