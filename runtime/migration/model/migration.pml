/*
 * Selkie live migration: a Promela model of the commit protocol (issue 13 item 5), checked by spin.
 * What is modelled, what is abstracted and every difference from ../protocol/PROTOCOL.md: MODEL.md.
 * Run it with `npm run check:model` (tools/check-model.ts); test/migration/model.test.ts runs it in
 * the suite and checks that each mutant below (MUT_*, chosen with spin -D) yields a counterexample.
 *
 * Actors: a source and a destination, each with durable state (its journal, its data, on the source
 * the platform counter that binds the data) that survives a crash and volatile state (its phase) that
 * does not; a network that loses, duplicates and reorders messages; clients whose acknowledged commits
 * must survive; an operator who copies the source's folder once and may restore that copy at a restart.
 *
 * Invariants (each a claim checked in every reachable state; I4 an assertion checked in all runs):
 *   I1  never two serving owners;
 *   I2  no acknowledged commit lost: a side that can still serve (source: counter alive; destination:
 *       journal PREPARED or COMMITTED) durably holds every acknowledged commit;
 *   I3  a side that serves holds every acknowledged commit (no stale read);
 *   I4  a destination that committed never receives ABORT.
 * Progress (claim `eventually_one_owner`, checked with weak fairness): every run ends with exactly one
 * side serving, for good. Faults are bounded (MAX_* below), so after the last fault recovery must reach
 * one owner: a state from which recovery reaches no owner is a counterexample.
 *
 * State table (step -> what it does; each step is atomic, a crash may fall between any two):
 *   source   S1 restart      recovery from the durable state (counter gone -> GONE; journal COMMITTED ->
 *                            DECIDED; MIGRATING -> record ABORTED, send ABORT, serve; else serve)
 *            S2 freeze       stop taking requests at a quiescent point (pre-copy abstracted)
 *            S3 begin        record MIGRATING durably, fix the frozen version pv
 *            S4 prepare      send PREPARE(pv) when nothing is in flight (first send and resends)
 *            S5 decide       on PREPARED: record COMMITTED durably
 *            S6 destroy      destroy the counter (a copy of the folder is now a rollback), send COMMIT
 *            S7 time out     while MIGRATING: record ABORTED, send ABORT, serve again
 *            S8 answer       PREPARED to GONE -> COMMIT; to a serving source -> ABORT
 *   dest     D1 restart      COMMITTED -> serve; otherwise idle
 *            D2 prepare      on PREPARE: journal NONE -> persist PREPARED with the data, ack PREPARED;
 *                            PREPARED -> ack again; otherwise ignore
 *            D3 commit       on COMMIT with PREPARED: record COMMITTED, serve
 *            D4 abort        on ABORT with NONE or PREPARED: record ABORTED (discard)
 *            D5 ask          PREPARED and nothing in flight: send PREPARED again (asks for the decision)
 */

/* Fault bounds: small, so the whole state space is searched in seconds. */
#ifndef MAX_LOSS
#define MAX_LOSS 2
#endif
#ifndef MAX_DUP
#define MAX_DUP 1
#endif
#ifndef MAX_SRC_CRASH
#define MAX_SRC_CRASH 2
#endif
#ifndef MAX_DST_CRASH
#define MAX_DST_CRASH 2
#endif
#ifndef MAX_WRITES
#define MAX_WRITES 2
#endif
#define CAP 2            /* copies of one message kind in flight; a send into a full link is lost */

/* Message kinds (index into net[]): each kind travels one way. */
#define M_PREPARE 1      /* source -> destination: frozen state, version pv */
#define M_PREPARED 2     /* destination -> source: PREPARED is durable (also "what was decided?") */
#define M_COMMIT 3       /* source -> destination: decision commit, the source's copy is destroyed */
#define M_ABORT 4        /* source -> destination: decision abort */

/* Journals (durable). Source: NONE, MIGRATING, COMMITTED, ABORTED. Destination: NONE, PREPARED, ... */
#define J_NONE 0
#define J_MIGRATING 1
#define J_PREPARED 1
#define J_COMMITTED 2
#define J_ABORTED 3

