import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import { connectAttested, MigrationChannelError, type ChannelErrorCode } from "../../runtime/migration/channel/index.js";
import { APP, cleanup, destination, h, newCa, newPlatform, sideOpts } from "./channel-harness.js";

after(cleanup);

async function refused(p: Promise<unknown>, code: ChannelErrorCode): Promise<MigrationChannelError> {
  const e = await p.then(
    () => assert.fail(`expected ${code}, but the channel opened`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof MigrationChannelError, `expected a MigrationChannelError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return e;
}

test("two peers of one fleet CA open an attested channel and each learns the other's verified identity", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const dst = await newPlatform(ca);
  const d = await destination(sideOpts(dst, ca));
  try {
    const accepted = d.next();
    const ch = await connectAttested(d.url, sideOpts(src, ca));
    const other = await accepted;
    assert.equal(ch.peer.role, "destination");
    assert.equal(other.peer.role, "source");
    assert.equal(ch.peer.platformId, dst.platformId);
    assert.equal(other.peer.platformId, src.platformId);
    const me = src.servicesFor((await import("./channel-harness.js")).identity(APP)).identity;
    assert.equal(ch.peer.mrenclave, me.mrenclave.toString("hex"));
    assert.equal(ch.peer.mrsigner, me.mrsigner.toString("hex"));
    assert.equal(ch.peer.isvProdId, 1);
    assert.equal(ch.peer.isvSvn, 3);
    assert.equal(ch.peer.runtimeVersion, "1");
    const info = d.log.find((l) => l.obj.event === "migration_channel_open");
    assert.ok(info, "the destination logs the open channel");

    await ch.send({ type: "ping", n: 1, blob: new Uint8Array([1, 2, 3]) });
    const got = await other.receive(2_000);
    assert.equal(got.type, "ping");
    assert.equal(got.n, 1);
    assert.deepEqual([...(got.blob as Uint8Array)], [1, 2, 3]);
    await other.send({ type: "pong", nested: { list: [1, "two", null, true] } });
    assert.deepEqual(await ch.receive(2_000), { type: "pong", nested: { list: [1, "two", null, true] } });

    // Bulk: 24 chunks of 1 MiB in order, through back-pressure.
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const sending = (async () => {
      for (let i = 0; i < 24; i++) await ch.send({ type: "chunk", i, data: chunk });
    })();
    for (let i = 0; i < 24; i++) {
      const m = await other.receive(10_000);
      assert.equal(m.i, i);
      assert.equal((m.data as Uint8Array).length, chunk.length);
    }
    await sending;
    ch.close("done");
    assert.equal(ch.closed, true);
    await refused(other.receive(2_000), "CHANNEL_CLOSED");
    await refused(ch.send({ type: "late" }), "CHANNEL_CLOSED");
  } finally {
    await d.close();
  }
});

test("a peer certified by another CA is refused with CHANNEL_WRONG_CA on both sides, and the destination logs it", async () => {
  const fleet = newCa();
  const rogueCa = newCa();
  const src = await newPlatform(fleet);
  const dst = await newPlatform(rogueCa);
  // The source trusts the fleet CA; the destination is certified by another one.
  const d1 = await destination(sideOpts(dst, fleet));
  try {
    await refused(connectAttested(d1.url, sideOpts(src, fleet)), "CHANNEL_WRONG_CA");
  } finally {
    await d1.close();
  }
  // The other way: a source from another CA knocking on a fleet destination.
  const good = await newPlatform(fleet);
  const stranger = await newPlatform(rogueCa);
  const d2 = await destination(sideOpts(good, fleet));
  try {
    const e = await refused(connectAttested(d2.url, sideOpts(stranger, fleet)), "CHANNEL_REFUSED_BY_PEER");
    assert.match(e.message, /CHANNEL_WRONG_CA/);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(d2.channels.length, 0, "no channel reaches the protocol");
    const warn = d2.log.find((l) => l.level === "warn");
    assert.equal(warn?.obj.code, "CHANNEL_WRONG_CA");
    assert.match(String(warn?.obj.peer), /^127\.0\.0\.1:/);
  } finally {
    await d2.close();
  }
});

test("peers of a development CA are refused without allowDevCa and accepted with it", async () => {
  const dev = newCa(true);
  const src = await newPlatform(dev);
  const dst = await newPlatform(dev);
  const d = await destination(sideOpts(dst, dev, {}, { allowDevCa: true }));
  try {
    const e = await refused(connectAttested(d.url, sideOpts(src, dev)), "CHANNEL_DEV_CA");
    assert.match(e.message, /--allow-dev-ca/);
    const ch = await connectAttested(d.url, sideOpts(src, dev, {}, { allowDevCa: true }));
    assert.equal(ch.peer.role, "destination");
    ch.close();
  } finally {
    await d.close();
  }
});

test("a destination running another signer's enclave is refused with CHANNEL_POLICY", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const dst = await newPlatform(ca);
  const d = await destination(sideOpts(dst, ca, { mrenclave: h("evil"), mrsigner: h("signer-evil") }));
  try {
    const e = await refused(connectAttested(d.url, sideOpts(src, ca)), "CHANNEL_POLICY");
    assert.match(e.message, /MRSIGNER/);
  } finally {
    await d.close();
  }
});

test("a destination with a lower ISVSVN of the same product is refused as a downgrade; a higher one is accepted", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const dst = await newPlatform(ca);
  const older = await destination(sideOpts(dst, ca, { mrenclave: h("app-v2"), isvSvn: 2 }));
  try {
    const e = await refused(connectAttested(older.url, sideOpts(src, ca)), "CHANNEL_POLICY");
    assert.match(e.message, /ISVSVN 2, lower than this side's 3/);
  } finally {
    await older.close();
  }
  const newer = await destination(sideOpts(dst, ca, { mrenclave: h("app-v4"), isvSvn: 4 }));
  try {
    const ch = await connectAttested(newer.url, sideOpts(src, ca));
    assert.equal(ch.peer.isvSvn, 4);
    ch.close();
  } finally {
    await newer.close();
  }
});

test("another product of the same signer is refused with CHANNEL_POLICY", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const dst = await newPlatform(ca);
  const d = await destination(sideOpts(dst, ca, { mrenclave: h("other-product"), isvProdId: 9 }));
  try {
    const e = await refused(connectAttested(d.url, sideOpts(src, ca)), "CHANNEL_POLICY");
    assert.match(e.message, /product 9/);
  } finally {
    await d.close();
  }
});

test("a destination older than the required runtime version is refused with CHANNEL_RUNTIME_VERSION", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const dst = await newPlatform(ca);
  const d = await destination(sideOpts(dst, ca));
  try {
    await refused(connectAttested(d.url, sideOpts(src, ca, {}, { minRuntimeVersion: 2 })), "CHANNEL_RUNTIME_VERSION");
  } finally {
    await d.close();
  }
});

test("a server without a fleet CA answers the upgrade with MIGRATION_NOT_CONFIGURED, and a closed port is CHANNEL_CONNECT", async () => {
  const ca = newCa();
  const src = await newPlatform(ca);
  const d = await destination(null);
  const url = d.url;
  try {
    const e = await refused(connectAttested(url, sideOpts(src, ca)), "CHANNEL_UPGRADE_REFUSED");
    assert.match(e.message, /503 MIGRATION_NOT_CONFIGURED/);
  } finally {
    await d.close();
  }
  await refused(connectAttested(url, sideOpts(src, ca, {}, { handshakeTimeoutMs: 2_000 })), "CHANNEL_CONNECT");
  await refused(connectAttested("ftp://x", sideOpts(src, ca)), "CHANNEL_BAD_OPTIONS");
});
