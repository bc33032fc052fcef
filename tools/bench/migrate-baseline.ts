/**
 * The insecure baseline of `npm run bench:migrate`: a plain SQLite file (better-sqlite3 12.11.1,
 * native SQLite) holding the same rows as the Selkie database is stopped, copied over a TLS 1.3
 * socket on 127.0.0.1 (node:tls, an Ed25519 session certificate, no client certificate, no
 * attestation, no integrity check beyond TLS), fsynced at the receiver and reopened there.
 * Both ends run in this process, as the two Selkie peers do.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import { sessionCertificate } from "../../runtime/migration/channel/session-cert.js";

const require = createRequire(import.meta.url);

interface Bsq {
  exec(sql: string): void;
  prepare(sql: string): { run(...a: unknown[]): unknown; get(...a: unknown[]): Record<string, unknown> | undefined };
  transaction(fn: () => void): () => void;
  close(): void;
}
const BetterSqlite = require("better-sqlite3") as new (file: string) => Bsq;

/** Builds `file` with `rows` rows of `pad` random bytes each (the same schema as the Selkie database). */
export function buildPlain(file: string, rows: number, pad: number): void {
  const db = new BetterSqlite(file);
  db.exec("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL");
  db.exec("CREATE TABLE t(n INTEGER PRIMARY KEY, pad BLOB); CREATE TABLE w(id INTEGER PRIMARY KEY)");
  const ins = db.prepare("INSERT INTO t VALUES (?, randomblob(?))");
  for (let i = 0; i < rows; i += 2000) {
    db.transaction(() => {
      for (let j = i; j < Math.min(rows, i + 2000); j++) ins.run(j, pad);
    })();
  }
  db.close();
}

export function countPlain(file: string): number {
  const db = new BetterSqlite(file);
  try {
    return Number(db.prepare("SELECT count(*) AS c FROM t").get()!["c"]);
  } finally {
    db.close();
  }
}

export interface BaselineRun {
  totalMs: number;
  bytes: number;
  rows: number;
}

/**
 * One timed baseline move of `file` to `to`: open it (serving), then stop (close), TLS 1.3 connect
 * and copy, fsync at the receiver, reopen there and count the rows. The clock starts at the stop.
 */
export async function copyOverTls(file: string, to: string): Promise<BaselineRun> {
  const pem = sessionCertificate();
  let received!: Promise<number>;
  const server = tls.createServer({ cert: pem.cert, key: pem.key, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" }, (sock) => {
    received = new Promise<number>((resolve, reject) => {
      const out = fs.createWriteStream(to, { mode: 0o600 });
      let n = 0;
      sock.on("data", (c: Buffer) => (n += c.length));
      sock.pipe(out);
      sock.on("error", reject);
      out.on("error", reject);
      out.on("finish", () => {
        const fd = fs.openSync(to, "r");
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        const dfd = fs.openSync(path.dirname(to), "r");
        fs.fsyncSync(dfd);
        fs.closeSync(dfd);
        resolve(n);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const serving = new BetterSqlite(file);
  serving.prepare("SELECT count(*) FROM t").get();
  try {
    const t0 = performance.now();
    serving.close(); // stop the database
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" }, () => {
        const input = fs.createReadStream(file, { highWaterMark: 1024 * 1024 });
        input.pipe(s);
        input.on("error", reject);
        s.on("finish", resolve);
      });
      s.on("error", reject);
    });
    while (!received) await new Promise((r) => setImmediate(r));
    const bytes = await received;
    const rows = countPlain(to);
    return { totalMs: performance.now() - t0, bytes, rows };
  } finally {
    server.close();
  }
}
