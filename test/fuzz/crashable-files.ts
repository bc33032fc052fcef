/**
 * FaultyFiles (test/storage/faulty-files.ts: failed, short and full-disk writes, failed fsyncs) that
 * also knows which files it has open, so a test can "crash" a store: arm a fault, let the operation
 * fail at that point, then drop every handle without the store writing anything more. The disk is
 * then what kill -9 at that instant leaves (the page cache survives a process kill).
 */
import type { FileHandle } from "../../runtime/host/files.js";
import { FaultyFiles } from "../storage/faulty-files.js";

export class CrashableFiles extends FaultyFiles {
  readonly #open = new Set<FileHandle>();

  override open(file: string, opts: { create: boolean; readonly: boolean; exclusive?: boolean }): FileHandle {
    const h = super.open(file, opts);
    this.#open.add(h);
    return h;
  }
  override close(h: FileHandle): void {
    if (!this.#open.delete(h)) return; // already dropped by crash()
    super.close(h);
  }
  /** Closes every handle the store holds, as the kernel does when a process dies. */
  crash(): void {
    this.disarm();
    for (const h of this.#open) this.real.close(h);
    this.#open.clear();
  }
  get openCount(): number {
    return this.#open.size;
  }
}
