/**
 * The server as a library: createHandler() is a web-standard (Request) => Promise<Response>
 * handler, usable in-process (here even as @libsql/client's fetch), with no port at all.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { createHandler } from "../../runtime/index.js";
import { tempDir, testPlatform } from "../helpers.js";

describe("createHandler (embedding)", () => {
  const handler = createHandler({ dir: tempDir("selkie-embed-"), platform: testPlatform });
  const { token } = handler.context.tokens.create("admin", null);
  after(async () => {
    await handler.shutdown();
    assert.equal(handler.context.registry.openCount, 0);
  });

  it("answers web Requests with web Responses", async () => {
    const r = await handler(new Request("http://embedded/v1/databases", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ name: "app" }) }));
    assert.ok(r instanceof Response);
    assert.equal(r.status, 201);
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(((await r.json()) as { name: string }).name, "app");
    const bad = await handler(new Request("http://embedded/db/app/v2/pipeline", { method: "POST", body: "{}" }));
    assert.equal(bad.status, 401);
    const big = await handler(new Request("http://embedded/db/app/v2/pipeline", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: "x".repeat(11 * 1024 * 1024) }));
    assert.equal(big.status, 413);
  });

  it("serves @libsql/client through a custom fetch, no network involved", async () => {
    const c = createClient({ url: "http://embedded/db/app/", authToken: token, fetch: (req: Request) => handler(req) });
    await c.execute("CREATE TABLE t(a)");
    await c.batch([{ sql: "INSERT INTO t VALUES (?)", args: [1] }, { sql: "INSERT INTO t VALUES (?)", args: ["two"] }], "write");
    const rs = await c.execute("SELECT a FROM t ORDER BY rowid");
    assert.deepEqual(rs.rows.map((r) => r.a), [1, "two"]);
    c.close();
  });
});
