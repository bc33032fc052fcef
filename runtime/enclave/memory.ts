/**
 * Checked access to an enclave's linear memory from the host side.
 *
 * Every pointer and length that comes from the guest passes through `check` before any byte is
 * touched (ABI §2: an out-of-bounds argument is answered, never followed). Views are rebuilt when the
 * memory grows: growing detaches the old ArrayBuffer, which then has byteLength 0 (STYLE 11).
 */
import { EnclaveFault } from "../errors.js";

const decoder = new TextDecoder("utf-8", { fatal: false });
const encoder = new TextEncoder();

export class GuestMemory {
  #u8: Uint8Array;
  #dv: DataView;

  constructor(readonly memory: WebAssembly.Memory) {
    this.#u8 = new Uint8Array(memory.buffer);
    this.#dv = new DataView(memory.buffer);
  }

  /** Current byte view of the whole memory (rebuilt after growth). */
  get u8(): Uint8Array {
    if (this.#u8.byteLength === 0) this.#refresh();
    return this.#u8;
  }

  get dv(): DataView {
    // A DataView over a detached buffer throws on byteLength; the byte view reports 0 instead.
    if (this.#u8.byteLength === 0) this.#refresh();
    return this.#dv;
  }

  get size(): number {
    return this.u8.byteLength;
  }

  #refresh(): void {
    this.#u8 = new Uint8Array(this.memory.buffer);
    this.#dv = new DataView(this.memory.buffer);
  }

  /** True when [ptr, ptr+len) lies inside memory and both are non-negative integers. */
  inBounds(ptr: number, len: number): boolean {
    return Number.isInteger(ptr) && Number.isInteger(len) && ptr >= 0 && len >= 0 && ptr + len <= this.size;
  }

  /** A view of guest bytes; throws EnclaveFault when the guest handed an out-of-bounds range. */
  view(ptr: number, len: number): Uint8Array {
    if (!this.inBounds(ptr, len)) {
      throw new EnclaveFault("ENCLAVE_BAD_POINTER", `enclave returned an out-of-bounds range [${ptr}, +${len}) (memory is ${this.size} bytes)`);
    }
    return this.u8.subarray(ptr, ptr + len);
  }

  /** A copy of guest bytes (safe to keep after the guest frees or reuses them). */
  copy(ptr: number, len: number): Uint8Array {
    return this.view(ptr, len).slice();
  }

  /** UTF-8 text of [ptr, ptr+len). */
  text(ptr: number, len: number): string {
    const bytes = this.view(ptr, len);
    if (len <= 24) {
      // Short strings are common (column values, names); a plain loop beats TextDecoder's call cost.
      let s = "";
      for (let i = 0; i < len; i++) {
        const c = bytes[i]!;
        if (c >= 0x80) return decoder.decode(bytes);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return decoder.decode(bytes);
  }

  /** A NUL-terminated string at ptr, at most `max` bytes long; throws if unterminated within bounds. */
  cstring(ptr: number, max = 1 << 20): string {
    const u8 = this.u8;
    if (!Number.isInteger(ptr) || ptr <= 0 || ptr >= u8.byteLength) {
      throw new EnclaveFault("ENCLAVE_BAD_POINTER", `enclave returned an invalid string pointer ${ptr}`);
    }
    const limit = Math.min(u8.byteLength, ptr + max);
    const end = u8.indexOf(0, ptr);
    if (end < 0 || end >= limit) {
      throw new EnclaveFault("ENCLAVE_BAD_POINTER", `enclave returned a string at ${ptr} with no terminator within ${max} bytes`);
    }
    return this.text(ptr, end - ptr);
  }

  /** Encode `s` as UTF-8 at ptr (capacity bytes available); returns bytes written or -1 if it does not fit. */
  writeText(ptr: number, capacity: number, s: string): number {
    const dst = this.view(ptr, capacity);
    const r = encoder.encodeInto(s, dst);
    return r.read === s.length ? r.written : -1;
  }

  readI32(ptr: number): number {
    if (!this.inBounds(ptr, 4)) throw new EnclaveFault("ENCLAVE_BAD_POINTER", `out-of-bounds i32 read at ${ptr}`);
    return this.dv.getInt32(ptr, true);
  }

  writeI32(ptr: number, v: number): void {
    if (!this.inBounds(ptr, 4)) throw new EnclaveFault("ENCLAVE_BAD_POINTER", `out-of-bounds i32 write at ${ptr}`);
    this.dv.setInt32(ptr, v, true);
  }
}

/** Upper bound of UTF-8 bytes for a JS string. */
export function utf8MaxBytes(s: string): number {
  return s.length * 3;
}
