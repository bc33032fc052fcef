/**
 * Custom enclaves on a spawned `selkie serve`: upload the AssemblyScript counter enclave signed with
 * a fresh key (`selkie enclave keygen` / `sign`), call its ecalls, and check that every bad case
 * (forged or changed manifest or signature, a forbidden import, bad arguments, a denied permission,
 * a trap, EPC refusals) is refused or reported with a code while the server keeps serving.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash, createPrivateKey } from "node:crypto";
import { cli, ROOT, tempDir, wat } from "../helpers.js";
import { parseManifest } from "../../runtime/enclave/manifest.js";
import { measureEnclave, sha256 } from "../../runtime/enclave/measure.js";
import { generateSigningKey, signEnclave } from "../../runtime/enclave/sigstruct.js";
import { api, startServer, type ServerProc } from "./harness.js";

const COUNTER_DIR = path.join(ROOT, "enclaves", "counter-as");
const counterManifest = JSON.parse(fs.readFileSync(path.join(COUNTER_DIR, "manifest.json"), "utf8")) as Record<string, unknown>;
const counterModule = fs.readFileSync(path.join(COUNTER_DIR, "build", "counter.wasm"));
const MEM = (pages = 1) => `(import "selkie:sys" "memory" (memory ${pages}))`;

const key = generateSigningKey();
const pk = createPrivateKey(key.pem);

/** A signature over (manifest, module) as `selkie enclave sign` makes it. */
function sign(manifest: Record<string, unknown>, module: Uint8Array): object {
  const m = parseManifest(manifest);
  return signEnclave(m, measureEnclave(sha256(module), m), pk);
}

/** 50 MiB at start; each call of f adds 1 to a global and 10 to a word at the end of memory: f() = both. */
const bigModule = () =>
  wat(`(module ${MEM(800)} (global $n (mut i32) (i32.const 0))
    (func (export "f") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1)))
      (i32.store (i32.const 52428000) (i32.add (i32.load (i32.const 52428000)) (i32.const 10)))
      (i32.add (global.get $n) (i32.load (i32.const 52428000)))))`);

const upload = (s: ServerProc, tok: string, manifest: unknown, module: Uint8Array, signature: unknown) =>
  api(s, tok, "POST", "/v1/enclaves", { manifest, module: Buffer.from(module).toString("base64"), signature });

