/**
 * The inner TLS 1.3 connection over an upgraded stream (CHANNEL.md §2): both sides with a fresh
 * self-signed session certificate, no resumption, nothing trusted from the certificates.
 */
import { constants } from "node:crypto";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { MigrationChannelError } from "./errors.js";
import { sessionCertificate } from "./session-cert.js";

const BASE = { minVersion: "TLSv1.3", maxVersion: "TLSv1.3" } as const;
/** The SNI name the source sends (it names no host: the attestation, not a name, authenticates). */
export const SESSION_SERVERNAME = "selkie-migration";

/**
 * Each session gets its own key and certificate, used once. Making one (key pair, certificate, TLS
 * context: ~4 ms of CPU) is done one session ahead, off the handshake's path: the context handed out
 * is taken from `ready` and a fresh one is made in the background for the next session.
 */
let ready: tls.SecureContext | undefined;
let refill: NodeJS.Immediate | undefined;

function freshContext(): tls.SecureContext {
  const { cert, key } = sessionCertificate();
  return tls.createSecureContext({ ...BASE, cert, key, secureOptions: constants.SSL_OP_NO_TICKET });
}

function sessionContext(): tls.SecureContext {
  const ctx = ready ?? freshContext();
  ready = undefined;
  refill ??= setImmediate(() => {
    refill = undefined;
    ready ??= freshContext();
  }).unref();
  return ctx;
}

function timeoutError(ms: number): MigrationChannelError {
  return new MigrationChannelError("CHANNEL_TIMEOUT", `the inner TLS handshake did not finish within ${ms} ms (the peer stopped answering)`);
}

function tlsError(e: Error & { code?: string }): MigrationChannelError {
  return new MigrationChannelError("CHANNEL_TLS", `the inner TLS 1.3 handshake failed (${e.code ?? e.message}); is the peer a Selkie ${"selkie-migration/1"} endpoint?`, { cause: e });
}

function settle(socket: tls.TLSSocket, event: "secureConnect" | "secure", ms: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(timeoutError(ms));
    }, ms);
    const onOk = (): void => (cleanup(), resolve(socket));
    const onErr = (e: Error): void => (cleanup(), socket.destroy(), reject(tlsError(e)));
    const onClose = (): void => (cleanup(), reject(new MigrationChannelError("CHANNEL_TLS", "the peer closed the connection during the inner TLS handshake")));
    const cleanup = (): void => {
      clearTimeout(t);
      socket.off(event, onOk);
      socket.off("error", onErr);
      socket.off("close", onClose);
    };
    socket.once(event, onOk);
    socket.once("error", onErr);
    socket.once("close", onClose);
  });
}

/** The source side: TLS client over `stream`. */
export function tlsClient(stream: Duplex, timeoutMs: number): Promise<tls.TLSSocket> {
  const socket = tls.connect({ ...BASE, socket: stream, secureContext: sessionContext(), servername: SESSION_SERVERNAME, rejectUnauthorized: false, checkServerIdentity: () => undefined });
  return settle(socket, "secureConnect", timeoutMs);
}

/**
 * The destination side: TLS server over `stream`, asking for the client's certificate. A tls.Server
 * (never listening) takes the stream as a connection, so the socket it yields reports TLS errors
 * after the handshake like any server socket (a bare `new TLSSocket(stream, {isServer})` does not).
 * Its session context comes through SNI (the source always sends SESSION_SERVERNAME).
 */
export function tlsServer(stream: Duplex, timeoutMs: number): Promise<tls.TLSSocket> {
  const server = tls.createServer({
    ...BASE,
    requestCert: true,
    rejectUnauthorized: false,
    SNICallback: (_name, cb) => cb(null, sessionContext()),
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      stream.destroy();
      reject(timeoutError(timeoutMs));
    }, timeoutMs);
    const onClose = (): void => (clearTimeout(t), reject(new MigrationChannelError("CHANNEL_TLS", "the peer closed the connection during the inner TLS handshake")));
    stream.once("close", onClose);
    server.once("secureConnection", (socket: tls.TLSSocket) => {
      clearTimeout(t);
      stream.off("close", onClose);
      resolve(socket);
    });
    server.once("tlsClientError", (e: Error) => {
      clearTimeout(t);
      stream.off("close", onClose);
      stream.destroy();
      reject(tlsError(e));
    });
    server.emit("connection", stream);
  });
}
