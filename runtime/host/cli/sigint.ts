/**
 * UNTRUSTED (UI). SIGINT while the main thread is busy inside the enclave.
 *
 * A statement runs synchronously in the main thread, so Node cannot run a `process.on("SIGINT")`
 * listener until it ends. This watcher lives in a worker thread that sits in a `vm` script run with
 * `breakOnSigint`: Node's SIGINT watchdog (a signal handler and a helper thread) stops that script
 * when the signal arrives, whatever the main thread is doing. The worker then bumps a counter in
 * shared memory, which the main thread reads without waiting: SQLite's progress handler asks for it
 * every few thousand instructions (Database.setInterruptCheck), and the shell when it is idle.
 *
 * While the watcher runs, SIGINT no longer ends the process (the watchdog owns the signal): the
 * shell decides (sqlite3's rules: interrupt the statement; at the prompt the third one in a row exits).
 */
import { Worker } from "node:worker_threads";

const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
const vm = require("node:vm");
const counts = workerData;
parentPort.postMessage(0);
for (;;) {
  try {
    vm.runInThisContext("for (;;) Atomics.wait(counts, 1, 0)", { breakOnSigint: true, contextName: "sigint-watcher" });
  } catch {
    parentPort.postMessage(Atomics.add(counts, 0, 1) + 1);
  }
}
`;

export class SigintWatcher {
  readonly #counts = new Int32Array(new SharedArrayBuffer(8));
  readonly #worker: Worker;
  /** Signals already handled by the shell (the shared counter's value it last took). */
  #seen = 0;

  /** Resolves once the watchdog is armed (a SIGINT before that is the process's ordinary one). */
  readonly ready: Promise<void>;

  /**
   * Starts watching. `onSignal` is called in the main thread's event loop for each SIGINT that was
   * not taken meanwhile (by a statement it interrupted): that is, for a SIGINT while idle.
   */
  constructor(onSignal: () => void) {
    this.#worker = new Worker(WORKER, { eval: true, workerData: this.#counts });
    this.ready = new Promise((resolve) => {
      this.#worker.on("message", (n: number) => {
        if (n === 0) {
          this.#worker.unref(); // held until armed; afterwards it never keeps the process alive
          return resolve();
        }
        if (n <= this.#seen) return; // taken by an interrupted statement already
        this.#seen = n;
        onSignal();
      });
    });
  }

  /** True when a SIGINT arrived that was not taken yet (cheap: one atomic load). */
  get pending(): boolean {
    return Atomics.load(this.#counts, 0) !== this.#seen;
  }

  /** Marks every SIGINT so far as handled. */
  take(): void {
    this.#seen = Atomics.load(this.#counts, 0);
  }

  async stop(): Promise<void> {
    await this.#worker.terminate();
  }
}
