/**
 * UNTRUSTED (UI). Platform commands: `selkie init`, `selkie ca init|issue|install`, `selkie quote`,
 * `selkie verify-quote`. They hold no key: they call the platform layer, which keeps secrets private.
 *
 * Exit codes: 0 success; verify-quote failures use QUOTE_EXIT_CODES (10-24, one per failed check,
 * fixed in runtime/platform/errors.ts); other errors go through the shared runner (main.ts), or the
 * fallback here (1) when none is given.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import {
  CertificateAuthority,
  DEFAULT_CA_DAYS,
  DEFAULT_PLATFORM_CERT_DAYS,
  DEV_CA_DIR,
  Platform,
  QUOTE_EXIT_CODES,
  QUOTING_IDENTITY,
  QuoteError,
  defaultPlatformDir,
  describeCertificate,
  formatBytes,
  fromHex,
  identityToJSON,
  parseSize,
  checkEpcBudget,
  readCaCertificate,
  readPlatformInfo,
  reportDataFor,
  verifyQuote,
} from "../../platform/index.js";
import { SelkieError, UsageError } from "../../errors.js";

type Runner = (fn: () => Promise<number> | number) => Promise<void>;

const fallbackRun: Runner = async (fn) => {
  try {
    process.exitCode = await fn();
  } catch (e) {
    if (e instanceof SelkieError) process.stderr.write(`Error [${e.code}]: ${e.message}\n`);
    else process.stderr.write(`Internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  }
};

const out = (s: string): void => {
  process.stdout.write(s.endsWith("\n") ? s : `${s}\n`);
};

function intOption(min: number, max: number): (v: string) => number {
  return (v: string) => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    return n;
  };
}

function hex32(v: string): string {
  try {
    return fromHex(v, 32, "value").toString("hex");
  } catch {
    throw new InvalidArgumentError("expected 64 hex digits");
  }
}

function sizeOption(v: string): number {
  try {
    return parseSize(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** An EPC budget: a size within the platform's range, checked while parsing (a usage error, exit 2). */
