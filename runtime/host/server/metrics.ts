/**
 * UNTRUSTED (server). Prometheus metrics (prom-client, one registry per handler), Selkie-prefixed:
 *
 *   selkie_http_requests_total{route,method,status}       counter
 *   selkie_http_request_duration_seconds{route}           histogram
 *   selkie_errors_total{code}                             counter: HTTP errors and Hrana statement errors by code
 *   selkie_enclaves_open                                  gauge: databases open (one enclave each)
 *   selkie_hrana_streams_open                             gauge
 *   selkie_epc_committed_bytes / selkie_epc_budget_bytes  gauges, from the platform's EPC manager
 *   selkie_epc_peak_bytes                                 gauge
 *   selkie_enclaves_resident / selkie_enclaves_hibernated gauges: EPC paging (pager.ts)
 *   selkie_epc_evictions / selkie_epc_wakes / selkie_epc_wake_failures   gauges (monotonic counts of the pager)
 *   selkie_epc_wake_seconds{quantile="0.5"|"0.99"|"1"}  gauge: wake latency over the last 4096 wakes
 *   selkie_db_waiting_requests{db}                        gauge: requests queued for a database's lease
 *   selkie_group_commits / selkie_group_commit_requests   gauges: group commits run by the open databases, requests they carried
 *   selkie_forwarded_databases                            gauge: databases that moved to another peer (forwarding table)
 *   selkie_forwarded_requests_total{db}                   counter: requests forwarded to a moved database's new owner
 *   selkie_migrations_running{role}                       gauge: live migrations in progress (source or destination)
 *   selkie_migrations_total{role,result}                  counter: migrations ended: done, failed, in-doubt
 * plus prom-client's default process metrics (selkie_process_*, selkie_nodejs_*).
 */
import * as prom from "prom-client";
import type { EpcManager } from "../../platform/epc.js";
import { EpcPager, type PagingStats } from "../../enclave/snapshot/pager.js";

export interface MetricsSources {
  epc: EpcManager;
  enclavesOpen(): number;
  streamsOpen(): number;
  waiting(): Array<{ db: string; n: number }>;
  groupCommits(): { groups: number; jobs: number };
  /** Enclaves recycled because one request grew them (open databases). */
  recycles?(): number;
  /** Entries of the forwarding table (databases that moved). */
  forwardedDatabases?(): number;
  /** Paging stats of every pager (worker threads have their own); default: the platform's pager. */
  paging?(): PagingStats | null;
  /** Live migrations in progress, by role. */
  migrationsRunning?(): { source: number; destination: number };
}

