import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as net from "node:net";
import * as http from "node:http";
import type { Duplex } from "node:stream";
import { randomBytes } from "node:crypto";
import { Packr } from "msgpackr";
import { connectAttested, MigrationChannelError, type ChannelErrorCode } from "../../runtime/migration/channel/index.js";
import { bindingReportData, exporterValue } from "../../runtime/migration/channel/binding.js";
import { FramedChannel } from "../../runtime/migration/channel/channel.js";
import { tlsClient } from "../../runtime/migration/channel/tls-session.js";
import { encodeFrame } from "../../runtime/migration/channel/frames.js";
import type { MigrationChannel } from "../../runtime/migration/channel-api.js";
import { APP, cleanup, destination, identity, newCa, newPlatform, rogueDestination, rogueHandshake, sideOpts } from "./channel-harness.js";

after(cleanup);

const ca = newCa();
const src = await newPlatform(ca);
const dst = await newPlatform(ca);
const dstServices = dst.servicesFor(identity(APP));
const MAX = 8 * 1024 * 1024;

async function fails(p: Promise<unknown>, code: ChannelErrorCode): Promise<MigrationChannelError> {
  const e = await p.then(
    () => assert.fail(`expected ${code}, but it succeeded`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof MigrationChannelError, `expected a MigrationChannelError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return e;
}

/** A destination that does an honest handshake and then writes `after` (raw bytes) on the inner TLS. */
async function channelWith(afterHandshake: (write: (b: Buffer) => void, end: () => void) => void): Promise<{ ch: MigrationChannel; close(): Promise<void> }> {
  const r = await rogueDestination(async (ch, t) => {
    await rogueHandshake(ch, t, dstServices);
    afterHandshake((b) => t.write(b), () => t.end());
  });
  const ch = await connectAttested(r.url, sideOpts(src, ca));
  return { ch, close: r.close };
}

const frame = (seq: number, m: Record<string, unknown> & { type: string }): Buffer => encodeFrame(seq, m, MAX);

test("a quote made for another nonce (an old quote) is refused with CHANNEL_QUOTE_REPLAY", async () => {
  const r = await rogueDestination((ch, t) => rogueHandshake(ch, t, dstServices, { reportData: (_n, e) => bindingReportData(randomBytes(32), e, "destination") }));
  try {
    await fails(connectAttested(r.url, sideOpts(src, ca)), "CHANNEL_QUOTE_REPLAY");
  } finally {
    await r.close();
  }
});

test("a quote bound to another TLS session (a relay) is refused with CHANNEL_QUOTE_REPLAY", async () => {
  const r = await rogueDestination((ch, t) => rogueHandshake(ch, t, dstServices, { reportData: (n) => bindingReportData(n, randomBytes(32), "destination") }));
  try {
    await fails(connectAttested(r.url, sideOpts(src, ca)), "CHANNEL_QUOTE_REPLAY");
  } finally {
    await r.close();
  }
});

test("a quote recorded in an earlier honest session and replayed is refused with CHANNEL_QUOTE_REPLAY", async () => {
  let recorded: Buffer | undefined;
  let session = 0;
  const r = await rogueDestination((ch, t) => {
    session++;
    return session === 1 ? rogueHandshake(ch, t, dstServices, { onQuote: (q) => (recorded = q) }) : rogueHandshake(ch, t, dstServices, { quote: recorded as Buffer });
  });
  try {
    const first = await connectAttested(r.url, sideOpts(src, ca));
    first.close();
    assert.ok(recorded);
    await fails(connectAttested(r.url, sideOpts(src, ca)), "CHANNEL_QUOTE_REPLAY");
  } finally {
    await r.close();
  }
});

test("a quote bound to the wrong role is refused with CHANNEL_QUOTE_REPLAY", async () => {
  const r = await rogueDestination((ch, t) => rogueHandshake(ch, t, dstServices, { reportData: (n, e) => bindingReportData(n, e, "source") }));
  try {
    await fails(connectAttested(r.url, sideOpts(src, ca)), "CHANNEL_QUOTE_REPLAY");
  } finally {
    await r.close();
  }
});

test("a changed quote is refused with CHANNEL_QUOTE_INVALID", async () => {
  const r = await rogueDestination((ch, t) =>
    rogueHandshake(ch, t, dstServices, {
      reportData: (n, e) => bindingReportData(n, e, "destination"),
      onQuote: (q) => {
        const x = q[20] ?? 0;
        q[20] = x ^ 1; // a bit of the quoted report body
      },
    }),
  );
  try {
    await fails(connectAttested(r.url, sideOpts(src, ca)), "CHANNEL_QUOTE_INVALID");
  } finally {
    await r.close();
  }
});

test("a peer claiming the same role is refused with CHANNEL_ROLE, another channel version with CHANNEL_VERSION", async () => {
  const r1 = await rogueDestination((ch, t) => rogueHandshake(ch, t, dstServices, { role: "source" }));
  const r2 = await rogueDestination((ch, t) => rogueHandshake(ch, t, dstServices, { version: 2 }));
  try {
    await fails(connectAttested(r1.url, sideOpts(src, ca)), "CHANNEL_ROLE");
    await fails(connectAttested(r2.url, sideOpts(src, ca)), "CHANNEL_VERSION");
  } finally {
    await r1.close();
    await r2.close();
  }
});

test("a replayed (duplicated) frame ends the channel with CHANNEL_FRAME_SEQUENCE after the good one is delivered", async () => {
  const f = frame(3, { type: "page", n: 1 });
  const { ch, close } = await channelWith((w) => (w(f), w(f)));
  try {
    assert.equal((await ch.receive(2_000)).n, 1);
    await fails(ch.receive(2_000), "CHANNEL_FRAME_SEQUENCE");
    assert.equal(ch.closed, true);
  } finally {
    await close();
  }
});

test("reordered frames end the channel with CHANNEL_FRAME_SEQUENCE and nothing out of order is delivered", async () => {
  const { ch, close } = await channelWith((w) => (w(frame(4, { type: "page", n: 2 })), w(frame(3, { type: "page", n: 1 }))));
  try {
    await fails(ch.receive(2_000), "CHANNEL_FRAME_SEQUENCE");
  } finally {
    await close();
  }
});

test("a frame announcing more than the size limit ends the channel with CHANNEL_FRAME_TOO_LARGE", async () => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(MAX + 1);
  const { ch, close } = await channelWith((w) => w(head));
  try {
    await fails(ch.receive(2_000), "CHANNEL_FRAME_TOO_LARGE");
  } finally {
    await close();
  }
});

test("sending a message over the size limit is refused locally and the channel stays usable", async () => {
  const ca2 = ca;
  const d = await destination(sideOpts(dst, ca2, {}, { maxFrameBytes: 64 * 1024 }));
  try {
    const accepted = d.next();
    const ch = await connectAttested(d.url, sideOpts(src, ca2, {}, { maxFrameBytes: 64 * 1024 }));
    const other = await accepted;
    await fails(ch.send({ type: "big", data: Buffer.alloc(64 * 1024) }), "CHANNEL_FRAME_TOO_LARGE");
    assert.equal(ch.closed, false);
    await ch.send({ type: "small" });
    assert.equal((await other.receive(2_000)).type, "small");
  } finally {
    await d.close();
  }
});

test("malformed frames end the channel with CHANNEL_FRAME_MALFORMED", async () => {
  const packr = new Packr({ useRecords: false, mapsAsObjects: true });
  const raw = (payload: Buffer): Buffer => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(payload.length);
    return Buffer.concat([h, payload]);
  };
  const cases: Buffer[] = [
    raw(Buffer.from([0xc1])), // never used in msgpack
    raw(Buffer.from(packr.pack({ seq: 3 }))), // not [seq, message]
    raw(Buffer.from(packr.pack([3, { no: "type" }]))),
    raw(Buffer.from(packr.pack([3, { type: "t", when: new Date(0) }]))), // an extension type
    raw(Buffer.from(packr.pack([-1, { type: "t" }]))),
    Buffer.alloc(4), // zero length
  ];
  for (const bad of cases) {
    const { ch, close } = await channelWith((w) => w(bad));
    try {
      await fails(ch.receive(2_000), "CHANNEL_FRAME_MALFORMED");
    } finally {
      await close();
    }
  }
});

test("a stream that ends inside a frame is CHANNEL_FRAME_TRUNCATED; one that ends between frames is CHANNEL_CLOSED", async () => {
  const f = frame(3, { type: "page", data: Buffer.alloc(1000, 1) });
  const t1 = await channelWith((w, end) => (w(f.subarray(0, 500)), end()));
  try {
    await fails(t1.ch.receive(2_000), "CHANNEL_FRAME_TRUNCATED");
  } finally {
    await t1.close();
  }
  const t2 = await channelWith((w, end) => (w(f), end()));
  try {
    assert.equal((await t2.ch.receive(2_000)).type, "page");
    await fails(t2.ch.receive(2_000), "CHANNEL_CLOSED");
  } finally {
    await t2.close();
  }
});

test("a refused frame from the peer ends the channel with CHANNEL_REFUSED_BY_PEER naming its code", async () => {
  const { ch, close } = await channelWith((w) => w(frame(3, { type: "refused", code: "CHANNEL_POLICY", message: "no room" })));
  try {
    const e = await fails(ch.receive(2_000), "CHANNEL_REFUSED_BY_PEER");
    assert.match(e.message, /CHANNEL_POLICY: no room/);
  } finally {
    await close();
  }
});

test("a peer that stops answering fails the handshake with CHANNEL_TIMEOUT at every step", async () => {
  // 1. Upgrades, then never starts TLS.
  const silent = await rogueDestination(() => undefined, { tls: false });
  // 2. Finishes TLS, then never says hello.
  const mute = await rogueDestination(() => new Promise(() => undefined));
  // 3. Says hello, then never sends its quote.
  const stalls = await rogueDestination(async (ch) => {
    await ch.send({ type: "hello", version: 1, role: "destination", nonce: randomBytes(32) });
  });
  try {
    for (const r of [silent, mute, stalls]) {
      const t0 = Date.now();
      await fails(connectAttested(r.url, sideOpts(src, ca, {}, { handshakeTimeoutMs: 400 })), "CHANNEL_TIMEOUT");
      assert.ok(Date.now() - t0 < 3_000, "the deadline holds");
    }
  } finally {
    await silent.close();
    await mute.close();
    await stalls.close();
  }
});

test("a peer that stops answering after the handshake ends the channel with CHANNEL_TIMEOUT", async () => {
  const { ch, close } = await channelWith(() => undefined);
  try {
    await fails(ch.receive(150), "CHANNEL_TIMEOUT");
    assert.equal(ch.closed, true);
    await fails(ch.receive(150), "CHANNEL_TIMEOUT");
  } finally {
    await close();
  }
});

test("a record changed on the wire after the handshake fails TLS with CHANNEL_TLS", async () => {
  const d = await destination(sideOpts(dst, ca));
  const target = new URL(d.url);
  let tamper = false;
  const proxy = net.createServer((client) => {
    const up = net.connect(Number(target.port), "127.0.0.1");
    client.on("error", () => undefined);
    up.on("error", () => undefined);
    client.on("data", (b: Buffer) => {
      if (tamper && b.length > 10) {
        const x = b[b.length - 5] ?? 0;
        b[b.length - 5] = x ^ 0x40;
        tamper = false;
      }
      up.write(b);
    });
    up.pipe(client);
    client.on("close", () => up.destroy());
    up.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  try {
    const accepted = d.next();
    const ch = await connectAttested(`http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`, sideOpts(src, ca));
    const other = await accepted;
    await ch.send({ type: "ok" });
    assert.equal((await other.receive(2_000)).type, "ok");
    tamper = true;
    await ch.send({ type: "page", data: Buffer.alloc(100, 9) });
    await fails(other.receive(2_000), "CHANNEL_TLS");
  } finally {
    proxy.close();
    await d.close();
  }
});

test("a peer that stops reading makes send fail with CHANNEL_TIMEOUT instead of waiting forever", async () => {
  const r = await rogueDestination(async (ch, t) => {
    await rogueHandshake(ch, t, dstServices);
    t.pause(); // reads nothing more
    (t as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
  });
  try {
    const ch = await connectAttested(r.url, sideOpts(src, ca, {}, { sendTimeoutMs: 300 }));
    const chunk = Buffer.alloc(1024 * 1024, 1);
    const t0 = Date.now();
    const e = await (async () => {
      for (let i = 0; i < 512; i++) await ch.send({ type: "chunk", i, data: chunk });
    })().then(
      () => assert.fail("512 MiB went into a peer that reads nothing"),
      (x: unknown) => x,
    );
    assert.ok(e instanceof MigrationChannelError);
    assert.equal(e.code, "CHANNEL_TIMEOUT", e.message);
    assert.equal(ch.closed, true);
    assert.ok(Date.now() - t0 < 10_000);
  } finally {
    await r.close();
  }
});

/** A misbehaving source: the real upgrade and inner TLS, then the source's side of the handshake by hand. */
async function rogueSource(url: string, quoteFor: (destNonce: Buffer, exporter: Buffer) => Buffer): Promise<FramedChannel> {
  const u = new URL(url);
  const stream = await new Promise<Duplex>((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: "/v1/migration/channel", headers: { Connection: "Upgrade", Upgrade: "selkie-migration/1" }, agent: false });
    req.on("upgrade", (_res, socket) => resolve(socket));
    req.on("error", reject);
    req.end();
  });
  const t = await tlsClient(stream, 5_000);
  const ch = new FramedChannel(t, { maxFrameBytes: MAX, receiveTimeoutMs: 5_000 });
  const exporter = exporterValue(t);
  await ch.send({ type: "hello", version: 1, role: "source", nonce: randomBytes(32) });
  const hello = await ch.receive();
  await ch.send({ type: "quote", quote: quoteFor(Buffer.from(hello.nonce as Uint8Array), exporter) });
  return ch;
}

test("the destination refuses a source whose quote is replayed or bound to another session, logs it, and hands nothing to the protocol", async () => {
  const d = await destination(sideOpts(dst, ca));
  const srcServices = src.servicesFor(identity(APP));
  try {
    const cases: Array<(n: Buffer, e: Buffer) => Buffer> = [
      (_n, e) => srcServices.quote(bindingReportData(randomBytes(32), e, "source")), // an old nonce
      (n) => srcServices.quote(bindingReportData(n, randomBytes(32), "source")), // another session
    ];
    for (const quoteFor of cases) {
      const ch = await rogueSource(d.url, quoteFor);
      // The destination sends its own quote, then refuses ours.
      const e = await (async () => {
        for (;;) await ch.receive(3_000);
      })().catch((x: unknown) => x as MigrationChannelError);
      assert.equal(e.code, "CHANNEL_REFUSED_BY_PEER", e.message);
      assert.match(e.message, /CHANNEL_QUOTE_REPLAY/);
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(d.channels.length, 0);
    assert.deepEqual(d.log.filter((l) => l.level === "warn").map((l) => l.obj.code), ["CHANNEL_QUOTE_REPLAY", "CHANNEL_QUOTE_REPLAY"]);
  } finally {
    await d.close();
  }
});
