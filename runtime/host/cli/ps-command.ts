/**
 * UNTRUSTED (UI). `selkie ps --server URL --token T [--json]`: what a running `selkie serve` hosts.
 *
 * Read-only, through the server's /v1 management API (an admin token): GET /v1/databases (each
 * database, and when open its enclave: MRENCLAVE, EPC cap, committed and peak bytes), GET
 * /v1/enclaves (custom enclaves; a server without them answers 404 and the list is empty) and GET
 * /v1/platform/epc (the platform's EPC budget, committed, peak, free, and every lease), and GET
 * /v1/forwarding (databases that moved to another peer: state "moved -> URL"), and GET /v1/migrations
 * (live migrations in progress: "migrating -> URL (phase, N%)", "arriving <- PEER (phase)").
 */
import { Command, Option } from "commander";
import { SelkieError, UsageError } from "../../errors.js";
import { EXIT_OK } from "./exit-codes.js";

type Run = (fn: () => Promise<number> | number) => Promise<void>;

export interface PsRow {
  kind: "database" | "enclave";
  name: string;
  /**
   * database: "running", "running, in transaction", "hibernated" (its enclave paged out to a sealed
   * image; it wakes on its next request), "closed" (not opened since the server started);
   * "moved -> URL" (migrated to another peer; this server forwards its clients there);
   * enclave: its lifecycle state.
   */
  state: string;
  mrenclave: string | null;
  committedBytes: number | null;
  peakBytes: number | null;
  epcBytes: number | null;
  diskBytes: number | null;
  /** EPC paging of a database's enclave: times hibernated and woken (null when not open). */
  hibernations: number | null;
  wakes: number | null;
  /** A database that moved: its new owner's URL (null otherwise). */
  movedTo?: string | null;
}

export interface PsPaging {
  resident: number;
  hibernated: number;
  evictions: number;
  wakes: number;
  wakeFailures: number;
  wakeP50Ms: number;
  wakeP99Ms: number;
}

export interface PsReport {
  server: string;
  epc: { budget: number; committed: number; peak: number; free: number };
  /** The platform's EPC pager, when the server has one. */
  paging: PsPaging | null;
  rows: PsRow[];
}

/** A failure talking to the server (unreachable, refused token, unexpected answer): exit code 6. */
export class ServerRequestError extends SelkieError {}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

