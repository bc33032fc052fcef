/**
 * `npm run bench:migrate --quick` cannot silently rot: it runs as a real child process (two
 * platforms, the attested channel on loopback, the TLS baseline, a write load over 3 migrations)
 * and must print a full table in which every acknowledged write arrived.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { ROOT } from "../helpers.js";

interface Result {
  mib: number;
  rows: number;
  selkieMs: number[];
  baselineMs: number[];
  bytesSent: number[];
  selkieBytes: number;
  load: { migrations: number; downtimeMs: number[]; acked: number; ackedPresent: number; failed: string[] };
}

test("the quick migration benchmark prints every row and every acknowledged write arrives", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "dist", "tools", "bench", "migrate.js"), "--quick", "--json"], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, `the bench failed:\n${r.stderr}\n${r.stdout}`);
  const out = JSON.parse(r.stdout) as { results: Result[]; table: string; rows: string[] };
  assert.deepEqual(out.results.map((x) => x.mib), [1, 4], "the quick sizes");
  const lines = out.table.split("\n");
  assert.equal(lines.length, 2 + out.rows.length, "a header, a rule and one line per row");
  assert.ok(out.rows.length >= 14, "every metric of the brief has a row");
  for (const label of out.rows) {
    const line = lines.find((l) => l.startsWith(`| ${label}`));
    assert.ok(line, `the table has the row "${label}"`);
    const cells = line.split("|").slice(2, -1).map((c) => c.trim());
    assert.equal(cells.length, 2, `"${label}" has a value per size`);
    for (const c of cells) assert.ok(c !== "" && !/NaN|^-$/.test(c), `"${label}" has a measured value, got "${c}"`);
  }
  for (const x of out.results) {
    assert.deepEqual(x.load.failed, [], `no migration failed at ${x.mib} MiB`);
    assert.equal(x.load.migrations, 3, "three migrations under load");
    assert.equal(x.load.downtimeMs.filter((d) => d > 0).length, 3, "a downtime sample per migration");
    assert.ok(x.load.acked > 0, "the writer was acknowledged");
    assert.equal(x.load.ackedPresent, x.load.acked, `every acknowledged write is on the final owner at ${x.mib} MiB`);
    assert.ok(x.bytesSent[0]! >= x.selkieBytes * 0.9, "the database's bytes travelled");
    assert.ok(x.selkieMs[0]! > 0 && x.baselineMs[0]! > 0, "both sides were timed");
  }
});
