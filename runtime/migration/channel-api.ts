// The contract between the attested migration channel (runtime/migration/channel/) and the migration
// protocol that runs over it (runtime/migration/protocol/). Both sides code against this file only.
//
// A MigrationChannel is a mutually attested TLS 1.3 connection (CHANNEL.md): by the time one is handed
// to the protocol, each side has verified the other's quote (CA chain, session-bound nonce, runtime
// version, enclave policy). Messages are msgpack maps with a string `type`; binary fields are
// Uint8Array. The channel numbers messages itself: a replayed, reordered or duplicated frame, a frame
// over the size limit or a malformed one ends the channel with a MigrationChannelError; the protocol
// never sees it.

/** What the channel proved about the other side. */
export interface PeerInfo {
  /** The role the peer played in the handshake. */
  readonly role: "source" | "destination";
  /** The peer platform's identity (hex), from its certificate. */
  readonly platformId: string;
  /** The peer's enclave measurement and signer (hex), ISV product id and security version. */
  readonly mrenclave: string;
  readonly mrsigner: string;
  readonly isvProdId: number;
  readonly isvSvn: number;
  /** The peer's Selkie runtime version string. */
  readonly runtimeVersion: string;
}

export interface MigrationMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

export interface MigrationChannel {
  readonly peer: PeerInfo;
  /** Sends one message; resolves once it is handed to the socket (honours back-pressure). */
  send(message: MigrationMessage): Promise<void>;
  /** Next message; rejects with a MigrationChannelError when the channel closes or `timeoutMs` passes. */
  receive(timeoutMs?: number): Promise<MigrationMessage>;
  /** Closes the channel; pending receives reject. Idempotent. */
  close(reason?: string): void;
  /** True once closed by either side. */
  readonly closed: boolean;
}
