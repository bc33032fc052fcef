/** Forwarding of databases that moved (FORWARDING.md, version 1). */
export { ForwardingTable, ForwardingError, recordForwarding, normalizePeerUrl, FORWARDING_FILE, FORWARDING_FORMAT } from "./table.js";
export type { ForwardingEntry, ForwardingErrorCode } from "./table.js";
