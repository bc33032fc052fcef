/**
 * Reads the parts of a WebAssembly binary the loader must check before anything runs: function
 * types, imports (with their signatures and memory limits) and exports; and, for the load-time
 * instrumenter (instrument.ts), the globals and the memory.grow instructions, so that a module with
 * nothing to instrument never pays for loading binaryen.
 *
 * Written here rather than taken from a library: Node 20's WebAssembly.Module.imports() reports
 * neither function signatures nor memory limits (the type-reflection proposal is not shipped), and
 * loading binaryen (12 MB) to read two sections would cost more than the whole enclave launch.
 * The parser is strict: any malformed length or index throws, and WebAssembly.Module validates the
 * full module afterwards anyway.
 */
export type ValType = "i32" | "i64" | "f32" | "f64" | "v128" | "funcref" | "externref";

export interface FuncType { params: ValType[]; results: ValType[] }
export interface Limits { min: number; max: number | undefined; shared: boolean; memory64: boolean }

export type ImportDesc =
  | { kind: "function"; type: FuncType }
  | { kind: "table"; limits: Limits }
  | { kind: "memory"; limits: Limits }
  | { kind: "global"; type: ValType; mutable: boolean }
  | { kind: "tag" };

export interface WasmImport { module: string; name: string; desc: ImportDesc }
export interface WasmExport { name: string; kind: "function" | "table" | "memory" | "global" | "tag"; index: number }
export interface WasmSummary {
  types: FuncType[];
  imports: WasmImport[];
  exports: WasmExport[];
  hasStart: boolean;
  /** The start function's index, when the module has one. */
  start?: number;
  /** Type index of each function the module defines (the function section), in order. */
  funcs: number[];
  /** Tables the module defines (the table section), in order; imported tables are in `imports`. */
  tables: WasmTable[];
  /** Memories the module defines (the memory section). The enclave ABI allows none. */
  memories: Limits[];
}

export interface WasmTable {
  /** funcref or externref. */
  type: ValType;
  limits: Limits;
}

export class WasmParseError extends Error {}

const VALTYPES: Record<number, ValType> = { 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64", 0x7b: "v128", 0x70: "funcref", 0x6f: "externref" };
const EXPORT_KINDS = ["function", "table", "memory", "global", "tag"] as const;
const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array, readonly end = b.length) {}
  byte(): number {
    if (this.pos >= this.end) throw new WasmParseError("unexpected end of module");
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const x = this.byte();
      result += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) {
        if (result > 0xffffffff) throw new WasmParseError("LEB128 value out of range");
        return result;
      }
    }
    throw new WasmParseError("LEB128 too long");
  }
  u64(): number {
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      const x = this.byte();
      result += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) return result;
    }
    throw new WasmParseError("LEB128 too long");
  }
  bytes(n: number): Uint8Array {
    if (n > this.end - this.pos) throw new WasmParseError("length runs past the end of its section");
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  name(): string {
    try {
      return utf8.decode(this.bytes(this.u32()));
    } catch (e) {
      if (e instanceof WasmParseError) throw e;
      throw new WasmParseError("a name is not valid UTF-8");
    }
  }
  valtype(): ValType {
    const t = VALTYPES[this.byte()];
    if (!t) throw new WasmParseError("unknown value type");
    return t;
  }
  limits(): Limits {
    const flags = this.byte();
    if (flags > 7) throw new WasmParseError("unknown limits flags");
    const memory64 = (flags & 4) !== 0;
    const min = memory64 ? this.u64() : this.u32();
    const max = flags & 1 ? (memory64 ? this.u64() : this.u32()) : undefined;
    return { min, max, shared: (flags & 2) !== 0, memory64 };
  }
}

