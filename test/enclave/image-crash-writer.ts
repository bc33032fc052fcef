/**
 * Child process for the image crash test: writes durable images of a seeded workload (image-workload.ts)
 * in a loop, continuing from the state it restores, and prints "ack N ATTEMPT" after write() returns for
 * step N (ATTEMPT: a random id in the image's runtime state, unique per write).
 * The parent kills it with SIGKILL at a random moment. argv: platformDir imageDir seed
 */
import { randomBytes } from "node:crypto";
import { ImageStore } from "../../runtime/enclave/snapshot/image-store.js";
import { Platform } from "../../runtime/platform/platform.js";
import { bindingOf, CRASH, identity, Workload } from "./image-workload.js";

const [platformDir, dir, seed] = process.argv.slice(2) as [string, string, string];
const platform = await Platform.open(platformDir);
const id = identity(CRASH.identity);
const store = ImageStore.openDurable(dir, { services: platform.servicesFor(id), binding: bindingOf(id, platform.platformId), maxChain: CRASH.maxChain });
const start = store.latest ? (store.read().runtime.step as number) : 0;
const w = new Workload(Number(seed), CRASH.startPages, CRASH.maxPages).advanceTo(start);
process.stdout.write(`ready ${start}\n`);
for (;;) {
  const state = w.next();
  // Each attempt's runtime state is unique, so a test can tell an acknowledged image from another
  // write of the same step (one that crashed before it was acknowledged).
  const attempt = randomBytes(8).toString("hex");
  store.write({ ...state, runtime: { ...state.runtime, attempt } }, { full: w.step % 9 === 0 });
  process.stdout.write(`ack ${w.step} ${attempt}\n`);
}
