/*
 * Selkie live migration: a Promela model of the commit protocol of ../protocol/PROTOCOL.md (version 1),
 * checked by spin. What is modelled, what is abstracted, state counts and every difference from
 * PROTOCOL.md: MODEL.md beside this file. Run it with `npm run check:model` (tools/check-model.ts);
 * test/migration/model.test.ts runs it in the suite and checks that each mutant below (MUT_*, chosen
 * with spin -D) yields a counterexample.
 *
 * Actors: a source and a destination, each with durable state (journal, data, and on the source the
 * platform counter bound to the data) that survives a crash, and volatile state (its phase) that does
 * not; a network that loses, duplicates and reorders every message; clients whose acknowledged commits
 * must survive; an operator who copies the source's folder (journal included, the platform counter not)
 * once and may put that copy back at a restart.
 *
 * Properties (each an LTL claim; spin checks it over every run):
 *   I1  no_two_owners         never two sides serving at once;
 *   I2  no_lost_commit        a side that can still serve (source: counter alive; destination: journal
 *                             PREPARED or later, not ABORTED) durably holds every acknowledged commit;
 *   I3  no_stale_read         a side that serves holds every acknowledged commit;
 *   P1  eventually_one_owner  every run ends with exactly one side serving, for good. Faults are bounded
 *                             (MAX_* below), so after the last one recovery must reach an owner: a state
 *                             from which no owner is reached is a counterexample (an acceptance cycle).
 *   safety (I1 and I2 and I3 in one search), and one assertion: a destination that installed the
 *   database never receives `abort`. Witnesses (witness_*), claims that must be violated, show that
 *   the model reaches a completed migration, an abort and a fork attempt, so none of this is vacuous.
 *
 * State table (each step one atomic transition; a crash may fall between any two; PROTOCOL.md §5-§6):
 *   source   S1 restart     counter gone -> GONE (MOVED); COMMITTING -> DECIDED (complete the commit);
 *                           FROZEN -> journal ABORTED, serve; NONE or ABORTED -> serve
 *            S2 journal     journal FROZEN (still serving)
 *            S3 freeze      stop serving at a quiescent point; the frozen version is pv
 *            S4 final       send `final` (pv) once
 *            S5 decide      on `prepared` in FROZEN: journal COMMITTING
 *            S6 destroy     destroy the counter (THE COMMIT POINT), send `commit`, journal MOVED
 *            S7 abort       in FROZEN, on `abort` from D: journal ABORTED, serve; on a timeout (a lost
 *                           channel): journal ABORTED, send `abort`, serve
 *            S8 outcome     on `status`: GONE -> `commit`; serving and not migrating -> journal ABORTED,
 *                           `abort`; a running migration (FROZEN, DECIDED) -> `pending` (no message)
 *            S9 late        `prepared` or `abort` outside FROZEN: dropped (MIGRATION_BAD_MESSAGE)
 *   dest     D1 restart     DONE -> serve; COMMITTED -> install again; PREPARED -> stay (ask);
 *                           NONE (RECEIVING) or PREPARING -> journal ABORTED (staging removed)
 *            D2 prepare     on `final` in NONE: journal PREPARING (fence counter created)
 *            D3 prepared    journal PREPARED (every byte durable), send `prepared`
 *            D4 commit      on `commit` / `outcome: commit` in PREPARED: journal COMMITTED
 *            D5 install     lift the fence, install, journal DONE: serve
 *            D6 abort       on `abort` / `outcome: abort` in NONE or PREPARED: journal ABORTED
 *            D7 give up     in NONE (before PREPARED): journal ABORTED, send `abort`
 *            D8 ask         in PREPARED with no answer in flight: send `status`
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

/* Message kinds, each travelling one way (an mtype, so a trail prints its name; it indexes net[]). */
mtype = {
  final,                 /* S -> D  `final`: the frozen state, version pv */
  prepared,              /* D -> S  `prepared`: PREPARED is durable */
  commit,                /* S -> D  `commit`, or `outcome: commit` */
  abort,                 /* S -> D  `abort`, or `outcome: abort` */
  giveup,                /* D -> S  `abort` (or `refuse`) from the destination, before PREPARED */
  status                 /* D -> S  `status`: what became of the migration? */
}
#define M_FINAL final
#define M_PREPARED prepared
#define M_COMMIT commit
#define M_ABORT abort
#define M_GIVEUP giveup
#define M_STATUS status

/* Journals (durable). */
#define SJ_NONE 0
#define SJ_FROZEN 1
#define SJ_COMMITTING 2
#define SJ_MOVED 3
#define SJ_ABORTED 4
#define DJ_NONE 0        /* no journal, or RECEIVING (pre-copy is abstracted) */
#define DJ_PREPARING 1
#define DJ_PREPARED 2
#define DJ_COMMITTED 3
#define DJ_DONE 4
#define DJ_ABORTED 5

