/**
 * A FileLayer that injects faults where storage meets the OS (as SQLite's test_vfs.c does): failed
 * writes, short writes, failed fsyncs and a full disk. Wraps the real NodeFileLayer.
 */
import { NodeFileLayer, type FileHandle, type FileLayer } from "../../runtime/host/files.js";

export type Fault = "write-fails" | "short-write" | "fsync-fails" | "disk-full";

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault`), { code });
}

export class FaultyFiles implements FileLayer {
  readonly real = new NodeFileLayer();
  #fault: Fault | undefined;
  #countdown = 0;
  fired = 0;

  /** Fails the `after`-th next operation of the fault's kind (0 = the next one); disk-full persists. */
  arm(fault: Fault, after: number): void {
    this.#fault = fault;
    this.#countdown = after;
  }

  disarm(): void {
    this.#fault = undefined;
  }

  #hit(kind: "write" | "sync"): Fault | undefined {
    const f = this.#fault;
    if (!f) return undefined;
    if (kind === "sync" && f !== "fsync-fails") return undefined;
    if (kind === "write" && f === "fsync-fails") return undefined;
    if (f === "disk-full") return (this.fired++, f);
    if (this.#countdown-- > 0) return undefined;
    this.#fault = undefined;
    this.fired++;
    return f;
  }

  open(file: string, opts: { create: boolean; readonly: boolean; exclusive?: boolean }): FileHandle {
    return this.real.open(file, opts);
  }
  close(h: FileHandle): void {
    this.real.close(h);
  }
  read(h: FileHandle, buf: Uint8Array, offset: number): number {
    return this.real.read(h, buf, offset);
  }
  write(h: FileHandle, buf: Uint8Array, offset: number): void {
    const f = this.#hit("write");
    if (f === "write-fails") throw errno("EIO");
    if (f === "disk-full") throw errno("ENOSPC");
    if (f === "short-write") {
      this.real.write(h, buf.subarray(0, Math.floor(buf.length / 2)), offset);
      throw errno("EIO");
    }
    this.real.write(h, buf, offset);
  }
  truncate(h: FileHandle, size: number): void {
    this.real.truncate(h, size);
  }
  sync(h: FileHandle): void {
    if (this.#hit("sync")) throw errno("EIO");
    this.real.sync(h);
  }
  size(h: FileHandle): number {
    return this.real.size(h);
  }
  remove(file: string, syncDir: boolean): void {
    this.real.remove(file, syncDir);
  }
  exists(file: string): boolean {
    return this.real.exists(file);
  }
  syncDir(dir: string): void {
    if (this.#hit("sync")) throw errno("EIO");
    this.real.syncDir(dir);
  }
  rename(from: string, to: string): void {
    if (this.#hit("write")) throw errno("EIO");
    this.real.rename(from, to);
  }
}
