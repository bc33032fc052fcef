/**
 * Frames (CHANNEL.md §4): u32 big-endian length || msgpack [seq, message].
 *
 * Invariants: a length over the limit is refused before its payload is buffered; a decoded message
 * holds only nil, booleans, numbers, strings, binary, arrays and plain maps (32 deep at most), so
 * nothing the peer sends becomes a Date, Map, Set, Error or record; sequence numbers are checked by
 * the channel (channel.ts), not here.
 */
import { Packr } from "msgpackr";
import type { MigrationMessage } from "../channel-api.js";
import { MigrationChannelError } from "./errors.js";

export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;
const MAX_DEPTH = 32;

// Both ends MUST use identical settings: maps decode as plain objects, no records, no extensions.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, bundleStrings: false, structuredClone: false, int64AsType: "number" });

export function encodeFrame(seq: number, message: MigrationMessage, maxFrameBytes: number): Buffer {
  const payload = packr.pack([seq, message]);
  if (payload.length > maxFrameBytes) {
    throw new MigrationChannelError("CHANNEL_FRAME_TOO_LARGE", `a ${message.type} message encodes to ${payload.length} bytes, over the ${maxFrameBytes}-byte frame limit: send bulk data in chunks of 1 MiB or less`);
  }
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  payload.copy(out, 4); // the encoder's buffer is shared module-wide: copy what we keep
  return out;
}

function malformed(why: string): never {
  throw new MigrationChannelError("CHANNEL_FRAME_MALFORMED", `the peer sent a malformed frame (${why}); the channel is closed`);
}

function checkValue(v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) malformed(`nested deeper than ${MAX_DEPTH}`);
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return;
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    for (const x of v) checkValue(x, depth + 1);
    return;
  }
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v as object)) checkValue(x, depth + 1);
    return;
  }
  malformed(`a value of type ${typeof v === "object" ? ((v as object).constructor?.name ?? "object") : typeof v}`);
}

export interface DecodedFrame {
  readonly seq: number;
  readonly message: MigrationMessage;
}

export function decodePayload(payload: Buffer): DecodedFrame {
  let v: unknown;
  try {
    v = packr.unpack(payload);
  } catch (e) {
    malformed(`msgpack: ${(e as Error).message}`);
  }
  if (!Array.isArray(v) || v.length !== 2) malformed("not a [seq, message] pair");
  const [seq, message] = v as [unknown, unknown];
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) malformed("the sequence number is not a non-negative integer");
  if (message === null || typeof message !== "object" || Array.isArray(message) || Object.getPrototypeOf(message) !== Object.prototype) malformed("the message is not a map");
  checkValue(message, 1);
  const type = (message as { type?: unknown }).type;
  if (typeof type !== "string" || type.length === 0) malformed("the message has no string type");
  return { seq, message: message as MigrationMessage };
}

/** Splits a byte stream into frame payloads; throws on an oversized or empty length. */
export class FrameReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #need = -1; // payload length of the frame being read, -1 while reading its length
  readonly #max: number;

  constructor(maxFrameBytes: number) {
    this.#max = maxFrameBytes;
  }

  /** True when bytes of an unfinished frame are buffered (the stream ending now truncates a frame). */
  get partial(): boolean {
    return this.#buffered > 0 || this.#need >= 0;
  }

  /** Feeds bytes; returns every payload completed by them. */
  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break;
        const len = this.#take(4).readUInt32BE(0);
        if (len === 0) malformed("a zero-length frame");
        if (len > this.#max) {
          throw new MigrationChannelError("CHANNEL_FRAME_TOO_LARGE", `the peer announced a ${len}-byte frame, over the ${this.#max}-byte limit; the channel is closed`);
        }
        this.#need = len;
      }
      if (this.#buffered < this.#need) break;
      out.push(this.#take(this.#need));
      this.#need = -1;
    }
    return out;
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks, this.#buffered);
    const head = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return head;
  }
}
