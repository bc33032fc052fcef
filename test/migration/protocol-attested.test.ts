/**
 * The migration protocol over the real attested channel (runtime/migration/channel/): two platforms
 * certified by one fleet CA, the SQLite enclave's own quotes on both sides, a real HTTP server on
 * loopback with the channel's upgrade handler. Every committed row arrives; the source's files are gone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { Database, acceptMigration, attachMigrationChannel, connectAttested, migrateOut, type Accepted } from "../../runtime/index.js";
import { CertificateAuthority, Platform } from "../../runtime/platform/index.js";
import { sqliteServices } from "../../runtime/migration/protocol/store-trust.js";
import { tempDir } from "../helpers.js";

test("a database migrates over the mutually attested channel with every committed row", async () => {
  const ca = CertificateAuthority.create(tempDir("selkie-mig-ca-"), { dev: false });
  const src = await Platform.create(tempDir("selkie-mig-ps-"), { ca });
  const dst = await Platform.create(tempDir("selkie-mig-pd-"), { ca });
  const srcData = tempDir("selkie-mig-a-");
  const dstData = tempDir("selkie-mig-b-");
  const file = path.join(srcData, "orders.db");
  let db: Database | undefined = new Database(file, { platform: src, paging: false });
  db.exec("CREATE TABLE t(n INTEGER PRIMARY KEY, pad TEXT)");
  for (let i = 1; i <= 200; i++) db.run("INSERT INTO t VALUES (?, ?)", i, "z".repeat(500));

  const server = http.createServer((_q, r) => r.writeHead(404).end());
  let accepted: Promise<Accepted> | undefined;
  attachMigrationChannel(server, {
    channel: { services: sqliteServices(dst), fleetCa: ca.certificate },
    onChannel: (ch) => {
      accepted = acceptMigration({ platform: dst, dataDir: dstData, channel: ch, timeoutMs: 10_000 });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const t0 = performance.now();
    const ch = await connectAttested(url, { services: sqliteServices(src), fleetCa: ca.certificate });
    const attestMs = performance.now() - t0;
    assert.equal(ch.peer.role, "destination");
    assert.equal(ch.peer.platformId, dst.platformId, "the channel proved the destination's platform");
    const stats = await migrateOut({
      platform: src,
      dataDir: srcData,
      name: "orders.db",
      channel: ch,
      source: {
        async freeze() {
          db?.close();
          db = undefined;
        },
        async resume() {
          db = new Database(file, { platform: src, paging: false });
        },
      },
      sourceAddress: "unused",
      to: url,
    });
    const a = await accepted!;
    assert.equal(a.state, "done");
    assert.ok(stats.bytes.precopy > 100 * 500, `the pages travelled (${JSON.stringify(stats)}, attestation ${attestMs.toFixed(0)} ms)`);
    const moved = new Database(path.join(dstData, "orders.db"), { platform: dst, create: false, paging: false });
    try {
      assert.deepEqual(moved.query<{ c: number; s: number }>("SELECT count(*) AS c, sum(n) AS s FROM t")[0], { c: 200, s: 20_100 });
    } finally {
      moved.close();
    }
    assert.ok(!fs.existsSync(file) && !fs.existsSync(`${file}.log`), "the source's copy is gone");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
