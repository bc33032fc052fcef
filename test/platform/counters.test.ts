import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { CounterError, Platform } from "../../runtime/platform/index.js";
import { h, identity, rmDir, tempDir } from "./helpers.js";

async function withPlatform(fn: (p: Platform, dir: string) => void | Promise<void>, opts: { counterCompactEvery?: number; counterQuota?: number } = {}): Promise<void> {
  const dir = tempDir();
  await (await Platform.create(dir)).close();
  const p = await Platform.open(dir, opts);
  try {
    await fn(p, dir);
  } finally {
    p.close();
    rmDir(dir);
  }
}

function refuses(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CounterError, `expected CounterError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("counters are created, incremented, read and destroyed", async () => {
  await withPlatform((p) => {
    const c = p.servicesFor(identity()).counters;
    const { id, value } = c.create();
    assert.equal(value, 0);
    assert.equal(c.increment(id), 1);
    assert.equal(c.increment(id), 2);
    assert.equal(c.read(id), 2);
    const m = c.create({ initialValue: 41, policy: "MRENCLAVE" });
    assert.equal(c.increment(m.id), 42);
    assert.deepEqual(c.list().map((x) => x.id).sort(), [id, m.id].sort());
    c.destroy(id);
    refuses(() => c.read(id), "COUNTER_NOT_FOUND");
    refuses(() => c.increment(id), "COUNTER_NOT_FOUND");
    refuses(() => c.read("zz"), "COUNTER_BAD_REQUEST");
    refuses(() => c.create({ initialValue: -1 }), "COUNTER_BAD_REQUEST");
  });
});

test("a counter cannot be read, incremented or destroyed by another enclave identity", async () => {
  await withPlatform((p) => {
    const mine = p.servicesFor(identity()).counters;
    const { id } = mine.create(); // MRSIGNER policy by default
    const sameSignerOtherEnclave = p.servicesFor(identity({ mrenclave: h("enclave-b"), isvSvn: 4 })).counters;
    assert.equal(sameSignerOtherEnclave.increment(id), 1);
    for (const other of [identity({ mrsigner: h("signer-b") }), identity({ isvProdId: 2 })]) {
      const c = p.servicesFor(other).counters;
      refuses(() => c.read(id), "COUNTER_ACCESS_DENIED");
      refuses(() => c.increment(id), "COUNTER_ACCESS_DENIED");
      refuses(() => c.destroy(id), "COUNTER_ACCESS_DENIED");
      assert.deepEqual(c.list(), []);
    }
    const strict = mine.create({ policy: "MRENCLAVE" });
    refuses(() => sameSignerOtherEnclave.read(strict.id), "COUNTER_ACCESS_DENIED");
    refuses(() => sameSignerOtherEnclave.increment(strict.id), "COUNTER_ACCESS_DENIED");
    assert.equal(mine.read(id), 1);
  });
});

test("counter creation is refused beyond the per-enclave quota", async () => {
  await withPlatform(
    (p) => {
      const c = p.servicesFor(identity()).counters;
      const ids = [c.create().id, c.create().id, c.create({ policy: "MRENCLAVE" }).id];
      refuses(() => c.create(), "COUNTER_QUOTA_EXCEEDED");
      p.servicesFor(identity({ mrsigner: h("signer-b") })).counters.create(); // others have their own quota
      c.destroy(ids[0] ?? "");
      c.create();
    },
    { counterQuota: 3 },
  );
});

test("counter values survive reopening and many compactions", async () => {
  const dir = tempDir();
  try {
    let p = await Platform.create(dir);
    p.close();
    p = await Platform.open(dir, { counterCompactEvery: 5 });
    let c = p.servicesFor(identity()).counters;
    const a = c.create().id;
    const b = c.create({ initialValue: 100 }).id;
    const gone = c.create().id;
    for (let i = 0; i < 23; i++) c.increment(a);
    c.increment(b);
    c.destroy(gone);
    p.close();
    p = await Platform.open(dir, { counterCompactEvery: 5 });
    c = p.servicesFor(identity()).counters;
    assert.equal(c.read(a), 23);
    assert.equal(c.read(b), 101);
    refuses(() => c.read(gone), "COUNTER_NOT_FOUND");
    p.close();
    const files = fs.readdirSync(path.join(dir, "counters")).sort();
    assert.equal(files.filter((f) => f.startsWith("log-")).length, 1, files.join(","));
  } finally {
    rmDir(dir);
  }
});

test("the counter store holds no counter id or value in clear", async () => {
  const dir = tempDir();
  try {
    const p = await Platform.open((await Platform.create(dir), dir));
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create({ initialValue: 0x0102030405 });
    c.increment(id);
    p.close();
    for (const f of fs.readdirSync(path.join(dir, "counters"))) {
      const b = fs.readFileSync(path.join(dir, "counters", f));
      assert.equal(b.indexOf(Buffer.from(id, "hex")), -1, f);
      assert.equal(b.indexOf(Buffer.from([0x01, 0x02, 0x03, 0x04, 0x06])), -1, f);
      assert.equal(b.indexOf(identity().mrsigner), -1, f);
    }
  } finally {
    rmDir(dir);
  }
});

test("two Platforms of one folder in one process share the counter store, and it is released when both close", async () => {
  await withPlatform(async (p, dir) => {
    const a = p.servicesFor(identity()).counters;
    const { id } = a.create();
    a.increment(id);
    const q = await Platform.open(dir);
    const b = q.servicesFor(identity()).counters;
    assert.equal(b.read(id), 1, "the second Platform sees the first one's counter");
    b.increment(id);
    assert.equal(a.read(id), 2, "and the first sees the second's increment");
    q.close();
    a.increment(id); // still usable: the first Platform holds its own reference
    assert.equal(a.read(id), 3);
    assert.ok(fs.existsSync(path.join(dir, "counters", "lock")), "the lock is held while one Platform is open");
  });
});

test("another process holding the counter store: reads work, changes are refused with COUNTER_STORE_LOCKED", async () => {
  await withPlatform(async (p, dir) => {
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    c.increment(id);
    p.close();
    // A live process that is not this one owns the lock (our parent: alive, not us).
    fs.writeFileSync(path.join(dir, "counters", "lock"), `${process.ppid}\n`);
    const q = await Platform.open(dir);
    try {
      const r = q.servicesFor(identity()).counters;
      assert.equal(r.read(id), 1, "a read needs no lock");
      assert.throws(() => r.increment(id), { code: "COUNTER_STORE_LOCKED" });
      assert.equal(fs.readFileSync(path.join(dir, "counters", "lock"), "utf8"), `${process.ppid}\n`, "the other process's lock is untouched");
    } finally {
      q.close();
      fs.rmSync(path.join(dir, "counters", "lock"), { force: true });
    }
  });
});

test("a torn last log record is dropped, and damage before the end is refused as corrupt", async () => {
  const dir = tempDir();
  try {
    let p = await Platform.open((await Platform.create(dir), dir));
    const c = p.servicesFor(identity()).counters;
    const { id } = c.create();
    for (let i = 0; i < 5; i++) c.increment(id);
    p.close();
    const log = path.join(dir, "counters", fs.readdirSync(path.join(dir, "counters")).find((f) => f.startsWith("log-")) ?? "");
    const full = fs.readFileSync(log);
    // A partial append (torn write): the last acknowledged value remains.
    fs.writeFileSync(log, Buffer.concat([full, Buffer.alloc(50, 0xaa)]));
    p = await Platform.open(dir);
    assert.equal(p.servicesFor(identity()).counters.read(id), 5);
    p.close();
    // The last record damaged: it was never acknowledged durably intact; one before it stays.
    const lastDamaged = Buffer.from(full);
    lastDamaged[lastDamaged.length - 3] = (lastDamaged[lastDamaged.length - 3] ?? 0) ^ 1;
    fs.writeFileSync(log, lastDamaged);
    p = await Platform.open(dir);
    assert.equal(p.servicesFor(identity()).counters.read(id), 4);
    p.close();
    // Damage in the middle: refused, never a silent rollback.
    const middle = Buffer.from(full);
    middle[16 + 104 + 30] = (middle[16 + 104 + 30] ?? 0) ^ 1;
    fs.writeFileSync(log, middle);
    p = await Platform.open(dir);
    assert.throws(() => p.servicesFor(identity()).counters.list(), { code: "COUNTER_STORE_CORRUPT" });
    p.close();
    // A deleted snapshot is refused too (counters must not restart at zero).
    fs.writeFileSync(log, full);
    fs.rmSync(path.join(dir, "counters", "snapshot.bin"));
    p = await Platform.open(dir);
    assert.throws(() => p.servicesFor(identity()).counters.list(), { code: "COUNTER_STORE_CORRUPT" });
    p.close();
  } finally {
    rmDir(dir);
  }
});
