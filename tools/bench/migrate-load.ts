/**
 * The write load of `npm run bench:migrate`'s downtime rows: one client writing small committed
 * INSERTs (autocommit, durable) through DatabaseSource.use() on whichever peer owns the database.
 * A write refused with MIGRATION_MOVED goes to the destination once it serves there (the client
 * follows). Every acknowledged id is recorded with its acknowledgement time; downtime for a
 * migration is the gap between the last acknowledgement before its freeze and the first after it.
 */
import type { Database, MigrationSource } from "../../runtime/index.js";
import { DatabaseSource } from "../../runtime/migration/protocol/database-source.js";
import { openAt, type Peer } from "./migrate-peers.js";

export interface Owner {
  peer: Peer;
  src: DatabaseSource;
}

export function serveAt(peer: Peer, name: string, db?: Database): Owner {
  return { peer, src: new DatabaseSource(db ?? openAt(peer, name), () => openAt(peer, name)) };
}

export class WriteLoad {
  readonly acked: number[] = [];
  readonly ackAt: number[] = [];
  owner: Owner;
  /** Where the database will serve after the migration in progress commits. */
  next: Promise<Owner> | undefined;
  #stop = false;
  #done: Promise<void> | undefined;

  constructor(owner: Owner) {
    this.owner = owner;
  }

  start(): void {
    this.#done = this.#run();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  async #run(): Promise<void> {
    let id = 0;
    while (!this.#stop) {
      const n = ++id;
      try {
        await this.owner.src.use((db) => db.run("INSERT INTO w(id) VALUES (?)", n));
        this.ackAt.push(performance.now());
        this.acked.push(n);
      } catch (e) {
        if ((e as { code?: string }).code !== "MIGRATION_MOVED" || !this.next) throw e;
        this.owner = await this.next;
        this.next = undefined;
      }
      await new Promise((r) => setImmediate(r)); // let the migration's I/O run between writes
    }
  }

  /** A MigrationSource around the owner's that records when the freeze began. */
  timedSource(): { source: MigrationSource; frozeAt: () => number } {
    const s = this.owner.src;
    let at = NaN;
    return {
      source: {
        freeze: async (o) => {
          at = performance.now();
          await s.freeze(o);
        },
        resume: () => s.resume(),
        moved: (to) => s.moved(to),
      },
      frozeAt: () => at,
    };
  }

  /** Gap (ms) between the last acknowledgement before `t` and the first after it; NaN if none after. */
  gapAround(t: number): number {
    let i = this.ackAt.length - 1;
    while (i >= 0 && this.ackAt[i]! > t) i--;
    const before = this.ackAt[i];
    const after = this.ackAt[i + 1];
    return before === undefined || after === undefined ? NaN : after - before;
  }
}

export function quantile(xs: number[], p: number): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
}
