/**
 * TEST ONLY: a MigrationChannel over a plain loopback TCP socket (no TLS, no attestation), for the
 * protocol tests until the attested channel is merged. Frames: u32be length | msgpack map. The
 * first frame each way is a hello carrying the sender's role and platform id (what the real
 * channel proves with quotes; here it is simply believed).
 */
import * as net from "node:net";
import { Packr } from "msgpackr";
import type { MigrationChannel, MigrationMessage, PeerInfo } from "../../runtime/migration/channel-api.js";

const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false, int64AsType: "number" } as never);
const MAX_FRAME = 8 * 1024 * 1024;

class PlainChannel implements MigrationChannel {
  peer!: PeerInfo;
  closed = false;
  readonly #socket: net.Socket;
  readonly #queue: MigrationMessage[] = [];
  readonly #waiters: Array<{ resolve: (m: MigrationMessage) => void; reject: (e: Error) => void }> = [];
  #buf: Buffer = Buffer.alloc(0);
  #error: Error | undefined;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => this.#data(d));
    socket.on("error", (e) => this.#fail(e));
    socket.on("close", () => this.#fail(new Error("connection closed")));
  }

  #data(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    while (this.#buf.length >= 4) {
      const n = this.#buf.readUInt32BE(0);
      if (n > MAX_FRAME) return this.#fail(new Error("frame too large"));
      if (this.#buf.length < 4 + n) break;
      const m = packr.unpack(this.#buf.subarray(4, 4 + n)) as MigrationMessage;
      this.#buf = this.#buf.subarray(4 + n);
      const w = this.#waiters.shift();
      if (w) w.resolve(m);
      else this.#queue.push(m);
    }
  }

  #fail(e: Error): void {
    if (!this.#error) this.#error = e;
    this.closed = true;
    for (const w of this.#waiters.splice(0)) w.reject(this.#error);
    this.#socket.destroy();
  }

  send(message: MigrationMessage): Promise<void> {
    if (this.closed) return Promise.reject(this.#error ?? new Error("channel closed"));
    const body = packr.pack(message);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    return new Promise((resolve, reject) => {
      this.#socket.write(Buffer.concat([head, body]), (e) => (e ? reject(e) : resolve()));
    });
  }

  receive(timeoutMs = 30_000): Promise<MigrationMessage> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(this.#error ?? new Error("channel closed"));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.#waiters.findIndex((w) => w.resolve === done);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (x: MigrationMessage): void => {
        clearTimeout(t);
        resolve(x);
      };
      this.#waiters.push({ resolve: done, reject: (e) => (clearTimeout(t), reject(e)) });
    });
  }

  close(reason = "closed"): void {
    if (this.closed) return;
    this.#socket.end();
    this.#fail(new Error(reason));
  }

  async hello(role: PeerInfo["role"], platformId: string): Promise<this> {
    await this.send({ type: "hello", role, platformId });
    this.#peerFrom(await this.receive(10_000));
    return this;
  }

  /** The listening side: takes the connector's hello and answers with the other role. */
  async answerHello(platformId: string): Promise<this> {
    const h = await this.receive(10_000);
    this.#peerFrom(h);
    await this.send({ type: "hello", role: h["role"] === "source" ? "destination" : "source", platformId });
    return this;
  }

  #peerFrom(h: MigrationMessage): void {
    this.peer = { role: h["role"] as PeerInfo["role"], platformId: String(h["platformId"]), mrenclave: "", mrsigner: "", isvProdId: 1, isvSvn: 1, runtimeVersion: "test" };
  }
}

/** Every socket these channels use, so a test file can end them all (a refused migration may leave one open). */
const sockets = new Set<net.Socket>();
function track(s: net.Socket): net.Socket {
  sockets.add(s);
  s.once("close", () => sockets.delete(s));
  return s;
}

/** Ends every plain channel's socket (call it in `after`: open sockets keep the test process alive). */
export function closeAllPlain(): void {
  for (const s of sockets) s.destroy();
  sockets.clear();
}

/** Connects to a plain listener as `role`. */
export async function connectPlain(port: number, role: PeerInfo["role"], platformId: string): Promise<MigrationChannel> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = track(net.connect({ host: "127.0.0.1", port }, () => resolve(s)));
    s.once("error", reject);
  });
  return new PlainChannel(socket).hello(role, platformId);
}

/** Listens on loopback; each connection becomes a channel handed to `onChannel`. */
export async function listenPlain(port: number, platformId: string, onChannel: (ch: MigrationChannel) => void): Promise<net.Server> {
  const server = net.createServer((socket) => {
    track(socket);
    const ch = new PlainChannel(socket);
    ch.answerHello(platformId).then(onChannel, () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}
