// counter-as: Selkie's second example enclave, in AssemblyScript (enclaves/counter-as/README.md).
//
// Its state lives mostly in wasm globals, not at fixed memory addresses: `total` and `calls` below,
// plus the AssemblyScript runtime's own allocator and GC state (the TLSF root, the collector's
// phase, thresholds and object lists). None of them is exported by the compiler; Selkie's loader
// exports every mutable global at load (runtime/enclave/instrument.ts) so a snapshot can read them.
//
// Ecalls (all integers; i64 results reach JavaScript as BigInt):
//   add(n: i32) -> i64    total += n; returns the new total
//   push(x: i32) -> i32   appends x to a growing array (memory grows with it); returns its length
//   sum() -> i64          sum of every pushed value
//   count() -> i32        number of pushed values
//   calls() -> i32        ecalls served since _initialize (add, push, reset)
//   reset() -> void       total = 0, the array emptied (its memory is not given back: wasm never shrinks)
//
// Imports: only its memory, as selkie:sys.memory (the build's transform renames asc's env.memory).

let total: i64 = 0;
let served: i32 = 0;
let items: Array<i32> = new Array<i32>();

export function add(n: i32): i64 {
  served++;
  total += <i64>n;
  return total;
}

export function push(x: i32): i32 {
  served++;
  items.push(x);
  return items.length;
}

export function sum(): i64 {
  let s: i64 = 0;
  const n = items.length;
  for (let i = 0; i < n; i++) s += <i64>unchecked(items[i]);
  return s;
}

export function count(): i32 {
  return items.length;
}

export function calls(): i32 {
  return served;
}

export function reset(): void {
  served++;
  total = 0;
  items = new Array<i32>();
}
