import { test } from "node:test";
import assert from "node:assert/strict";
import { crashTrials } from "./crash-harness.js";

test("kill -9 at random moments never loses an acknowledged commit nor leaves half a transaction (60 trials)", { timeout: 240_000 }, async () => {
  const batches = await crashTrials(60, 20261128);
  assert.ok(batches > 30, `the writer made progress across trials (${batches} batches)`);
});
