// The runtime half of the instrumentation: what Jazzer.js's instrumented code calls.
//   __jazzer_cov[id] = __jazzer_cov[id] % 255 + 1     (edge counters, one Uint8Array per module)
//   Fuzzer.tracer.traceStrCmp(a, b, op, pc)            (string compares: feeds the dictionary)
//   Fuzzer.tracer.traceNumberCmp(a, b, op, pc)         (number compares: feeds the dictionary)
//   Fuzzer.tracer.traceAndReturn(value, caseTest, pc)  (switch cases)
// Each hook computes and returns exactly what the original expression did.

const MAX_WORDS = 4096;

export function installCoverage() {
  if (globalThis.Fuzzer) return globalThis.Fuzzer;
  const modules = [];
  const words = new Set();
  const word = (w) => {
    if (words.size < MAX_WORDS && w.length > 0 && w.length <= 64) words.add(w);
  };
  const num = (n) => {
    if (Number.isInteger(n) && Math.abs(n) < 2 ** 32) word(String(n));
    if (Number.isInteger(n) && n >= 0 && n < 128) word(String.fromCharCode(n)); // a byte compared against
  };
  const strCmp = (a, b, op) => {
    switch (op) {
      case "==": return a == b;
      case "===": return a === b;
      case "!=": return a != b;
      case "!==": return a !== b;
    }
    throw new Error(`unexpected string comparison operator ${op}`);
  };
  const numCmp = (a, b, op) => {
    switch (op) {
      case "==": return a == b;
      case "===": return a === b;
      case "!=": return a != b;
      case "!==": return a !== b;
      case ">": return a > b;
      case ">=": return a >= b;
      case "<": return a < b;
      case "<=": return a <= b;
    }
    throw new Error(`unexpected number comparison operator ${op}`);
  };
  const fuzzer = {
    modules,
    words,
    coverageTracker: {
      createModuleCounters(n) {
        const counters = new Uint8Array(n);
        modules.push(counters);
        return counters;
      },
    },
    tracer: {
      traceStrCmp(a, b, op) {
        const r = strCmp(a, b, op);
        if (typeof a === "string" && typeof b === "string" && a !== b) (word(a), word(b));
        return r;
      },
      traceNumberCmp(a, b, op) {
        const r = numCmp(a, b, op);
        if (typeof a === "number" && typeof b === "number" && a !== b) (num(a), num(b));
        return r;
      },
      traceAndReturn(current, target) {
        if (typeof target === "string" && typeof current === "string" && current !== target) word(target);
        if (typeof target === "number" && typeof current === "number" && current !== target) num(target);
        return target;
      },
    },
  };
  globalThis.Fuzzer = fuzzer;
  // The ESM preamble may register source maps; stack traces stay on the compiled JS, which is enough.
  globalThis.__jazzer_registerSourceMap = () => {};
  return fuzzer;
}
