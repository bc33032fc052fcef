/**
 * The EPC meter cannot be bypassed (issue 11 item 9): hostile modules loaded in a child process
 * under a 1 MiB EPC, judged by what the child actually holds (its resident memory), not by the
 * meter's own bookkeeping.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "epc-hostile-child.js");

interface Grown { code: string; results: number[]; committed?: number[]; pages?: number }
interface Report {
  tableMin: string[];
  tableGrow: Grown[];
  tableGrowMax: Grown;
  ownMemory: string;
  secondMemory: string;
  grow: Grown;
  rawGrow: Grown;
  epcCommitted: number;
  epcBudget: number;
  rssGrowth: number;
  pooledGrowth: number;
  roomyCommitted: number;
}

test("hostile tables and memories under a 1 MiB EPC are refused or fail inside the enclave, and the process's resident memory stays bounded", () => {
  const r = spawnSync(process.execPath, [CHILD], { encoding: "utf8", timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  const rep = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Report;
  const MiB = 1024 * 1024;

  // A table whose declared minimum alone exceeds the enclave's EPC is refused at load, typed.
  assert.deepEqual(rep.tableMin, Array(4).fill("ENCLAVE_TABLE_TOO_LARGE"));
  // A table without a maximum is pinned at its minimum: each table.grow fails with -1 inside.
  for (const t of rep.tableGrow) {
    assert.equal(t.code, "ACCEPTED");
    assert.deepEqual(t.results, Array(10).fill(-1), "table.grow past the charged size fails inside the enclave");
  }
  // A declared maximum is charged in full at load: 10 million entries do not fit 64 KiB.
  assert.equal(rep.tableGrowMax.code, "ENCLAVE_TABLE_TOO_LARGE");
  // No memory but the imported one, refused by the loader itself (not by the engine's feature set).
  assert.equal(rep.ownMemory, "ENCLAVE_DEFINES_MEMORY");
  assert.equal(rep.secondMemory, "ENCLAVE_DEFINES_MEMORY");

  // memory.grow: metered growth until the EPC is full, then -1 inside the enclave, charging nothing.
  assert.equal(rep.grow.code, "ACCEPTED");
  const firstRefusal = rep.grow.results.indexOf(-1);
  assert.ok(firstRefusal > 0, `some growth was granted, then refused (${rep.grow.results.join(",")})`);
  assert.ok(rep.grow.results.slice(firstRefusal).every((x) => x === -1), "every later grow is refused too");
  const afterRefusal = rep.grow.committed!.slice(firstRefusal);
  assert.ok(afterRefusal.every((c) => c === afterRefusal[0]), "a refused grow charges nothing");
  assert.equal(rep.grow.pages, 1 + firstRefusal, "the memory kept no page the meter refused");
  // The same module without the meter's hooks does not run at all.
  assert.equal(rep.rawGrow.code, "ENCLAVE_UNMETERED_GROW");
  assert.ok(rep.epcCommitted <= rep.epcBudget);

  // What the process holds: 4 x 10M + 4 x 2.5M table entries would be over 1 GiB.
  assert.ok(rep.rssGrowth < 64 * MiB, `the child's resident memory grew by ${(rep.rssGrowth / MiB).toFixed(1)} MiB`);
  // Closed enclaves hold no EPC, and the memories kept for reuse are bounded in total (64 MiB).
  assert.equal(rep.roomyCommitted, 0);
  assert.ok(rep.pooledGrowth < 100 * MiB, `48 closed enclaves left ${(rep.pooledGrowth / MiB).toFixed(1)} MiB resident`);
});