/* Phases (volatile). */
#define SP_DOWN 0        /* crashed: recovery runs next */
#define SP_SERVING 1
#define SP_FROZEN 2      /* quiescent, the migration is running */
#define SP_DECIDED 3     /* COMMITTING recorded, the counter not yet destroyed */
#define SP_GONE 4        /* the counter is destroyed: never serves again */
#define SP_DESTROYING 5  /* MUT_COMMIT_BEFORE_DESTROY only: `commit` sent, counter not yet destroyed */
#define DP_DOWN 0
#define DP_UP 1
#define DP_SERVING 2

byte net[7];             /* the network: a count per kind (mtype values 1..6), delivered in any order */
byte losses, dups;

/* source: durable */
byte sj = SJ_NONE;
byte sdata;              /* version of the newest durable commit */
bool sctr_alive = true;  /* the platform monotonic counter bound to the data */
byte sctr;               /* its value: every commit advances it to the commit's version */
/* source: volatile */
byte sphase = SP_SERVING;
byte scrashes;
bool final_sent;

/* destination: durable */
byte dj = DJ_NONE;
byte ddata;
/* destination: volatile */
byte dphase = DP_UP;
byte dcrashes;

/* ghosts */
bool started;            /* one migration per run */
byte pv;                 /* the version the source froze at (the files `final` names) */
byte acked;              /* version of the newest commit acknowledged to a client */
byte writes;
bool backup_taken, restored;
byte bj, bdata;          /* the operator's copy of the source folder */

#ifdef MUT_SOURCE_SERVES_WHILE_PREPARING
#define src_serving (sphase == SP_SERVING || sphase == SP_FROZEN)
#else
#define src_serving (sphase == SP_SERVING)
#endif
#define dst_serving (dphase == DP_SERVING)
#define dst_has_copy (dj == DJ_PREPARED || dj == DJ_COMMITTED || dj == DJ_DONE)
#define src_holds (sctr_alive && sdata >= acked)
#define dst_holds (dst_has_copy && ddata >= acked)
#define one_owner ((src_serving && !dst_serving) || (dst_serving && !src_serving))

ltl no_two_owners { [] !(src_serving && dst_serving) }
ltl no_lost_commit { [] (src_holds || dst_holds) }
ltl no_stale_read { [] ((!src_serving || sdata >= acked) && (!dst_serving || ddata >= acked)) }
ltl eventually_one_owner { <> [] one_owner }
/* Witnesses, each expected to be violated: its counterexample shows the model reaches what matters
 * (so the properties above do not hold vacuously): a completed migration carrying an acknowledged
 * commit, an abort after which the source serves again, and a copy of the frozen source's folder put
 * back while the destination serves (the fork attempt, refused). */
ltl witness_migrates { [] !(dst_serving && acked >= 1) }
ltl witness_aborts { [] !(src_serving && sj == SJ_ABORTED) }
ltl witness_fork_attempt { [] !(restored && bj == SJ_FROZEN && dst_serving && sphase != SP_DOWN) }
/* I1, I2 and I3 in one search (what the suite checks on the protocol; the mutants use the ones above) */
ltl safety { [] (!(src_serving && dst_serving) && (src_holds || dst_holds)
                 && (!src_serving || sdata >= acked) && (!dst_serving || ddata >= acked)) }

inline send(m) {
  if
  :: net[m] < CAP -> net[m]++
  :: else -> skip
  fi
}

