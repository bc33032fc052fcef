/**
 * The session binding of a quote (CHANNEL.md §3): B = "selkie-migration/1" || N || E || R, whose
 * nonceDigest is the first half of the report data. N is the verifier's nonce, E the TLS exporter
 * value of this session, R the quoting side's role.
 */
import type { TLSSocket } from "node:tls";
import { reportDataFor } from "../../platform/report.js";
import type { Role } from "./peer-policy.js";

export const CHANNEL_PROTOCOL = "selkie-migration/1";
export const EXPORTER_LABEL = "EXPORTER-selkie-migration-v1";
export const NONCE_LEN = 32;
export const EXPORTER_LEN = 32;

export function exporterValue(socket: TLSSocket): Buffer {
  return socket.exportKeyingMaterial(EXPORTER_LEN, EXPORTER_LABEL, Buffer.from(CHANNEL_PROTOCOL, "latin1"));
}

export function bindingBytes(verifierNonce: Uint8Array, exporter: Uint8Array, quoterRole: Role): Buffer {
  return Buffer.concat([Buffer.from(CHANNEL_PROTOCOL, "latin1"), Buffer.from(verifierNonce), Buffer.from(exporter), Buffer.from(quoterRole, "latin1")]);
}

/** The report data a side quotes to answer the peer's nonce. */
export function bindingReportData(verifierNonce: Uint8Array, exporter: Uint8Array, quoterRole: Role): Buffer {
  return reportDataFor(bindingBytes(verifierNonce, exporter, quoterRole));
}
