/**
 * EINIT's proof: a `MeasuredEnclave` is an enclave identity that the enclave loader established by
 * measuring a module it holds (module bytes + manifest, enclaves/ABI.md §5) and verifying its
 * SIGSTRUCT (§6). `Platform.servicesFor` (EINIT) accepts nothing else, so no code can obtain the
 * sealing keys, counters or quotes of an identity it did not load (STYLE 3: types as proof).
 *
 * Invariants:
 * - A MeasuredEnclave is constructed only through the minting function, which this module hands
 *   out exactly ONCE (`takeEinitMinter`), to the loader (runtime/enclave/einit.ts takes it when it
 *   is first imported). A second taker gets PLATFORM_EINIT_TAKEN: code that raced the loader for it
 *   makes the loader fail loudly at import, never silently share the capability.
 * - `isMeasured` checks membership in a module-private WeakSet: an object that merely has the same
 *   fields (or a subclass built with Object.create) is not measured.
 * - Instances are frozen and hold deep copies (checkIdentity), so nobody can change a measured
 *   identity after the fact.
 */
import { PlatformError } from "./errors.js";
import { checkIdentity, type EnclaveIdentity } from "./identity.js";

const minted = new WeakSet<object>();
const TOKEN = Symbol("MeasuredEnclave");

export class MeasuredEnclave implements EnclaveIdentity {
  readonly mrenclave: Buffer;
  readonly mrsigner: Buffer;
  readonly isvProdId: number;
  readonly isvSvn: number;
  readonly debug: boolean;
  /** Makes the type nominal: a plain identity object does not type-check as a MeasuredEnclave. */
  readonly #measured = true;
  /** Not constructible outside this module: use the loader (runtime/enclave/einit.ts). */
  constructor(token: symbol, id: EnclaveIdentity) {
    if (token !== TOKEN) throw new PlatformError("PLATFORM_NOT_MEASURED", "a MeasuredEnclave is made only by the enclave loader (runtime/enclave/einit.ts), which measures a module and verifies its signature");
    const c = checkIdentity(id);
    this.mrenclave = c.mrenclave;
    this.mrsigner = c.mrsigner;
    this.isvProdId = c.isvProdId;
    this.isvSvn = c.isvSvn;
    this.debug = c.debug;
    Object.freeze(this);
    minted.add(this);
    void this.#measured;
  }
}

let minter: ((id: EnclaveIdentity) => MeasuredEnclave) | undefined = (id) => new MeasuredEnclave(TOKEN, id);

/** Hands the minting function to its one holder, the loader; every later call throws. */
export function takeEinitMinter(): (id: EnclaveIdentity) => MeasuredEnclave {
  const m = minter;
  if (m === undefined) throw new PlatformError("PLATFORM_EINIT_TAKEN", "the EINIT capability was already taken; only runtime/enclave/einit.ts may hold it");
  minter = undefined;
  return m;
}

/** True only for MeasuredEnclave instances the loader minted. */
export function isMeasured(x: unknown): x is MeasuredEnclave {
  return typeof x === "object" && x !== null && minted.has(x);
}
