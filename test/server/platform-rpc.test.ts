/**
 * The blocking platform RPC (runtime/host/server/platform-rpc.ts) between a real worker thread and
 * this (main) thread: sealing, unsealing and counters work through it with the main thread's keys;
 * an identity the main thread did not measure gets nothing.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import * as path from "node:path";
import { Enclave } from "../../runtime/enclave/enclave.js";
import { loadSqliteEnclave } from "../../runtime/sql/sqlite-module.js";
import { sqliteSignature } from "../../runtime/sql/sqlite-signer.js";
import { answerService, newMailbox, readRpc } from "../../runtime/host/server/platform-rpc.js";
import { ROOT, testPlatform } from "../helpers.js";

const RPC = pathToFileURL(path.join(ROOT, "dist", "runtime", "host", "server", "platform-rpc.js")).href;

/** A worker that makes platform calls as a database worker does, and reports what it got. */
const CALLER = `
const { workerData, parentPort } = require("node:worker_threads");
import(workerData.rpc).then(({ RpcClient }) => {
  const rpc = new RpcClient(workerData.mailbox, () => parentPort.postMessage({ t: "rpc" }));
  const out = {};
  const sealed = rpc.call(workerData.id, "seal", [Buffer.from("a data key"), { policy: "MRSIGNER", aad: Buffer.from("aad") }]);
  out.plain = rpc.call(workerData.id, "unseal", [sealed, { aad: Buffer.from("aad") }]).toString();
  try {
    rpc.call(workerData.id, "unseal", [sealed, { aad: Buffer.from("other") }]);
  } catch (e) {
    out.wrongAad = e.code;
  }
  const c = rpc.call(workerData.id, "counters.create", [{ policy: "MRSIGNER" }]);
  out.counter = [rpc.call(workerData.id, "counters.increment", [c.id]), rpc.call(workerData.id, "counters.read", [c.id])];
  rpc.call(workerData.id, "counters.destroy", [c.id]);
  try {
    rpc.call("ab".repeat(32), "seal", [Buffer.from("x")]);
  } catch (e) {
    out.unmeasured = e.code;
  }
  parentPort.postMessage({ t: "done", out });
});
`;

describe("the platform RPC of database workers", () => {
  it("seals, unseals and counts through the main thread, and serves only identities the main thread measured", async () => {
    const image = loadSqliteEnclave();
    const measured = new Enclave({ module: image.module, manifest: image.manifest, signature: sqliteSignature(testPlatform.dir, image) }).measured;
    const id = measured.mrenclave.toString("hex");
    const services = testPlatform.servicesFor(measured);
    const mailbox = newMailbox();
    const w = new Worker(CALLER, { eval: true, workerData: { rpc: RPC, mailbox, id } });
    let calls = 0;
    const out = await new Promise<Record<string, unknown>>((resolve, reject) => {
      w.on("message", (m: { t: string; out?: Record<string, unknown> }) => {
        if (m.t === "rpc") {
          calls++;
          answerService(mailbox, readRpc(mailbox)!, (mr) => (mr === id ? services : undefined));
        } else resolve(m.out!);
      });
      w.once("error", reject);
    });
    await w.terminate();
    assert.equal(out.plain, "a data key");
    assert.equal(out.wrongAad, "SEAL_AUTH_FAILED");
    assert.deepEqual(out.counter, [1, 1]);
    assert.equal(out.unmeasured, "PLATFORM_NOT_MEASURED");
    assert.equal(calls, 8, "every call went through the main thread");
  });

  it("answers a counter update only once its record is durable, without the main thread waiting for the sync", async () => {
    const image = loadSqliteEnclave();
    const measured = new Enclave({ module: image.module, manifest: image.manifest, signature: sqliteSignature(testPlatform.dir, image) }).measured;
    const id = measured.mrenclave.toString("hex");
    const services = testPlatform.servicesFor(measured);
    const mailbox = newMailbox();
    const state = new Int32Array(mailbox, 0, 1);
    const w = new Worker(CALLER, { eval: true, workerData: { rpc: RPC, mailbox, id } });
    const answeredAtOnce: Record<string, boolean> = {};
    const out = await new Promise<Record<string, unknown>>((resolve, reject) => {
      w.on("message", (m: { t: string; out?: Record<string, unknown> }) => {
        if (m.t === "rpc") {
          const req = readRpc(mailbox)!;
          answerService(mailbox, req, (mr) => (mr === id ? services : undefined), (fn) => testPlatform.withDeferredCounterSync(fn));
          // 1: the request still waits. (After a call answered at once the worker may already have
          // made its next one, so only updates, which cannot have been answered, are looked at.)
          if (req.op.startsWith("counters.") && req.op !== "counters.read") answeredAtOnce[req.op] = Atomics.load(state, 0) !== 1;
        } else resolve(m.out!);
      });
      w.once("error", reject);
    });
    await w.terminate();
    assert.deepEqual(out.counter, [1, 1]);
    assert.equal(out.plain, "a data key");
    assert.deepEqual(answeredAtOnce, { "counters.create": false, "counters.increment": false, "counters.destroy": false });
  });
});
