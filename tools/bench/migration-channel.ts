/**
 * `npm run bench:channel` (node dist/tools/bench/migration-channel.js [--n N]): what the attested
 * migration channel and forwarding cost, each beside its baseline of the same run, on loopback.
 *
 *  1. Handshake: a plain TLS 1.3 connect (TCP + handshake, until secureConnect) vs the HTTP Upgrade +
 *     inner TLS 1.3 without attestation vs the full attested channel (connectAttested: upgrade, inner
 *     TLS with per-session certificates, hello/quote/accepted both ways, two quote verifications).
 *     Source and destination run in this process (each side's work is on one event loop).
 *  2. Forwarding: point reads through @libsql/client, direct to the new owner vs through the old
 *     server's URL (forwarded), each server a real `selkie serve` child process; the forwarding entry
 *     is written as forwarding.json before the old server starts (FORWARDING.md).
 * Phases alternate in rounds so drift in machine load hits both alike. Prints p50/p99 per row.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@libsql/client";
import { CertificateAuthority, Platform } from "../../runtime/platform/index.js";
import { sqliteQuoter } from "../../runtime/host/server/management.js";
import { attachMigrationChannel, connectAttested, type ChannelOptions } from "../../runtime/migration/channel/index.js";
import { CHANNEL_PROTOCOL } from "../../runtime/migration/channel/binding.js";
import { sessionCertificate } from "../../runtime/migration/channel/session-cert.js";
import { tlsClient, tlsServer } from "../../runtime/migration/channel/tls-session.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, "..", "..", "runtime", "host", "cli", "main.js");
const ni = process.argv.indexOf("--n");
const N = ni > 0 ? Number(process.argv[ni + 1]) : 200;
const ROUNDS = 4;

const tmp = (p: string): string => fs.mkdtempSync(path.join(os.tmpdir(), p));
const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};
const row = (name: string, xs: number[], base?: number[]): string => {
  const ratio = base ? `  ${(q(xs, 0.5) / q(base, 0.5)).toFixed(2)}x` : "";
  return `${name.padEnd(48)} p50 ${q(xs, 0.5).toFixed(3).padStart(8)} ms   p99 ${q(xs, 0.99).toFixed(3).padStart(8)} ms   n=${xs.length}${ratio}`;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function handshakes(): Promise<string[]> {
  const caDir = tmp("selkie-bench-ca-");
  const ca = CertificateAuthority.create(caDir);
  const src = await Platform.create(tmp("selkie-bench-p-"), { ca });
  const dst = await Platform.create(tmp("selkie-bench-p-"), { ca });
  const dstOpts: ChannelOptions = { services: sqliteQuoter(dst), fleetCa: ca.certificate };
  const srcOpts: ChannelOptions = { services: sqliteQuoter(src), fleetCa: ca.certificate };

  // Baseline: a plain TLS 1.3 server with one certificate.
  const pem = sessionCertificate(Date.now());
  const plain = tls.createServer({ cert: pem.cert, key: pem.key, minVersion: "TLSv1.3" }, (s) => s.end());
  await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
  const plainPort = (plain.address() as AddressInfo).port;
  // Upgrade + inner TLS, no attestation.
  const bare = http.createServer();
  bare.on("upgrade", (_req, socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_PROTOCOL}\r\n\r\n`);
    void tlsServer(socket, 5_000).then((t) => t.end(), () => undefined);
  });
  await new Promise<void>((r) => bare.listen(0, "127.0.0.1", r));
  const barePort = (bare.address() as AddressInfo).port;
  // The attested channel.
  const full = http.createServer();
  attachMigrationChannel(full, { channel: dstOpts, onChannel: (c) => c.close("bench") });
  await new Promise<void>((r) => full.listen(0, "127.0.0.1", r));
  const fullUrl = `http://127.0.0.1:${(full.address() as AddressInfo).port}`;

  const plainConnect = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port: plainPort, rejectUnauthorized: false, minVersion: "TLSv1.3" }, () => (s.destroy(), resolve()));
      s.on("error", reject);
    });
  const bareConnect = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: barePort, path: "/", headers: { Connection: "Upgrade", Upgrade: CHANNEL_PROTOCOL }, agent: false });
      req.on("upgrade", (_res, socket) => void tlsClient(socket, 5_000).then((t) => (t.destroy(), resolve()), reject));
      req.on("error", reject);
      req.end();
    });
  const a: number[] = [];
  const b: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < 10; i++) await (await connectAttested(fullUrl, srcOpts)).close(), await plainConnect(), await bareConnect(); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < N / ROUNDS; i++) {
      let t0 = process.hrtime.bigint();
      await plainConnect();
      a.push(ms(t0));
      t0 = process.hrtime.bigint();
      await bareConnect();
      b.push(ms(t0));
      t0 = process.hrtime.bigint();
      const ch = await connectAttested(fullUrl, srcOpts);
      c.push(ms(t0));
      ch.close();
    }
  }
  plain.close();
  bare.close();
  full.closeAllConnections();
  full.close();
  src.close();
  dst.close();
  return [row("plain TLS 1.3 connect (baseline)", a), row("upgrade + inner TLS 1.3, no attestation", b, a), row("attested channel (connectAttested)", c, a)];
}

interface Proc {
  url: string;
  token?: string;
  proc: ChildProcess;
}

async function start(dir: string): Promise<Proc> {
  const proc = spawn(process.execPath, [CLI, "serve", "--dir", dir, "--port", "0", "--log-level", "warn"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`selkie serve did not start:\n${err}`)), 30_000);
    proc.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/\S+) /.exec(err);
      if (m && /connect:/.test(err)) (clearTimeout(t), resolve(m[1]!));
    });
  });
  const tok = /admin token[^\n]*\n\s+(sk_\S+)/.exec(err);
  return { url, proc, ...(tok ? { token: tok[1]! } : {}) };
}

async function forwarding(): Promise<string[]> {
  const bDir = tmp("selkie-bench-b-");
  const b = await start(bDir);
  const post = await fetch(`${b.url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${b.token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "kv" }) });
  if (post.status !== 201) throw new Error(`create: ${post.status}`);
  const aDir = tmp("selkie-bench-a-");
  fs.writeFileSync(path.join(aDir, "forwarding.json"), JSON.stringify({ format: 1, databases: { kv: { to: b.url, since: new Date().toISOString() } } }));
  const a = await start(aDir);
  const direct: Client = createClient({ url: `${b.url}/db/kv/`, authToken: b.token! });
  const via: Client = createClient({ url: `${a.url}/db/kv/`, authToken: b.token! });
  await direct.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
  await direct.batch(Array.from({ length: 100 }, (_, i) => ({ sql: "INSERT INTO t VALUES (?, ?)", args: [i, `value ${i}`] })), "write");
  const d: number[] = [];
  const f: number[] = [];
  for (let i = 0; i < 50; i++) await direct.execute("SELECT 1"), await via.execute("SELECT 1"); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < N; i++) {
      let t0 = process.hrtime.bigint();
      await direct.execute({ sql: "SELECT v FROM t WHERE k = ?", args: [i % 100] });
      d.push(ms(t0));
      t0 = process.hrtime.bigint();
      await via.execute({ sql: "SELECT v FROM t WHERE k = ?", args: [i % 100] });
      f.push(ms(t0));
    }
  }
  direct.close();
  via.close();
  a.proc.kill("SIGTERM");
  b.proc.kill("SIGTERM");
  return [row("point read direct to the new owner (baseline)", d), row("point read through the old URL (forwarded)", f, d)];
}

const out = [`migration channel and forwarding, loopback, ${os.cpus().length} cores, Node ${process.version}`, ...(await handshakes()), ...(await forwarding())];
process.stdout.write(`${out.join("\n")}\n`);
