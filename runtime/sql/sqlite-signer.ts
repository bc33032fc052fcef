/**
 * The SQLite enclave's signer (enclaves/ABI.md §6.1, README "Sealing policy").
 *
 * Selkie builds its SQLite enclave locally (sqlite-wasm/, never committed), so no project-wide
 * signature can ship with it. Each platform therefore has its own developer key for it,
 * `<platform>/sqlite-signer.key` (Ed25519, PKCS#8 PEM, mode 0600), created at first use. The runtime
 * signs the SQLite module it ships with that key (ISVPRODID 1, ISVSVN = the manifest's version),
 * and the loader verifies the signature like any other (einit.ts). Databases and their counters are
 * sealed under MRSIGNER + ISVPRODID with ISVSVN rules, so:
 *   - another --epc, a rebuilt module or an upgraded Selkie (same key, ISVSVN >= the sealer's) opens them;
 *   - another signer (another key file) is refused (STORAGE_WRONG_SIGNER), a lower ISVSVN too
 *     (STORAGE_ENCLAVE_TOO_OLD).
 * Trade-off: the key signs whatever SQLite module this installation ships (the package's code is
 * trusted, as the runtime itself is); it keeps every other enclave, signed or not, away from the
 * databases' keys. Whoever can read the key file can sign modules as the SQLite enclave of this
 * platform: it is protected like the platform's own files. Peers that must share MRSIGNER (migration
 * between builds) copy the same key file into each platform.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { KeyObject } from "node:crypto";
import { fsyncDir } from "../platform/files.js";
import { SQLITE_SIGNER_FILE } from "../platform/platform.js";
import { generateSigningKey, loadSigningKey, rawPublicKey, mrsignerOf, signEnclave, type Sigstruct } from "../enclave/sigstruct.js";
import { measureEnclave } from "../enclave/measure.js";
import type { SqliteEnclaveImage } from "./sqlite-module.js";

/** ISVPRODID of Selkie's SQLite enclave (signed into its SIGSTRUCT). */
export const SQLITE_ISVPRODID = 1;

const keys = new Map<string, KeyObject>();
const sigs = new Map<string, Sigstruct>();

/** The platform's SQLite signing key, created (0600, no-clobber, durable) when missing. */
export function sqliteSignerKey(platformDir: string): KeyObject {
  const file = path.join(path.resolve(platformDir), SQLITE_SIGNER_FILE);
  let pem: string;
  try {
    pem = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
    const fd = fs.openSync(tmp, "wx", 0o600);
    try {
      fs.writeSync(fd, generateSigningKey().pem);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file); // fails if another process created it first: then theirs wins
    } catch (le) {
      if ((le as NodeJS.ErrnoException).code !== "EEXIST") throw le;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    fsyncDir(path.dirname(file));
    pem = fs.readFileSync(file, "utf8");
  }
  const cached = keys.get(file);
  const key = loadSigningKey(pem);
  if (cached && rawPublicKey(cached).equals(rawPublicKey(key))) return cached;
  keys.set(file, key);
  return key;
}

/** MRSIGNER of the platform's SQLite signer (creating its key when missing). */
export function sqliteMrsigner(platformDir: string): Buffer {
  return mrsignerOf(rawPublicKey(sqliteSignerKey(platformDir)));
}

/** The SIGSTRUCT of `image` under the platform's SQLite key (cached per key and measurement). */
export function sqliteSignature(platformDir: string, image: SqliteEnclaveImage): Sigstruct {
  const key = sqliteSignerKey(platformDir);
  const mrenclave = measureEnclave(image.module.sha256, image.manifest);
  const id = `${rawPublicKey(key).toString("hex")}|${mrenclave.toString("hex")}|${image.manifest.name}|${image.manifest.version}`;
  let s = sigs.get(id);
  if (s === undefined) {
    s = signEnclave(image.manifest, mrenclave, key, { isvProdId: SQLITE_ISVPRODID });
    sigs.set(id, s);
  }
  return s;
}
