/**
 * UNTRUSTED (server). Waiting for EPC room: when every resident enclave is busy (inside a
 * transaction or an ecall) the EPC manager refuses to open or wake another; one of them finishing
 * makes room. Requests to databases (db-host.ts, handler.ts, management.ts) and ecalls of custom
 * enclaves (enclave-registry.ts) wait here instead of failing at once.
 */
import { EpcError } from "../../errors.js";

/** The longest a request waits for EPC room to open or wake its enclave. */
export const EPC_WAIT_MS = 5_000;

/**
 * Runs `fn` until it does not throw EPC_ADMISSION_REFUSED: the EPC is full of enclaves that cannot
 * be paged out now (each inside a transaction), and one of them finishing makes room. Pauses 1 ms,
 * doubling up to 25 ms, between tries, for at most EPC_WAIT_MS and never past `deadline`; `fn(true)`
 * is the last try, whose refusal is the answer. `fn` must change nothing when it is refused.
 */
export async function withEpcRoom<T>(deadline: number, fn: (last: boolean) => T): Promise<T> {
  const until = Math.min(deadline, Date.now() + EPC_WAIT_MS);
  for (let pause = 1; Date.now() + pause <= until; pause = Math.min(pause * 2, 25)) {
    try {
      return fn(false);
    } catch (e) {
      if (!(e instanceof EpcError && e.code === "EPC_ADMISSION_REFUSED")) throw e;
    }
    await new Promise((r) => setTimeout(r, pause));
  }
  return fn(true);
}
