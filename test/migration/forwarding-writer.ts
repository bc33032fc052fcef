/**
 * Child of forwarding-crash.test.ts: records forwarding entries (and removes every third) in `dir`
 * as fast as it can, printing "ack <op> <name>" after each call returns (it is then durable).
 */
import * as fs from "node:fs";
import { ForwardingTable } from "../../runtime/migration/forwarding/index.js";

const dir = process.argv[2]!;
const t = ForwardingTable.open(dir);
const say = (s: string): void => void fs.writeSync(1, `${s}\n`); // synchronous: the loop never yields
say("ready");
for (let i = 0; ; i++) {
  const name = `db${i}`;
  t.record(name, `http://10.0.0.${i % 250}:7700`);
  say(`ack record ${name}`);
  if (i % 3 === 2) {
    t.remove(`db${i - 1}`);
    say(`ack remove db${i - 1}`);
  }
}
