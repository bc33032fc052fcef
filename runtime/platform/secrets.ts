/**
 * The platform's root secrets ("emulated fuses"), `secrets.bin` (FORMATS.md §1.2).
 *
 * Invariants: read only from a file that is not accessible by group or others; written once, with
 * mode 0600, atomically. The decoded secrets are handed only to the Platform's #private fields.
 */
import * as fs from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { PlatformError } from "./errors.js";
import { generateEd25519 } from "./ed25519.js";
import { isGroupOrWorldAccessible, SECRET_MODE, writeFileAtomic } from "./files.js";

const MAGIC = Buffer.from("SKPS", "latin1");
const VERSION = 1;
const BODY = 148;
const LEN = BODY + 32;

export interface RootSecrets {
  readonly platformId: Buffer; // 16
  readonly sealRoot: Buffer; // 32
  readonly reportRoot: Buffer; // 32
  readonly attestationSeed: Buffer; // 32
}

export function generateSecrets(): { secrets: RootSecrets; attestationPublicKey: Buffer } {
  const kp = generateEd25519();
  return {
    secrets: { platformId: randomBytes(16), sealRoot: randomBytes(32), reportRoot: randomBytes(32), attestationSeed: kp.seed },
    attestationPublicKey: kp.publicKey,
  };
}

export function writeSecrets(file: string, s: RootSecrets): void {
  const b = Buffer.alloc(LEN);
  MAGIC.copy(b, 0);
  b[4] = VERSION;
  s.platformId.copy(b, 8);
  s.sealRoot.copy(b, 24);
  s.reportRoot.copy(b, 56);
  s.attestationSeed.copy(b, 88);
  createHash("sha256").update(b.subarray(0, BODY)).digest().copy(b, BODY);
  try {
    writeFileAtomic(file, b, SECRET_MODE);
  } finally {
    b.fill(0);
  }
}

export function readSecrets(file: string): RootSecrets {
  if (isGroupOrWorldAccessible(file)) {
    throw new PlatformError("PLATFORM_FILE_PERMISSIONS", `${file} is accessible by group or others; run \`chmod 600 ${file}\` (and check who could have read it)`);
  }
  const b = fs.readFileSync(file);
  try {
    if (b.length < 5 || !b.subarray(0, 4).equals(MAGIC)) throw new PlatformError("PLATFORM_CORRUPT", `${file} is not a Selkie platform secrets file`);
    if (b[4] !== VERSION) throw new PlatformError("PLATFORM_VERSION_UNSUPPORTED", `${file} has format version ${b[4]}; this runtime reads ${VERSION}`);
    if (b.length !== LEN || !createHash("sha256").update(b.subarray(0, BODY)).digest().equals(b.subarray(BODY))) {
      throw new PlatformError("PLATFORM_CORRUPT", `${file} is damaged (checksum mismatch)`);
    }
    return {
      platformId: Buffer.from(b.subarray(8, 24)),
      sealRoot: Buffer.from(b.subarray(24, 56)),
      reportRoot: Buffer.from(b.subarray(56, 88)),
      attestationSeed: Buffer.from(b.subarray(88, 120)),
    };
  } finally {
    b.fill(0);
  }
}