describe("custom enclaves on selkie serve", () => {
  let s: ServerProc;
  let tok: string;
  let total = 0n;

  const ecall = (name: string, fn: string, args: unknown[] = []) => api(s, tok, "POST", `/v1/enclaves/${name}/ecall/${fn}`, { args });
  const refused = (r: { status: number; json: any; text: string }, status: number, code: string, mention?: string): void => {
    assert.equal(r.status, status, r.text);
    assert.equal(r.json?.code, code, r.text);
    if (mention) assert.ok(String(r.json.message).includes(mention), `"${r.json.message}" should mention ${mention}`);
  };
  /** The server still answers, and the counter enclave still holds its state. */
  const intact = async (): Promise<void> => {
    const r = await ecall("counter-as", "add", [0]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, String(total));
    assert.equal(s.proc.exitCode, null);
  };

  before(async () => {
    s = await startServer();
    tok = s.adminToken!;
  });
  after(async () => {
    await s?.stop();
  });

  it("selkie enclave keygen and sign produce a signature the server accepts; ecalls answer", async () => {
    const work = tempDir("selkie-sign-");
    const keyFile = path.join(work, "dev.pem");
    let r = cli(["enclave", "keygen", "--out", keyFile]);
    assert.equal(r.status, 0, r.stderr);
    const mrsigner = /mrsigner\s+([0-9a-f]{64})/.exec(r.stdout)![1];
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    const sigFile = path.join(work, "counter.sig.json");
    r = cli(["enclave", "sign", path.join(COUNTER_DIR, "manifest.json"), "--key", keyFile, "--out", sigFile]);
    assert.equal(r.status, 0, r.stderr);
    const signature = JSON.parse(fs.readFileSync(sigFile, "utf8"));
    assert.equal(createHash("sha256").update(Buffer.from(signature.publicKey, "base64")).digest("hex"), mrsigner);

    refused(await api(s, undefined, "POST", "/v1/enclaves", { manifest: counterManifest, module: counterModule.toString("base64"), signature }), 401, "UNAUTHORIZED");
    const up = await upload(s, tok, counterManifest, counterModule, signature);
    assert.equal(up.status, 201, up.text);
    assert.equal(up.json.name, "counter-as");
    assert.equal(up.json.mrsigner, mrsigner);
    assert.deepEqual(up.json.granted, []);
    assert.deepEqual(up.json.ecalls.find((e: any) => e.name === "add"), { name: "add", params: ["i32"], results: ["i64"] });
    refused(await upload(s, tok, counterManifest, counterModule, signature), 409, "ENCLAVE_EXISTS");

    for (const n of [5, 7, -2]) {
      total += BigInt(n);
      const a = await ecall("counter-as", "add", [n]);
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.result, String(total));
    }
    for (const [i, x] of [3, 4, 10].entries()) assert.equal((await ecall("counter-as", "push", [x])).json.result, i + 1);
    assert.equal((await ecall("counter-as", "sum")).json.result, "17");
    assert.equal((await ecall("counter-as", "count")).json.result, 3);
    // A bare list works too.
    const bare = await api(s, tok, "POST", "/v1/enclaves/counter-as/ecall/count", []);
    assert.equal(bare.json.result, 3);

    const list = await api(s, tok, "GET", "/v1/enclaves");
    assert.deepEqual(list.json.enclaves.map((e: any) => e.name), ["counter-as"]);
    const info = await api(s, tok, "GET", "/v1/enclaves/counter-as");
    assert.equal(info.json.state, "running");
    assert.ok(info.json.committedBytes > 0);
    const epc = await api(s, tok, "GET", "/v1/platform/epc");
    assert.ok(JSON.stringify(epc.json).includes("enclave:counter-as"), "the instance holds an EPC lease");
    await intact();
  });

  it("refuses bad ecall arguments and unknown ecalls with 4xx", async () => {
    refused(await ecall("counter-as", "add", ["x"]), 400, "BAD_ECALL_ARGS", "i32");
    refused(await ecall("counter-as", "add", [1.5]), 400, "BAD_ECALL_ARGS");
    refused(await ecall("counter-as", "add", [2 ** 31]), 400, "BAD_ECALL_ARGS");
    refused(await ecall("counter-as", "add", [1, 2]), 400, "BAD_ECALL_ARGS", "1 argument");
    refused(await ecall("counter-as", "add", [null]), 400, "BAD_ECALL_ARGS");
    refused(await api(s, tok, "POST", "/v1/enclaves/counter-as/ecall/add", "{not json"), 400, "BAD_JSON");
    refused(await api(s, tok, "POST", "/v1/enclaves/counter-as/ecall/add", { args: 5 }), 400, "BAD_ECALL_ARGS");
    refused(await ecall("counter-as", "nope"), 404, "ECALL_NOT_FOUND", "add");
    refused(await ecall("counter-as", "_initialize"), 404, "ECALL_NOT_FOUND");
    refused(await ecall("no-such", "add", [1]), 404, "ENCLAVE_NOT_FOUND");
    refused(await api(s, tok, "GET", "/v1/enclaves/counter-as/ecall/add"), 405, "METHOD_NOT_ALLOWED");
    await intact();
  });

  it("refuses a forged or changed manifest, module or signature with 400 and a code", async () => {
    const good = sign(counterManifest, counterModule) as Record<string, unknown>;
    const renamed = { ...counterManifest, name: "counter-x" };
    const cases: Array<[string, unknown, Uint8Array, unknown, string]> = [
      ["version changed", { ...counterManifest, version: 2 }, counterModule, good, "SIG_VERSION_MISMATCH"],
      ["name changed", renamed, counterModule, good, "SIG_NAME_MISMATCH"],
      ["permissions widened", { ...counterManifest, name: "counter-x", permissions: ["clock"] }, counterModule, { ...good, name: "counter-x" }, "SIG_MRENCLAVE_MISMATCH"],
      // No "epc changed" case since ABI revision 6: the EPC size is a runtime cap, not measured or signed.
      ["module changed", renamed, Buffer.concat([counterModule, Buffer.from([0, 3, 1, 0x78, 0])]), { ...good, name: "counter-x" }, "SIG_MRENCLAVE_MISMATCH"],
      ["fields rewritten to match", renamed, counterModule, { ...good, name: "counter-x" , mrenclave: (sign(renamed, counterModule) as any).mrenclave }, "SIG_BAD_SIGNATURE"],
      ["another key", renamed, counterModule, { ...(sign(renamed, counterModule) as object), publicKey: generateSigningKey().publicKey.toString("base64") }, "SIG_BAD_SIGNATURE"],
      ["signature malformed", renamed, counterModule, { ...good, signature: "AAAA" }, "SIG_MALFORMED"],
      ["manifest unknown key", { ...renamed, allow: "all" }, counterModule, good, "MANIFEST_UNKNOWN_KEY"],
      ["not wasm", renamed, Buffer.from("hello world"), good, "ENCLAVE_NOT_WASM"],
    ];
    for (const [what, manifest, module, signature, code] of cases) {
      const r = await upload(s, tok, manifest, module, signature);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(r.json.code, code, `${what}: ${r.text}`);
      await intact();
    }
    refused(await api(s, tok, "POST", "/v1/enclaves", { manifest: renamed, module: counterModule.toString("base64") }), 400, "SIG_MISSING");
    refused(await api(s, tok, "POST", "/v1/enclaves", { manifest: renamed, module: "%%%", signature: good }), 400, "BAD_MODULE");
    refused(await api(s, tok, "POST", "/v1/enclaves", "[1,"), 400, "BAD_JSON");
    assert.equal((await api(s, tok, "GET", "/v1/enclaves/counter-x")).status, 404, "nothing refused was stored");
    await intact();
  });

  it("refuses a module with a forbidden import, naming it", async () => {
    const bytes = await wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) ${MEM()} (func (export "f") (result i32) i32.const 1))`);
    const manifest = { format: 1, name: "sneaky", version: 1, epc: "1MiB", permissions: [] };
    refused(await upload(s, tok, manifest, bytes, sign(manifest, bytes)), 400, "ENCLAVE_FORBIDDEN_IMPORT", "wasi_snapshot_preview1.fd_write");
    await intact();
  });

  it("refuses modules that would take host memory past the EPC meter: huge tables, own memories (400 with a code)", async () => {
    const manifest = (name: string) => ({ format: 1, name, version: 1, epc: "1MiB", permissions: [] });
    const cases: Array<[string, string, string]> = [
      ["huge-table", `(module ${MEM()} (table 10000000 funcref) (func (export "f") (result i32) i32.const 1))`, "ENCLAVE_TABLE_TOO_LARGE"],
      ["growable-table", `(module ${MEM()} (table $t 1 10000000 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`, "ENCLAVE_TABLE_TOO_LARGE"],
      ["own-memory", `(module ${MEM()} (memory 1) (func (export "f") (result i32) i32.const 1))`, "ENCLAVE_DEFINES_MEMORY"],
    ];
    for (const [name, text, code] of cases) {
      const bytes = await wat(text);
      refused(await upload(s, tok, manifest(name), bytes, sign(manifest(name), bytes)), 400, code);
    }
    // A table with no maximum is accepted, pinned at its minimum: table.grow fails inside the enclave.
    const pinned = await wat(`(module ${MEM()} (table $t 1 funcref) (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`);
    const r = await upload(s, tok, manifest("pinned-table"), pinned, sign(manifest("pinned-table"), pinned));
    assert.equal(r.status, 201, r.text);
    for (let i = 0; i < 3; i++) {
      const g = await ecall("pinned-table", "grow", [5_000_000]);
      assert.equal(g.status, 200, g.text);
      assert.equal(String(g.json.result), "-1");
    }
    assert.equal((await api(s, tok, "DELETE", "/v1/enclaves/pinned-table")).status, 200);
    await intact();
  });

  it("a denied permission fails inside the enclave and the response names the grant", async () => {
    const bytes = await wat(`(module
      (import "selkie:sys" "clock_ms" (func $clock (result f64)))
      (import "selkie:sys" "random" (func $random (param i32 i32) (result i32)))
      ${MEM()}
      (func (export "now") (result f64) call $clock)
      (func (export "rnd") (result i32) (call $random (i32.const 0) (i32.const 16))))`);
    const manifest = { format: 1, name: "clocky", version: 1, epc: "1MiB", permissions: ["clock"] };
    const up = await upload(s, tok, manifest, bytes, sign(manifest, bytes));
    assert.equal(up.status, 201, up.text);
    assert.deepEqual(up.json.permissions, ["clock"]);
    assert.deepEqual(up.json.granted, []);
    const now = await ecall("clocky", "now");
    assert.equal(now.status, 200, now.text);
    assert.equal(now.json.result, -1, "the ocall failed inside the enclave");
    assert.match(now.json.denied, /--allow-clock/);
    assert.match(now.headers.get("x-selkie-denied") ?? "", /--allow-clock/);
    const rnd = await ecall("clocky", "rnd");
    assert.equal(rnd.json.result, 3, "SQLITE_PERM inside the enclave");
    assert.match(rnd.json.denied, /signed manifest must request "random"/);
    // The log line reaches us through the child's stdout pipe: give it a moment.
    for (let i = 0; i < 100 && !/permission_denied/.test(s.stdout()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(s.stdout(), /permission_denied/);
    await intact();

    // The same enclave on a server whose operator grants the clock (but not randomness).
    const s2 = await startServer({ args: ["--allow-clock"] });
    try {
      const r = await upload(s2, s2.adminToken!, manifest, bytes, sign(manifest, bytes));
      assert.deepEqual(r.json.granted, ["clock"]);
      const n = await api(s2, s2.adminToken!, "POST", "/v1/enclaves/clocky/ecall/now", { args: [] });
      assert.ok(Math.abs(n.json.result - Date.now()) < 60_000, n.text);
      assert.equal(n.json.denied, undefined);
      const x = await api(s2, s2.adminToken!, "POST", "/v1/enclaves/clocky/ecall/rnd", { args: [] });
      assert.match(x.json.denied, /random/);
    } finally {
      await s2.stop();
    }
  });

  it("a trap answers 500 ENCLAVE_TRAP and the instance restarts fresh", async () => {
    const bytes = await wat(`(module ${MEM()}
      (global $n (mut i32) (i32.const 0))
      (func (export "inc") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
      (func (export "wide") (param i64 f64) (result i64) (i64.add (local.get 0) (i64.trunc_f64_s (local.get 1))))
      (func (export "boom") unreachable))`);
    const manifest = { format: 1, name: "trappy", version: 1, epc: "1MiB", permissions: [] };
    assert.equal((await upload(s, tok, manifest, bytes, sign(manifest, bytes))).status, 201);
    assert.equal((await ecall("trappy", "inc")).json.result, 1);
    assert.equal((await ecall("trappy", "inc")).json.result, 2);
    const w = await ecall("trappy", "wide", ["9007199254740993", 2]);
    assert.equal(w.json.result, "9007199254740995", "i64 in and out as decimal strings");
    refused(await ecall("trappy", "wide", ["9223372036854775808", 0]), 400, "BAD_ECALL_ARGS");
    refused(await ecall("trappy", "boom"), 500, "ENCLAVE_TRAP", "unreachable");
    assert.equal((await ecall("trappy", "inc")).json.result, 1, "a fresh instance");
    const info = await api(s, tok, "GET", "/v1/enclaves/trappy");
    assert.equal(info.json.traps, 1);
    assert.equal(info.json.state, "running");
    await intact();
  });

  it("EPC: a manifest over the budget is refused at upload; a full budget pages idle enclaves out and back in", async () => {
    const small = await wat(`(module ${MEM()} (func (export "f") (result i32) i32.const 1))`);
    const huge = { format: 1, name: "huge", version: 1, epc: "1GiB", permissions: [] };
    refused(await upload(s, tok, huge, small, sign(huge, small)), 400, "ENCLAVE_EPC_EXCEEDS_BUDGET");
    await intact();

    // Two enclaves of 50 MiB at start each, with state in a global and in memory: the default 93.5 MiB
    // budget holds one at a time, so each call to the other hibernates the idle one.
    const big = await bigModule();
    for (const name of ["big-a", "big-b"]) {
      const m = { format: 1, name, version: 1, epc: "64MiB", permissions: [] };
      assert.equal((await upload(s, tok, m, big, sign(m, big))).status, 201);
    }
    assert.equal((await ecall("big-a", "f")).json.result, 11);
    assert.equal((await ecall("big-b", "f")).json.result, 11, "admitted by hibernating big-a");
    assert.equal((await api(s, tok, "GET", "/v1/enclaves/big-a")).json.state, "hibernated");
    assert.equal((await ecall("big-a", "f")).json.result, 22, "big-a woke with its global and memory");
    assert.equal((await ecall("big-b", "f")).json.result, 22);
    const a = (await api(s, tok, "GET", "/v1/enclaves/big-a")).json;
    assert.ok(a.wakes >= 1 && a.hibernations >= 1, JSON.stringify(a));
    await intact();
    const del = await api(s, tok, "DELETE", "/v1/enclaves/big-a");
    assert.equal(del.status, 200, del.text);
    refused(await api(s, tok, "GET", "/v1/enclaves/big-a"), 404, "ENCLAVE_NOT_FOUND");
    assert.equal((await ecall("big-b", "f")).json.result, 33);
    assert.equal((await api(s, tok, "DELETE", "/v1/enclaves/big-b")).status, 200);
    await intact();
  });

  it("stored enclaves survive a restart (verified again on first use); a graceful restart keeps each instance's state, once", async () => {
    // Two 50 MiB enclaves again: at the shutdown one is running and the other hibernated.
    const big = await bigModule();
    for (const name of ["big-c", "big-d"]) {
      const m = { format: 1, name, version: 1, epc: "64MiB", permissions: [] };
      assert.equal((await upload(s, tok, m, big, sign(m, big))).status, 201);
      assert.equal((await ecall(name, "f")).json.result, 11);
    }
    assert.equal((await api(s, tok, "GET", "/v1/enclaves/big-c")).json.state, "hibernated");
    const stateOf = (name: string) => path.join(s.dir, "enclaves", name, "state");

    assert.equal(await s.stop(), 0, "a graceful stop");
    for (const name of ["counter-as", "trappy", "big-c", "big-d"]) assert.ok(fs.existsSync(stateOf(name)), `${name}'s state was saved`);
    const backup = tempDir("selkie-state-copy-");
    fs.cpSync(stateOf("counter-as"), backup, { recursive: true });
    const images = fs.readdirSync(backup);
    assert.ok(images.length > 0 && images.every((f) => f.endsWith(".img")), images.join(", "));

    s = await startServer({ dir: s.dir });
    total += 1n;
    const r = await ecall("counter-as", "add", [1]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, String(total), "the counter continued where the last run left it");
    assert.equal((await ecall("counter-as", "sum")).json.result, "17", "memory too (the pushed values)");
    assert.equal((await ecall("trappy", "inc")).json.result, 2);
    assert.equal((await ecall("big-c", "f")).json.result, 22, "saved from its hibernation image");
    assert.equal((await ecall("big-d", "f")).json.result, 22);
    const info = (await api(s, tok, "GET", "/v1/enclaves/counter-as")).json;
    assert.equal(info.restored, true);
    assert.ok(!fs.existsSync(stateOf("counter-as")), "the saved state is used once: its lineage is destroyed on resume");
    const list = await api(s, tok, "GET", "/v1/enclaves");
    assert.deepEqual(list.json.enclaves.map((e: any) => e.name), ["big-c", "big-d", "clocky", "counter-as", "trappy"]);

    // A crash saves nothing; putting back a copy of an image already used is a rollback, refused once.
    await s.stop("SIGKILL");
    fs.cpSync(backup, stateOf("counter-as"), { recursive: true });
    s = await startServer({ dir: s.dir });
    refused(await ecall("counter-as", "add", [0]), 500, "IMAGE_ROLLBACK");
    assert.ok(!fs.existsSync(stateOf("counter-as")), "the refused copy is removed");
    total = 0n;
    await intact();
    assert.equal((await ecall("counter-as", "count")).json.result, 0, "a fresh instance");
    assert.equal((await ecall("trappy", "inc")).json.result, 1, "the crash lost the state since the last start: fresh");

    // A damaged saved state is refused with a typed error, and the next call starts afresh.
    assert.equal((await ecall("counter-as", "add", [40])).json.result, "40");
    assert.equal(await s.stop(), 0);
    const img = path.join(stateOf("counter-as"), fs.readdirSync(stateOf("counter-as")).find((f) => f.endsWith(".img"))!);
    const bytes = fs.readFileSync(img);
    bytes[bytes.length - 100]! ^= 0x01;
    fs.writeFileSync(img, bytes);
    s = await startServer({ dir: s.dir });
    const bad = await ecall("counter-as", "add", [0]);
    assert.equal(bad.status, 500, bad.text);
    assert.match(bad.json.code, /^IMAGE_/, bad.text);
    await intact();

    // A shutdown that crashed while writing the state leaves no published image: a fresh start, no error.
    assert.equal((await ecall("counter-as", "push", [5])).json.result, 1);
    assert.equal(await s.stop(), 0);
    for (const f of fs.readdirSync(stateOf("counter-as"))) fs.renameSync(path.join(stateOf("counter-as"), f), path.join(stateOf("counter-as"), f.replace(/\.img$/, ".tmp")));
    s = await startServer({ dir: s.dir });
    const fresh = await ecall("counter-as", "count");
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.json.result, 0, "nothing was restored");

    // Deleting an enclave whose saved state was never resumed destroys that state too.
    assert.ok(fs.existsSync(stateOf("trappy")));
    assert.equal((await api(s, tok, "DELETE", "/v1/enclaves/trappy")).status, 200);
    assert.ok(!fs.existsSync(path.join(s.dir, "enclaves", "trappy")));
    for (const name of ["big-c", "big-d"]) assert.equal((await api(s, tok, "DELETE", `/v1/enclaves/${name}`)).status, 200);
    await intact();
  });
});