active proctype source() {
end:
  do
  /* S1 restart: recovery (PROTOCOL.md §6), before serving */
  :: atomic { sphase == SP_DOWN ->
       if
       :: !sctr_alive -> sj = SJ_MOVED; sphase = SP_GONE; printf("source: restart, counter gone: MOVED\n")
       :: sctr_alive && (sj == SJ_COMMITTING || sj == SJ_MOVED) -> sphase = SP_DECIDED; printf("source: restart, COMMITTING: completes the commit\n")
       :: sctr_alive && sj == SJ_FROZEN -> sj = SJ_ABORTED; sphase = SP_SERVING; printf("source: restart, FROZEN -> journal ABORTED, serves\n")
       :: sctr_alive && (sj == SJ_NONE || sj == SJ_ABORTED) -> sphase = SP_SERVING; printf("source: restart, serves\n")
       fi }
  /* S2 journal FROZEN */
  :: atomic { sphase == SP_SERVING && !started -> started = true; sj = SJ_FROZEN; printf("source: journal FROZEN\n") }
  /* S3 freeze */
  :: atomic { sphase == SP_SERVING && started && sj == SJ_FROZEN && !final_sent -> sphase = SP_FROZEN; pv = sdata; printf("source: frozen at v%d\n", pv) }
  /* S4 final */
  :: atomic { sphase == SP_FROZEN && !final_sent -> final_sent = true; send(M_FINAL); printf("source: sends final(v%d)\n", pv) }
#ifdef MUT_COMMIT_BEFORE_PREPARED
  /* mutant: the source decides without the destination's `prepared` */
  :: atomic { sphase == SP_FROZEN && final_sent -> sj = SJ_COMMITTING; sphase = SP_DECIDED; printf("source: journal COMMITTING without prepared\n") }
#endif
  /* S5 decide */
  :: atomic { sphase == SP_FROZEN && final_sent && net[M_PREPARED] > 0 ->
       net[M_PREPARED]--; sj = SJ_COMMITTING; sphase = SP_DECIDED; printf("source: got prepared, journal COMMITTING\n") }
  /* S6 the commit point */
#if defined(MUT_NO_COUNTER_DESTROY)
  :: atomic { sphase == SP_DECIDED -> send(M_COMMIT); sj = SJ_MOVED; sphase = SP_GONE; printf("source: keeps its counter, sends commit, journal MOVED\n") }
#elif defined(MUT_COMMIT_BEFORE_DESTROY)
  :: atomic { sphase == SP_DECIDED -> send(M_COMMIT); sphase = SP_DESTROYING; printf("source: sends commit before destroying its counter\n") }
  :: atomic { sphase == SP_DESTROYING -> sctr_alive = false; sj = SJ_MOVED; sphase = SP_GONE; printf("source: counter destroyed, journal MOVED\n") }
#else
  :: atomic { sphase == SP_DECIDED -> sctr_alive = false; send(M_COMMIT); sj = SJ_MOVED; sphase = SP_GONE; printf("source: counter destroyed (commit point), sends commit, journal MOVED\n") }
#endif
  /* S7 abort: the destination gave up, or a timeout (a lost channel) */
  :: atomic { sphase == SP_FROZEN && net[M_GIVEUP] > 0 ->
       net[M_GIVEUP]--; sj = SJ_ABORTED; sphase = SP_SERVING; printf("source: destination aborted, journal ABORTED, serves\n") }
  :: atomic { sphase == SP_FROZEN ->
       sj = SJ_ABORTED; send(M_ABORT); sphase = SP_SERVING; printf("source: timeout, journal ABORTED, sends abort, serves\n") }
  /* S8 the outcome rule */
  :: atomic { (sphase == SP_GONE || sphase == SP_DESTROYING) && net[M_STATUS] > 0 ->
       net[M_STATUS]--; send(M_COMMIT); printf("source: status -> outcome commit\n") }
  :: atomic { sphase == SP_SERVING && (sj == SJ_NONE || sj == SJ_ABORTED) && net[M_STATUS] > 0 ->
       net[M_STATUS]--; sj = SJ_ABORTED; send(M_ABORT); printf("source: status -> journal ABORTED, outcome abort\n") }
#ifdef MUT_ABORT_ANSWER_NOT_RECORDED
  /* mutant: a running migration answers `abort` (not `pending`) and does not record it */
  :: atomic { sphase == SP_FROZEN && net[M_STATUS] > 0 -> net[M_STATUS]--; send(M_ABORT); printf("source: status -> outcome abort, not recorded\n") }
#endif
  /* S9 late messages */
  :: atomic { sphase != SP_DOWN && sphase != SP_FROZEN && net[M_PREPARED] > 0 -> net[M_PREPARED]--; printf("source: drops a late prepared\n") }
  :: atomic { sphase != SP_DOWN && sphase != SP_FROZEN && net[M_GIVEUP] > 0 -> net[M_GIVEUP]--; printf("source: drops a late abort\n") }
  /* crash; at the restart the operator may put back the copy of the folder */
  :: atomic { scrashes < MAX_SRC_CRASH && sphase != SP_DOWN ->
       scrashes++; sphase = SP_DOWN; printf("source: CRASH\n");
       if
       :: backup_taken && !restored && bdata == sctr -> sj = bj; sdata = bdata; restored = true; printf("source: folder restored from the copy\n")
       :: skip
       fi }
  /* the operator copies the source folder */
  :: atomic { !backup_taken -> backup_taken = true; bj = sj; bdata = sdata; printf("operator: copies the source folder\n") }
  od
}

