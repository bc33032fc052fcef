import { test } from "node:test";
import * as assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { DEFAULT_EPC_BYTES, EpcError, EpcManager, parseSize, type EpcLease } from "../../runtime/platform/index.js";

const MiB = 1024 * 1024;

test("the default EPC budget is SGX1's usable 93.5 MiB", () => {
  const m = new EpcManager();
  assert.equal(m.usage().budget, 98_041_856);
  assert.equal(DEFAULT_EPC_BYTES, 93.5 * MiB);
  assert.equal(parseSize("93.5MiB"), DEFAULT_EPC_BYTES);
  assert.equal(parseSize("8GiB"), 8 * 1024 * MiB);
  assert.equal(new EpcManager(parseSize("512GiB")).usage().budget, 512 * 1024 * MiB);
});

test("nonsense EPC budgets are refused", () => {
  for (const bad of [0, -1, 1.5, 100, 513 * 1024 * MiB, 2 * MiB + 1, Number.NaN]) {
    assert.throws(() => new EpcManager(bad), (e: unknown) => e instanceof EpcError && e.code === "EPC_BAD_SIZE", String(bad));
  }
  assert.throws(() => parseSize("lots"), { code: "EPC_BAD_SIZE" });
  assert.throws(() => parseSize("1.1B"), { code: "EPC_BAD_SIZE" });
});

test("the sum of committed memory never exceeds the budget under concurrent launches", async () => {
  const budget = 64 * MiB;
  const m = new EpcManager(budget);
  let refused = 0;
  let growRefused = 0;
  const check = (): void => {
    const u = m.usage();
    const sum = u.enclaves.reduce((s, e) => s + e.committed, 0);
    assert.equal(sum, u.committed);
    assert.ok(u.committed <= budget, `committed ${u.committed} > budget ${budget}`);
    assert.equal(u.free, budget - u.committed);
  };
  const launch = async (i: number): Promise<void> => {
    await tick();
    let lease: EpcLease;
    try {
      lease = m.admit(`e${i}`, `enclave-${i}`, (1 + (i % 4)) * MiB, 16 * MiB);
    } catch (e) {
      assert.equal((e as EpcError).code, "EPC_ADMISSION_REFUSED");
      refused++;
      return;
    }
    check();
    for (let g = 0; g < 20; g++) {
      await tick();
      if (!lease.grow(((i + g) % 3) * 256 * 1024)) growRefused++;
      assert.ok(lease.committed <= 16 * MiB);
      check();
    }
    if (i % 3 === 0) {
      await tick();
      lease.release();
      check();
    }
  };
  await Promise.all(Array.from({ length: 200 }, (_, i) => launch(i)));
  check();
  const u = m.usage();
  assert.ok(refused > 0 && growRefused > 0, "the test must reach the budget");
  assert.ok(u.peak <= budget && u.peak > 0);
  const s = m.stats();
  assert.equal(s.admissionRefusals, refused);
  assert.equal(s.growRefusals, growRefused);
});

test("an enclave growing at its own cap gets false (out of memory), not a crash", () => {
  const m = new EpcManager(64 * MiB);
  const l = m.admit("a", "sqlite", 1 * MiB, 2 * MiB);
  assert.equal(l.grow(MiB), true);
  assert.equal(l.committed, 2 * MiB);
  assert.equal(l.grow(1), false);
  assert.equal(l.grow(64 * 1024), false);
  assert.equal(l.committed, 2 * MiB);
  assert.equal(l.grow(0), true);
  // At the platform budget too.
  const big = m.admit("b", "big", 60 * MiB, 100 * MiB);
  assert.equal(big.grow(3 * MiB), false);
  assert.equal(big.grow(2 * MiB), true);
  assert.equal(m.usage().free, 0);
  assert.throws(() => l.grow(-1), { code: "EPC_BAD_REQUEST" });
  l.release();
  l.release(); // idempotent
  assert.throws(() => l.grow(1), { code: "EPC_LEASE_RELEASED" });
  assert.equal(m.usage().committed, 62 * MiB);
});

test("an admission refusal says how much is free and names the top users", () => {
  const m = new EpcManager(32 * MiB);
  m.admit("id-orders", "orders", 20 * MiB, 20 * MiB);
  m.admit("id-users", "users", 8 * MiB, 8 * MiB);
  assert.throws(
    () => m.admit("id-new", "analytics", 10 * MiB, 10 * MiB),
    (e: unknown) => {
      assert.ok(e instanceof EpcError);
      assert.equal(e.code, "EPC_ADMISSION_REFUSED");
      assert.match(e.message, /analytics/);
      assert.match(e.message, /4\.0 MiB \(4194304 bytes\) free of 32\.0 MiB/);
      assert.match(e.message, /"orders" \(id-orders\) 20\.0 MiB, "users" \(id-users\) 8\.0 MiB/);
      return true;
    },
  );
  assert.throws(() => m.admit("id-orders", "again", 0, 0), { code: "EPC_DUPLICATE_ID" });
  assert.throws(() => m.admit("x", "x", 2, 1), { code: "EPC_BAD_REQUEST" });
});

test("admit and grow ask the evictor before refusing, and trust only what was actually freed", () => {
  const m = new EpcManager(16 * MiB);
  const idle = m.admit("idle", "idle", 10 * MiB, 10 * MiB);
  const calls: number[] = [];
  m.setEvictor((need) => {
    calls.push(need);
    if (!idle.released) {
      idle.release();
      return 10 * MiB;
    }
    return 1e12; // lies: the manager re-checks
  });
  const a = m.admit("a", "a", 12 * MiB, 32 * MiB);
  assert.deepEqual(calls, [6 * MiB]);
  assert.equal(a.grow(4 * MiB), true);
  assert.equal(a.grow(1), false);
  assert.equal(calls.length, 2);
  assert.ok(m.usage().committed <= 16 * MiB);
  assert.equal(m.stats().bytesEvicted, 10 * MiB);
});

test("EPC usage reports committed and peak per enclave and in total", () => {
  const m = new EpcManager(16 * MiB);
  const a = m.admit("a", "alpha", MiB, 8 * MiB);
  a.grow(3 * MiB);
  const b = m.admit("b", "beta", 2 * MiB, 2 * MiB);
  b.release();
  const u = m.usage();
  assert.equal(u.committed, 4 * MiB);
  assert.equal(u.peak, 6 * MiB);
  assert.deepEqual(u.enclaves, [{ id: "a", label: "alpha", committed: 4 * MiB, peak: 4 * MiB, max: 8 * MiB }]);
  assert.throws(() => ((a as { committed: number }).committed = 0), TypeError); // read-only from outside
});
