/**
 * Certificates (FORMATS.md: 152 bytes, Ed25519-signed), UNTRUSTED bytes. parseCertificate must
 * answer a result, never throw; a certificate that parses and whose signature verifies under the CA's
 * key must be one the CA signed (here: the authentic CA and platform certificates).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CertificateAuthority } from "../../../runtime/platform/ca.js";
import { parseCertificate, verifyCertificateSignature } from "../../../runtime/platform/cert.js";
import { Platform } from "../../../runtime/platform/platform.js";
import { PropertyViolation, refusedOr, type Target } from "../target.js";

let caKey: Buffer;
let authentic: Buffer[] = [];

export const target: Target = {
  name: "certificate",
  about: "certificates: parse answers a result (never throws); a valid signature means an authentic certificate",
  maxLength: 512,
  async seeds() {
    const ca = CertificateAuthority.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-ca-")), { dev: false });
    const p = await Platform.create(fs.mkdtempSync(path.join(os.tmpdir(), "selkie-fuzz-platform-")), { ca });
    caKey = ca.publicKey;
    authentic = [ca.certificate.bytes, p.certificate.bytes];
    return authentic;
  },
  run(data) {
    const r = refusedOr(() => parseCertificate(data), []);
    if (!r) return;
    if (r.ok !== true && r.ok !== false) throw new PropertyViolation("parseCertificate answered neither ok nor not ok");
    if (!r.ok) return;
    if (r.cert.bytes.length !== 152) throw new PropertyViolation(`a certificate of ${r.cert.bytes.length} bytes parsed`);
    const valid = refusedOr(() => verifyCertificateSignature(r.cert, caKey), []);
    if (valid && !authentic.some((a) => a.equals(r.cert.bytes))) throw new PropertyViolation("a changed certificate verified under the CA's key");
  },
};
