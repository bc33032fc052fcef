/**
 * An app that embeds Selkie as a library.
 *
 *   node dist/examples/embed/server.js --dir DIR [--port P] [--host H]
 *
 * - opens (or creates, on first run) a platform in DIR/platform;
 * - keeps its own sealed database DIR/app/visits.db, used directly through `Database`;
 * - serves its own routes (GET /hello, GET /visits) and mounts Selkie's HTTP API (libSQL's Hrana,
 *   /v1 management, /metrics) under the same node:http server, next to them;
 * - prints the URL and, on first run, an admin token for the mounted API;
 * - on SIGINT/SIGTERM drains the Selkie handler, closes its own database, then the platform.
 *
 * In your own app, import from "selkie" instead of the relative path used inside this repository.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { createHandler, Database, Platform, type SelkieHandler } from "../../runtime/index.js";

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
  },
});
if (!values.dir) {
  process.stderr.write("usage: node dist/examples/embed/server.js --dir DIR [--port P] [--host H]\n");
  process.exit(2);
}
const dir = path.resolve(values.dir);
fs.mkdirSync(dir, { recursive: true });

// 1. The platform: the emulated SGX CPU whose keys seal every database.
const platformDir = path.join(dir, "platform");
const platform = Platform.exists(platformDir) ? await Platform.open(platformDir) : await Platform.create(platformDir);

// 2. A database the app uses directly, in-process (no HTTP involved).
fs.mkdirSync(path.join(dir, "app"), { recursive: true });
const visits = new Database(path.join(dir, "app", "visits.db"), { platform });
visits.exec("CREATE TABLE IF NOT EXISTS visits(id INTEGER PRIMARY KEY, path TEXT NOT NULL, at TEXT NOT NULL)");

// 3. Selkie's HTTP API as a web-standard (Request) => Promise<Response> handler. Its databases
//    live in DIR/selkie/databases, its tokens in DIR/selkie/tokens.json.
const selkieDir = path.join(dir, "selkie");
fs.mkdirSync(selkieDir, { recursive: true });
const selkie: SelkieHandler = createHandler({ dir: selkieDir, platform });
const firstAdmin = selkie.context.tokens.hasAdmin() ? undefined : selkie.context.tokens.create("admin", null).token;

/** node:http -> web Request -> Selkie -> web Response -> node:http. */
async function toSelkie(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
  const method = req.method ?? "GET";
  const request = new Request(`http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`, {
    method,
    headers,
    ...(method === "GET" || method === "HEAD" ? {} : { body: Buffer.concat(chunks) }),
  });
  const response = await selkie(request);
  const body = Buffer.from(await response.arrayBuffer());
  const out: Record<string, string> = {};
  response.headers.forEach((v, k) => (out[k] = v));
  res.writeHead(response.status, { ...out, "content-length": String(body.length) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const pathname = (req.url ?? "/").split("?")[0];
  // The app's own routes.
  if (req.method === "GET" && pathname === "/hello") {
    visits.run("INSERT INTO visits(path, at) VALUES (?, ?)", "/hello", new Date().toISOString());
    return sendJson(res, 200, { hello: "world", enclave: visits.enclave.mrenclave });
  }
  if (req.method === "GET" && pathname === "/visits") {
    return sendJson(res, 200, visits.query("SELECT count(*) AS n FROM visits")[0]);
  }
  // Everything else is Selkie's: /db/NAME/v2/pipeline, /v1/..., /metrics.
  toSelkie(req, res).catch((e: unknown) => {
    if (!res.headersSent) sendJson(res, 500, { message: (e as Error).message, code: "INTERNAL" });
    else res.destroy();
  });
});

await new Promise<void>((resolve) => server.listen(Number(values.port), values.host, resolve));
const { port } = server.address() as AddressInfo;
const host = values.host!.includes(":") ? `[${values.host}]` : values.host;
// The token first: the "listening" line is the last thing printed at start-up.
if (firstAdmin) process.stdout.write(`admin token (shown once): ${firstAdmin}\n`);
process.stdout.write(`embed example listening on http://${host}:${port}\n`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await selkie.shutdown({ timeoutMs: 5_000 });
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  visits.close();
  platform.close();
  process.stdout.write("embed example stopped\n");
}
process.once("SIGINT", () => void stop());
process.once("SIGTERM", () => void stop());
