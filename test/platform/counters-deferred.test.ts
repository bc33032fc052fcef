/**
 * Deferred counter updates (counter-store.ts, "Deferred appends"): the server's platform RPC runs a
 * worker's counter update with its fdatasync on libuv's pool, so the main thread keeps serving.
 * Real platform directories, real files, reopened to read back what is durable.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { Platform } from "../../runtime/platform/index.js";
import { identity, rmDir, tempDir } from "./helpers.js";

async function fresh(opts: { counterCompactEvery?: number } = {}): Promise<{ dir: string; p: Platform }> {
  const dir = tempDir();
  await (await Platform.create(dir)).close();
  return { dir, p: await Platform.open(dir, opts) };
}

async function reread(dir: string, ids: string[]): Promise<number[]> {
  const p = await Platform.open(dir);
  try {
    const c = p.servicesFor(identity()).counters;
    return ids.map((id) => c.read(id));
  } finally {
    p.close();
  }
}

test("deferred increments resolve in order with consecutive values, and a reopen reads the last one", async () => {
  const { dir, p } = await fresh();
  try {
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    const all = Array.from({ length: 40 }, () => p.withDeferredCounterSync(() => c.increment(id)));
    const order: number[] = [];
    await Promise.all(all.map((x) => x.then((v) => order.push(v))));
    assert.deepEqual(order, Array.from({ length: 40 }, (_, i) => i + 1));
    p.close();
    assert.deepEqual(await reread(dir, [id]), [40]);
  } finally {
    p.close();
    rmDir(dir);
  }
});

test("a deferred increment is not resolved before its record is synced", async () => {
  const { dir, p } = await fresh();
  try {
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    let done = false;
    const v = p.withDeferredCounterSync(() => c.increment(id)).then((x) => ((done = true), x));
    await Promise.resolve();
    assert.equal(done, false, "resolved in the same turn: no fdatasync can have run");
    assert.equal(await v, 1);
  } finally {
    p.close();
    rmDir(dir);
  }
});

test("a synchronous update after queued deferred ones writes them first, in order", async () => {
  const { dir, p } = await fresh();
  try {
    const c = p.servicesFor(identity()).counters;
    const a = c.create().id;
    const b = c.create().id;
    const queued = [1, 2, 3, 4, 5].map(() => p.withDeferredCounterSync(() => c.increment(a)));
    assert.equal(c.increment(b), 1); // synchronous: drains the queue, then appends
    assert.equal(c.increment(a), 6);
    assert.deepEqual(await Promise.all(queued), [1, 2, 3, 4, 5]);
    p.close();
    assert.deepEqual(await reread(dir, [a, b]), [6, 1]);
  } finally {
    p.close();
    rmDir(dir);
  }
});

test("compactions while deferred records are queued and in flight lose no update", async () => {
  const { dir, p } = await fresh({ counterCompactEvery: 3 });
  try {
    const c = p.servicesFor(identity()).counters;
    const ids = [c.create().id, c.create().id];
    const all: Array<Promise<unknown>> = [];
    for (let i = 0; i < 30; i++) {
      all.push(p.withDeferredCounterSync(() => c.increment(ids[i % 2]!)));
      if (i % 7 === 0) await new Promise((r) => setImmediate(r)); // let some syncs start
    }
    await Promise.all(all);
    p.close();
    assert.deepEqual(await reread(dir, ids), [15, 15]);
  } finally {
    p.close();
    rmDir(dir);
  }
});

test("closing the platform with deferred records queued syncs them and resolves their callers", async () => {
  const { dir, p } = await fresh();
  try {
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    const queued = Array.from({ length: 10 }, () => p.withDeferredCounterSync(() => c.increment(id)));
    p.close();
    assert.deepEqual(await Promise.all(queued), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(await reread(dir, [id]), [10]);
  } finally {
    rmDir(dir);
  }
});

test("a deferred update that is refused rejects with the counter error and changes nothing", async () => {
  const { dir, p } = await fresh();
  try {
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    await assert.rejects(p.withDeferredCounterSync(() => c.advance(id, -1)), { code: "COUNTER_BAD_REQUEST" });
    await assert.rejects(p.withDeferredCounterSync(() => c.increment("0".repeat(32))), { code: "COUNTER_NOT_FOUND" });
    assert.equal(c.read(id), 0);
  } finally {
    p.close();
    rmDir(dir);
  }
});