/* Phases (volatile). */
#define SP_DOWN 0        /* crashed: recovery runs next */
#define SP_SERVING 1
#define SP_FROZEN 2      /* quiescent, migrating */
#define SP_DECIDED 3     /* COMMITTED recorded, counter not yet destroyed */
#define SP_GONE 4        /* counter destroyed: never serves, answers COMMIT */
#define SP_REFUSED 5     /* data does not match the counter (rollback): never serves */
#define SP_DESTROYING 6  /* MUT_COMMIT_BEFORE_DESTROY only: COMMIT sent, counter not yet destroyed */
#define DP_DOWN 0
#define DP_IDLE 1
#define DP_SERVING 2

byte net[5];             /* the network: a bag of counts per kind, so any order of delivery */
byte losses, dups;

/* source: durable */
byte sj = J_NONE;
byte sdata;              /* version of the newest durable commit */
bool sctr_alive = true;  /* the platform monotonic counter bound to the data */
byte sctr;               /* its value: every commit advances it to the commit's version */
/* source: volatile */
byte sphase = SP_SERVING;
byte scrashes;

/* destination: durable */
byte dj = J_NONE;
byte ddata;
/* destination: volatile */
byte dphase = DP_IDLE;
byte dcrashes;

/* ghosts */
bool started;            /* one migration attempt per run */
byte pv;                 /* the version the source froze at (PREPARE's payload) */
byte acked;              /* version of the newest commit acknowledged to a client */
byte writes;
bool backup_taken, restored;
byte bj, bdata;          /* the operator's copy of the source folder */

#ifdef MUT_SOURCE_SERVES_WHILE_PREPARING
#define src_serving (sphase == SP_SERVING || (sphase == SP_FROZEN && sj == J_MIGRATING))
#else
#define src_serving (sphase == SP_SERVING)
#endif
#define dst_serving (dphase == DP_SERVING)
#define src_holds (sctr_alive && sdata >= acked)
#define dst_holds ((dj == J_PREPARED || dj == J_COMMITTED) && ddata >= acked)
#define one_owner ((src_serving && !dst_serving) || (dst_serving && !src_serving))

ltl no_two_owners { [] !(src_serving && dst_serving) }                                     /* I1 */
ltl no_lost_commit { [] (src_holds || dst_holds) }                                         /* I2 */
ltl no_stale_read { [] ((!src_serving || sdata >= acked) && (!dst_serving || ddata >= acked)) } /* I3 */
ltl eventually_one_owner { <> [] one_owner }

inline send(m) {
  if
  :: net[m] < CAP -> net[m]++
  :: else -> skip
  fi
}

