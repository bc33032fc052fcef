/**
 * UNTRUSTED. The file layer under the enclave's storage: real files, real fsync.
 *
 * This layer only ever moves bytes it is given; once sealing lands (runtime/storage) those bytes are
 * ciphertext. It is an interface so tests can inject faults (STYLE 7, 10).
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface FileHandle {
  readonly path: string;
}

export interface FileLayer {
  /** Opens (creating when asked) a file for reading and, unless readonly, writing. */
  open(file: string, opts: { create: boolean; readonly: boolean; exclusive?: boolean }): FileHandle;
  close(h: FileHandle): void;
  /** Reads into buf at file offset; returns bytes read (less than buf.length only at end of file). */
  read(h: FileHandle, buf: Uint8Array, offset: number): number;
  write(h: FileHandle, buf: Uint8Array, offset: number): void;
  truncate(h: FileHandle, size: number): void;
  sync(h: FileHandle): void;
  size(h: FileHandle): number;
  remove(file: string, syncDir: boolean): void;
  exists(file: string): boolean;
  /** Atomically replaces `to` with `from` and makes the rename durable (fsyncs the folder). */
  rename(from: string, to: string): void;
  /** Makes the creation or removal of files in `dir` durable (fsync of the folder). */
  syncDir(dir: string): void;
}

class NodeFileHandle implements FileHandle {
  constructor(readonly path: string, readonly fd: number) {}
}

function fdOf(h: FileHandle): number {
  return (h as NodeFileHandle).fd;
}

/** The real thing: node:fs synchronous calls (the enclave's VFS is synchronous). */
export class NodeFileLayer implements FileLayer {
  open(file: string, opts: { create: boolean; readonly: boolean; exclusive?: boolean }): FileHandle {
    let flags = opts.readonly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (opts.create && !opts.readonly) flags |= fs.constants.O_CREAT;
    if (opts.exclusive) flags |= fs.constants.O_EXCL;
    const fd = fs.openSync(file, flags, 0o600);
    return new NodeFileHandle(file, fd);
  }
  close(h: FileHandle): void {
    fs.closeSync(fdOf(h));
  }
  read(h: FileHandle, buf: Uint8Array, offset: number): number {
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(fdOf(h), buf, done, buf.length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }
  write(h: FileHandle, buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) {
      done += fs.writeSync(fdOf(h), buf, done, buf.length - done, offset + done);
    }
  }
  truncate(h: FileHandle, size: number): void {
    fs.ftruncateSync(fdOf(h), size);
  }
  sync(h: FileHandle): void {
    fs.fsyncSync(fdOf(h));
  }
  size(h: FileHandle): number {
    return fs.fstatSync(fdOf(h)).size;
  }
  remove(file: string, syncDir: boolean): void {
    fs.unlinkSync(file);
    if (syncDir) syncDirectory(path.dirname(file));
  }
  exists(file: string): boolean {
    return fs.existsSync(file);
  }
  rename(from: string, to: string): void {
    fs.renameSync(from, to);
    syncDirectory(path.dirname(to));
  }
  syncDir(dir: string): void {
    syncDirectory(dir);
  }
}

/** fsync a directory so a create, rename or unlink in it is durable. */
export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
