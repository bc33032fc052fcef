/**
 * Soak variant of the counter crash test: `node dist/tools/soak/counters.js [TRIALS] [DIR]`.
 * Kills a real child process (SIGKILL) at random instants while it increments a counter, many times,
 * and checks after each kill that the counter reads the last acknowledged value or the one after.
 * Exits 1 on the first violation. Default 500 trials.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Platform } from "../../runtime/platform/index.js";
import { killTrial } from "../../test/platform/crash.js";
import { identity } from "../../test/platform/helpers.js";

const trials = Number(process.argv[2] ?? 500);
const dir = process.argv[3] ?? fs.mkdtempSync(path.join(os.tmpdir(), "selkie-soak-"));
let p = Platform.exists(dir) ? await Platform.open(dir) : await Platform.create(dir);
const id = p.servicesFor(identity()).counters.create().id;
p.close();
let floor = 0;
const t0 = Date.now();
for (let t = 0; t < trials; t++) {
  const startup = t % 5 === 4;
  const r = await killTrial(dir, id, 1 + (t % 13), Math.floor(Math.random() * (startup ? 300 : 100)), !startup);
  p = await Platform.open(dir);
  const v = p.servicesFor(identity()).counters.read(id);
  p.close();
  const acked = r.lastAcked ?? floor;
  if (v < acked || v > acked + 1) {
    process.stderr.write(`VIOLATION at trial ${t}: counter ${v}, last acknowledged ${acked} (dir kept: ${dir})\n${r.stderr}\n`);
    process.exit(1);
  }
  floor = v;
  if ((t + 1) % 50 === 0) process.stdout.write(`${t + 1}/${trials} trials ok, counter at ${v}\n`);
}
process.stdout.write(`${trials} kill -9 trials ok in ${((Date.now() - t0) / 1000).toFixed(1)} s; counter at ${floor}\n`);
if (process.argv[3] === undefined) fs.rmSync(dir, { recursive: true, force: true });