active proctype source() {
end:
  do
  /* S1 restart: recovery from the durable state */
  :: atomic { sphase == SP_DOWN ->
       if
       :: !sctr_alive -> sphase = SP_GONE; printf("source: restart, counter destroyed: GONE\n")
       :: sctr_alive && sdata != sctr -> sphase = SP_REFUSED; printf("source: restart, rollback refused\n")
       :: sctr_alive && sdata == sctr && sj == J_COMMITTED -> sphase = SP_DECIDED; printf("source: restart, COMMITTED\n")
       :: sctr_alive && sdata == sctr && sj == J_MIGRATING ->
            sj = J_ABORTED; send(M_ABORT); sphase = SP_SERVING; printf("source: restart, MIGRATING -> ABORTED, serves\n")
       :: sctr_alive && sdata == sctr && (sj == J_NONE || sj == J_ABORTED) ->
            sphase = SP_SERVING; printf("source: restart, serves\n")
       fi }
  /* S2 freeze */
  :: atomic { sphase == SP_SERVING && !started -> started = true; sphase = SP_FROZEN; printf("source: frozen at v%d\n", sdata) }
  /* S3 begin */
  :: atomic { sphase == SP_FROZEN && sj == J_NONE -> sj = J_MIGRATING; pv = sdata; printf("source: journal MIGRATING\n") }
  /* S4 (re)send PREPARE when nothing is in flight */
  :: atomic { sphase == SP_FROZEN && sj == J_MIGRATING && net[M_PREPARE] == 0 && net[M_PREPARED] == 0 ->
       send(M_PREPARE); printf("source: sends PREPARE(v%d)\n", pv) }
#ifdef MUT_COMMIT_BEFORE_PREPARED
  /* mutant: the source decides without waiting for the destination's PREPARED */
  :: atomic { sphase == SP_FROZEN && sj == J_MIGRATING -> sj = J_COMMITTED; sphase = SP_DECIDED; printf("source: journal COMMITTED (no PREPARED seen)\n") }
#endif
  /* S5 decide */
  :: atomic { sphase == SP_FROZEN && sj == J_MIGRATING && net[M_PREPARED] > 0 ->
       net[M_PREPARED]--; sj = J_COMMITTED; sphase = SP_DECIDED; printf("source: got PREPARED, journal COMMITTED\n") }
  /* S6 destroy the counter, then tell the destination */
#if defined(MUT_NO_COUNTER_DESTROY)
  :: atomic { sphase == SP_DECIDED -> send(M_COMMIT); sphase = SP_GONE; printf("source: keeps its counter, sends COMMIT\n") }
#elif defined(MUT_COMMIT_BEFORE_DESTROY)
  :: atomic { sphase == SP_DECIDED -> send(M_COMMIT); sphase = SP_DESTROYING; printf("source: sends COMMIT before destroying\n") }
  :: atomic { sphase == SP_DESTROYING -> sctr_alive = false; sphase = SP_GONE; printf("source: counter destroyed\n") }
#else
  :: atomic { sphase == SP_DECIDED -> sctr_alive = false; send(M_COMMIT); sphase = SP_GONE; printf("source: counter destroyed, sends COMMIT\n") }
#endif
  /* S7 time out */
  :: atomic { sphase == SP_FROZEN && sj == J_MIGRATING ->
       sj = J_ABORTED; send(M_ABORT); sphase = SP_SERVING; printf("source: timeout, journal ABORTED, serves\n") }
  /* S8 answer a PREPARED that finds no migration waiting for it */
  :: atomic { (sphase == SP_GONE || sphase == SP_DESTROYING) && net[M_PREPARED] > 0 ->
       net[M_PREPARED]--; send(M_COMMIT); printf("source: answers COMMIT\n") }
  :: atomic { (sphase == SP_SERVING || sphase == SP_REFUSED) && net[M_PREPARED] > 0 ->
       net[M_PREPARED]--; send(M_ABORT); printf("source: answers ABORT\n") }
  /* crash; at the restart the operator may put back the copy of the folder */
  :: atomic { scrashes < MAX_SRC_CRASH && sphase != SP_DOWN ->
       scrashes++; sphase = SP_DOWN; printf("source: CRASH\n");
       if
       :: backup_taken && !restored && bdata == sctr -> sj = bj; sdata = bdata; restored = true; printf("source: folder restored from the copy\n")
       :: skip
       fi }
  /* the operator copies the source folder (the platform counter is not in it) */
  :: atomic { !backup_taken -> backup_taken = true; bj = sj; bdata = sdata; printf("operator: copies the source folder\n") }
  od
}