export class ServerMetrics {
  readonly registry = new prom.Registry();
  readonly requests: prom.Counter<"route" | "method" | "status">;
  readonly latency: prom.Histogram<"route">;
  readonly errors: prom.Counter<"code">;
  readonly forwarded: prom.Counter<"db">;
  readonly migrations: prom.Counter<"role" | "result">;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    prom.collectDefaultMetrics({ register: this.registry, prefix: "selkie_" });
    this.requests = new prom.Counter({ name: "selkie_http_requests_total", help: "HTTP requests by route, method and status", labelNames: ["route", "method", "status"], registers });
    this.latency = new prom.Histogram({
      name: "selkie_http_request_duration_seconds",
      help: "HTTP request latency by route",
      labelNames: ["route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.errors = new prom.Counter({ name: "selkie_errors_total", help: "Errors returned to clients, by code", labelNames: ["code"], registers });
    new prom.Gauge({ name: "selkie_enclaves_open", help: "Enclaves open (one per open database)", registers, collect() { this.set(src.enclavesOpen()); } });
    new prom.Gauge({ name: "selkie_hrana_streams_open", help: "Hrana streams open", registers, collect() { this.set(src.streamsOpen()); } });
    new prom.Gauge({ name: "selkie_epc_committed_bytes", help: "EPC bytes committed by enclaves", registers, collect() { this.set(src.epc.usage().committed); } });
    new prom.Gauge({ name: "selkie_epc_budget_bytes", help: "The platform's EPC budget in bytes", registers, collect() { this.set(src.epc.usage().budget); } });
    new prom.Gauge({ name: "selkie_epc_peak_bytes", help: "Peak EPC bytes committed", registers, collect() { this.set(src.epc.usage().peak); } });
    const paging = () => (src.paging ? src.paging() : EpcPager.of(src.epc)?.stats()) ?? undefined;
    new prom.Gauge({ name: "selkie_enclaves_resident", help: "Database enclaves resident in the EPC", registers, collect() { this.set(paging()?.resident ?? src.enclavesOpen()); } });
    new prom.Gauge({ name: "selkie_enclaves_hibernated", help: "Database enclaves hibernated to sealed images (EPC paging)", registers, collect() { this.set(paging()?.hibernated ?? 0); } });
    new prom.Gauge({ name: "selkie_epc_evictions", help: "Enclaves hibernated to make EPC room, since start", registers, collect() { this.set(paging()?.evictions ?? 0); } });
    new prom.Gauge({ name: "selkie_epc_wakes", help: "Hibernated enclaves woken by their next use, since start", registers, collect() { this.set(paging()?.wakes ?? 0); } });
    new prom.Gauge({ name: "selkie_epc_wake_failures", help: "Wakes refused (EPC full, after any wait for room) or failed (image refused), since start", registers, collect() { this.set(paging()?.wakeFailures ?? 0); } });
    new prom.Gauge({
      name: "selkie_epc_wake_seconds",
      help: "Wake latency of hibernated enclaves over the last 4096 wakes",
      labelNames: ["quantile"],
      registers,
      collect() {
        const w = paging()?.wakeMs;
        this.set({ quantile: "0.5" }, (w?.p50 ?? 0) / 1000);
        this.set({ quantile: "0.99" }, (w?.p99 ?? 0) / 1000);
        this.set({ quantile: "1" }, (w?.max ?? 0) / 1000);
      },
    });
    new prom.Gauge({ name: "selkie_group_commits", help: "Group commits run by the open databases", registers, collect() { this.set(src.groupCommits().groups); } });
    new prom.Gauge({ name: "selkie_enclave_recycles", help: "Database enclaves restarted with fresh memory after a request grew them past 24 MiB", registers, collect() { this.set(src.recycles?.() ?? 0); } });
    new prom.Gauge({ name: "selkie_group_commit_requests", help: "Requests carried by group commits of the open databases", registers, collect() { this.set(src.groupCommits().jobs); } });
    new prom.Gauge({ name: "selkie_forwarded_databases", help: "Databases that moved to another peer and are forwarded there", registers, collect() { this.set(src.forwardedDatabases?.() ?? 0); } });
    new prom.Gauge({
      name: "selkie_migrations_running",
      help: "Live migrations in progress, by role (source or destination)",
      labelNames: ["role"],
      registers,
      collect() {
        const r = src.migrationsRunning?.() ?? { source: 0, destination: 0 };
        this.set({ role: "source" }, r.source);
        this.set({ role: "destination" }, r.destination);
      },
    });
    this.migrations = new prom.Counter({ name: "selkie_migrations_total", help: "Live migrations ended, by role and result (done, failed, in-doubt)", labelNames: ["role", "result"], registers });
    this.forwarded = new prom.Counter({ name: "selkie_forwarded_requests_total", help: "Requests forwarded to the new owner of a database that moved", labelNames: ["db"], registers });
    new prom.Gauge({
      name: "selkie_db_waiting_requests",
      help: "Requests waiting for a database",
      labelNames: ["db"],
      registers,
      collect() {
        this.reset();
        for (const w of src.waiting()) this.set({ db: w.db }, w.n);
      },
    });
  }

  observe(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.latency.observe({ route }, seconds);
  }

  error(code: string): void {
    this.errors.inc({ code });
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
