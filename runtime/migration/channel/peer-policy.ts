/**
 * Which peer enclaves a channel accepts (CHANNEL.md §3, check 4). A policy is an interface with a
 * default (STYLE 8): the same MRENCLAVE, or the same MRSIGNER and ISVPRODID with, when this side is
 * the source, the destination's ISVSVN not lower than its own (sealed data moves only to an enclave
 * that can read it, never to an older one).
 */
import type { EnclaveIdentity } from "../../platform/identity.js";

export type Role = "source" | "destination";

export interface PeerPolicy {
  /** Returns null when `peer` is acceptable, else why not (the CHANNEL_POLICY message). */
  check(local: EnclaveIdentity, peer: EnclaveIdentity, localRole: Role): string | null;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export const defaultPeerPolicy: PeerPolicy = Object.freeze({
  check(local: EnclaveIdentity, peer: EnclaveIdentity, localRole: Role): string | null {
    if (peer.debug && !local.debug) return "the peer runs a debug enclave; a production enclave never migrates to or from one";
    if (Buffer.from(peer.mrenclave).equals(Buffer.from(local.mrenclave))) return null;
    if (!Buffer.from(peer.mrsigner).equals(Buffer.from(local.mrsigner))) {
      return `the peer's enclave has MRENCLAVE ${hex(peer.mrenclave)} and MRSIGNER ${hex(peer.mrsigner)}: neither is this side's (${hex(local.mrenclave)}, ${hex(local.mrsigner)}); peers must run the same build or builds signed with the same key`;
    }
    if (peer.isvProdId !== local.isvProdId) return `the peer's enclave is product ${peer.isvProdId}, this side's is product ${local.isvProdId}`;
    if (localRole === "source" && peer.isvSvn < local.isvSvn) {
      return `the destination's enclave has ISVSVN ${peer.isvSvn}, lower than this side's ${local.isvSvn}: it could not read data sealed here (a downgrade); upgrade the destination`;
    }
    return null;
  },
});
