/**
 * Hrana conformance against a spawned `selkie serve` (runtime/host/server/hrana/PROTOCOL.md):
 * one contract suite run by libSQL's own Hrana client (@libsql/hrana-client, which decodes with the
 * client's expectations) over HTTP v3-protobuf, WebSocket hrana3-protobuf and WebSocket hrana2
 * (JSON); then the raw encodings (v2 and v3 JSON pipelines, JSON and protobuf cursors, hrana3 JSON
 * over WebSocket) and bad input on both transports.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { BatchCond, openHttp, openWs, type Client, type Stream } from "@libsql/hrana-client";
import WebSocket from "ws";
import protobuf from "protobufjs";
import { HRANA_HTTP_PROTO, HRANA_PROTO } from "../../runtime/host/server/hrana/proto-schema.js";
import { api, createDb, exec, pipeline, startServer, type ServerProc } from "./harness.js";

const wsUrl = (s: ServerProc, path: string): string => `${s.url.replace(/^http/, "ws")}${path}`;

interface Transport {
  name: string;
  open(s: ServerProc): Client;
  cursors: boolean;
  /** Who stores SQL: the connection (WebSocket) or the stream (HTTP). */
  owner(c: Client, st: Stream): { storeSql(sql: string): unknown };
}

const TRANSPORTS: Transport[] = [
  { name: "HTTP v3-protobuf", open: (s) => openHttp(`${s.url}/db/app/`, s.adminToken, undefined, undefined, 3), cursors: true, owner: (_c, st) => st as unknown as { storeSql(sql: string): unknown } },
  { name: "WebSocket hrana3-protobuf", open: (s) => openWs(wsUrl(s, "/db/app"), s.adminToken, 3), cursors: true, owner: (c) => c as unknown as { storeSql(sql: string): unknown } },
  { name: "WebSocket hrana2 (JSON)", open: (s) => openWs(wsUrl(s, "/db/app"), s.adminToken, 2), cursors: false, owner: (c) => c as unknown as { storeSql(sql: string): unknown } },
];

