/**
 * UNTRUSTED (server). The blocking platform RPC between a worker and the main thread (WORKERS.md,
 * "Platform services shared with workers"; wire format in WORKERS.md "Platform RPC, version 1").
 *
 * A worker's SQLite commits call the platform (counter increments, key unsealing) from inside
 * synchronous code (the VFS's xSync, the store's open): they cannot await. So the worker writes
 * the call into its mailbox (a SharedArrayBuffer), posts {t: "rpc"} to wake the main thread, and
 * blocks in Atomics.wait; the main thread runs the call on the one Platform, writes the answer and
 * Atomics.notify()s. The main thread never waits on a worker, so no deadlock is possible.
 *
 * Least privilege: a worker names the enclave identity it wants services for by MRENCLAVE only;
 * the main thread serves only identities it measured itself from the SQLite enclave image
 * (the current build, or the legacy revision-1 identity a database was sealed to). Keys never
 * leave the main thread: a worker gets sealed blobs, plaintexts it asked to unseal, counter values.
 */
import { PlatformError } from "../../platform/errors.js";
import { SelkieError } from "../../errors.js";
import type { EnclaveServices } from "../../platform/services.js";

/** Mailbox layout: Int32 [0] state, [1] byte length; then the JSON bytes. */
export const MAILBOX_BYTES = 1024 * 1024;
const HEADER = 8;
const IDLE = 0;
const REQUEST = 1;
const ANSWER = 2;
/** How long a worker waits for the main thread before failing the call. */
const RPC_TIMEOUT_MS = 30_000;

export const RPC_VERSION = 1;

export interface RpcRequest {
  v: typeof RPC_VERSION;
  /** MRENCLAVE (hex) of the identity whose services are used. */
  id: string;
  op: ServiceOp;
  args: unknown[];
}

export type RpcAnswer = { ok: true; value: unknown } | { ok: false; name: string; code: string; message: string };

export type ServiceOp = "epc.reclaim" | "seal" | "unseal" | "counters.create" | "counters.increment" | "counters.advance" | "counters.read" | "counters.destroy" | "counters.list" | "report" | "verifyReport" | "quote";

/** JSON with byte arrays as {"$b": base64}. */
export function encode(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (x && typeof x === "object" && (x as { type?: string }).type === "Buffer" && Array.isArray((x as { data?: unknown }).data)) {
      return { $b: Buffer.from((x as { data: number[] }).data).toString("base64") };
    }
    if (x instanceof Uint8Array) return { $b: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64") };
    return x;
  });
}

export function decode(s: string): unknown {
  return JSON.parse(s, (_k, x: unknown) => (x && typeof x === "object" && typeof (x as { $b?: unknown }).$b === "string" && Object.keys(x).length === 1 ? Buffer.from((x as { $b: string }).$b, "base64") : x));
}

/** The RPC itself failed (not the platform call): PLATFORM_RPC_TIMEOUT, PLATFORM_RPC_TOO_LARGE, PLATFORM_RPC_VERSION. */
export class PlatformRpcError extends SelkieError {}

/** An error thrown on the main thread, as the worker rethrows it: same class name and code. */
export class RemotePlatformError extends SelkieError {
  constructor(code: string, message: string, remoteName: string) {
    super(code, message);
    this.name = remoteName;
  }
}

export function newMailbox(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER + MAILBOX_BYTES);
}

/** The worker's end: one call at a time (a worker runs one thing at a time). */
export class RpcClient {
  readonly #head: Int32Array;
  readonly #data: Uint8Array;
  constructor(
    mailbox: SharedArrayBuffer,
    readonly wake: () => void,
  ) {
    this.#head = new Int32Array(mailbox, 0, 2);
    this.#data = new Uint8Array(mailbox, HEADER);
  }

