/**
 * An in-memory FileLayer for fuzzing the sealed store at tens of thousands of opens a second (the
 * store's own tests and the model-based tests use real files). Paths are plain keys; a handle is a
 * path plus whether it may write.
 */
import type { FileHandle, FileLayer } from "../../runtime/host/files.js";

interface MemHandle extends FileHandle {
  readonly: boolean;
}

export class MemoryFiles implements FileLayer {
  readonly files = new Map<string, Buffer>();

  #get(h: FileHandle): Buffer {
    const b = this.files.get(h.path);
    if (!b) throw Object.assign(new Error(`ENOENT: ${h.path}`), { code: "ENOENT" });
    return b;
  }
  open(file: string, opts: { create: boolean; readonly: boolean; exclusive?: boolean }): FileHandle {
    if (!this.files.has(file)) {
      if (!opts.create || opts.readonly) throw Object.assign(new Error(`ENOENT: ${file}`), { code: "ENOENT" });
      this.files.set(file, Buffer.alloc(0));
    } else if (opts.exclusive) {
      throw Object.assign(new Error(`EEXIST: ${file}`), { code: "EEXIST" });
    }
    return { path: file, readonly: opts.readonly } as MemHandle;
  }
  close(): void {}
  read(h: FileHandle, buf: Uint8Array, offset: number): number {
    const b = this.#get(h);
    if (offset >= b.length) return 0;
    const n = Math.min(buf.length, b.length - offset);
    buf.set(b.subarray(offset, offset + n));
    return n;
  }
  write(h: FileHandle, buf: Uint8Array, offset: number): void {
    if ((h as MemHandle).readonly) throw Object.assign(new Error(`EBADF: ${h.path} is open read-only`), { code: "EBADF" });
    let b = this.#get(h);
    if (offset + buf.length > b.length) {
      const grown = Buffer.alloc(offset + buf.length);
      b.copy(grown);
      b = grown;
    }
    b.set(buf, offset);
    this.files.set(h.path, b);
  }
  truncate(h: FileHandle, size: number): void {
    const b = this.#get(h);
    const t = Buffer.alloc(size);
    b.copy(t, 0, 0, Math.min(size, b.length));
    this.files.set(h.path, t);
  }
  sync(): void {}
  size(h: FileHandle): number {
    return this.#get(h).length;
  }
  remove(file: string): void {
    this.files.delete(file);
  }
  exists(file: string): boolean {
    return this.files.has(file);
  }
  rename(from: string, to: string): void {
    const b = this.files.get(from);
    if (!b) throw Object.assign(new Error(`ENOENT: ${from}`), { code: "ENOENT" });
    this.files.set(to, b);
    this.files.delete(from);
  }
  syncDir(): void {}
}
