/**
 * `selkie enclave inspect`: check an enclave module against the ABI and print its measurement.
 * `selkie enclave keygen --out KEY`: a developer Ed25519 signing key (PKCS#8 PEM, 0600).
 * `selkie enclave sign MANIFEST --key KEY [--out SIG]`: its SIGSTRUCT (enclaves/ABI.md §6).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { EnclaveLoadError } from "../../errors.js";
import { checkModule, checkManifestFits, measure } from "../../enclave/loader.js";
import { formatBytes, parseManifest } from "../../enclave/manifest.js";
import { packageRoot } from "../../sql/sqlite-module.js";
import { generateSigningKey, loadSigningKey, rawPublicKey, mrsignerOf, signEnclave, verifyEnclaveSignature } from "../../enclave/sigstruct.js";
import { UsageError } from "../../errors.js";
import { EXIT_OK } from "./exit-codes.js";

/** Reads a manifest and its module, checks them, and measures them. */
function readEnclave(manifestPath: string, builtin: boolean) {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  } catch (e) {
    throw new EnclaveLoadError("MANIFEST_UNREADABLE", `cannot read manifest ${manifestPath}: ${(e as Error).message}`);
  }
  const manifest = parseManifest(raw, manifestPath);
  const modulePath = path.resolve(path.dirname(manifestPath), manifest.module ?? "module.wasm");
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(modulePath);
  } catch {
    throw new EnclaveLoadError("ENCLAVE_MODULE_MISSING", `module ${modulePath} is missing${builtin ? "; build it with: npm run build:wasm" : ""}`);
  }
  const m = checkModule(bytes);
  checkManifestFits(m, manifest);
  return { manifest, modulePath, module: m, mrenclave: measure(m, manifest) };
}

export function registerEnclaveCommands(program: Command, run: (fn: () => Promise<number> | number) => Promise<void>): void {
  const enclave = program.command("enclave").summary("inspect enclave modules and manifests");
  enclave
    .command("inspect")
    .description("Checks an enclave (manifest + module) against the ABI (enclaves/ABI.md) and prints its identity.\nWithout MANIFEST, inspects the built-in SQLite enclave.")
    .argument("[manifest]", "path of a manifest.json")
    .option("--json", "print JSON")
    .action(async (file: string | undefined, opts: { json?: boolean }) => {
      await run(() => {
        const manifestPath = file ?? path.join(packageRoot(), "enclaves", "sqlite", "manifest.json");
        const { manifest, modulePath, module: m, mrenclave } = readEnclave(manifestPath, file === undefined);
        const info = {
          name: manifest.name,
          version: manifest.version,
          mrenclave: mrenclave.toString("hex"),
          moduleSha256: m.sha256.toString("hex"),
          moduleBytes: m.byteLength,
          epcBytes: manifest.epc,
          initialBytes: m.minPages * 65536,
          permissions: manifest.permissions,
          debug: manifest.debug,
          ocalls: m.ocalls,
          ecalls: [...m.exports].filter((n) => n.startsWith("sk_") || n === "_initialize").length,
        };
        if (opts.json) process.stdout.write(JSON.stringify(info, null, 2) + "\n");
        else {
          process.stdout.write(
            `name         ${info.name} (version ${info.version})\nmrenclave    ${info.mrenclave}\nmodule       ${modulePath} (${formatBytes(info.moduleBytes)}, sha256 ${info.moduleSha256})\n` +
              `epc          ${formatBytes(info.epcBytes)} cap, ${formatBytes(info.initialBytes)} at start\npermissions  ${info.permissions.join(", ") || "none"}\ndebug        ${info.debug}\nocalls       ${info.ocalls.join(" ")}\n`,
          );
        }
        return EXIT_OK;
      });
    });

  enclave
    .command("keygen")
    .description("Creates a developer signing key (Ed25519, PKCS#8 PEM, mode 0600) and prints its MRSIGNER.\nKeep it secret: whoever holds it can sign enclaves under your identity.")
    .requiredOption("--out <file>", "where to write the private key (refuses to overwrite)")
    .action(async (o: { out: string }) => {
      await run(() => {
        const k = generateSigningKey();
        try {
          fs.writeFileSync(o.out, k.pem, { mode: 0o600, flag: "wx" });
        } catch (e) {
          throw new UsageError("KEY_EXISTS", `cannot write ${o.out}: ${(e as Error).message}`);
        }
        process.stdout.write(`mrsigner   ${k.mrsigner.toString("hex")}\npublicKey  ${k.publicKey.toString("base64")}\n`);
        process.stderr.write(`wrote the signing key to ${o.out} (mode 0600)\n`);
        return EXIT_OK;
      });
    });
  enclave
    .command("sign")
    .description("Signs an enclave: checks MANIFEST and its module against the ABI, measures them, and writes the\nSIGSTRUCT (enclaves/ABI.md §6) over name, version, ISVPRODID and MRENCLAVE. Upload module, manifest and\nsignature together (POST /v1/enclaves on `selkie serve`).")
    .argument("<manifest>", "path of a manifest.json")
    .requiredOption("--key <file>", "the signing key (from `selkie enclave keygen`)")
    .option("--out <file>", "where to write the signature (default: NAME.sig.json next to the manifest)")
    .option("--isvprodid <n>", "the product number (ISVPRODID, 0..65535, default 0): data sealed under MRSIGNER policy is per product")
    .action(async (file: string, o: { key: string; out?: string; isvprodid?: string }) => {
      await run(() => {
        const { manifest, mrenclave } = readEnclave(file, false);
        let pem: Buffer;
        try {
          pem = fs.readFileSync(o.key);
        } catch (e) {
          throw new UsageError("KEY_UNREADABLE", `cannot read the key ${o.key}: ${(e as Error).message}`);
        }
        const key = loadSigningKey(pem);
        const isvProdId = o.isvprodid === undefined ? 0 : Number(o.isvprodid);
        if (!/^\d+$/.test(o.isvprodid ?? "0") || isvProdId > 0xffff) throw new UsageError("CLI_USAGE", "--isvprodid must be an integer 0..65535");
        const sig = signEnclave(manifest, mrenclave, key, { isvProdId });
        verifyEnclaveSignature(sig, manifest, mrenclave);
        const out = o.out ?? path.join(path.dirname(file), `${manifest.name}.sig.json`);
        fs.writeFileSync(out, JSON.stringify(sig, null, 2) + "\n");
        process.stdout.write(`name       ${manifest.name} (version ${manifest.version}, isvprodid ${isvProdId})\nmrenclave  ${sig.mrenclave}\nmrsigner   ${mrsignerOf(rawPublicKey(key)).toString("hex")}\n`);
        process.stderr.write(`wrote the signature to ${out}\n`);
        return EXIT_OK;
      });
    });
}
