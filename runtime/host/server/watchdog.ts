/**
 * UNTRUSTED (server). The shutdown watchdog: SIGTERM/SIGINT stop the server within its grace
 * period even while the main thread is busy inside a statement.
 *
 * Statements run on the main thread (until worker threads host the enclaves), so a signal handler
 * registered there runs only once the statement ends: at its request's deadline at the latest
 * (the enclave's progress handler interrupts it). A grace period shorter than the request timeout
 * would not hold. The watchdog is a worker thread, whose event loop stays free: libuv delivers the
 * signal to it too (it listens through Node's signal handle, as process.on does on the main
 * thread). If the process is still alive `graceMs` after the signal, the graceful shutdown could
 * not finish and the watchdog ends the process with SIGKILL. That is safe by design: every
 * acknowledged commit is already durable (a COMMIT returns only after the sealed store's commit
 * record is on disk), and an unfinished transaction is rolled back at the next open, exactly as
 * after kill -9. The worker is unref'd: it never keeps the process alive.
 *
 * Where the runtime offers no signal handle to workers, the watchdog does not start (the server
 * still shuts down gracefully, after the running statement's deadline).
 */
import { Worker } from "node:worker_threads";

const WATCHDOG_SOURCE = `
const { workerData } = require("node:worker_threads");
const fs = require("node:fs");
process.noDeprecation = true; // this worker's own warning only: the signal handle is what it needs
const { Signal } = process.binding("signal_wrap");
let fired = false;
const onSignal = (signum) => {
  if (fired) return;
  fired = true;
  const t = setTimeout(() => {
    try {
      fs.writeSync(2, "selkie: the graceful shutdown did not finish within " + workerData.graceMs + " ms (a statement is still running); stopping now. Every acknowledged commit is durable.\\n");
    } catch {}
    process.kill(process.pid, "SIGKILL");
  }, workerData.graceMs);
  void signum;
};
for (const signum of workerData.signals) {
  const s = new Signal();
  s.onsignal = onSignal;
  s.start(signum);
}
`;

/** Starts the watchdog (SIGTERM and SIGINT); `stop` ends it. */
export function startShutdownWatchdog(graceMs: number): { stop: () => void } {
  const signals = [15, 2]; // SIGTERM, SIGINT (Linux numbers; the server runs on Linux)
  const w = new Worker(WATCHDOG_SOURCE, { eval: true, workerData: { graceMs, signals } });
  w.on("error", () => {}); // no signal handle for workers: no watchdog, and no reason to stop the server
  w.unref();
  return { stop: () => void w.terminate() };
}
