/**
 * Migration channel frames (runtime/migration/channel/CHANNEL.md §4), from the peer (UNTRUSTED until
 * attested, and the peer may be hostile even then): bytes -> FrameReader (length-prefixed, split at
 * any point) -> decodePayload (msgpack [seq, message]). Property: only MigrationChannelError comes
 * out; every accepted message is a plain map with a string type holding only plain values; the same
 * bytes split differently give the same frames.
 */
import { decodePayload, FrameReader } from "../../../runtime/migration/channel/frames.js";
import { encodeFrame } from "../../../runtime/migration/channel/frames.js";
import { MigrationChannelError } from "../../../runtime/migration/channel/errors.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

const MAX = 64 * 1024;

function plain(v: unknown, depth = 0): boolean {
  if (depth > 40) return false;
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string" || v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every((x) => plain(x, depth + 1));
  return typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype && Object.values(v as object).every((x) => plain(x, depth + 1));
}

function frames(data: Uint8Array, cut: number): Buffer[] | undefined {
  const r = new FrameReader(MAX);
  const b = Buffer.from(data);
  return refusedOr(() => [...r.push(b.subarray(0, cut)), ...r.push(b.subarray(cut))], [MigrationChannelError]);
}

export const target: Target = {
  name: "migration-frame",
  about: "migration channel frames (length || msgpack [seq, message]): only MigrationChannelError, plain maps with a type, split-independent",
  maxLength: 8192,
  seeds: () => [
    encodeFrame(0, { type: "offer", mid: "m1", name: "orders.db", bytes: 4096, rounds: 2 }, MAX),
    Buffer.concat([encodeFrame(1, { type: "chunk", mid: "m1", offset: 0, data: new Uint8Array([1, 2, 3]) }, MAX), encodeFrame(2, { type: "prepared", mid: "m1", nested: { a: [1, "x", null, true] } }, MAX)]),
  ],
  run(data) {
    const whole = frames(data, data.length);
    const split = frames(data, data.length >> 1);
    if ((whole === undefined) !== (split === undefined) || (whole && split && (whole.length !== split.length || whole.some((f, i) => !f.equals(split[i]!))))) {
      throw new PropertyViolation("the same bytes split at another point framed differently");
    }
    for (const payload of whole ?? []) {
      const d = refusedOr(() => decodePayload(payload), [MigrationChannelError]);
      if (!d) continue;
      if (typeof d.message.type !== "string" || !plain(d.message)) throw new PropertyViolation("an accepted message is not a plain map with a string type");
      if (!Number.isSafeInteger(d.seq) || d.seq < 0) throw new PropertyViolation(`an accepted frame has sequence number ${d.seq}`);
    }
  },
};