export function parseWasm(bytes: Uint8Array): WasmSummary {
  const out: WasmSummary = { types: [], imports: [], exports: [], hasStart: false, funcs: [], tables: [], memories: [] };
  for (const { id, s } of sections(bytes)) {
    if (id === 1) readTypes(s, out);
    else if (id === 2) readImports(s, out);
    else if (id === 3) for (let n = s.u32(); n > 0; n--) out.funcs.push(s.u32());
    else if (id === 4) for (let n = s.u32(); n > 0; n--) out.tables.push(readTable(s));
    else if (id === 5) for (let n = s.u32(); n > 0; n--) out.memories.push(s.limits());
    else if (id === 7) readExports(s, out);
    else if (id === 8) {
      out.hasStart = true;
      out.start = s.u32();
    }
  }
  return out;
}

/**
 * True when the start function only initializes memory from constants: a body with no locals made
 * of `i32.const`, `memory.fill`, `memory.init` and `data.drop` alone (what wasm-ld emits to zero
 * .bss and copy passive segments when memory is imported and bulk memory is on). Such a function
 * calls nothing, reads no global and cannot grow memory, so it may run before the runtime is ready.
 */
export function startOnlyInitializesMemory(bytes: Uint8Array, summary: WasmSummary): boolean {
  if (summary.start === undefined) return false;
  const imported = summary.imports.filter((i) => i.desc.kind === "function").length;
  const target = summary.start - imported;
  if (target < 0) return false; // an imported function as start: an ocall before the runtime is ready
  for (const { id, s } of sections(bytes)) {
    if (id !== 10) continue;
    const count = s.u32();
    if (target >= count) return false;
    for (let i = 0; i < target; i++) s.bytes(s.u32());
    const size = s.u32();
    const body = new Reader(s.b, s.pos + size);
    body.pos = s.pos;
    if (body.end > s.end) throw new WasmParseError("a function body runs past the end of the code section");
    if (body.u32() !== 0) return false; // locals
    while (body.pos < body.end) {
      const op = body.byte();
      if (op === 0x41) skipLeb(body);
      else if (op === 0x0b) return body.pos === body.end;
      else if (op !== 0xfc) return false;
      else {
        const sub = body.u32();
        if (sub === 9) body.u32(); // data.drop: segment index
        else if (sub === 8 || sub === 11) {
          if (sub === 8) body.u32(); // memory.init: segment index, then (as memory.fill) memory 0
          if (body.byte() !== 0) return false;
        } else return false;
      }
    }
    return false;
  }
  return false;
}

/** The signature of every exported function, by export name. */
export function exportedFunctionTypes(summary: WasmSummary): Map<string, FuncType> {
  const importedFuncs = summary.imports.filter((i) => i.desc.kind === "function") as Array<WasmImport & { desc: { kind: "function"; type: FuncType } }>;
  const out = new Map<string, FuncType>();
  for (const e of summary.exports) {
    if (e.kind !== "function") continue;
    const t = e.index < importedFuncs.length ? importedFuncs[e.index]!.desc.type : summary.types[summary.funcs[e.index - importedFuncs.length] ?? -1];
    if (t) out.set(e.name, t);
  }
  return out;
}

function readTypes(s: Reader, out: WasmSummary): void {
  for (let n = s.u32(); n > 0; n--) {
    const form = s.byte();
    if (form !== 0x60) throw new WasmParseError("unsupported type form (only function types are accepted)");
    const params: ValType[] = [];
    for (let k = s.u32(); k > 0; k--) params.push(s.valtype());
    const results: ValType[] = [];
    for (let k = s.u32(); k > 0; k--) results.push(s.valtype());
    out.types.push({ params, results });
  }
}

