/**
 * Quotes (FORMATS.md §6: report body, certificate chain, Ed25519 signature), UNTRUSTED bytes from any
 * peer. A real platform certified by a (non-development) CA quotes an enclave; the verifier trusts
 * that CA with the nonce and accepts any enclave, so every field of the body is checked by the
 * signature alone. Property: QuoteError, or a VerifiedQuote saying exactly what the authentic one says.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CertificateAuthority } from "../../../runtime/platform/ca.js";
import { QuoteError } from "../../../runtime/platform/errors.js";
import { Platform } from "../../../runtime/platform/platform.js";
import { reportDataFor } from "../../../runtime/platform/report.js";
import { verifyQuote, type VerifyQuoteOptions } from "../../../runtime/platform/verify.js";
import { identity } from "../../../test/platform/helpers.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

const NONCE = "3b9f0c1d2e4a5b6c7d8e9f00";
let opts: VerifyQuoteOptions;
let authentic = "";

export const target: Target = {
  name: "quote",
  about: "quotes and their certificate chains: QuoteError or exactly the authentic quote's claims",
  maxLength: 4096,
  async seeds() {
    const ca = CertificateAuthority.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-ca-")), { dev: false });
    const p = await Platform.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-platform-")), { ca });
    const q = p.servicesFor(identity()).quote(reportDataFor(NONCE));
    opts = { ca: ca.certificate, nonce: NONCE, anyEnclave: true, now: Date.now() };
    authentic = JSON.stringify(verifyQuote(q, opts));
    return [q];
  },
  run(data) {
    const v = refusedOr(() => verifyQuote(data, opts), [QuoteError]);
    if (v && JSON.stringify(v) !== authentic) throw new PropertyViolation(`a changed quote verified with other claims: ${JSON.stringify(v)}`);
  },
};
