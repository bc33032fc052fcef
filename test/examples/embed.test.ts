/**
 * examples/embed: the compiled example app runs as a child process on a free loopback port; its own
 * route and the Selkie API it mounts (through the unmodified @libsql/client) both answer; SIGTERM
 * stops it cleanly; a restart on the same dir keeps its data.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { createClient } from "@libsql/client";
import { ROOT, tempDir } from "../helpers.js";

const EXAMPLE = path.join(ROOT, "dist", "examples", "embed", "server.js");

async function startExample(dir: string) {
  const proc = spawn(process.execPath, [EXAMPLE, "--dir", dir, "--port", "0", "--host", "127.0.0.1"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`the example did not start in 20 s:\n${out}\n${err}`));
    }, 20_000);
    proc.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
      if (m) {
        // the last start-up line (the admin token, when there is one, comes before it)
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the example exited with ${code}:\n${out}\n${err}`));
    });
  });
  return {
    url,
    token: () => /admin token \(shown once\): (sk_\S+)/.exec(out)?.[1],
    out: () => out,
    err: () => err,
    stop: async () => {
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      proc.kill("SIGTERM");
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

describe("examples/embed", () => {
  it("serves its own route and the mounted Selkie API, then stops on SIGTERM", async () => {
    const dir = tempDir("selkie-example-embed-");
    const app = await startExample(dir);
    let stopped = false;
    try {
      const token = app.token();
      assert.match(token ?? "", /^sk_/, app.out());

      const hello = await fetch(`${app.url}/hello`);
      assert.equal(hello.status, 200);
      const body = (await hello.json()) as { hello: string; enclave: string };
      assert.equal(body.hello, "world");
      assert.match(body.enclave, /^[0-9a-f]{64}$/);
      assert.deepEqual(await (await fetch(`${app.url}/visits`)).json(), { n: 1 });

      // The mounted handler: management API, then libSQL's client by URL and token.
      const created = await fetch(`${app.url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ name: "notes" }) });
      assert.equal(created.status, 201);
      const c = createClient({ url: `${app.url}/db/notes/`, authToken: token! });
      await c.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)");
      await c.batch([{ sql: "INSERT INTO notes(body) VALUES (?)", args: ["one"] }, { sql: "INSERT INTO notes(body) VALUES (?)", args: ["two"] }], "write");
      const rs = await c.execute({ sql: "SELECT body FROM notes WHERE id >= ? ORDER BY id", args: [1] });
      assert.deepEqual(rs.rows.map((r) => r.body), ["one", "two"]);
      c.close();

      // Without a token the mounted API refuses; the app's own routes are not affected.
      assert.equal((await fetch(`${app.url}/v1/databases`)).status, 401);

      assert.equal(await app.stop(), 0);
      stopped = true;
      assert.match(app.out(), /embed example stopped/);
      assert.equal(app.err(), "");

      // Restart on the same dir: no new admin token, the data is still there.
      const again = await startExample(dir);
      try {
        assert.equal(again.token(), undefined);
        assert.deepEqual(await (await fetch(`${again.url}/visits`)).json(), { n: 1 });
        const c2 = createClient({ url: `${again.url}/db/notes/`, authToken: token! });
        assert.equal((await c2.execute("SELECT count(*) AS n FROM notes")).rows[0]!.n, 2);
        c2.close();
      } finally {
        assert.equal(await again.stop(), 0);
      }
    } finally {
      if (!stopped) await app.stop();
    }
  });
});
