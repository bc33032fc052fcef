/**
 * Two migration peers for `npm run bench:migrate`, in this process: each its own platform
 * (certified by one fleet CA, not a development CA), its own data folder and an HTTP server on
 * 127.0.0.1 with the attested migration channel attached. move() runs one migration from one peer to
 * the other over the real channel (connectAttested + migrateOut on the source, acceptMigration on the
 * destination) and opens the database where it arrived.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Database, acceptMigration, attachMigrationChannel, connectAttested, migrateOut, type Accepted, type MigrationSource, type MigrationStats } from "../../runtime/index.js";
import { CertificateAuthority, Platform } from "../../runtime/platform/index.js";
import { sqliteServices } from "../../runtime/migration/protocol/store-trust.js";

export const tempDir = (p: string): string => fs.mkdtempSync(path.join(os.tmpdir(), p));

export interface Peer {
  readonly label: string;
  readonly platform: Platform;
  readonly dataDir: string;
  readonly url: string;
  readonly server: http.Server;
  /** Set by move() before it connects: receives the destination's acceptMigration() promise. */
  onAccept?: (accepted: Promise<Accepted>) => void;
}

export interface Peers {
  readonly ca: CertificateAuthority;
  readonly a: Peer;
  readonly b: Peer;
  readonly dirs: string[];
  close(): void;
}

async function peer(label: string, ca: CertificateAuthority, dirs: string[]): Promise<Peer> {
  const pdir = tempDir(`selkie-benchmig-${label}-platform-`);
  const dataDir = tempDir(`selkie-benchmig-${label}-data-`);
  dirs.push(pdir, dataDir);
  const platform = await Platform.create(pdir, { ca });
  const server = http.createServer((_q, r) => r.writeHead(404).end());
  const p: { -readonly [K in keyof Peer]: Peer[K] } = { label, platform, dataDir, url: "", server };
  attachMigrationChannel(server, {
    channel: { services: sqliteServices(platform), fleetCa: ca.certificate },
    onChannel: (ch) => {
      const accepted = acceptMigration({ platform, dataDir, channel: ch, timeoutMs: 60_000 });
      accepted.catch(() => undefined); // the source's migrateOut reports the failure
      const cb = p.onAccept;
      p.onAccept = undefined;
      cb?.(accepted);
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  p.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return p;
}

export async function makePeers(): Promise<Peers> {
  const dirs: string[] = [];
  const caDir = tempDir("selkie-benchmig-ca-");
  dirs.push(caDir);
  const ca = CertificateAuthority.create(caDir, { dev: false });
  const a = await peer("a", ca, dirs);
  const b = await peer("b", ca, dirs);
  return {
    ca,
    a,
    b,
    dirs,
    close() {
      for (const p of [a, b]) {
        p.server.closeAllConnections();
        p.server.close();
        p.platform.close();
      }
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

export function openAt(p: Peer, name: string, create = false): Database {
  return new Database(path.join(p.dataDir, name), { platform: p.platform, create, paging: false });
}

export interface Moved {
  stats: MigrationStats;
  /** connectAttested: HTTP upgrade, inner TLS 1.3, quotes both ways and their verification. */
  attestMs: number;
  /** The destination's acceptMigration() result (it serves when state is "done"). */
  accepted: Promise<Accepted>;
}

/**
 * Migrates `name` from `from` to `to` over the attested channel; `source` freezes and resumes it.
 * `arriving` gets the destination's acceptMigration() promise as soon as the channel is up.
 */
export async function move(peers: Peers, from: Peer, to: Peer, name: string, source: MigrationSource, arriving?: (a: Promise<Accepted>) => void): Promise<Moved> {
  let accepted!: Promise<Accepted>;
  const got = new Promise<void>((resolve) => {
    to.onAccept = (p) => {
      accepted = p;
      arriving?.(p);
      resolve();
    };
  });
  const t0 = performance.now();
  const ch = await connectAttested(to.url, { services: sqliteServices(from.platform), fleetCa: peers.ca.certificate });
  const attestMs = performance.now() - t0;
  const stats = await migrateOut({ platform: from.platform, dataDir: from.dataDir, name, channel: ch, source, sourceAddress: from.url, to: to.url, timeoutMs: 60_000 });
  await got;
  return { stats, attestMs, accepted };
}
