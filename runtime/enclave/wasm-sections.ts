/**
 * Reads the parts of a WebAssembly binary the loader must check before anything runs: function
 * types, imports (with their signatures and memory limits) and exports.
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
  | { kind: "table" }
  | { kind: "memory"; limits: Limits }
  | { kind: "global"; type: ValType; mutable: boolean }
  | { kind: "tag" };

export interface WasmImport { module: string; name: string; desc: ImportDesc }
export interface WasmExport { name: string; kind: "function" | "table" | "memory" | "global" | "tag"; index: number }
export interface WasmSummary { types: FuncType[]; imports: WasmImport[]; exports: WasmExport[]; hasStart: boolean }

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
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmParseError("not a WebAssembly module (missing \\0asm magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmParseError("unsupported WebAssembly binary version (expected 1, a core module)");
  }
  const r = new Reader(bytes);
  r.pos = 8;
  const out: WasmSummary = { types: [], imports: [], exports: [], hasStart: false };
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const s = new Reader(bytes, r.pos + size);
    if (s.end > bytes.length) throw new WasmParseError(`section ${id} runs past the end of the module`);
    s.pos = r.pos;
    if (id === 1) readTypes(s, out);
    else if (id === 2) readImports(s, out);
    else if (id === 7) readExports(s, out);
    else if (id === 8) out.hasStart = true;
    r.pos = s.end;
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
      s.limits();
      desc = { kind: "table" };
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

function readExports(s: Reader, out: WasmSummary): void {
  for (let n = s.u32(); n > 0; n--) {
    const name = s.name();
    const kind = EXPORT_KINDS[s.byte()];
    if (!kind) throw new WasmParseError(`export ${name} has an unknown kind`);
    out.exports.push({ name, kind, index: s.u32() });
  }
}
