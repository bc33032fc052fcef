import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { ForwardingTable } from "../../runtime/migration/forwarding/index.js";
import { runUntilKilled, tempDir } from "../helpers.js";

const WRITER = new URL("./forwarding-writer.js", import.meta.url).pathname;

test("kill -9 while the forwarding table is written: it always opens, and every acknowledged change is in it", async () => {
  let total = 0;
  for (let trial = 0; trial < 8; trial++) {
    const dir = tempDir("selkie-fwd-crash-");
    const out = await runUntilKilled(WRITER, [dir], /ready/, 60 + trial * 40);
    const t = ForwardingTable.open(dir); // never a torn file
    const acked = out.split("\n").filter((l) => l.startsWith("ack "));
    total += acked.length;
    acked.unshift("ack remove db-2"); // before the first step: its next step records db0
    const want = new Map<string, boolean>();
    for (const l of acked) {
      const [, op, name] = l.split(" ");
      want.set(name!, op === "record");
    }
    // The one change in flight at the kill (the writer's next step after its last acknowledgement)
    // may or may not have happened; every other name is exactly as acknowledged.
    const [, lastOp, lastName] = acked[acked.length - 1]!.split(" ");
    const n = Number(lastName!.slice(2));
    const inFlight = lastOp === "remove" ? `db${n + 2}` : n % 3 === 2 ? `db${n - 1}` : `db${n + 1}`;
    for (const [name, present] of want) {
      if (name === inFlight) continue;
      assert.equal(t.get(name) !== undefined, present, `${name}: acknowledged ${present ? "recorded" : "removed"} (trial ${trial})`);
    }
    for (const e of t.list()) assert.ok(want.has(e.name) || e.name === inFlight, `${e.name} was never acknowledged (trial ${trial})`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(total >= 8, `the writers acknowledged ${total} changes in all: too few to test anything`);
});
