/**
 * FramedChannel: numbered msgpack frames over one TLS socket (CHANNEL.md §4), the object handed to
 * the protocol as a MigrationChannel once the handshake (attest.ts) set its peer.
 *
 * States: open -> closed (terminal). Invariants:
 *  1. Frames are delivered in order, each exactly once: the n-th frame received in a direction must
 *     carry seq n, else the channel closes with CHANNEL_FRAME_SEQUENCE and nothing after it is read.
 *  2. Once closed, nothing more is read or sent; messages that arrived intact before the end are
 *     still delivered, then every receive rejects with the terminal error (CHANNEL_CLOSED when the
 *     channel simply ended).
 *  3. A `refused` frame from the peer closes the channel with CHANNEL_REFUSED_BY_PEER.
 *  4. A receive that times out closes the channel (CHANNEL_TIMEOUT), and so does a send whose bytes
 *     the peer does not take within sendTimeoutMs (a peer that stops reading).
 */
import type { TLSSocket } from "node:tls";
import type { MigrationChannel, MigrationMessage, PeerInfo } from "../channel-api.js";
import { MigrationChannelError, isChannelCode, type ChannelErrorCode } from "./errors.js";
import { decodePayload, encodeFrame, FrameReader } from "./frames.js";

export const DEFAULT_RECEIVE_TIMEOUT_MS = 30_000;
export const DEFAULT_SEND_TIMEOUT_MS = 30_000;
const CLOSE_GRACE_MS = 2_000;

interface Waiter {
  resolve(m: MigrationMessage): void;
  reject(e: MigrationChannelError): void;
  timer: NodeJS.Timeout | undefined;
}

export interface FramedChannelOptions {
  maxFrameBytes: number;
  receiveTimeoutMs: number;
  /** How long a send may wait for the peer to take its bytes (back-pressure) before the channel closes. */
  sendTimeoutMs?: number;
  /** Called once when the channel closes, with the terminal error (CHANNEL_CLOSED for a plain close). */
  onClose?: (err: MigrationChannelError) => void;
}

function socketError(e: Error & { code?: string }): MigrationChannelError {
  const code = e.code ?? "";
  if (code.startsWith("ERR_SSL") || /ssl|tls|decrypt|bad record mac/i.test(e.message)) {
    return new MigrationChannelError("CHANNEL_TLS", `the TLS layer failed (${code || e.message}): a record did not authenticate or the TLS session broke; the channel is closed`, { cause: e });
  }
  return new MigrationChannelError("CHANNEL_CLOSED", `the connection to the peer failed (${code || e.message}); the channel is closed`, { cause: e });
}

export class FramedChannel implements MigrationChannel {
  readonly socket: TLSSocket;
  #peer: PeerInfo | undefined;
  #sendSeq = 0;
  #recvSeq = 0;
  #queue: MigrationMessage[] = [];
  #waiters: Waiter[] = [];
  #error: MigrationChannelError | undefined;
  readonly #reader: FrameReader;
  readonly #opts: FramedChannelOptions;