/** A raw WebSocket speaking one subprotocol: sends messages, reads them in order. */
class RawWs {
  readonly ws: WebSocket;
  readonly inbox: Array<Buffer | string> = [];
  #waiters: Array<() => void> = [];
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;
  constructor(url: string, protocols: string[]) {
    this.ws = new WebSocket(url, protocols);
    this.ws.on("message", (d, bin) => {
      this.inbox.push(bin ? (d as Buffer) : d.toString());
      this.#waiters.splice(0).forEach((w) => w());
    });
    this.closed = new Promise((r) => this.ws.on("close", (code, reason) => r({ code, reason: reason.toString() })));
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
      this.ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, body })));
      });
    });
  }
  send(m: unknown): void {
    this.ws.send(typeof m === "string" || Buffer.isBuffer(m) ? m : JSON.stringify(m));
  }
  async next(): Promise<any> {
    while (this.inbox.length === 0) await new Promise<void>((r) => this.#waiters.push(r));
    const m = this.inbox.shift()!;
    return typeof m === "string" ? JSON.parse(m) : m;
  }
  /** Sends a request and returns the response with that id (responses may come in any order). */
  async request(id: number, request: object): Promise<any> {
    this.send({ type: "request", request_id: id, request });
    return this.response(id);
  }
  /** The response to request `id`; other messages stay in the inbox, in order. */
  async response(id: number): Promise<any> {
    for (;;) {
      const i = this.inbox.findIndex((m) => typeof m === "string" && (JSON.parse(m) as { request_id?: number }).request_id === id);
      if (i >= 0) return JSON.parse(this.inbox.splice(i, 1)[0] as string);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

describe("Hrana conformance (selkie serve)", () => {
  let s: ServerProc;
  let roToken: string;

  before(async () => {
    s = await startServer({ args: ["--max-body", "65536"] });
    await createDb(s, "app");
    const r = await api(s, s.adminToken, "POST", "/v1/tokens", { scope: "read-only", db: "app" });
    assert.equal(r.status, 201, r.text);
    roToken = r.json.token as string;
  });
  after(async () => {
    const code = await s?.stop();
    assert.equal(code, 0, `signal ${s?.proc.signalCode} ${s?.stderr()}\n${s?.stdout().slice(-4000)}`);
  });

  for (const t of TRANSPORTS) {
    describe(`through @libsql/hrana-client over ${t.name}`, () => {
      let c: Client;
      const tbl = `t_${t.name.replace(/\W+/g, "_")}`;
      before(async () => {
        c = t.open(s);
        await c.getVersion();
      });
      after(() => c?.close());

      it("executes statements and keeps SQLite's storage classes both ways", async () => {
        const st = c.openStream();
        await st.run(`CREATE TABLE ${tbl}(id INTEGER PRIMARY KEY, v)`);
        const ins = await st.run([`INSERT INTO ${tbl}(v) VALUES (?), (?), (?), (?)`, [2.0, 7n, "x", new Uint8Array([1, 2])]]);
        assert.equal(ins.affectedRowCount, 4);
        assert.equal(ins.lastInsertRowid, 4n);
        const rows = await st.query(`SELECT typeof(v) AS t, v FROM ${tbl} ORDER BY id`);
        assert.deepEqual(rows.rows.map((r) => r.t), ["real", "integer", "text", "blob"]);
        assert.equal(rows.rows[0]!.v, 2);
        assert.equal(rows.rows[1]!.v, 7);
        assert.deepEqual(new Uint8Array(rows.rows[3]!.v as ArrayBuffer), new Uint8Array([1, 2]));
        assert.deepEqual(rows.columnDecltypes, [undefined, undefined]);
        assert.deepEqual((await st.query(`SELECT id, v FROM ${tbl} LIMIT 1`)).columnDecltypes, ["INTEGER", undefined]);
        st.intMode = "bigint";
        assert.equal((await st.queryValue(["SELECT ?", [-(2n ** 63n)]])).value, -(2n ** 63n));
        st.intMode = "number";
        await assert.rejects(st.run("SELECT * FROM missing_table"), (e: { code?: string; message: string }) => e.code === "SQLITE_ERROR" && /no such table/.test(e.message));
        st.close();
      });

      it("runs batches with every kind of condition", { skip: t.cursors ? false : "is_autocommit conditions are Hrana 3; hrana2 has the others (raw v2 test below)" }, async () => {
        for (const useCursor of t.cursors ? [false, true] : [false]) {
          const st = c.openStream();
          const b = st.batch(useCursor);
          const s0 = b.step();
          const r0 = s0.run(`INSERT INTO ${tbl}(v) VALUES ('batch')`);
          const s1 = b.step();
          const r1 = s1.run("INSERT INTO no_such_table VALUES (1)");
          const r2 = b.step().condition(BatchCond.ok(s0)).query(`SELECT count(*) AS n FROM ${tbl} WHERE v = 'batch'`);
          const r3 = b.step().condition(BatchCond.error(s0)).run("SELECT 1");
          const r4 = b.step().condition(BatchCond.and(b, [BatchCond.ok(s0), BatchCond.error(s1)])).queryValue("SELECT 'and'");
          const r5 = b.step().condition(BatchCond.not(BatchCond.isAutocommit(b))).run("SELECT 1");
          const r6 = b.step().condition(BatchCond.or(b, [BatchCond.error(s0), BatchCond.isAutocommit(b)])).queryValue("SELECT 'or'");
          await b.execute();
          assert.equal((await r0)!.affectedRowCount, 1);
          await assert.rejects(r1, (e: { code?: string }) => e.code === "SQLITE_ERROR");
          assert.ok(Number((await r2)!.rows[0]!.n) >= 1);
          assert.equal(await r3, undefined, "error(s0) is false: skipped");
          assert.equal((await r4)!.value, "and");
          assert.equal(await r5, undefined, "not(is_autocommit) is false outside a transaction");
          assert.equal((await r6)!.value, "or");
          st.close();
        }
      });

      it("describes a statement", async () => {
        const st = c.openStream();
        const d = await st.describe(`SELECT id AS a, v FROM ${tbl} WHERE id = :p AND v = ?2`);
        assert.deepEqual(d.paramNames, [":p", "?2"]);
        assert.deepEqual(d.columns, [{ name: "a", decltype: "INTEGER" }, { name: "v", decltype: undefined }]);
        assert.equal(d.isReadonly, true);
        assert.equal(d.isExplain, false);
        assert.equal((await st.describe(`EXPLAIN SELECT 1`)).isExplain, true);
        assert.equal((await st.describe(`DELETE FROM ${tbl}`)).isReadonly, false);
        st.close();
      });

      it("runs stored SQL and sequences", async () => {
        const st = c.openStream();
        const sql = t.owner(c, st).storeSql(`SELECT count(*) FROM ${tbl} WHERE v = ?`);
        await st.sequence(`INSERT INTO ${tbl}(v) VALUES ('seq'); INSERT INTO ${tbl}(v) VALUES ('seq');`);
        assert.equal((await st.queryValue([sql, ["seq"]] as never)).value, 2);
        assert.equal((await st.queryValue([sql, ["nothing"]] as never)).value, 0);
        st.close();
      });

      it("keeps an interactive transaction on its stream and reports is_autocommit", { skip: t.cursors ? false : "get_autocommit is Hrana 3" }, async () => {
        const st = c.openStream();
        const count = async (): Promise<number> => Number((await st.queryValue(`SELECT count(*) FROM ${tbl}`)).value);
        const before = await count();
        assert.equal(await st.getAutocommit(), true);
        await st.run("BEGIN");
        assert.equal(await st.getAutocommit(), false);
        await st.run(`INSERT INTO ${tbl}(v) VALUES ('tx')`);
        assert.equal(await count(), before + 1);
        await st.run("ROLLBACK");
        assert.equal(await st.getAutocommit(), true);
        assert.equal(await count(), before);
        st.close();
      });

      if (t.cursors) {
        it("streams a large result through a cursor", async () => {
          const st = c.openStream();
          const b = st.batch(true);
          const q = b.step().query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) SELECT i, 'row ' || i AS label FROM n");
          await b.execute();
          const rows = (await q)!.rows;
          assert.equal(rows.length, 3000);
          assert.equal(rows[2999]!.label, "row 3000");
          st.close();
        });
      }
    });
  }

  describe("raw encodings", () => {
    it("serves v2 and v3 JSON pipelines with batons, stored SQL, batch conditions and get_autocommit", async () => {
      for (const v of ["v2", "v3"] as const) {
        const r1 = await pipeline(s, s.adminToken, [{ type: "store_sql", sql_id: 1, sql: "SELECT ? + 1" }, { type: "execute", stmt: { sql_id: 1, args: [{ type: "integer", value: "41" }] } }, exec("BEGIN"), { type: "get_autocommit" }], { v });
        assert.equal(r1.status, 200, r1.text);
        assert.deepEqual(r1.json.results.map((r: { type: string }) => r.type), ["ok", "ok", "ok", "ok"]);
        assert.deepEqual(r1.json.results[1].response.result.rows, [[{ type: "integer", value: "42" }]]);
        assert.equal(r1.json.results[3].response.is_autocommit, false);
        const batch = {
          type: "batch",
          batch: {
            steps: [
              { stmt: { sql: "SELECT 1" } },
              { condition: { type: "is_autocommit" }, stmt: { sql: "SELECT 2" } },
              { condition: { type: "and", conds: [{ type: "ok", step: 0 }, { type: "not", cond: { type: "is_autocommit" } }] }, stmt: { sql: "SELECT 3" } },
            ],
          },
        };
        const r2 = await pipeline(s, s.adminToken, [{ type: "execute", stmt: { sql_id: 1, args: [{ type: "integer", value: "1" }] } }, batch, exec("ROLLBACK"), { type: "close" }], { v, baton: r1.json.baton });
        assert.equal(r2.status, 200, r2.text);
        assert.deepEqual(r2.json.results[0].response.result.rows, [[{ type: "integer", value: "2" }]], "stored SQL lives on the stream");
        const br = r2.json.results[1].response.result;
        assert.deepEqual(br.step_results.map((x: unknown) => x !== null), [true, false, true]);
        assert.equal(r2.json.baton, null);
        const r3 = await pipeline(s, s.adminToken, [exec("SELECT 1")], { v, baton: r1.json.baton });
        assert.equal(r3.json.code, "STREAM_EXPIRED");
      }
    });

    it("answers v3/cursor with JSON lines: the baton, then step_begin, rows, step_end and step_error entries", async () => {
      const res = await fetch(`${s.url}/db/app/v3/cursor`, {
        method: "POST",
        headers: { authorization: `Bearer ${s.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ baton: null, batch: { steps: [{ stmt: { sql: "SELECT 1 AS a UNION ALL SELECT 2" } }, { stmt: { sql: "SELECT * FROM nope" } }, { condition: { type: "ok", step: 1 }, stmt: { sql: "SELECT 3" } }] } }),
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/json");
      const lines = (await res.text()).split("\n");
      assert.equal(lines.pop(), "", "every line ends with \\n");
      const [head, ...entries] = lines.map((l) => JSON.parse(l));
      assert.equal(typeof head.baton, "string");
      assert.deepEqual(entries.map((e: { type: string }) => e.type), ["step_begin", "row", "row", "step_end", "step_error"]);
      assert.deepEqual(entries[0], { type: "step_begin", step: 0, cols: [{ name: "a", decltype: null }] });
      assert.deepEqual(entries[2].row, [{ type: "integer", value: "2" }]);
      assert.equal(entries[4].step, 1);
      assert.equal(entries[4].error.code, "SQLITE_ERROR");
      const closed = await pipeline(s, s.adminToken, [{ type: "close" }], { v: "v3", baton: head.baton });
      assert.equal(closed.status, 200);
    });

    it("answers v3-protobuf pipelines and cursors in protobuf, decodable with the spec's schema", async () => {
      const root = new protobuf.Root();
      for (const text of [HRANA_PROTO, HRANA_HTTP_PROTO]) protobuf.parse(text, root, { keepCase: true });
      const Req = root.lookupType("hrana.http.PipelineReqBody");
      const Resp = root.lookupType("hrana.http.PipelineRespBody");
      const body = Req.encode({ requests: [{ execute: { stmt: { sql: "SELECT ?, ?, 1.0 AS r", args: [{ integer: "-9007199254740993" }, { float: 0.5 }] } } }, { close: {} }] }).finish();
      const res = await fetch(`${s.url}/db/app/v3-protobuf/pipeline`, { method: "POST", headers: { authorization: `Bearer ${s.adminToken}`, "content-type": "application/x-protobuf" }, body: Buffer.from(body) });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/x-protobuf");
      const m = Resp.toObject(Resp.decode(new Uint8Array(await res.arrayBuffer())), { longs: String, oneofs: true }) as any;
      const row = m.results[0].ok.execute.result.rows[0].values;
      assert.deepEqual(row, [{ integer: "-9007199254740993", value: "integer" }, { float: 0.5, value: "float" }, { float: 1, value: "float" }]);
      assert.equal(m.results[1].ok.response, "close");
      // The cursor route: length-delimited CursorRespBody, then CursorEntry messages.
      const CReq = root.lookupType("hrana.http.CursorReqBody");
      const CHead = root.lookupType("hrana.http.CursorRespBody");
      const Entry = root.lookupType("hrana.CursorEntry");
      const cres = await fetch(`${s.url}/db/app/v3-protobuf/cursor`, {
        method: "POST",
        headers: { authorization: `Bearer ${s.adminToken}`, "content-type": "application/x-protobuf" },
        body: Buffer.from(CReq.encode({ batch: { steps: [{ stmt: { sql: "SELECT 'a' UNION ALL SELECT 'b'" } }] } }).finish()),
      });
      assert.equal(cres.status, 200);
      const reader = protobuf.Reader.create(new Uint8Array(await cres.arrayBuffer()));
      const head = CHead.decodeDelimited(reader) as any;
      assert.equal(typeof head.baton, "string");
      const kinds: string[] = [];
      while (reader.pos < reader.len) kinds.push((Entry.decodeDelimited(reader) as any).entry);
      assert.deepEqual(kinds, ["step_begin", "row", "row", "step_end"]);
    });

    it("speaks hrana3 JSON over WebSocket: streams, connection-wide stored SQL, cursors fetched in pieces", async () => {
      const w = new RawWs(wsUrl(s, "/db/app/"), ["hrana3"]);
      await w.opened;
      assert.equal(w.ws.protocol, "hrana3");
      w.send({ type: "hello", jwt: s.adminToken });
      assert.deepEqual(await w.next(), { type: "hello_ok" });
      assert.equal((await w.request(1, { type: "open_stream", stream_id: 1 })).type, "response_ok");
      assert.equal((await w.request(2, { type: "open_stream", stream_id: 2 })).type, "response_ok");
      assert.equal((await w.request(3, { type: "store_sql", sql_id: 7, sql: "SELECT ? * 2" })).type, "response_ok");
      for (const stream_id of [1, 2]) {
        const r = await w.request(10 + stream_id, { type: "execute", stream_id, stmt: { sql_id: 7, args: [{ type: "integer", value: String(stream_id) }] } });
        assert.deepEqual(r.response.result.rows, [[{ type: "integer", value: String(stream_id * 2) }]]);
      }
      const oc = await w.request(20, { type: "open_cursor", stream_id: 1, cursor_id: 1, batch: { steps: [{ stmt: { sql: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n" } }] } });
      assert.equal(oc.type, "response_ok", JSON.stringify(oc));
      const seen: string[] = [];
      for (let id = 21; ; id++) {
        const f = await w.request(id, { type: "fetch_cursor", cursor_id: 1, max_count: 3 });
        assert.ok(f.response.entries.length <= 3);
        seen.push(...f.response.entries.map((e: { type: string }) => e.type));
        if (f.response.done) break;
      }
      assert.deepEqual(seen, ["step_begin", "row", "row", "row", "row", "row", "step_end"]);
      assert.equal((await w.request(40, { type: "close_cursor", cursor_id: 1 })).type, "response_ok");
      const ac = await w.request(41, { type: "get_autocommit", stream_id: 2 });
      assert.equal(ac.response.is_autocommit, true);
      assert.equal((await w.request(42, { type: "close_sql", sql_id: 7 })).type, "response_ok");
      const gone = await w.request(43, { type: "execute", stream_id: 1, stmt: { sql_id: 7 } });
      assert.equal(gone.error.code, "SQL_ID_UNKNOWN");
      assert.equal((await w.request(44, { type: "close_stream", stream_id: 1 })).type, "response_ok");
      const closedStream = await w.request(45, { type: "execute", stream_id: 1, stmt: { sql: "SELECT 1" } });
      assert.equal(closedStream.error.code, "STREAM_UNKNOWN");
      w.ws.close();
      await w.closed;
    });
  });

  describe("WebSocket streams", () => {
    const hello = async (w: RawWs): Promise<void> => {
      await w.opened;
      w.send({ type: "hello", jwt: s.adminToken });
      assert.deepEqual(await w.next(), { type: "hello_ok" });
    };
    const count = async (): Promise<number> => {
      const r = await pipeline(s, s.adminToken, [exec("SELECT count(*) FROM ws_life"), { type: "close" }], { v: "v3" });
      return Number(r.json.results[0].response.result.rows[0][0].value);
    };

    it("closing the socket rolls back a stream's open transaction and frees the database for others", async () => {
      await pipeline(s, s.adminToken, [exec("CREATE TABLE ws_life(x)"), { type: "close" }], { v: "v3" });
      const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await hello(w);
      await w.request(1, { type: "open_stream", stream_id: 1 });
      assert.equal((await w.request(2, { type: "execute", stream_id: 1, stmt: { sql: "BEGIN IMMEDIATE" } })).type, "response_ok");
      assert.equal((await w.request(3, { type: "execute", stream_id: 1, stmt: { sql: "INSERT INTO ws_life VALUES (1)" } })).type, "response_ok");
      assert.equal((await w.request(4, { type: "get_autocommit", stream_id: 1 })).response.is_autocommit, false);
      w.ws.close();
      await w.closed;
      const t0 = Date.now();
      const r = await pipeline(s, s.adminToken, [exec("INSERT INTO ws_life VALUES (2)"), { type: "close" }], { v: "v3" });
      assert.equal(r.json.results[0].type, "ok", JSON.stringify(r.json));
      assert.ok(Date.now() - t0 < 5_000, "the writer did not wait for the stream's idle expiry");
      assert.equal(await count(), 1, "only the second writer's row is there");
    });

    it("two streams of one connection interleave: one waits for the other's transaction, then both finish", async () => {
      const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await hello(w);
      await w.request(1, { type: "open_stream", stream_id: 1 });
      await w.request(2, { type: "open_stream", stream_id: 2 });
      await w.request(3, { type: "execute", stream_id: 1, stmt: { sql: "BEGIN IMMEDIATE" } });
      // Stream 2's write waits for stream 1's lease; stream 1's COMMIT (sent after it) must not wait behind it.
      w.send({ type: "request", request_id: 4, request: { type: "execute", stream_id: 2, stmt: { sql: "INSERT INTO ws_life VALUES (4)" } } });
      const commit = await w.request(5, { type: "execute", stream_id: 1, stmt: { sql: "COMMIT" } });
      assert.equal(commit.type, "response_ok");
      assert.equal((await w.response(4)).type, "response_ok");
      assert.equal(await count(), 2);
      w.ws.close();
    });
  });

  describe("bad input", () => {
    const health = async (): Promise<void> => {
      const r = await pipeline(s, s.adminToken, [exec("SELECT 1"), { type: "close" }], { v: "v3" });
      assert.equal(r.status, 200);
      assert.equal(r.json.results[0].type, "ok");
    };
    const hello = async (w: RawWs, jwt = s.adminToken): Promise<void> => {
      await w.opened;
      w.send({ type: "hello", jwt });
      assert.deepEqual(await w.next(), { type: "hello_ok" });
    };

    it("malformed protobuf and unknown request types over HTTP are 400 HRANA_PROTO_ERROR, and nothing runs", async () => {
      const post = (path: string, body: Uint8Array) => api(s, s.adminToken, "POST", `/db/app/${path}`, body, { "content-type": "application/x-protobuf" });
      for (const path of ["v3-protobuf/pipeline", "v3-protobuf/cursor"]) {
        const r = await post(path, new Uint8Array([0x12, 0xff, 0xff, 0xff, 0x0f, 0x01]));
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.code, "HRANA_PROTO_ERROR");
      }
      // A StreamRequest whose oneof is empty (a request type this server does not know).
      const unknown = await post("v3-protobuf/pipeline", new Uint8Array([0x12, 0x00]));
      assert.equal(unknown.status, 400);
      assert.equal(unknown.json.code, "HRANA_PROTO_ERROR");
      const json = await pipeline(s, s.adminToken, [{ type: "teleport" }], { v: "v3" });
      assert.equal(json.status, 400);
      assert.equal(json.json.code, "HRANA_PROTO_ERROR");
      const v2cursor = await api(s, s.adminToken, "POST", "/db/app/v2/cursor", { batch: { steps: [] } });
      assert.equal(v2cursor.status, 404);
      await health();
    });

    it("a WebSocket handshake without a Hrana subprotocol is refused with 400 WS_NO_SUBPROTOCOL", async () => {
      const w = new RawWs(wsUrl(s, "/db/app"), ["chat"]);
      await assert.rejects(w.opened, (e: { status?: number; body?: string }) => e.status === 400 && /WS_NO_SUBPROTOCOL/.test(e.body ?? ""));
      const other = new RawWs(wsUrl(s, "/elsewhere"), ["hrana3"]);
      await assert.rejects(other.opened, (e: { status?: number }) => e.status === 404);
    });

    it("hello with a wrong or missing token gets hello_error UNAUTHORIZED and the socket closes", async () => {
      for (const jwt of ["sk_wrong", undefined]) {
        const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
        await w.opened;
        w.send({ type: "hello", ...(jwt ? { jwt } : {}) });
        const m = await w.next();
        assert.equal(m.type, "hello_error");
        assert.equal(m.error.code, "UNAUTHORIZED");
        assert.equal((await w.closed).code, 3000);
      }
    });

    it("a request before hello closes the socket with 3000 HELLO_REQUIRED", async () => {
      const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await w.opened;
      w.send({ type: "request", request_id: 1, request: { type: "open_stream", stream_id: 1 } });
      const c = await w.closed;
      assert.equal(c.code, 3000);
      assert.match(c.reason, /HELLO_REQUIRED/);
    });

    it("malformed frames close the socket (3001), frames of the wrong kind too (3003), oversized ones with 1009", async () => {
      const bad = new RawWs(wsUrl(s, "/db/app"), ["hrana3-protobuf"]);
      await bad.opened;
      bad.send(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
      assert.equal((await bad.closed).code, 3001);
      const text = new RawWs(wsUrl(s, "/db/app"), ["hrana3-protobuf"]);
      await text.opened;
      text.send("{}");
      assert.equal((await text.closed).code, 3003);
      const json = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await json.opened;
      json.send("{not json");
      assert.equal((await json.closed).code, 3001);
      const big = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await hello(big);
      big.send({ type: "request", request_id: 1, request: { type: "execute", stream_id: 1, stmt: { sql: `SELECT '${"x".repeat(70_000)}'` } } });
      assert.equal((await big.closed).code, 1009);
      await health();
    });

    it("unknown request types and bad fields get response_error HRANA_PROTO_ERROR and the connection goes on", async () => {
      const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await hello(w);
      assert.equal((await w.request(1, { type: "teleport" })).error.code, "HRANA_PROTO_ERROR");
      assert.equal((await w.request(2, { type: "open_stream", stream_id: "one" })).error.code, "HRANA_PROTO_ERROR");
      assert.equal((await w.request(3, { type: "open_stream", stream_id: 1 })).type, "response_ok");
      assert.equal((await w.request(4, { type: "execute", stream_id: 1, stmt: { sql: "SELECT ?", args: [{ type: "integer", value: "x" }] } })).error.code, "HRANA_PROTO_ERROR");
      assert.equal((await w.request(5, { type: "fetch_cursor", cursor_id: 9, max_count: 1 })).error.code, "CURSOR_UNKNOWN");
      const ok = await w.request(6, { type: "execute", stream_id: 1, stmt: { sql: "SELECT 'still here'" } });
      assert.deepEqual(ok.response.result.rows, [[{ type: "text", value: "still here" }]]);
      w.ws.close();
    });

    it("a token revoked while its WebSocket is open ends the connection at its next request (3000)", async () => {
      const t = await api(s, s.adminToken, "POST", "/v1/tokens", { scope: "read-write", db: "app" });
      assert.equal(t.status, 201);
      const w = new RawWs(wsUrl(s, "/"), ["hrana3"]);
      await hello(w, t.json.token as string);
      assert.equal((await w.request(1, { type: "open_stream", stream_id: 1 })).type, "response_ok");
      assert.equal((await api(s, s.adminToken, "DELETE", `/v1/tokens/${t.json.id as string}`)).status < 300, true);
      w.send({ type: "request", request_id: 2, request: { type: "execute", stream_id: 1, stmt: { sql: "SELECT 1" } } });
      const c = await Promise.race([w.closed, new Promise<{ code: number; reason: string }>((r) => setTimeout(() => r({ code: 0, reason: "still open after 10 s" }), 10_000).unref())]);
      assert.equal(c.code, 3000);
      assert.match(c.reason, /UNAUTHORIZED/);
    });

    it("a read-only token over WebSocket reads and is refused writes with READ_ONLY_TOKEN, as over HTTP", async () => {
      const w = new RawWs(wsUrl(s, "/"), ["hrana3"]);
      await hello(w, roToken);
      await w.request(1, { type: "open_stream", stream_id: 1 });
      const read = await w.request(2, { type: "execute", stream_id: 1, stmt: { sql: "SELECT 1" } });
      assert.equal(read.type, "response_ok");
      const write = await w.request(3, { type: "execute", stream_id: 1, stmt: { sql: "CREATE TABLE ro_attempt(x)" } });
      assert.equal(write.error.code, "READ_ONLY_TOKEN");
      const again = await w.request(4, { type: "execute", stream_id: 1, stmt: { sql: "SELECT 2" } });
      assert.equal(again.type, "response_ok");
      w.ws.close();
      const other = new RawWs(wsUrl(s, "/db/other"), ["hrana3"]);
      await other.opened;
      other.send({ type: "hello", jwt: roToken });
      assert.equal((await other.next()).error.code, "TOKEN_SCOPE");
      await health();
    });
  });
});

describe("Hrana over WebSocket at shutdown", () => {
  it("SIGTERM closes a WebSocket inside a transaction with 1001, rolls it back and exits 0", async () => {
    const s = await startServer();
    await createDb(s, "app");
    const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
    await w.opened;
    w.send({ type: "hello", jwt: s.adminToken });
    assert.deepEqual(await w.next(), { type: "hello_ok" });
    await w.request(1, { type: "open_stream", stream_id: 1 });
    assert.equal((await w.request(2, { type: "execute", stream_id: 1, stmt: { sql: "BEGIN IMMEDIATE" } })).type, "response_ok");
    const t0 = Date.now();
    assert.equal(await s.stop("SIGTERM"), 0, s.stderr());
    assert.equal((await w.closed).code, 1001);
    assert.ok(Date.now() - t0 < 10_000, "shutdown did not wait for the transaction's time limit");
  });
});

describe("Hrana over WebSocket under the server's limits", () => {
  let s: ServerProc;
  before(async () => {
    s = await startServer({ args: ["--max-response-bytes", "65536", "--max-rows", "100", "--request-timeout", "1500"] });
    await createDb(s, "app");
  });
  after(async () => {
    assert.equal(await s?.stop(), 0);
  });

  it("answers a runaway statement with STATEMENT_TIMEOUT, too many rows with ROWS_LIMIT, too many bytes with RESPONSE_TOO_LARGE", async () => {
    const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
    await w.opened;
    w.send({ type: "hello", jwt: s.adminToken });
    assert.deepEqual(await w.next(), { type: "hello_ok" });
    await w.request(1, { type: "open_stream", stream_id: 1 });
    const run = (id: number, sql: string) => w.request(id, { type: "execute", stream_id: 1, stmt: { sql } });
    const t0 = Date.now();
    assert.equal((await run(2, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c")).error.code, "STATEMENT_TIMEOUT");
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal((await run(3, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) SELECT i FROM c")).error.code, "ROWS_LIMIT");
    assert.equal((await run(4, "SELECT hex(zeroblob(40000))")).error.code, "RESPONSE_TOO_LARGE");
    assert.deepEqual((await run(5, "SELECT 'fine'")).response.result.rows, [[{ type: "text", value: "fine" }]]);
    w.ws.close();
  });

  it("cuts a connection whose unread responses pass 4 x --max-response-bytes, and keeps serving others", async () => {
    {
      const w = new RawWs(wsUrl(s, "/db/app"), ["hrana3"]);
      await w.opened;
      w.send({ type: "hello", jwt: s.adminToken });
      assert.deepEqual(await w.next(), { type: "hello_ok" });
      await w.request(1, { type: "open_stream", stream_id: 1 });
      // Stop reading (the socket's readable side), then ask for ~20 MB of responses, 100 requests at a time.
      const sock = (w.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      sock.pause();
      let id = 2;
      for (let round = 0; round < 8; round++) {
        for (let k = 0; k < 100; k++, id++) w.send({ type: "request", request_id: id, request: { type: "execute", stream_id: 1, stmt: { sql: "SELECT hex(zeroblob(12000))" } } });
        await new Promise((r) => setTimeout(r, 500));
      }
      sock.resume();
      const cut = await Promise.race([w.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))]);
      assert.ok(cut, "the server cut the connection");
      assert.equal(cut.code, 1006, "cut, not closed by a close frame");
      assert.ok(w.inbox.length < 800, `${w.inbox.length} responses arrived: the server did not hold them all`);
      const r = await pipeline(s, s.adminToken, [exec("SELECT 1"), { type: "close" }], { v: "v3" });
      assert.equal(r.json.results[0].type, "ok");
    }
  });
});
