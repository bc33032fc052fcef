/**
 * A migration peer as a real child process, for the crash tests and the soak. Argument: JSON
 * { data, platform, port, migrate?: { name, toPort, rows } }. It recovers unfinished migrations,
 * listens on 127.0.0.1:port (offers and status queries), settles pending ones every 100 ms, and with
 * `migrate` writes rows into `name` (printing "ack N" once each commit returned) while it migrates
 * the database to the peer at `toPort`. SELKIE_MIGRATION_CRASH / _CUT pick a crash or cut point.
 */
import * as path from "node:path";
import { Database } from "../../runtime/sql/database.js";
import { Platform } from "../../runtime/platform/platform.js";
import { migrateOut, recoverMigrations, serveMigrationPeer, type MigrationSource } from "../../runtime/migration/protocol/index.js";
import { pendingMigrations } from "../../runtime/migration/protocol/recovery.js";
import * as http from "node:http";
import { CertificateAuthority } from "../../runtime/platform/index.js";
import { attachMigrationChannel, connectAttested } from "../../runtime/migration/channel/index.js";
import { sqliteServices } from "../../runtime/migration/protocol/store-trust.js";

interface Args {
  /** The fleet CA's folder: both platforms are certified by it. */
  ca: string;
  data: string;
  platform: string;
  port: number;
  migrate?: { name: string; toPort: number; rows: number };
}

const args = JSON.parse(process.argv[2]!) as Args;
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const platform = await Platform.open(args.platform);
const fleetCa = CertificateAuthority.open(args.ca).certificate;
const channelOpts = { services: sqliteServices(platform), fleetCa, handshakeTimeoutMs: 10_000 };
const connect = (address: string) => connectAttested(address, channelOpts);
const recover = async (): Promise<void> => {
  for (const r of await recoverMigrations({ platform, dataDir: args.data, connect, timeoutMs: 2_000 })) say(`recovered ${r.role} ${r.action}`);
};
await recover();
const server = http.createServer((_q, r) => r.writeHead(404).end());
attachMigrationChannel(server, {
  channel: channelOpts,
  onChannel: (ch) => {
    serveMigrationPeer(ch, { platform, dataDir: args.data, timeoutMs: 5_000 }).then(
      (r) => r && say(`accepted ${r.state}`),
      (e: { code?: string }) => say(`accept-error ${e.code ?? String(e)}`),
    );
  },
});
await new Promise<void>((r) => server.listen(args.port, "127.0.0.1", r));
let settling = false;
setInterval(() => {
  if (settling || !pendingMigrations(args.data)) return;
  settling = true;
  recover().finally(() => (settling = false));
}, 100);

if (!args.migrate) say("ready");
else {
  const m = args.migrate;
  const file = path.join(args.data, m.name);
  let db: Database | undefined = new Database(file, { platform, paging: false });
  db.exec("CREATE TABLE IF NOT EXISTS t(n INTEGER PRIMARY KEY, pad TEXT)");
  say("ready"); // the database exists from here on
  let n = 0;
  let writing: Promise<void> = Promise.resolve();
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop && n < m.rows) {
      n++;
      db!.run("INSERT INTO t VALUES (?, ?)", n, "x".repeat(200));
      say(`ack ${n}`);
      await new Promise((r) => setImmediate(r));
    }
  };
  writing = loop();
  const source: MigrationSource = {
    async freeze() {
      stop = true;
      await writing;
      db!.close();
      db = undefined;
    },
    async resume() {
      db = new Database(file, { platform, paging: false });
      stop = false;
      writing = loop();
    },
    metadata: () => ({ tokens: [], note: "test" }),
  };
  await new Promise((r) => setTimeout(r, 30));
  try {
    const to = `http://127.0.0.1:${m.toPort}`;
    const ch = await connectAttested(to, channelOpts);
    const stats = await migrateOut({ platform, dataDir: args.data, name: m.name, channel: ch, source, sourceAddress: `http://127.0.0.1:${args.port}`, to, timeoutMs: 5_000, smallDeltaBytes: 64 * 1024 });
    say(`migrated ${JSON.stringify(stats)}`);
  } catch (e) {
    say(`migrate-error ${(e as { code?: string }).code ?? String(e)}`);
  }
  stop = true;
  await writing;
  db?.close();
  say("source-idle");
}