  constructor(socket: TLSSocket, opts: FramedChannelOptions) {
    this.socket = socket;
    this.#opts = opts;
    this.#reader = new FrameReader(opts.maxFrameBytes);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("end", () => {
      this.#fail(this.#reader.partial
        ? new MigrationChannelError("CHANNEL_FRAME_TRUNCATED", "the peer's stream ended inside a frame; the channel is closed")
        : new MigrationChannelError("CHANNEL_CLOSED", "the peer closed the channel"));
    });
    socket.on("error", (e) => this.#fail(socketError(e)));
    socket.on("close", () => this.#fail(new MigrationChannelError("CHANNEL_CLOSED", "the connection to the peer closed")));
  }

  get peer(): PeerInfo {
    if (this.#peer === undefined) throw new MigrationChannelError("CHANNEL_CLOSED", "internal: the channel's peer is not attested yet");
    return this.#peer;
  }

  /** Set once by the handshake after both sides accepted. */
  setPeer(peer: PeerInfo): void {
    if (this.#peer !== undefined) throw new Error("internal: peer already set");
    this.#peer = Object.freeze({ ...peer });
  }

  get closed(): boolean {
    return this.#error !== undefined;
  }

  /** The terminal error once closed. */
  get error(): MigrationChannelError | undefined {
    return this.#error;
  }

  async send(message: MigrationMessage): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    if (message === null || typeof message !== "object" || typeof message.type !== "string" || message.type.length === 0) {
      throw new MigrationChannelError("CHANNEL_BAD_OPTIONS", "a message must be an object with a non-empty string `type`");
    }
    const frame = encodeFrame(this.#sendSeq, message, this.#opts.maxFrameBytes);
    this.#sendSeq++;
    await this.writeRaw(frame);
  }

  /** Writes bytes as they are (the handshake's frames go through send; tests use this to misbehave). */
  writeRaw(bytes: Buffer): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.socket.write(bytes)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const ms = this.#opts.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
      const timer = setTimeout(() => {
        done();
        this.#fail(new MigrationChannelError("CHANNEL_TIMEOUT", `the peer took none of this side's pending bytes for ${ms} ms (it stopped reading); the channel is closed`));
        reject(this.#error);
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.socket.off("drain", onDrain);
        this.socket.off("close", onClose);
      };
      const onDrain = (): void => (done(), resolve());
      const onClose = (): void => (done(), reject(this.#error ?? new MigrationChannelError("CHANNEL_CLOSED", "the channel closed while sending")));
      this.socket.on("drain", onDrain);
      this.socket.on("close", onClose);
    });
  }

  receive(timeoutMs = this.#opts.receiveTimeoutMs): Promise<MigrationMessage> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: undefined };
      if (Number.isFinite(timeoutMs) && timeoutMs >= 0) {
        w.timer = setTimeout(() => {
          this.#fail(new MigrationChannelError("CHANNEL_TIMEOUT", `the peer sent nothing for ${timeoutMs} ms; the channel is closed (a peer that stops answering ends the migration)`));
        }, timeoutMs);
      }
      this.#waiters.push(w);
    });
  }

  close(reason = "closed by this side"): void {
    this.#fail(new MigrationChannelError("CHANNEL_CLOSED", `the channel was closed: ${reason}`));
  }

  /** Tells the peer why (best effort), then closes with `code`. */
  refuse(code: ChannelErrorCode, message: string): MigrationChannelError {
    const err = new MigrationChannelError(code, message);
    if (this.#error === undefined) {
      try {
        this.socket.write(encodeFrame(this.#sendSeq++, { type: "refused", code, message }, this.#opts.maxFrameBytes));
      } catch {
        // the refusal is best effort; the local error stands
      }
    }
    this.#fail(err);
    return err;
  }

  #onData(chunk: Buffer): void {
    if (this.#error !== undefined) return;
    try {
      for (const payload of this.#reader.push(chunk)) {
        const f = decodePayload(payload);
        if (f.seq !== this.#recvSeq) {
          throw new MigrationChannelError("CHANNEL_FRAME_SEQUENCE", `the peer sent frame ${f.seq} where frame ${this.#recvSeq} was due (replayed, duplicated, reordered or dropped); the channel is closed`);
        }
        this.#recvSeq++;
        if (f.message.type === "refused") {
          const code = f.message.code;
          const msg = typeof f.message.message === "string" ? f.message.message : "";
          throw new MigrationChannelError("CHANNEL_REFUSED_BY_PEER", `the peer refused this side: ${isChannelCode(code) ? code : "unknown code"}: ${msg.slice(0, 500)}`);
        }
        this.#deliver(f.message);
      }
    } catch (e) {
      this.#fail(e instanceof MigrationChannelError ? e : new MigrationChannelError("CHANNEL_FRAME_MALFORMED", `the peer's frame could not be read: ${(e as Error).message}`));
    }
  }

  #deliver(m: MigrationMessage): void {
    const w = this.#waiters.shift();
    if (w === undefined) {
      this.#queue.push(m);
      return;
    }
    if (w.timer) clearTimeout(w.timer);
    w.resolve(m);
  }

  #fail(err: MigrationChannelError): void {
    if (this.#error !== undefined) return;
    this.#error = err;
    for (const w of this.#waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(err);
    }
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    t.unref();
    this.socket.once("close", () => clearTimeout(t));
    this.#opts.onClose?.(err);
  }
}