function readImports(s: Reader, out: WasmSummary): void {
  for (let n = s.u32(); n > 0; n--) {
    const module = s.name();
    const name = s.name();
    const kind = s.byte();
    let desc: ImportDesc;
    if (kind === 0) {
      const type = out.types[s.u32()];
      if (!type) throw new WasmParseError(`import ${module}.${name} names a type that does not exist`);
      desc = { kind: "function", type };
    } else if (kind === 1) {
      s.byte();
      desc = { kind: "table", limits: s.limits() };
    } else if (kind === 2) {
      desc = { kind: "memory", limits: s.limits() };
    } else if (kind === 3) {
      const type = s.valtype();
      desc = { kind: "global", type, mutable: s.byte() === 1 };
    } else if (kind === 4) {
      s.byte();
      s.u32();
      desc = { kind: "tag" };
    } else {
      throw new WasmParseError(`import ${module}.${name} has unknown kind ${kind}`);
    }
    out.imports.push({ module, name, desc });
  }
}

function readTable(s: Reader): WasmTable {
  const type = s.valtype();
  if (type !== "funcref" && type !== "externref") throw new WasmParseError("a table's element type is not a reference type");
  return { type, limits: s.limits() };
}

function writeLeb(n: number, out: number[]): void {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
}

/**
 * The module with every defined table that declares no maximum given one equal to its minimum,
 * so that `table.grow` can never take it past the size the loader charged to the EPC (a grow past
 * the maximum fails with -1 inside the enclave, as the spec says). Returns the same bytes when
 * every table already has a maximum. Only the table section changes: no index shifts.
 */
export function pinTables(bytes: Uint8Array): Uint8Array {
  for (const { id, s, start } of sections(bytes)) {
    if (id !== 4) continue;
    const tables: WasmTable[] = [];
    for (let n = s.u32(); n > 0; n--) tables.push(readTable(s));
    if (tables.every((t) => t.limits.max !== undefined)) return bytes;
    const body: number[] = [];
    writeLeb(tables.length, body);
    for (const t of tables) {
      body.push(t.type === "funcref" ? 0x70 : 0x6f, 0x01);
      writeLeb(t.limits.min, body);
      writeLeb(t.limits.max ?? t.limits.min, body);
    }
    const head: number[] = [4];
    writeLeb(body.length, head);
    const out = new Uint8Array(bytes.length - (s.end - start) + head.length + body.length);
    out.set(bytes.subarray(0, start), 0);
    out.set(head, start);
    out.set(body, start + head.length);
    out.set(bytes.subarray(s.end), start + head.length + body.length);
    return out;
  }
  return bytes;
}

function readExports(s: Reader, out: WasmSummary): void {
  for (let n = s.u32(); n > 0; n--) {
    const name = s.name();
    const kind = EXPORT_KINDS[s.byte()];
    if (!kind) throw new WasmParseError(`export ${name} has an unknown kind`);
    out.exports.push({ name, kind, index: s.u32() });
  }
}

// ---- globals and code (used by the load-time instrumenter, runtime/enclave/instrument.ts) ------

export interface WasmGlobal {
  /** Index in the module's global index space (imported globals come first). */
  index: number;
  type: ValType;
  mutable: boolean;
  imported: boolean;
}

/** Yields each section's id and a reader bounded to its contents. */
function* sections(bytes: Uint8Array): Generator<{ id: number; s: Reader; start: number }> {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmParseError("not a WebAssembly module (missing \\0asm magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmParseError("unsupported WebAssembly binary version (expected 1, a core module)");
  }
  const r = new Reader(bytes);
  r.pos = 8;
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const s = new Reader(bytes, r.pos + size);
    if (s.end > bytes.length) throw new WasmParseError(`section ${id} runs past the end of the module`);
    s.pos = r.pos;
    yield { id, s, start };
    r.pos = s.end;
  }
}

export interface SectionSpan {
  id: number;
  /** Offset of the section's id byte. */
  start: number;
  /** Offset of its contents (after the size; for a custom section, after its name). */
  contentStart: number;
  end: number;
  /** A custom section's name. */
  name?: string;
}

