/**
 * `selkie enclave inspect`: check an enclave module against the ABI and print its measurement.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { EnclaveLoadError } from "../../errors.js";
import { checkModule, checkManifestFits, measure } from "../../enclave/loader.js";
import { formatBytes, parseManifest } from "../../enclave/manifest.js";
import { packageRoot } from "../../sql/sqlite-module.js";
import { EXIT_OK } from "./exit-codes.js";

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
          throw new EnclaveLoadError("ENCLAVE_MODULE_MISSING", `module ${modulePath} is missing${file ? "" : "; build it with: npm run build:wasm"}`);
        }
        const m = checkModule(bytes);
        checkManifestFits(m, manifest);
        const info = {
          name: manifest.name,
          version: manifest.version,
          mrenclave: measure(m, manifest).toString("hex"),
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
}
