/**
 * Selkie's version (from package.json) and the line `selkie -V` prints. SQLite's version belongs to
 * the enclave build and is shown where an enclave is loaded (the shell banner, `.enclave`).
 */
import { createRequire } from "node:module";

export const SELKIE_VERSION: string = (createRequire(import.meta.url)("../../../../package.json") as { version: string }).version;

export function versionLine(): string {
  return `selkie ${SELKIE_VERSION} (enclave ABI 1, Node ${process.versions.node})`;
}
