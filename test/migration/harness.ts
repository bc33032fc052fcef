/**
 * The crash-test harness: two real peer processes (test/migration/peer-process.ts) with their own
 * platforms (certified by one fleet CA) and data folders, over the attested channel on loopback; one of them killed with SIGKILL, or its connection cut,
 * at a chosen protocol step; both restarted; then checked: exactly one side serves, and every
 * acknowledged write is there.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Database } from "../../runtime/sql/database.js";
import { CertificateAuthority, Platform } from "../../runtime/platform/index.js";
import { pendingMigrations } from "../../runtime/migration/protocol/recovery.js";
import { ROOT, tempDir } from "../helpers.js";

const PEER = path.join(ROOT, "dist", "test", "migration", "peer-process.js");
export const NAME = "orders.db";

export interface Side {
  data: string;
  platform: string;
}

export interface Peers {
  base: string;
  ca: string;
  source: Side;
  destination: Side;
}

/** Two platforms and data folders (the platforms are reused by trials: fresh data folders each). */
export async function makePeers(base = tempDir("selkie-mig-")): Promise<Peers> {
  const caDir = path.join(base, "fleet-ca");
  const ca = fs.existsSync(caDir) ? CertificateAuthority.open(caDir) : CertificateAuthority.create(caDir, { dev: false });
  const side = async (s: string): Promise<Side> => {
    const platform = path.join(base, `${s}-platform`);
    if (!fs.existsSync(platform)) await Platform.create(platform, { ca });
    return { data: path.join(base, `${s}-data`), platform };
  };
  return { base, ca: caDir, source: await side("source"), destination: await side("destination") };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export class PeerProcess {
  out = "";
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;
  constructor(args: object, env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [PEER, JSON.stringify(args)], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.on("data", (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on("data", (d: Buffer) => (this.out += `ERR ${d.toString()}`));
    this.exited = new Promise((r) => this.child.on("exit", (code) => r(code)));
  }
  get dead(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  async until(re: RegExp, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (re.test(this.out)) return true;
      if (this.dead) return re.test(this.out);
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }
  kill(): Promise<number | null> {
    if (!this.dead) this.child.kill("SIGKILL");
    return this.exited;
  }
  acked(): number[] {
    return [...this.out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
  }
}

export interface TrialOptions {
  crash?: string;
  cut?: string;
  rows?: number;
  /** kill -9 this side this many ms after the source is ready (its database exists): a random point. */
  kill?: { side: "source" | "destination"; afterMs: number };
}

export interface TrialResult {
  serving: Array<"source" | "destination">;
  acked: number;
  missing: number[];
  rowsAtOwner: number;
  /** The owner's rows are 1..k: nothing half-present. */
  gapless: boolean;
  migrated: boolean;
  log: string;
}

/** Opens NAME writable on a side: its row numbers, or undefined when it does not serve. */
export function servedRows(side: Side, platform: Platform): number[] | undefined {
  const file = path.join(side.data, NAME);
  if (!fs.existsSync(`${file}.log`)) return undefined;
  let db: Database;
  try {
    db = new Database(file, { platform, create: false, paging: false });
  } catch {
    return undefined;
  }
  try {
    return db.query<{ n: number }>("SELECT n FROM t ORDER BY n").map((r) => Number(r.n));
  } finally {
    db.close();
  }
}

/** One migration with an optional crash or cut, recovery, and the checks' raw results. */
export async function trial(peers: Peers, o: TrialOptions): Promise<TrialResult> {
  for (const s of [peers.source, peers.destination]) {
    fs.rmSync(s.data, { recursive: true, force: true });
    fs.mkdirSync(s.data, { recursive: true });
  }
  const [sp, dp] = [await freePort(), await freePort()];
  const srcArgs = { ca: peers.ca, data: peers.source.data, platform: peers.source.platform, port: sp };
  const dstArgs = { ca: peers.ca, data: peers.destination.data, platform: peers.destination.platform, port: dp };
  const env = (side: string): Record<string, string> => {
    const e: Record<string, string> = {};
    if (o.crash?.startsWith(side)) e["SELKIE_MIGRATION_CRASH"] = o.crash;
    if (o.cut?.startsWith(side)) e["SELKIE_MIGRATION_CUT"] = o.cut;
    return e;
  };
  let dst = new PeerProcess(dstArgs, env("destination"));
  await dst.until(/^ready$/m, 20_000);
  let src = new PeerProcess({ ...srcArgs, migrate: { name: NAME, toPort: dp, rows: o.rows ?? 400 } }, env("source"));
  let log = "";
  await src.until(/^ready$/m, 20_000);
  const killer = o.kill && setTimeout(() => void (o.kill!.side === "source" ? src : dst).kill(), o.kill.afterMs);
  try {
    // The source's run ends (migrated, aborted) or one side dies.
    const end = Date.now() + 30_000;
    while (Date.now() < end && !src.dead && !dst.dead && !/^source-idle$/m.test(src.out)) await new Promise((r) => setTimeout(r, 10));
    if (!src.dead && !dst.dead) await src.until(/^source-idle$/m, 15_000);
    // A destination that died: the source's run still ends (it aborts, or completes its commit).
    if (dst.dead && !src.dead) await src.until(/^source-idle$/m, 15_000);
    if (killer) clearTimeout(killer);
    const acked = src.acked();
    const migrated = /^migrated /m.test(src.out);
    log = `--- source\n${src.out.replace(/^ack \d+\n/gm, "")}--- destination\n${dst.out}`;
    // Restart whichever died (the source first: the destination may need to ask it), then settle.
    if (src.dead) {
      src = new PeerProcess(srcArgs);
      await src.until(/^ready$/m, 20_000);
    }
    if (dst.dead) {
      dst = new PeerProcess(dstArgs);
      await dst.until(/^ready$/m, 20_000);
    }
    // A side that kills itself at its crash point may exit a moment after its peer noticed: restart
    // whichever is dead until nothing is left to settle.
    const settle = Date.now() + 20_000;
    while (Date.now() < settle && (pendingMigrations(peers.source.data) || pendingMigrations(peers.destination.data))) {
      if (src.dead) {
        src = new PeerProcess(srcArgs);
        await src.until(/^ready$/m, 20_000);
      }
      if (dst.dead) {
        dst = new PeerProcess(dstArgs);
        await dst.until(/^ready$/m, 20_000);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    log += `--- after restart\n${src.out.replace(/^ack \d+\n/gm, "")}${dst.out}`;
    await Promise.all([src.kill(), dst.kill()]);
    const [ps, pd] = [await Platform.open(peers.source.platform), await Platform.open(peers.destination.platform)];
    try {
      const rs = servedRows(peers.source, ps);
      const rd = servedRows(peers.destination, pd);
      const serving: TrialResult["serving"] = [];
      if (rs) serving.push("source");
      if (rd) serving.push("destination");
      const owner = rs ?? rd ?? [];
      const rows = new Set(owner);
      const gapless = owner.every((n, i) => n === i + 1);
      return { serving, acked: acked.length, missing: acked.filter((n) => !rows.has(n)), rowsAtOwner: rows.size, gapless, migrated, log };
    } finally {
      ps.close();
      pd.close();
    }
  } finally {
    await Promise.all([src.kill(), dst.kill()]);
  }
}
