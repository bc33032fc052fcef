import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { serve } from "../../runtime/host/server/serve.js";
import { sqliteQuoter } from "../../runtime/host/server/management.js";
import type { ServerContext } from "../../runtime/host/server/handler.js";
import { connectAttested, MigrationChannelError } from "../../runtime/migration/channel/index.js";
import { sessionCertificate } from "../../runtime/migration/channel/session-cert.js";
import type { MigrationChannel } from "../../runtime/migration/channel-api.js";
import { CLI, ROOT, tempDir } from "../helpers.js";
import { startServer } from "../server/harness.js";
import { cleanup, newCa, newPlatform } from "./channel-harness.js";

after(cleanup);

const fleet = newCa();
const srcPlatform = await newPlatform(fleet);

async function code(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => "opened", (x: unknown) => x);
  assert.ok(e instanceof MigrationChannelError, `expected a MigrationChannelError, got ${String(e)}`);
  return e.code;
}

test("selkie serve's port accepts an attested channel from a source running the same SQLite enclave and hands it to the protocol hook with the server context", async () => {
  const dstPlatform = await newPlatform(fleet);
  const got: Array<{ ch: MigrationChannel; context: ServerContext }> = [];
  const s = await serve({ dir: tempDir("selkie-chan-srv-"), platform: dstPlatform, port: 0, migration: { fleetCa: fleet.certificate, onChannel: (ch, info) => got.push({ ch, context: info.context }) } });
  try {
    const ch = await connectAttested(s.url, { services: sqliteQuoter(srcPlatform), fleetCa: fleet.certificate });
    const mine = sqliteQuoter(srcPlatform).identity;
    assert.equal(ch.peer.mrenclave, mine.mrenclave.toString("hex"), "both run the same SQLite build");
    assert.equal(ch.peer.platformId, dstPlatform.platformId);
    for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 1);
    assert.equal(got[0]!.context.platform, dstPlatform);
    assert.equal(got[0]!.ch.peer.platformId, srcPlatform.platformId);
    await ch.send({ type: "hello-protocol" });
    assert.equal((await got[0]!.ch.receive(2_000)).type, "hello-protocol");
  } finally {
    await s.close();
  }
});

test("over HTTPS the attested channel runs inside the server's TLS", async () => {
  const dstPlatform = await newPlatform(fleet);
  const pem = sessionCertificate();
  const got: MigrationChannel[] = [];
  const s = await serve({ dir: tempDir("selkie-chan-srv-"), platform: dstPlatform, port: 0, tls: pem, migration: { fleetCa: fleet.certificate, onChannel: (ch) => got.push(ch) } });
  try {
    assert.match(s.url, /^https:/);
    const ch = await connectAttested(s.url, { services: sqliteQuoter(srcPlatform), fleetCa: fleet.certificate, outerTls: { ca: pem.cert, checkServerIdentity: () => undefined } });
    assert.equal(ch.peer.role, "destination");
    ch.close();
  } finally {
    await s.close();
  }
});

test("a server shutting down closes its migration channels", async () => {
  const dstPlatform = await newPlatform(fleet);
  const s = await serve({ dir: tempDir("selkie-chan-srv-"), platform: dstPlatform, port: 0, migration: { fleetCa: fleet.certificate, onChannel: () => undefined } });
  const ch = await connectAttested(s.url, { services: sqliteQuoter(srcPlatform), fleetCa: fleet.certificate });
  await s.close();
  assert.equal(await code(ch.receive(2_000)), "CHANNEL_CLOSED");
});

test("selkie serve --fleet-ca accepts attested peers; without it the upgrade is refused; a dev CA needs --allow-dev-ca", async () => {
  const pDir = tempDir("selkie-chan-cli-p-");
  fs.rmSync(pDir, { recursive: true });
  const caDir = fleet.dir;
  const init = spawnSync(process.execPath, [CLI, "init", "--dir", pDir, "--ca", caDir], { cwd: ROOT, encoding: "utf8" });
  assert.equal(init.status, 0, init.stderr);
  const opts = { services: sqliteQuoter(srcPlatform), fleetCa: fleet.certificate };

  const withCa = await startServer({ args: ["--platform", pDir, "--fleet-ca", path.join(caDir, "ca.cert")] });
  try {
    const ch = await connectAttested(withCa.url, opts);
    // The channel opens (attested); the migration protocol then closes it on a first message that is no offer.
    await ch.send({ type: "hello" });
    assert.equal(await code(ch.receive(5_000)), "CHANNEL_CLOSED");
    await new Promise((r) => setTimeout(r, 100));
    assert.match(withCa.stdout(), /"event":"migration_channel_open"/);
  } finally {
    await withCa.stop();
  }

  const without = await startServer({ args: ["--platform", pDir] });
  try {
    const e = await connectAttested(without.url, opts).catch((x: unknown) => x as MigrationChannelError);
    assert.equal((e as MigrationChannelError).code, "CHANNEL_UPGRADE_REFUSED");
    assert.match((e as MigrationChannelError).message, /503 MIGRATION_NOT_CONFIGURED: .*--fleet-ca/);
  } finally {
    await without.stop();
  }

  const dev = newCa(true);
  const refused = spawnSync(process.execPath, [CLI, "serve", "--dir", tempDir("selkie-chan-cli-"), "--port", "0", "--fleet-ca", path.join(dev.dir, "ca.cert")], { cwd: ROOT, encoding: "utf8", timeout: 20_000 });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /development CA.*--allow-dev-ca/);
  const alone = spawnSync(process.execPath, [CLI, "serve", "--dir", tempDir("selkie-chan-cli-"), "--port", "0", "--allow-dev-ca"], { cwd: ROOT, encoding: "utf8", timeout: 20_000 });
  assert.equal(alone.status, 2, alone.stderr);
  assert.match(alone.stderr, /--allow-dev-ca goes with --fleet-ca/);
});