async function getJson(base: string, token: string, path: string, optional = false): Promise<any> {
  let res: Response;
  try {
    res = await fetch(base + path, { headers: { authorization: `Bearer ${token}`, accept: "application/json" }, signal: AbortSignal.timeout(15_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new ServerRequestError("SERVER_UNREACHABLE", `cannot reach ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  if (optional && (res.status === 404 || res.status === 501)) return undefined;
  if (res.status === 401) throw new ServerRequestError("SERVER_UNAUTHORIZED", `${base} refused the token (401): \`selkie ps\` needs an admin token`);
  if (res.status === 403) throw new ServerRequestError("SERVER_FORBIDDEN", `${base} refused the token for GET ${path} (403): \`selkie ps\` needs an admin token`);
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ServerRequestError("SERVER_BAD_RESPONSE", `GET ${path} answered ${res.status} with a body that is not JSON (is ${base} a selkie server?)`);
  }
  if (!res.ok) throw new ServerRequestError("SERVER_ERROR", `GET ${path} failed with ${res.status}${body?.code ? ` ${body.code}` : ""}: ${body?.message ?? text}`);
  return body;
}

/** Collects what the server at `server` hosts. */
export async function psReport(server: string, token: string): Promise<PsReport> {
  let base: string;
  try {
    const u = new URL(server);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http(s)");
    base = u.origin;
  } catch {
    throw new UsageError("BAD_URL", `--server must be the server's http(s) URL, e.g. http://127.0.0.1:7700 (got ${JSON.stringify(server)})`);
  }
  const [dbs, encs, epc, fwd, migs] = await Promise.all([
    getJson(base, token, "/v1/databases"),
    getJson(base, token, "/v1/enclaves", true),
    getJson(base, token, "/v1/platform/epc"),
    getJson(base, token, "/v1/forwarding", true),
    getJson(base, token, "/v1/migrations", true),
  ]);
  const leases: Array<{ label?: unknown; peak?: unknown }> = Array.isArray(epc?.enclaves) ? epc.enclaves : [];
  const rows: PsRow[] = [];
  for (const d of Array.isArray(dbs?.databases) ? dbs.databases : []) {
    const e = d?.enclave;
    const hibernated = d?.paging?.state === "hibernated";
    rows.push({
      kind: "database",
      name: String(d?.name),
      state: !d?.open ? "closed" : hibernated ? "hibernated" : d.inTransaction ? "running, in transaction" : "running",
      mrenclave: str(e?.mrenclave),
      committedBytes: num(e?.committedBytes),
      peakBytes: num(e?.peakBytes),
      epcBytes: num(e?.epcBytes),
      diskBytes: num(d?.diskBytes),
      hibernations: num(d?.paging?.hibernations),
      wakes: num(d?.paging?.wakes),
    });
  }
  for (const f of Array.isArray(fwd?.forwarding) ? fwd.forwarding : []) {
    const to = str(f?.to) ?? "?";
    rows.push({ kind: "database", name: String(f?.name), state: `moved -> ${to}`, mrenclave: null, committedBytes: null, peakBytes: null, epcBytes: null, diskBytes: null, hibernations: null, wakes: null, movedTo: to });
  }
  // Live migrations in progress: "migrating -> URL (phase, N%)" on the source, "arriving <- PEER (phase)" here.
  for (const m of Array.isArray(migs?.running) ? migs.running : []) {
    const name = String(m?.name);
    const pct = num(m?.diskBytes) ? ` ${Math.min(100, Math.round((100 * (num(m?.bytes) ?? 0)) / num(m?.diskBytes)!))}%` : "";
    const state = m?.role === "destination" ? `arriving <- ${str(m?.peer) ?? "?"} (${str(m?.phase) ?? "?"})` : `migrating -> ${str(m?.peer) ?? "?"} (${str(m?.phase) ?? "?"}${pct})`;
    const row = rows.find((r) => r.kind === "database" && r.name === name);
    if (row) row.state = state;
    else rows.push({ kind: "database", name, state, mrenclave: null, committedBytes: null, peakBytes: null, epcBytes: null, diskBytes: num(m?.diskBytes), hibernations: null, wakes: null });
  }
  for (const e of Array.isArray(encs?.enclaves) ? encs.enclaves : []) {
    const name = String(e?.name);
    // A custom enclave's info has no peak: its EPC leases (labelled "enclave:NAME") do.
    const peaks = leases.filter((l) => l.label === `enclave:${name}`).map((l) => num(l.peak) ?? 0);
    rows.push({
      kind: "enclave",
      name,
      state: str(e?.state) ?? "unknown",
      mrenclave: str(e?.mrenclave),
      committedBytes: num(e?.committedBytes),
      peakBytes: num(e?.peakBytes) ?? (peaks.length ? Math.max(...peaks) : null),
      epcBytes: num(e?.epcBytes),
      diskBytes: num(e?.moduleBytes),
      hibernations: null,
      wakes: null,
    });
  }
  const p = epc?.paging;
  const paging: PsPaging | null =
    p && typeof p === "object"
      ? {
          resident: num(p.resident) ?? 0,
          hibernated: num(p.hibernated) ?? 0,
          evictions: num(p.evictions) ?? 0,
          wakes: num(p.wakes) ?? 0,
          wakeFailures: num(p.wakeFailures) ?? 0,
          wakeP50Ms: num(p.wakeMs?.p50) ?? 0,
          wakeP99Ms: num(p.wakeMs?.p99) ?? 0,
        }
      : null;
  return { server: base, epc: { budget: num(epc?.budget) ?? 0, committed: num(epc?.committed) ?? 0, peak: num(epc?.peak) ?? 0, free: num(epc?.free) ?? 0 }, paging, rows };
}

/** Bytes for people: 1536 -> "1.5KiB". */
export function humanBytes(n: number | null): string {
  if (n === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return i === 0 ? `${v}B` : `${Number(v.toFixed(1))}${units[i]}`;
}

export function formatPs(r: PsReport): string {
  const head = ["KIND", "NAME", "STATE", "MRENCLAVE", "COMMITTED", "PEAK", "EPC CAP", "DISK", "WAKES"];
  const lines = r.rows.map((x) => [x.kind, x.name, x.state, x.mrenclave ? x.mrenclave.slice(0, 16) : "-", humanBytes(x.committedBytes), humanBytes(x.peakBytes), humanBytes(x.epcBytes), humanBytes(x.diskBytes), x.wakes === null ? "-" : String(x.wakes)]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const pct = r.epc.budget > 0 ? ` (${((100 * r.epc.committed) / r.epc.budget).toFixed(1)}%)` : "";
  const out = [`server ${r.server}`, `EPC: ${humanBytes(r.epc.committed)} committed of ${humanBytes(r.epc.budget)} budget${pct}, peak ${humanBytes(r.epc.peak)}, free ${humanBytes(r.epc.free)}`];
  const g = r.paging;
  if (g) {
    out.push(`paging: ${g.resident} resident, ${g.hibernated} hibernated, ${g.evictions} evictions, ${g.wakes} wakes (p50 ${g.wakeP50Ms.toFixed(2)} ms, p99 ${g.wakeP99Ms.toFixed(2)} ms)${g.wakeFailures ? `, ${g.wakeFailures} failed wakes` : ""}`);
  }
  out.push("");
  if (r.rows.length === 0) out.push("no databases or enclaves");
  else out.push(fmt(head), ...lines.map(fmt));
  return out.join("\n") + "\n";
}

export function registerPsCommand(program: Command, run: Run): void {
  program
    .command("ps")
    .summary("list the databases and enclaves a running `selkie serve` hosts")
    .description(
      "Lists the databases and custom enclaves a running `selkie serve` hosts, with their state, identity" +
        "(MRENCLAVE, the first 16 hex digits; --json has all 64) and memory (EPC committed, peak and cap), and" +
        "the platform's EPC budget and committed bytes. Read-only: it uses the server's /v1 management API" +
        "(GET /v1/databases, /v1/enclaves, /v1/platform/epc, /v1/forwarding) and needs an admin token. A database that has" +
        "not been used since the server started is \"closed\" (it opens on first use) and has no enclave yet.",
    )
    .requiredOption("--server <url>", "the server's URL, as `selkie serve` printed it, e.g. http://127.0.0.1:7700")
    .addOption(new Option("--token <token>", "an admin token").env("SELKIE_TOKEN"))
    .option("--json", "JSON output: {server, epc: {budget, committed, peak, free}, paging: {resident, hibernated, evictions, wakes, wakeFailures, wakeP50Ms, wakeP99Ms} | null, rows: [{kind, name, state, mrenclave, committedBytes, peakBytes, epcBytes, diskBytes, hibernations, wakes}]} (bytes as numbers, null when unknown)")
    .addHelpText(
      "after",
      "\nColumns: KIND (database or enclave), NAME, STATE (database: running, in transaction,\n" +
        "hibernated (paged out of the EPC to a sealed image; it wakes on its next request), closed,\n" +
        "moved -> URL (migrated to another peer; this server forwards its clients there);\n" +
        "enclave: created, running, faulted, closed), MRENCLAVE, COMMITTED and PEAK (EPC bytes of its\n" +
        "enclave; 0 committed while hibernated), EPC CAP (the most its enclave may commit), DISK (a\n" +
        "database's files; an enclave's module), WAKES (times its enclave was woken from hibernation).\n" +
        "\nExamples:\n  selkie ps --server http://127.0.0.1:7700 --token $TOKEN\n  SELKIE_TOKEN=$TOKEN selkie ps --server http://127.0.0.1:7700 --json\n" +
        "\nExit codes: 0 listed; 2 wrong usage (no token, bad URL); 6 the server could not be reached or refused\n(SERVER_UNREACHABLE, SERVER_UNAUTHORIZED, SERVER_FORBIDDEN, SERVER_ERROR, SERVER_BAD_RESPONSE).",
    )
    .action((o: { server: string; token?: string; json?: boolean }) =>
      run(async () => {
        if (!o.token) throw new UsageError("NO_TOKEN", "give an admin token: --token T (or SELKIE_TOKEN); `selkie serve` prints one on first start, `selkie token create --admin --dir DIR` makes another");
        const r = await psReport(o.server, o.token);
        process.stdout.write(o.json ? JSON.stringify(r, null, 2) + "\n" : formatPs(r));
        return EXIT_OK;
      }),
    );
}
