/**
 * The attestation handshake on an established inner TLS 1.3 socket (CHANNEL.md §3): hello, quote,
 * accepted each way, then the channel is handed over with its verified peer.
 *
 * Invariant: a FramedChannel leaves this module with a peer set only after (1) the peer's quote
 * verified against the fleet CA and this session's binding, (2) its runtime version and enclave
 * passed the policy, and (3) the peer said it accepted this side. Any failure closes the socket.
 */
import { randomBytes } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { MigrationChannel, MigrationMessage, PeerInfo } from "../channel-api.js";
import type { Certificate } from "../../platform/cert.js";
import type { EnclaveIdentity } from "../../platform/identity.js";
import { RUNTIME_VERSION } from "../../platform/keys.js";
import { QuoteError } from "../../platform/errors.js";
import { verifyQuote, type VerifiedQuote } from "../../platform/verify.js";
import { bindingBytes, bindingReportData, exporterValue, NONCE_LEN } from "./binding.js";
import { DEFAULT_RECEIVE_TIMEOUT_MS, DEFAULT_SEND_TIMEOUT_MS, FramedChannel } from "./channel.js";
import { MigrationChannelError, type ChannelErrorCode } from "./errors.js";
import { DEFAULT_MAX_FRAME_BYTES } from "./frames.js";
import { defaultPeerPolicy, type PeerPolicy, type Role } from "./peer-policy.js";

export const CHANNEL_VERSION = 1;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** What quotes this side: the local enclave's services (identity and quote), as EINIT gave them. */
export interface ChannelQuoter {
  readonly identity: EnclaveIdentity;
  quote(reportData: Uint8Array): Buffer;
}

export interface ChannelOptions {
  /** The local enclave's services: its identity (for the policy) and its quotes. */
  services: ChannelQuoter;
  /** The fleet CA certificate (parsed, or its bytes) peers must chain to. */
  fleetCa: Certificate | Uint8Array;
  /** Accept peers certified by a development CA (default false: CHANNEL_DEV_CA). */
  allowDevCa?: boolean;
  /** Which peer enclaves to accept (default: defaultPeerPolicy). */
  policy?: PeerPolicy;
  /** Minimum peer runtime version (quote CPUSVN). Default: the local one on the source, 1 on the destination. */
  minRuntimeVersion?: number;
  handshakeTimeoutMs?: number;
  /** Default deadline of receive() (30 s). */
  receiveTimeoutMs?: number;
  /** How long send() may wait for a peer that does not read (30 s). */
  sendTimeoutMs?: number;
  maxFrameBytes?: number;
}

export interface ResolvedOptions extends Required<Omit<ChannelOptions, "minRuntimeVersion">> {
  minRuntimeVersion: number | undefined;
}

export function resolveOptions(o: ChannelOptions): ResolvedOptions {
  const bad = (m: string): never => {
    throw new MigrationChannelError("CHANNEL_BAD_OPTIONS", m);
  };
  if (o === null || typeof o !== "object") bad("channel options are required");
  if (o.services === undefined || typeof o.services.quote !== "function" || o.services.identity === undefined) bad("services (the local enclave's services: identity and quote) are required");
  if (o.fleetCa === undefined) bad("fleetCa is required: the CA certificate that certified the peers' platforms (selkie serve --fleet-ca FILE)");
  const pos = (v: number | undefined, d: number, what: string): number => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x <= 0) bad(`${what} must be a positive number`);
    return x;
  };
  return {
    services: o.services,
    fleetCa: o.fleetCa,
    allowDevCa: o.allowDevCa === true,
    policy: o.policy ?? defaultPeerPolicy,
    minRuntimeVersion: o.minRuntimeVersion,
    handshakeTimeoutMs: pos(o.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, "handshakeTimeoutMs"),
    receiveTimeoutMs: pos(o.receiveTimeoutMs, DEFAULT_RECEIVE_TIMEOUT_MS, "receiveTimeoutMs"),
    sendTimeoutMs: pos(o.sendTimeoutMs, DEFAULT_SEND_TIMEOUT_MS, "sendTimeoutMs"),
    maxFrameBytes: pos(o.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, "maxFrameBytes"),
  };
}

const QUOTE_CODE_MAP: Record<string, ChannelErrorCode> = {
  QUOTE_UNTRUSTED_CA: "CHANNEL_WRONG_CA",
  QUOTE_DEV_CA: "CHANNEL_DEV_CA",
  QUOTE_NONCE_MISMATCH: "CHANNEL_QUOTE_REPLAY",
  QUOTE_DEBUG_ENCLAVE: "CHANNEL_POLICY",
  QUOTE_CPUSVN_TOO_LOW: "CHANNEL_RUNTIME_VERSION",
};

export function channelCodeForQuote(e: QuoteError): ChannelErrorCode {
  return QUOTE_CODE_MAP[e.code] ?? "CHANNEL_QUOTE_INVALID";
}

const other = (r: Role): Role => (r === "source" ? "destination" : "source");

