/**
 * TRUSTED. EPC paging: when admitting or growing an enclave would exceed the platform's EPC budget,
 * the least recently used idle enclaves are hibernated (sealed image written, instance and memory
 * released); each wakes on its next use. The analogue of SGX's EWB/ELDU, at enclave granularity.
 *
 * Invariants:
 *  1. Only idle enclaves are hibernated: none of their ocalls on the stack (Enclave.busy) and idle by
 *     their owner's rule (a SQLite database: no file lock held, so no statement or write running).
 *     The enclave whose growth asked for room is inside an ecall, so it is never its own victim.
 *  2. Victims go least recently used first (`lastUse`, a tick of the process-wide use clock).
 *  3. Resident enclave memory never exceeds the budget: the EpcManager enforces that sum; the pager
 *     only frees. A hibernation that fails leaves its enclave resident and is counted, not thrown
 *     (the grow or admission that asked is then refused with EPC_ADMISSION_REFUSED as before).
 *  4. A wake admits the image's whole memory before anything is restored (evicting others if need
 *     be); when even that cannot fit, the wake fails with EPC_ADMISSION_REFUSED and the enclave stays
 *     hibernated, its image intact.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { EpcManager } from "../../platform/epc.js";

export interface Pageable {
  /** For logs and `selkie ps`. */
  readonly pagingLabel: string;
  /** When it was last used: any increasing clock shared by the members (e.g. nextUse()). */
  readonly lastUse: number;
  readonly resident: boolean;
  /** EPC bytes the enclave holds while resident. */
  readonly residentBytes: number;
  /** Idle by invariant 1. */
  canHibernate(): boolean;
  /** Seals the enclave's state and releases its memory; throws if it could not. */
  hibernate(): void;
}

export interface PagingStats {
  resident: number;
  hibernated: number;
  residentBytes: number;
  evictions: number;
  evictionFailures: number;
  wakes: number;
  wakeFailures: number;
  /** Wake latency over the last WINDOW wakes, in ms. */
  wakeMs: { p50: number; p99: number; max: number; mean: number; samples: number };
  hibernateMs: { p50: number; p99: number; samples: number };
}

const WINDOW = 4096;

/** Fixed-size window of recent samples for percentiles. */
class Window {
  readonly #v = new Float64Array(WINDOW);
  #n = 0;
  add(x: number): void {
    this.#v[this.#n++ % WINDOW] = x;
  }
  summary(): { p50: number; p99: number; max: number; mean: number; samples: number } {
    const n = Math.min(this.#n, WINDOW);
    if (n === 0) return { p50: 0, p99: 0, max: 0, mean: 0, samples: 0 };
    const s = Array.from(this.#v.subarray(0, n)).sort((a, b) => a - b);
    const at = (q: number): number => s[Math.min(n - 1, Math.floor(q * n))]!;
    return { p50: at(0.5), p99: at(0.99), max: s[n - 1]!, mean: s.reduce((a, b) => a + b, 0) / n, samples: n };
  }
}

const pagers = new WeakMap<EpcManager, EpcPager>();

let useClock = 0;
/** A tick of the process-wide use clock that orders members for LRU eviction. */
export function nextUse(): number {
  return ++useClock;
}

export class EpcPager {
  readonly #members = new Set<Pageable>();
  /** Members that may be resident (a superset: pruned lazily), so an eviction scans only these. */
  readonly #maybeResident = new Set<Pageable>();
  #evictions = 0;
  #evictionFailures = 0;
  #wakes = 0;
  #wakeFailures = 0;
  readonly #wakeMs = new Window();
  readonly #hibernateMs = new Window();
  /** Where volatile paging images go (one folder per enclave inside). */
  readonly dir: string;
  onError: ((label: string, e: unknown) => void) | undefined;

  private constructor(readonly epc: EpcManager, dir: string) {
    this.dir = dir;
    epc.setEvictor((need) => this.#evict(need));
  }

  /**
   * The pager of a platform's EPC (one per EPC manager). `dir` holds the paging images; what an
   * earlier process left there is unreadable (its keys died with it) and is removed on first use.
   */
  static for(epc: EpcManager, dir: string): EpcPager {
    let p = pagers.get(epc);
    if (!p) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      p = new EpcPager(epc, dir);
      pagers.set(epc, p);
    }
    return p;
  }

  /** The pager of `epc`, if one was set up. */
  static of(epc: EpcManager): EpcPager | undefined {
    return pagers.get(epc);
  }

  /** A fresh folder for one enclave's images. */
  folderFor(id: string): string {
    return path.join(this.dir, id);
  }

  register(p: Pageable): void {
    this.#members.add(p);
    this.#maybeResident.add(p);
  }

  unregister(p: Pageable): void {
    this.#members.delete(p);
    this.#maybeResident.delete(p);
  }

  /** Called by a member after a wake (or any return to residence). */
  recordWake(ms: number, ok: boolean, p?: Pageable): void {
    if (p) this.#maybeResident.add(p);
    if (ok) {
      this.#wakes++;
      this.#wakeMs.add(ms);
    } else this.#wakeFailures++;
  }

  #evict(need: number): number {
    const victims: Pageable[] = [];
    for (const m of this.#maybeResident) {
      if (m.resident) victims.push(m);
      else this.#maybeResident.delete(m);
    }
    victims.sort((a, b) => a.lastUse - b.lastUse);
    let freed = 0;
    for (const v of victims) {
      if (freed >= need) break;
      if (!v.canHibernate()) continue;
      const bytes = v.residentBytes;
      const t0 = performance.now();
      try {
        v.hibernate();
      } catch (e) {
        this.#evictionFailures++;
        this.onError?.(v.pagingLabel, e);
        continue;
      }
      this.#hibernateMs.add(performance.now() - t0);
      this.#evictions++;
      this.#maybeResident.delete(v);
      freed += bytes;
    }
    return freed;
  }

  stats(): PagingStats {
    let resident = 0;
    let residentBytes = 0;
    for (const m of this.#members) {
      if (m.resident) {
        resident++;
        residentBytes += m.residentBytes;
      }
    }
    const h = this.#hibernateMs.summary();
    return {
      resident,
      hibernated: this.#members.size - resident,
      residentBytes,
      evictions: this.#evictions,
      evictionFailures: this.#evictionFailures,
      wakes: this.#wakes,
      wakeFailures: this.#wakeFailures,
      wakeMs: this.#wakeMs.summary(),
      hibernateMs: { p50: h.p50, p99: h.p99, samples: h.samples },
    };
  }
}
