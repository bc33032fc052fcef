/**
 * UNTRUSTED (server). What a worker passes to `new Database(..., { platform })` instead of the
 * Platform itself (WORKERS.md): the platform's public facts (dir, id, EPC budget), an EpcManager
 * on the shared ledger (shared-epc.ts), and `servicesFor` whose every call goes to the main thread
 * through the blocking RPC (platform-rpc.ts). No key, root secret or counter store is in the worker.
 */
import type { Platform } from "../../platform/platform.js";
import type { EnclaveServices } from "../../platform/services.js";
import type { MeasuredEnclave } from "../../platform/einit.js";
import type { TargetInfo } from "../../platform/identity.js";
import type { CounterService } from "../../platform/counters.js";
import { WorkerEpcManager } from "./shared-epc.js";
import { RpcClient, type ServiceOp } from "./platform-rpc.js";

export interface WorkerPlatformInit {
  dir: string;
  platformId: string;
  epcBytes: number;
  /** The main platform's EPC ledger (epc.ledgerBuffer). */
  epcLedger: SharedArrayBuffer;
  mailbox: SharedArrayBuffer;
}

export class WorkerPlatform {
  readonly dir: string;
  readonly platformId: string;
  readonly epcBytes: number;
  readonly epc: WorkerEpcManager;
  readonly #rpc: RpcClient;

  constructor(init: WorkerPlatformInit, wake: () => void) {
    this.dir = init.dir;
    this.platformId = init.platformId;
    this.epcBytes = init.epcBytes;
    this.#rpc = new RpcClient(init.mailbox, wake);
    // Room this worker's pager cannot make is asked of the other workers (through the main thread).
    this.epc = new WorkerEpcManager(init.epcBytes, init.epcLedger, (bytes) => this.#rpc.call("", "epc.reclaim", [bytes]) as number);
  }

  get closed(): boolean {
    return false;
  }

  /** The measured enclave's services, each call answered by the main thread's Platform. */
  servicesFor(measured: MeasuredEnclave): EnclaveServices {
    const id = measured.mrenclave.toString("hex");
    const call = (op: ServiceOp, ...args: unknown[]): unknown => this.#rpc.call(id, op, args);
    const self: TargetInfo = Object.freeze({ mrenclave: measured.mrenclave, debug: measured.debug });
    const counters: CounterService = Object.freeze({
      create: (o?: Parameters<CounterService["create"]>[0]) => call("counters.create", o) as ReturnType<CounterService["create"]>,
      increment: (c: string) => call("counters.increment", c) as number,
      advance: (c: string, v: number) => call("counters.advance", c, v) as number,
      read: (c: string) => call("counters.read", c) as number,
      destroy: (c: string) => void call("counters.destroy", c),
      list: () => call("counters.list") as ReturnType<CounterService["list"]>,
    });
    return Object.freeze({
      identity: measured,
      seal: (data: Uint8Array, opts?: object) => call("seal", data, opts) as Buffer,
      unseal: (blob: Uint8Array, opts?: object) => call("unseal", blob, opts) as Buffer,
      counters,
      targetInfo: () => self,
      report: (target: TargetInfo, reportData: Uint8Array) => call("report", target, reportData) as Buffer,
      verifyReport: (report: Uint8Array) => call("verifyReport", report) as ReturnType<EnclaveServices["verifyReport"]>,
      quote: (reportData: Uint8Array) => call("quote", reportData) as Buffer,
    });
  }

  /** Typed as the Platform the SQL API takes: it uses only the members above. */
  asPlatform(): Platform {
    return this as unknown as Platform;
  }
}