/** The module's sections in order, with their byte ranges. */
export function listSections(bytes: Uint8Array): SectionSpan[] {
  const out: SectionSpan[] = [];
  for (const { id, s, start } of sections(bytes)) {
    if (id === 0) {
      const name = s.name();
      out.push({ id, start, contentStart: s.pos, end: s.end, name });
    } else {
      out.push({ id, start, contentStart: s.pos, end: s.end });
    }
  }
  return out;
}

/** Every global of the module (imported and defined), in index order. */
export function parseGlobals(bytes: Uint8Array): WasmGlobal[] {
  const out: WasmGlobal[] = [];
  const summary: WasmSummary = { types: [], imports: [], exports: [], hasStart: false, funcs: [], tables: [], memories: [] };
  for (const { id, s } of sections(bytes)) {
    if (id === 1) readTypes(s, summary);
    else if (id === 2) {
      readImports(s, summary);
      for (const imp of summary.imports) {
        if (imp.desc.kind === "global") out.push({ index: out.length, type: imp.desc.type, mutable: imp.desc.mutable, imported: true });
      }
    } else if (id === 6) {
      for (let n = s.u32(); n > 0; n--) {
        const type = s.valtype();
        const mut = s.byte();
        if (mut > 1) throw new WasmParseError("a global has an unknown mutability flag");
        if (!skipConstExpr(s)) throw new WasmParseError("a global's initializer uses an instruction this parser does not know");
        out.push({ index: out.length, type, mutable: mut === 1, imported: false });
      }
    }
  }
  return out;
}

/**
 * Counts the memory.grow instructions in the code section by decoding every instruction of every
 * function body. Returns undefined when a body holds an instruction this decoder does not know
 * (a proposal Node 20 does not ship): callers must then assume growth may happen anywhere.
 */
export function countMemoryGrow(bytes: Uint8Array): number | undefined {
  return scanGrows(bytes, new Set())?.grows;
}

/**
 * Counts the memory.grow instructions, and those of them NOT metered: a metered grow is one whose
 * operand is the result of a call, made immediately before it, to one of the functions `preHooks`
 * (the indices of the module's imports of selkie:sys.memory_grow_pre): `call $pre; memory.grow`,
 * the shape load-time instrumentation emits. The hook then decides the delta, so the grow cannot
 * pass the meter.
 * Undefined when a body holds an instruction this decoder does not know.
 */
export function scanGrows(bytes: Uint8Array, preHooks: ReadonlySet<number>): { grows: number; unmetered: number } | undefined {
  let grows = 0;
  let unmetered = 0;
  for (const { id, s } of sections(bytes)) {
    if (id !== 10) continue;
    for (let n = s.u32(); n > 0; n--) {
      const size = s.u32();
      const end = s.pos + size;
      if (end > s.end) throw new WasmParseError("a function body runs past the end of the code section");
      const b = new Reader(s.b, end);
      b.pos = s.pos;
      for (let k = b.u32(); k > 0; k--) {
        b.u32();
        if (!VALTYPES[b.byte()]) return undefined;
      }
      // The common instructions are decoded inline (a 1 MB module takes ~10 ms); the rest through
      // skipImmediates. A LEB running past the body leaves pos > end, caught below.
      const u8 = s.b;
      let pos = b.pos;
      /** The function the previous instruction called, or -1 when it was not a call. */
      let called = -1;
      while (pos < end) {
        const op = u8[pos++]!;
        const callee = called;
        called = -1;
        if (op >= 0x45 && op <= 0xc4) continue; // numeric: no immediates
        if (op === 0x10) {
          b.pos = pos;
          called = b.u32();
          pos = b.pos;
          continue;
        }
        if ((op >= 0x20 && op <= 0x24) || op === 0x41 || op === 0x42 || op === 0x0c || op === 0x0d) {
          while (pos < end && u8[pos++]! & 0x80); // one LEB: local/global index, const, label, function
          continue;
        }
        if (op >= 0x28 && op <= 0x3e) {
          const align = u8[pos]!;
          while (pos < end && u8[pos++]! & 0x80);
          if (align & 0x40) while (pos < end && u8[pos++]! & 0x80);
          while (pos < end && u8[pos++]! & 0x80);
          continue;
        }
        if (op === 0x40) {
          grows++;
          if (!preHooks.has(callee)) unmetered++;
          while (pos < end && u8[pos++]! & 0x80);
          continue;
        }
        b.pos = pos;
        if (!skipImmediates(b, op)) return undefined;
        pos = b.pos;
      }
      if (pos !== end) throw new WasmParseError("an instruction runs past the end of its function body");
      s.pos = end;
    }
  }
  return { grows, unmetered };
}

