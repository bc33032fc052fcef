import { test } from "node:test";
import assert from "node:assert/strict";
import { LockTable, LOCK_EXCLUSIVE, LOCK_NONE, LOCK_PENDING, LOCK_RESERVED, LOCK_SHARED } from "../../runtime/storage/lock-table.js";

test("readers share, one writer reserves, and exclusive waits for readers to leave", () => {
  const t = new LockTable();
  const a = {}, b = {}, c = {};
  assert.ok(t.lock("f", a, LOCK_SHARED));
  assert.ok(t.lock("f", b, LOCK_SHARED));
  assert.ok(t.lock("f", a, LOCK_RESERVED));
  assert.ok(t.reserved("f"));
  assert.equal(t.lock("f", b, LOCK_RESERVED), false, "one RESERVED at a time");
  assert.equal(t.lock("f", a, LOCK_EXCLUSIVE), false, "b still reads");
  assert.equal(t.level(a), LOCK_PENDING);
  assert.equal(t.lock("f", c, LOCK_SHARED), false, "PENDING keeps new readers out");
  t.unlock("f", b, LOCK_NONE);
  assert.ok(t.lock("f", a, LOCK_EXCLUSIVE));
  t.unlock("f", a, LOCK_SHARED);
  assert.equal(t.reserved("f"), false);
  assert.ok(t.lock("f", c, LOCK_SHARED));
  t.unlock("f", a, LOCK_NONE);
  t.unlock("f", c, LOCK_NONE);
  assert.equal(t.level(a), LOCK_NONE);
});
