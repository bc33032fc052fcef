/**
 * Runs `selkie serve` as a real child process on 127.0.0.1 (port 0: the kernel picks a free one)
 * and talks to it over loopback.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { CLI, ROOT, tempDir } from "../helpers.js";

export interface ServerProc {
  url: string;
  /** The admin token printed on first start (undefined on later starts of the same dir). */
  adminToken: string | undefined;
  dir: string;
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServer(opts: { dir?: string; args?: string[] } = {}): Promise<ServerProc> {
  const dir = opts.dir ?? tempDir("selkie-serve-");
  const proc = spawn(process.execPath, [CLI, "serve", "--dir", dir, "--port", "0", "--host", "127.0.0.1", ...(opts.args ?? [])], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`selkie serve did not start in 20 s:\n${err}\n${out}`)), 20_000);
    proc.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      const m = /listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m && /connect:/.test(err)) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`selkie serve exited with ${code} before listening:\n${err}\n${out}`));
    });
  });
  const tok = /admin token[^\n]*\n\s+(sk_\S+)/.exec(err);
  return {
    url,
    adminToken: tok?.[1],
    dir,
    proc,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** fetch with the admin token and a JSON body (`signal`: e.g. AbortSignal.timeout). */
export async function api(s: { url: string }, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<{ status: number; json: any; text: string; headers: Headers }> {
  const res = await fetch(`${s.url}${path}`, {
    method,
    ...(signal ? { signal } : {}),
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    ...(body !== undefined ? { body: (typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body)) as BodyInit } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** Creates a database through the management API. */
export async function createDb(s: ServerProc, name: string): Promise<void> {
  const r = await api(s, s.adminToken, "POST", "/v1/databases", { name });
  if (r.status !== 201) throw new Error(`creating ${name}: ${r.status} ${r.text}`);
}

/** Values normalized for comparing the local API with @libsql/client (intMode "bigint"). */
export function norm(v: unknown): unknown {
  if (typeof v === "number") return Number.isSafeInteger(v) ? BigInt(v) : v;
  if (v instanceof ArrayBuffer) return `blob:${Buffer.from(v).toString("hex")}`;
  if (v instanceof Uint8Array) return `blob:${Buffer.from(v).toString("hex")}`;
  if (Array.isArray(v)) return v.map(norm);
  return v;
}

/** A Hrana value for raw pipeline requests. */
export function hv(v: null | number | bigint | string | Uint8Array): object {
  if (v === null) return { type: "null" };
  if (typeof v === "bigint") return { type: "integer", value: String(v) };
  if (typeof v === "number") return Number.isInteger(v) ? { type: "integer", value: String(v) } : { type: "float", value: v };
  if (typeof v === "string") return { type: "text", value: v };
  return { type: "blob", base64: Buffer.from(v).toString("base64") };
}

export const exec = (sql: string, args: Array<null | number | bigint | string | Uint8Array> = []): object => ({ type: "execute", stmt: { sql, args: args.map(hv) } });

/** One raw Hrana pipeline request. */
export async function pipeline(s: { url: string }, token: string | undefined, requests: unknown[], o: { db?: string; baton?: string | null; v?: "v2" | "v3" } = {}) {
  const path = o.db === "" ? `/${o.v ?? "v2"}/pipeline` : `/db/${o.db ?? "app"}/${o.v ?? "v2"}/pipeline`;
  return api(s, token, "POST", path, { baton: o.baton ?? null, requests });
}