active proctype destination() {
end:
  do
  /* D1 restart */
  :: atomic { dphase == DP_DOWN ->
       if
       :: dj == DJ_DONE -> dphase = DP_SERVING; printf("destination: restart, DONE: serves\n")
       :: dj == DJ_NONE || dj == DJ_PREPARING -> dj = DJ_ABORTED; dphase = DP_UP; printf("destination: restart, staging removed, journal ABORTED\n")
       :: else -> dphase = DP_UP; printf("destination: restart\n")
       fi }
  /* D2 prepare */
  :: atomic { dphase == DP_UP && dj == DJ_NONE && net[M_FINAL] > 0 ->
       net[M_FINAL]--; dj = DJ_PREPARING; printf("destination: journal PREPARING\n") }
  /* D3 prepared */
  :: atomic { dphase == DP_UP && dj == DJ_PREPARING -> dj = DJ_PREPARED; ddata = pv; send(M_PREPARED); printf("destination: journal PREPARED(v%d), sends prepared\n", pv);
#ifdef MUT_DST_SERVES_BEFORE_DECISION
       dphase = DP_SERVING; printf("destination: serves before the decision\n")
#endif
     }
  /* D4 commit */
  :: atomic { dphase == DP_UP && dj == DJ_PREPARED && net[M_COMMIT] > 0 ->
       net[M_COMMIT]--; dj = DJ_COMMITTED; printf("destination: journal COMMITTED\n") }
  /* D5 install */
  :: atomic { dphase == DP_UP && dj == DJ_COMMITTED -> dj = DJ_DONE; dphase = DP_SERVING; printf("destination: installed, journal DONE, serves\n") }
  /* D6 abort */
  :: atomic { dphase != DP_DOWN && net[M_ABORT] > 0 -> net[M_ABORT]--;
       assert(dj != DJ_COMMITTED && dj != DJ_DONE);
       if
       :: dj == DJ_NONE || dj == DJ_PREPARED -> dj = DJ_ABORTED; dphase = DP_UP; printf("destination: journal ABORTED\n")
       :: else -> skip
       fi }
  /* D7 give up before PREPARED */
  :: atomic { dphase == DP_UP && dj == DJ_NONE -> dj = DJ_ABORTED; send(M_GIVEUP); printf("destination: gives up, journal ABORTED, sends abort\n") }
#ifdef MUT_DST_GIVES_UP
  /* mutant: a destination in PREPARED gives up on its own */
  :: atomic { dphase == DP_UP && dj == DJ_PREPARED -> dj = DJ_ABORTED; printf("destination: gives up after PREPARED\n") }
#endif
#ifndef MUT_NO_DECISION_QUERY
  /* D8 ask for the outcome */
  :: atomic { dphase == DP_UP && dj == DJ_PREPARED && net[M_STATUS] == 0 && net[M_COMMIT] == 0 && net[M_ABORT] == 0 ->
       send(M_STATUS); printf("destination: sends status\n") }
#endif
  /* late or duplicated messages */
  :: atomic { dphase != DP_DOWN && dj != DJ_NONE && net[M_FINAL] > 0 -> net[M_FINAL]--; printf("destination: drops a late final\n") }
  :: atomic { dphase != DP_DOWN && dj != DJ_PREPARED && net[M_COMMIT] > 0 -> net[M_COMMIT]--; printf("destination: drops a late commit\n") }
  /* crash */
  :: atomic { dcrashes < MAX_DST_CRASH && dphase != DP_DOWN ->
       dcrashes++; dphase = DP_DOWN; printf("destination: CRASH\n");
#ifdef MUT_VOLATILE_PREPARED
       if
       :: dj == DJ_PREPARED -> dj = DJ_NONE; ddata = 0; printf("destination: PREPARED was not durable\n")
       :: else -> skip
       fi
#endif
     }
  od
}

/* Clients: a write is acknowledged once it is durable on the side that serves it. */
active proctype clients() {
end:
  do
  :: atomic { writes < MAX_WRITES && src_serving -> sdata++; sctr = sdata; acked = sdata; writes++; printf("client: v%d acknowledged by the source\n", acked) }
  :: atomic { writes < MAX_WRITES && dst_serving -> ddata++; acked = ddata; writes++; printf("client: v%d acknowledged by the destination\n", acked) }
  od
}

/* The network loses and duplicates any message; the counts deliver in any order. */
#define LOSE(k) :: atomic { losses < MAX_LOSS && net[k] > 0 -> net[k]--; losses++; printf("network: loses %e\n", k) }
#define DUP(k)  :: atomic { dups < MAX_DUP && net[k] == 1 -> net[k]++; dups++; printf("network: duplicates %e\n", k) }
active proctype network() {
end:
  do
  LOSE(M_FINAL) LOSE(M_PREPARED) LOSE(M_COMMIT) LOSE(M_ABORT) LOSE(M_GIVEUP) LOSE(M_STATUS)
  DUP(M_FINAL) DUP(M_PREPARED) DUP(M_COMMIT) DUP(M_ABORT) DUP(M_GIVEUP) DUP(M_STATUS)
  od
}