  call(id: string, op: ServiceOp, args: unknown[]): unknown {
    const req: RpcRequest = { v: RPC_VERSION, id, op, args };
    const bytes = Buffer.from(encode(req), "utf8");
    if (bytes.length > this.#data.length) throw new PlatformRpcError("PLATFORM_RPC_TOO_LARGE", `a platform call of ${bytes.length} bytes does not fit the worker's mailbox (${this.#data.length}); this is a bug`);
    this.#data.set(bytes);
    Atomics.store(this.#head, 1, bytes.length);
    Atomics.store(this.#head, 0, REQUEST);
    this.wake();
    if (Atomics.wait(this.#head, 0, REQUEST, RPC_TIMEOUT_MS) === "timed-out" && Atomics.load(this.#head, 0) === REQUEST) {
      Atomics.store(this.#head, 0, IDLE);
      throw new PlatformRpcError("PLATFORM_RPC_TIMEOUT", `the main thread did not answer a platform call (${op}) within ${RPC_TIMEOUT_MS} ms; the server is stopping or overloaded, retry`);
    }
    const n = Atomics.load(this.#head, 1);
    const ans = decode(Buffer.from(this.#data.subarray(0, n)).toString("utf8")) as RpcAnswer;
    Atomics.store(this.#head, 0, IDLE);
    if (!ans.ok) throw new RemotePlatformError(ans.code, ans.message, ans.name);
    return ans.value;
  }
}

/** The main thread's end: the call waiting in `mailbox`, if any. */
export function readRpc(mailbox: SharedArrayBuffer): RpcRequest | undefined {
  const head = new Int32Array(mailbox, 0, 2);
  if (Atomics.load(head, 0) !== REQUEST) return undefined;
  const data = new Uint8Array(mailbox, HEADER);
  return decode(Buffer.from(data.subarray(0, Atomics.load(head, 1))).toString("utf8")) as RpcRequest;
}

/** Writes the answer of the waiting call and wakes the worker. */
export function writeAnswer(mailbox: SharedArrayBuffer, ans: RpcAnswer): void {
  const head = new Int32Array(mailbox, 0, 2);
  const data = new Uint8Array(mailbox, HEADER);
  if (Atomics.load(head, 0) !== REQUEST) return; // the worker gave up waiting (or died)
  let bytes = Buffer.from(encode(ans), "utf8");
  if (bytes.length > data.length) bytes = Buffer.from(encode({ ok: false, name: "PlatformRpcError", code: "PLATFORM_RPC_TOO_LARGE", message: "the platform's answer does not fit the worker's mailbox" }));
  data.set(bytes);
  Atomics.store(head, 1, bytes.length);
  Atomics.store(head, 0, ANSWER);
  Atomics.notify(head, 0);
}

export function errorAnswer(e: unknown): RpcAnswer {
  const err = e as { name?: string; code?: string; message?: string };
  return { ok: false, name: err.name ?? "Error", code: typeof err.code === "string" ? err.code : "INTERNAL", message: err.message ?? String(e) };
}

/** Counter calls that write the counter store (answered once durable). */
const COUNTER_UPDATES: ReadonlySet<ServiceOp> = new Set(["counters.create", "counters.increment", "counters.advance", "counters.destroy"]);

/**
 * Runs counter updates with their fdatasync off the calling thread; resolves once durable
 * (Platform.withDeferredCounterSync).
 */
export type DeferCounterSync = (fn: () => unknown) => Promise<unknown>;

/**
 * Answers a service call with the services `resolve` gives for its identity. With `defer`, a
 * counter update is answered when its record is durable, and this thread does not wait for it.
 */
export function answerService(mailbox: SharedArrayBuffer, req: RpcRequest, resolve: (mrenclave: string) => EnclaveServices | undefined, defer?: DeferCounterSync): void {
  let ans: RpcAnswer;
  try {
    if (req.v !== RPC_VERSION) throw new PlatformRpcError("PLATFORM_RPC_VERSION", `platform RPC version ${String(req.v)}; this server speaks ${RPC_VERSION}`);
    const s = resolve(req.id);
    if (!s) throw new PlatformError("PLATFORM_NOT_MEASURED", `no measured enclave with MRENCLAVE ${req.id} on this server: workers get the services of the SQLite enclave only`);
    if (defer && COUNTER_UPDATES.has(req.op)) {
      defer(() => run(s, req.op, req.args)).then(
        (value) => writeAnswer(mailbox, { ok: true, value }),
        (e: unknown) => writeAnswer(mailbox, errorAnswer(e)),
      );
      return;
    }
    ans = { ok: true, value: run(s, req.op, req.args) };
  } catch (e) {
    ans = errorAnswer(e);
  }
  writeAnswer(mailbox, ans);
}

function run(s: EnclaveServices, op: ServiceOp, a: unknown[]): unknown {
  switch (op) {
    case "seal":
      return s.seal(a[0] as Buffer, a[1] as never);
    case "unseal":
      return s.unseal(a[0] as Buffer, a[1] as never);
    case "counters.create":
      return s.counters.create(a[0] as never);
    case "counters.increment":
      return s.counters.increment(a[0] as string);
    case "counters.advance":
      return s.counters.advance(a[0] as string, a[1] as number);
    case "counters.read":
      return s.counters.read(a[0] as string);
    case "counters.destroy":
      return s.counters.destroy(a[0] as string);
    case "counters.list":
      return s.counters.list();
    case "report":
      return s.report(a[0] as never, a[1] as Buffer);
    case "verifyReport":
      return s.verifyReport(a[0] as Buffer);
    case "quote":
      return s.quote(a[0] as Buffer);
  }
  throw new PlatformRpcError("PLATFORM_RPC_VERSION", `unknown platform call ${String(op)}`);
}