function expectType(m: MigrationMessage, type: string): void {
  if (m.type !== type) throw new MigrationChannelError("CHANNEL_FRAME_MALFORMED", `the peer sent a ${JSON.stringify(m.type).slice(0, 64)} message where the handshake expects ${type}`);
}

function bytesField(m: MigrationMessage, field: string, len?: number): Buffer {
  const v = m[field];
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) {
    throw new MigrationChannelError("CHANNEL_FRAME_MALFORMED", `the peer's ${m.type} message has no valid ${field} (${len ?? "some"} bytes expected)`);
  }
  return Buffer.from(v);
}

/** Verifies the peer's quote for this session; returns it, or throws the channel code of the first failed check. */
export function verifyPeerQuote(quote: Uint8Array, binding: Buffer, role: Role, o: ResolvedOptions): VerifiedQuote {
  let v: VerifiedQuote;
  const local = o.services.identity;
  try {
    v = verifyQuote(quote, { ca: o.fleetCa, nonce: binding, anyEnclave: true, allowDev: o.allowDevCa, allowDebug: local.debug });
  } catch (e) {
    if (e instanceof QuoteError) {
      const code = channelCodeForQuote(e);
      const hint = code === "CHANNEL_DEV_CA" ? " (start selkie serve with --allow-dev-ca, or allowDevCa: true, to accept development platforms)" : code === "CHANNEL_WRONG_CA" ? " (both peers must be certified by the CA given as --fleet-ca)" : "";
      throw new MigrationChannelError(code, `the peer's quote was refused: ${e.message}${hint}`, { cause: e });
    }
    throw e;
  }
  const minRt = o.minRuntimeVersion ?? (role === "source" ? RUNTIME_VERSION : 1);
  if (v.cpuSvn < minRt) throw new MigrationChannelError("CHANNEL_RUNTIME_VERSION", `the peer's runtime version is ${v.cpuSvn}, below the required ${minRt}: upgrade the peer's Selkie`);
  const why = o.policy.check(local, v.identity, role);
  if (why !== null) throw new MigrationChannelError("CHANNEL_POLICY", `the peer's enclave is not acceptable: ${why}`);
  return v;
}

/** Runs the handshake on `socket` (inner TLS established) as `role`; resolves to the attested channel. */
export async function attest(socket: TLSSocket, role: Role, o: ResolvedOptions, deadline: number): Promise<MigrationChannel> {
  const ch = new FramedChannel(socket, { maxFrameBytes: o.maxFrameBytes, receiveTimeoutMs: o.receiveTimeoutMs, sendTimeoutMs: o.sendTimeoutMs });
  const left = (): number => Math.max(1, deadline - Date.now());
  const recv = async (): Promise<MigrationMessage> => {
    try {
      return await ch.receive(left());
    } catch (e) {
      if (e instanceof MigrationChannelError && e.code === "CHANNEL_TIMEOUT") {
        throw new MigrationChannelError("CHANNEL_TIMEOUT", `the attestation handshake did not finish within ${o.handshakeTimeoutMs} ms (the peer stopped answering)`);
      }
      throw e;
    }
  };
  try {
    const nonce = randomBytes(NONCE_LEN);
    const exporter = exporterValue(socket);
    await ch.send({ type: "hello", version: CHANNEL_VERSION, role, nonce });
    const hello = await recv();
    expectType(hello, "hello");
    if (hello.version !== CHANNEL_VERSION) {
      throw ch.refuse("CHANNEL_VERSION", `the peer speaks migration channel version ${String(hello.version).slice(0, 16)}; this side speaks ${CHANNEL_VERSION}`);
    }
    if (hello.role !== other(role)) {
      throw ch.refuse("CHANNEL_ROLE", `the peer claims role ${String(hello.role).slice(0, 16)}, but this side is the ${role}: one side must be the source, the other the destination`);
    }
    const peerNonce = bytesField(hello, "nonce", NONCE_LEN);
    await ch.send({ type: "quote", quote: o.services.quote(bindingReportData(peerNonce, exporter, role)) });
    const q = await recv();
    expectType(q, "quote");
    let verified: VerifiedQuote;
    try {
      verified = verifyPeerQuote(bytesField(q, "quote"), bindingBytes(nonce, exporter, other(role)), role, o);
    } catch (e) {
      if (e instanceof MigrationChannelError) throw ch.refuse(e.code, e.message);
      throw e;
    }
    await ch.send({ type: "accepted" });
    expectType(await recv(), "accepted");
    const id = verified.identity;
    const peer: PeerInfo = {
      role: other(role),
      platformId: verified.platformId,
      mrenclave: id.mrenclave.toString("hex"),
      mrsigner: id.mrsigner.toString("hex"),
      isvProdId: id.isvProdId,
      isvSvn: id.isvSvn,
      runtimeVersion: String(verified.cpuSvn),
    };
    ch.setPeer(peer);
    return ch;
  } catch (e) {
    const err = e instanceof MigrationChannelError ? e : new MigrationChannelError("CHANNEL_CLOSED", `the handshake failed: ${(e as Error).message}`, { cause: e });
    if (!ch.closed) ch.refuse(err.code, err.message);
    throw err;
  }
}