function epcBudgetOption(v: string): number {
  try {
    return checkEpcBudget(parseSize(v));
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

const DIR_HELP = "platform directory (default: $SELKIE_HOME, else ~/.selkie)";

function platformDir(dir: string | undefined): string {
  return path.resolve(dir ?? defaultPlatformDir());
}

/** Reads a quote file: raw bytes (starting with SKQT) or base64 text (what `selkie quote` prints). */
function readQuoteFile(file: string): Buffer {
  const raw = file === "-" ? fs.readFileSync(0) : fs.readFileSync(file);
  if (raw.subarray(0, 4).toString("latin1") === "SKQT") return raw;
  const text = raw.toString("latin1").replace(/\s+/g, "");
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return Buffer.from(text, "base64");
  return raw; // let the verifier name it malformed
}

export function registerPlatformCommands(program: Command, run: Runner = fallbackRun): void {
  program
    .command("init")
    .summary("create an emulated SGX platform (root secrets, attestation key, certificate)")
    .description(
      "Creates a platform: its root secrets (the emulated fuses), a random platform id, an Ed25519 attestation " +
        "key and a certificate for that key issued by a provisioning CA. Files are created 0600 in a 0700 directory.\n\n" +
        "Without --ca, a development CA is created in DIR/dev-ca: quotes it certifies are marked dev and verifiers " +
        "refuse them unless given --allow-dev. Refuses to overwrite an existing platform.",
    )
    .option("--dir <dir>", DIR_HELP)
    .option("--epc <size>", "EPC budget: bytes or a size like 93.5MiB, 256MiB, 8GiB (1 MiB..512 GiB)", epcBudgetOption)
    .option("--ca <cadir>", "certify the platform with this fleet CA (made by `selkie ca init`) instead of a development CA")
    .option("--cert-days <n>", `validity of the platform certificate in days (default ${DEFAULT_PLATFORM_CERT_DAYS})`, intOption(1, 36500))
    .option("--force", "replace an existing platform: DESTROYS its root secrets, so everything sealed on it becomes unreadable")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  selkie init                              # ~/.selkie, 93.5 MiB EPC, development CA\n" +
        "  selkie init --dir /srv/selkie --epc 8GiB --ca /secure/fleet-ca\n",
    )
    .action(async (opts: { dir?: string; epc?: number; ca?: string; certDays?: number; force?: boolean; json?: boolean }) => {
      await run(async () => {
        const dir = platformDir(opts.dir);
        const p = await Platform.create(dir, {
          ...(opts.epc !== undefined ? { epc: opts.epc } : {}),
          ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
          ...(opts.certDays !== undefined ? { certDays: opts.certDays } : {}),
          force: opts.force === true,
        });
        try {
          const caCert = p.dev ? path.join(dir, DEV_CA_DIR, "ca.cert") : path.join(path.resolve(opts.ca ?? ""), "ca.cert");
          if (opts.json) {
            out(JSON.stringify({ ...p.toJSON(), caCertificate: caCert }, null, 2));
          } else {
            out(
              `created platform ${p.platformId} in ${dir}\n` +
                `  EPC budget       ${formatBytes(p.epcBytes)} (${p.epcBytes} bytes)\n` +
                `  attestation key  ${p.attestationPublicKey.toString("hex")}\n` +
                `  certificate      issued by ${p.dev ? "a DEVELOPMENT CA" : "CA"} ${p.caId}, valid until ${new Date(p.certificate.notAfter).toISOString()}\n` +
                `  CA certificate   ${caCert}  (give this file to verifiers${p.dev ? "; they need --allow-dev" : ""})`,
            );
          }
        } finally {
          p.close();
        }
        return 0;
      });
    });

  const ca = program
    .command("ca")
    .summary("manage a provisioning CA for a fleet of platforms")
    .description(
      "A provisioning CA stands in for Intel's: it certifies platforms' attestation keys, and verifiers trust its " +
        "certificate (CADIR/ca.cert). Keep CADIR/ca.key offline and private.\n\n" +
        "Flows:\n" +
        "  same host:   selkie ca init --dir CA; selkie init --ca CA\n" +
        "  re-certify:  selkie ca issue --ca CA --platform PLATFORMDIR\n" +
        "  remote:      copy the edge host's platform.json to the CA host, then\n" +
        "                 selkie ca issue --ca CA --request platform.json --out p.cert\n" +
        "               copy p.cert back to the edge host, then\n" +
        "                 selkie ca install p.cert [--dir PLATFORMDIR]",
    );

  ca.command("init")
    .summary("create a CA (key + self-signed certificate)")
    .description("Creates a CA: an Ed25519 key (ca.key, 0600) and its self-signed certificate (ca.cert, 0644) in DIR (0700). Refuses to overwrite an existing CA.")
    .requiredOption("--dir <cadir>", "directory for the CA (created if missing)")
    .option("--days <n>", `validity of the CA certificate in days (default ${DEFAULT_CA_DAYS})`, intOption(1, 36500))
    .option("--dev", "make a development CA: everything it certifies is marked dev (verifiers refuse without --allow-dev)")
    .action(async (opts: { dir: string; days?: number; dev?: boolean }) => {
      await run(() => {
        const c = CertificateAuthority.create(opts.dir, { dev: opts.dev === true, ...(opts.days !== undefined ? { days: opts.days } : {}) });
        out(
          `created ${c.dev ? "development " : ""}CA ${c.caId.toString("hex")} in ${c.dir}\n` +
            `  public key       ${c.publicKey.toString("hex")}\n` +
            `  CA certificate   ${path.join(c.dir, "ca.cert")} (give it to verifiers), valid until ${new Date(c.certificate.notAfter).toISOString()}`,
        );
        return 0;
      });
    });

  ca.command("issue")
    .summary("certify a platform's attestation key")
    .description(
      "Issues a platform certificate for a platform's attestation key.\n\n" +
        "With --platform DIR, certifies the platform in DIR and installs the certificate there (replacing its current one). " +
        "With --request FILE (a platform's platform.json) and --out FILE, writes the certificate for `selkie ca install`.",
    )
    .requiredOption("--ca <cadir>", "the CA directory (from `selkie ca init`)")
    .option("--platform <dir>", "platform directory to certify in place")
    .option("--request <file>", "platform.json of a remote platform")
    .option("--out <file>", "where to write the certificate (with --request)")
    .option("--days <n>", `validity in days (default ${DEFAULT_PLATFORM_CERT_DAYS})`, intOption(1, 36500))
    .action(async (opts: { ca: string; platform?: string; request?: string; out?: string; days?: number }) => {
      await run(() => {
        if ((opts.platform === undefined) === (opts.request === undefined)) {
          throw new UsageError("CLI_USAGE", "give exactly one of --platform DIR or --request FILE");
        }
        if (opts.request !== undefined && opts.out === undefined) throw new UsageError("CLI_USAGE", "--request needs --out FILE");
        const authority = CertificateAuthority.open(opts.ca);
        let info;
        if (opts.platform !== undefined) info = readPlatformInfo(opts.platform);
        else {
          const tmp = fs.mkdtempSync(path.join(path.dirname(path.resolve(opts.out ?? ".")), ".selkie-req-"));
          try {
            fs.copyFileSync(path.resolve(opts.request ?? ""), path.join(tmp, "platform.json"));
            info = readPlatformInfo(tmp);
          } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
          }
        }
        const cert = authority.issuePlatformCertificate({
          platformId: Buffer.from(info.platformId, "hex"),
          publicKey: Buffer.from(info.attestationPublicKey, "hex"),
          ...(opts.days !== undefined ? { days: opts.days } : {}),
        });
        if (opts.platform !== undefined) {
          Platform.installCertificate(opts.platform, cert.bytes, { caId: authority.caId, dev: authority.dev });
          out(`certified platform ${info.platformId} in ${path.resolve(opts.platform)} with CA ${authority.caId.toString("hex")}, valid until ${new Date(cert.notAfter).toISOString()}`);
        } else {
          fs.writeFileSync(path.resolve(opts.out ?? ""), cert.bytes, { mode: 0o644 });
          out(`wrote certificate for platform ${info.platformId} to ${path.resolve(opts.out ?? "")}; install it with \`selkie ca install FILE\` on that platform`);
        }
        return 0;
      });
    });

  ca.command("install")
    .summary("install an issued certificate into a platform")
    .description("Installs a platform certificate (from `selkie ca issue --request`) into a platform, after checking it certifies that platform's id and attestation key.")
    .argument("<certfile>", "the certificate file")
    .option("--dir <dir>", DIR_HELP)
    .action(async (file: string, opts: { dir?: string }) => {
      await run(() => {
        const dir = platformDir(opts.dir);
        const cert = Platform.installCertificate(dir, fs.readFileSync(file));
        out(`installed certificate from CA ${cert.issuerId.toString("hex")}${cert.dev ? " (development CA)" : ""} into ${dir}, valid until ${new Date(cert.notAfter).toISOString()}`);
        return 0;
      });
    });

  program
    .command("quote")
    .summary("produce a quote of the platform's quoting identity for a verifier's nonce")
    .description(
      "Produces a quote (report + platform certificate, signed by the attestation key) bound to NONCE.\n\n" +
        "The CLI runs no enclave, so it attests the platform's own quoting identity (below): the quote proves which " +
        "platform (certificate chain, runtime version) made it, nothing about any enclave. A quote of an enclave is " +
        "requested by that enclave, through the loader that measured it (POST /v1/platform/quote of selkie serve " +
        "quotes the SQLite enclave it serves databases with). No measurement is ever taken from the command line.\n\n" +
        "Verify it with `selkie verify-quote --any-enclave` (only the platform is attested) or --mrenclave of the " +
        "quoting identity.\n\n" +
        "Report data = SHA-256(tag || NONCE) || the X25519 public key given with --pubkey (or zeros); see " +
        "runtime/platform/FORMATS.md §6.1.",
    )
    .requiredOption("--nonce <hex>", "the verifier's nonce, in hex (8..1024 bytes; use 32 random hex digits)")
    .option("--dir <dir>", DIR_HELP)
    .option("--out <file>", "write the binary quote to FILE (default: print it as base64)")
    .option("--pubkey <hex>", "an X25519 public key (64 hex digits) to bind into the report data", hex32)
    .addHelpText(
      "after",
      `\nQuoting identity:\n  mrenclave ${QUOTING_IDENTITY.mrenclave.toString("hex")}\n  mrsigner  ${QUOTING_IDENTITY.mrsigner.toString("hex")}\n` +
        "\nExample:\n  selkie quote --nonce 5f0c8a3e9d1b47c2a6e0f4b8d2c61a97 --out q.bin\n" +
        "  selkie verify-quote q.bin --ca ~/.selkie/dev-ca/ca.cert --nonce 5f0c8a3e9d1b47c2a6e0f4b8d2c61a97 --allow-dev --any-enclave\n",
    )
    .action(async (opts: { nonce: string; dir?: string; out?: string; pubkey?: string }) => {
      await run(async () => {
        let reportData: Buffer;
        try {
          reportData = reportDataFor(opts.nonce, opts.pubkey !== undefined ? Buffer.from(opts.pubkey, "hex") : undefined);
        } catch (e) {
          throw new UsageError("CLI_USAGE", (e as Error).message);
        }
        const p = await Platform.open(platformDir(opts.dir));
        try {
          const q = p.quoteSelf(reportData);
          if (opts.out !== undefined) {
            fs.writeFileSync(path.resolve(opts.out), q, { mode: 0o644 });
            process.stderr.write(`wrote quote (${q.length} bytes) of platform ${p.platformId}${p.dev ? " [dev CA]" : ""} to ${path.resolve(opts.out)}\n`);
          } else {
            out(q.toString("base64"));
          }
        } finally {
          p.close();
        }
        return 0;
      });
    });

  const exitTable = Object.entries(QUOTE_EXIT_CODES)
    .filter(([code]) => code !== "QUOTE_BAD_OPTIONS" && code !== "QUOTE_NO_POLICY")
    .sort((a, b) => a[1] - b[1])
    .map(([code, n]) => `  ${String(n).padStart(2)}  ${code}`)
    .join("\n");
  program
    .command("verify-quote")
    .summary("verify a quote: CA chain, signatures, validity, nonce, measurement, version, debug")
    .description(
      "Verifies a quote file (binary, or the base64 `selkie quote` prints; - reads stdin) against a trusted CA " +
        "certificate and the nonce you sent.\n\n" +
        "Checks, in order: format, CA chain, certificate signatures and validity, quote signature, development CA, " +
        "nonce, MRENCLAVE/MRSIGNER/ISVPRODID, ISVSVN and runtime version minimums, debug flag. Prints the first " +
        "check that failed and exits with its code.\n\n" +
        "You must say which enclave you trust: --mrenclave HEX (that exact measurement), or --mrsigner HEX " +
        "--isvprodid N [--min-isvsvn N] (any version of that signer's product, SGX's MRSIGNER policy), or " +
        "--any-enclave (check only the platform). Without one of them it exits 2 (QUOTE_NO_POLICY).\n\n" +
        "The nonce is hex, as `selkie quote --nonce` and POST /v1/platform/quote {\"nonce\": \"<hex>\"} take it.",
    )
    .argument("<file>", "the quote")
    .requiredOption("--ca <cafile>", "the trusted CA certificate (ca.cert of `selkie ca init`, or DIR/dev-ca/ca.cert)")
    .requiredOption("--nonce <hex>", "the nonce given to the quoting side, in hex")
    .option("--mrenclave <hex>", "required MRENCLAVE (64 hex digits)", hex32)
    .option("--mrsigner <hex>", "required MRSIGNER (64 hex digits)", hex32)
    .option("--isvprodid <n>", "required ISVPRODID (needed with --mrsigner)", intOption(0, 65535))
    .option("--any-enclave", "accept any enclave measurement and signer: only the platform is attested")
    .option("--min-isvsvn <n>", "minimum ISVSVN (enclave version)", intOption(0, 65535))
    .option("--min-cpusvn <n>", "minimum runtime version (CPUSVN) of the platform", intOption(0, 65535))
    .option("--allow-debug", "accept a debug enclave")
    .option("--allow-dev", "accept a quote certified by a development CA")
    .option("--json", "print the result as JSON")
    .addHelpText("after", `\nExit codes:\n   0  verified\n   1  other error (unreadable file, bad CA certificate)\n   2  wrong usage, or no enclave policy (QUOTE_NO_POLICY)\n${exitTable}\n`)
    .action(
      async (
        file: string,
        opts: { ca: string; nonce: string; mrenclave?: string; mrsigner?: string; isvprodid?: number; minIsvsvn?: number; minCpusvn?: number; anyEnclave?: boolean; allowDebug?: boolean; allowDev?: boolean; json?: boolean },
      ) => {
        await run(() => {
          const caCert = readCaCertificate(opts.ca);
          let quote: Buffer;
          try {
            quote = readQuoteFile(file);
          } catch (e) {
            throw new UsageError("CLI_USAGE", `cannot read quote ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
          }
          try {
            const v = verifyQuote(quote, {
              ca: caCert,
              nonce: opts.nonce,
              ...(opts.mrenclave !== undefined ? { mrenclave: opts.mrenclave } : {}),
              ...(opts.mrsigner !== undefined ? { mrsigner: opts.mrsigner } : {}),
              ...(opts.isvprodid !== undefined ? { isvProdId: opts.isvprodid } : {}),
              ...(opts.minIsvsvn !== undefined ? { minIsvSvn: opts.minIsvsvn } : {}),
              ...(opts.minCpusvn !== undefined ? { minCpuSvn: opts.minCpusvn } : {}),
              anyEnclave: opts.anyEnclave === true,
              allowDebug: opts.allowDebug === true,
              allowDev: opts.allowDev === true,
            });
            if (opts.json) out(JSON.stringify({ ok: true, ...v.toJSON() }, null, 2));
            else {
              const id = identityToJSON(v.identity);
              const unchecked = opts.mrenclave === undefined && opts.mrsigner === undefined ? "\n  note       --any-enclave: only the platform was attested, not the enclave" : "";
              out(
                `quote verified\n  mrenclave  ${id.mrenclave}\n  mrsigner   ${id.mrsigner}\n  isvprodid  ${id.isvProdId}   isvsvn ${id.isvSvn}   cpusvn ${v.cpuSvn}   debug ${id.debug}\n` +
                  `  platform   ${v.platformId}\n  ca         ${v.caId}${v.dev ? " (DEVELOPMENT CA)" : ""}\n` +
                  `  cert       ${JSON.stringify(describeCertificate(v.certificates[0] ?? caCert))}` +
                  (v.peerPublicKey !== null ? `\n  x25519     ${v.peerPublicKey.toString("hex")}` : "") +
                  unchecked,
              );
            }
            return 0;
          } catch (e) {
            if (!(e instanceof QuoteError)) throw e;
            if (opts.json) out(JSON.stringify({ ok: false, code: e.code, message: e.message }, null, 2));
            process.stderr.write(`verify-quote: FAILED ${e.code}: ${e.message}\n`);
            return QUOTE_EXIT_CODES[e.code];
          }
        });
      },
    );
}