/** Skips a LEB128 number of any width (signed or unsigned, up to 64 bits). */
function skipLeb(r: Reader): void {
  for (let i = 0; i < 10; i++) if ((r.byte() & 0x80) === 0) return;
  throw new WasmParseError("LEB128 too long");
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory: explicit memory index
  skipLeb(r); // offset (u64 for memory64)
}

function skipBlockType(r: Reader): void {
  const b = r.b[r.pos];
  if (b === 0x40 || (b !== undefined && VALTYPES[b])) r.pos++;
  else skipLeb(r); // s33 type index
}

/**
 * Skips the immediates of the instruction whose opcode byte `op` was just read. Returns false for
 * an opcode outside MVP + sign-ext, non-trapping float-to-int, bulk memory, reference types,
 * multi-value, SIMD, extended-const, tail calls, threads and legacy exceptions.
 */
function skipImmediates(r: Reader, op: number): boolean {
  if (op >= 0x45 && op <= 0xc4) return true; // numeric and sign-extension: no immediates
  if (op >= 0x28 && op <= 0x3e) return skipMemarg(r), true; // loads and stores
  switch (op) {
    case 0x00: case 0x01: case 0x05: case 0x0b: case 0x0f: case 0x19: case 0x1a: case 0x1b: case 0xd1:
      return true;
    case 0x02: case 0x03: case 0x04: case 0x06:
      return skipBlockType(r), true;
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0x18:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0xd2:
      return r.u32(), true;
    case 0x0e:
      for (let n = r.u32() + 1; n > 0; n--) r.u32();
      return true;
    case 0x11: case 0x13:
      return r.u32(), r.u32(), true;
    case 0x1c:
      for (let n = r.u32(); n > 0; n--) if (!VALTYPES[r.byte()]) return false;
      return true;
    case 0x41: case 0x42: case 0xd0:
      return skipLeb(r), true;
    case 0x43:
      return r.bytes(4), true;
    case 0x44:
      return r.bytes(8), true;
    case 0xfc: {
      const sub = r.u32();
      if (sub <= 7) return true;
      if (sub === 8 || sub === 10 || sub === 12 || sub === 14) return r.u32(), r.u32(), true;
      if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) return r.u32(), true;
      return false;
    }
    case 0xfd: {
      const sub = r.u32();
      if (sub <= 11 || sub === 92 || sub === 93) return skipMemarg(r), true;
      if (sub === 12 || sub === 13) return r.bytes(16), true;
      if (sub >= 21 && sub <= 34) return r.byte(), true;
      if (sub >= 84 && sub <= 91) return skipMemarg(r), r.byte(), true;
      return sub <= 0x113; // the rest of SIMD (and relaxed SIMD) has no immediates
    }
    case 0xfe: {
      const sub = r.u32();
      if (sub === 0x03) return r.byte(), true;
      if (sub <= 0x4e) return skipMemarg(r), true;
      return false;
    }
    default:
      return false;
  }
}

/** Skips a constant expression (a global initializer) up to and including its `end`. */
function skipConstExpr(r: Reader): boolean {
  for (;;) {
    const op = r.byte();
    if (op === 0x0b) return true;
    if (op === 0x40 || !skipImmediates(r, op)) return false;
  }
}