active proctype destination() {
end:
  do
  /* D1 restart */
  :: atomic { dphase == DP_DOWN ->
       if
       :: dj == J_COMMITTED -> dphase = DP_SERVING; printf("destination: restart, serves\n")
       :: else -> dphase = DP_IDLE; printf("destination: restart\n")
       fi }
  /* D2 prepare */
  :: atomic { dphase != DP_DOWN && net[M_PREPARE] > 0 -> net[M_PREPARE]--;
       if
       :: dj == J_NONE -> dj = J_PREPARED; ddata = pv; send(M_PREPARED); printf("destination: journal PREPARED(v%d), sends PREPARED\n", pv);
#ifdef MUT_DST_SERVES_BEFORE_DECISION
          dphase = DP_SERVING; printf("destination: serves before the decision\n")
#endif
       :: dj == J_PREPARED -> send(M_PREPARED); printf("destination: sends PREPARED again\n")
       :: else -> skip
       fi }
  /* D3 commit */
  :: atomic { dphase != DP_DOWN && net[M_COMMIT] > 0 -> net[M_COMMIT]--;
       if
       :: dj == J_PREPARED -> dj = J_COMMITTED; dphase = DP_SERVING; printf("destination: journal COMMITTED, serves\n")
       :: else -> skip
       fi }
  /* D4 abort */
  :: atomic { dphase != DP_DOWN && net[M_ABORT] > 0 -> net[M_ABORT]--;
       assert(dj != J_COMMITTED);                                  /* I4 */
       if
       :: dj == J_NONE || dj == J_PREPARED -> dj = J_ABORTED; dphase = DP_IDLE; printf("destination: journal ABORTED\n")
       :: else -> skip
       fi }
#ifndef MUT_NO_DECISION_QUERY
  /* D5 ask for the decision */
  :: atomic { dphase == DP_IDLE && dj == J_PREPARED && net[M_PREPARED] == 0 && net[M_COMMIT] == 0 && net[M_ABORT] == 0 ->
       send(M_PREPARED); printf("destination: asks for the decision\n") }
#endif
#ifdef MUT_DST_GIVES_UP
  /* mutant: a destination tired of waiting discards its PREPARED state */
  :: atomic { dphase == DP_IDLE && dj == J_PREPARED -> dj = J_ABORTED; printf("destination: gives up, journal ABORTED\n") }
#endif
  /* crash */
  :: atomic { dcrashes < MAX_DST_CRASH && dphase != DP_DOWN ->
       dcrashes++; dphase = DP_DOWN; printf("destination: CRASH\n");
#ifdef MUT_VOLATILE_PREPARED
       if
       :: dj == J_PREPARED -> dj = J_NONE; ddata = 0; printf("destination: PREPARED was not durable\n")
       :: else -> skip
       fi
#endif
     }
  od
}

/* Clients: each write is acknowledged once it is durable on the side that serves it. */
active proctype clients() {
end:
  do
  :: atomic { writes < MAX_WRITES && src_serving -> sdata++; sctr = sdata; acked = sdata; writes++; printf("client: v%d acknowledged by the source\n", acked) }
  :: atomic { writes < MAX_WRITES && dst_serving -> ddata++; acked = ddata; writes++; printf("client: v%d acknowledged by the destination\n", acked) }
  od
}

/* The network loses and duplicates (a bag delivers in any order). */
active proctype network() {
end:
  do
  :: atomic { losses < MAX_LOSS && net[M_PREPARE] > 0 -> net[M_PREPARE]--; losses++; printf("network: loses PREPARE\n") }
  :: atomic { losses < MAX_LOSS && net[M_PREPARED] > 0 -> net[M_PREPARED]--; losses++; printf("network: loses PREPARED\n") }
  :: atomic { losses < MAX_LOSS && net[M_COMMIT] > 0 -> net[M_COMMIT]--; losses++; printf("network: loses COMMIT\n") }
  :: atomic { losses < MAX_LOSS && net[M_ABORT] > 0 -> net[M_ABORT]--; losses++; printf("network: loses ABORT\n") }
  :: atomic { dups < MAX_DUP && net[M_PREPARE] == 1 -> net[M_PREPARE]++; dups++; printf("network: duplicates PREPARE\n") }
  :: atomic { dups < MAX_DUP && net[M_PREPARED] == 1 -> net[M_PREPARED]++; dups++; printf("network: duplicates PREPARED\n") }
  :: atomic { dups < MAX_DUP && net[M_COMMIT] == 1 -> net[M_COMMIT]++; dups++; printf("network: duplicates COMMIT\n") }
  :: atomic { dups < MAX_DUP && net[M_ABORT] == 1 -> net[M_ABORT]++; dups++; printf("network: duplicates ABORT\n") }
  od
}
