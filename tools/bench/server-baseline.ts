/**
 * The baseline of `npm run bench:server`: better-sqlite3 behind a minimal node:http JSON endpoint,
 * in its own process (as `selkie serve` is). Same pragmas as the SQL benchmark: journal_mode=DELETE,
 * synchronous=FULL (every COMMIT fsyncs), so writes are as durable as Selkie's.
 *
 *   node dist/tools/bench/server-baseline.js DIR     prints "listening PORT" on stdout
 *   POST /read  {"id": N}          -> {"row": {"id", "v"} | null}
 *   POST /write {"id": N, "v": S}  -> {"changes": 1}
 */
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";

interface BsStatement {
  get(...a: unknown[]): unknown;
  run(...a: unknown[]): { changes: number };
}
interface BsDb {
  exec(sql: string): void;
  prepare(sql: string): BsStatement;
  transaction(fn: () => void): () => void;
  close(): void;
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => BsDb;

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: server-baseline.js DIR\n");
  process.exit(2);
}
const db = new Database(path.join(dir, "baseline.db"));
db.exec("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL");
const read = db.prepare("SELECT id, v FROM kv WHERE id = ?");
const write = db.prepare("UPDATE kv SET v = ? WHERE id = ?");

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    let status = 200;
    let out: unknown;
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id: number; v?: string };
      if (req.url === "/read") out = { row: read.get(body.id) ?? null };
      else if (req.url === "/write") out = { changes: write.run(body.v, body.id).changes };
      else (status = 404), (out = { error: "not found" });
    } catch (e) {
      status = 400;
      out = { error: (e as Error).message };
    }
    const text = JSON.stringify(out);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on("SIGTERM", () => server.close(() => (db.close(), process.exit(0))));
