/*
 * Crash windows of the reaper itself (white-box: the core API, no shim).
 *
 * Returning a dead member's charges is a multi-step change under the table
 * lock: the reaper (or the exiting process itself, in unregister) moves the
 * record LIVE -> DEAD, releases each of its slots, uncharges what they and
 * the record held, then frees the record. The lock is robust, so a reaper
 * killed by SIGKILL in the middle does not wedge the segment; but the next
 * lock holder must then finish the job, not drop it.
 *
 * These tests put a record in exactly the state such a killed reaper
 * leaves (a real SIGKILL cannot be aimed at a window this short from a
 * test) and check that the next reap returns every byte.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fh.h"
#include "internal.h"

static char ns[64];

static void teardown(void)
{
	if (ns[0])
		sockmem_unlink(ns);
}

TestSuite(reap_window, .fini = teardown, .timeout = 30);

#define CHARGE (100 * 1024)

/* A child registers in `g`, charges CHARGE through its thread cache, and
 * dies without unregistering (like SIGKILL). Returns its record index. */
static uint32_t dead_member(sockmem_seg_t *seg, uint32_t g)
{
	int pfd[2], st;
	uint32_t proc = SOCKMEM_NONE;
	pid_t pid;

	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sockmem_cache c;

		if (sockmem_proc_register(seg, g, &proc) != 0 ||
		    sockmem_cache_attach(seg, proc, 0, &c) != 0 ||
		    !sockmem_cache_charge(&c, CHARGE, true, NULL))
			_exit(2);
		(void)!write(pfd[1], &proc, sizeof(proc));
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &proc, sizeof(proc)), (ssize_t)sizeof(proc));
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return proc;
}

static int live_slots(sockmem_seg_t *seg)
{
	struct sockmem_slot *s;
	int n = 0;

	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++)
		n += atomic_load(&s->state) == SOCKMEM_LIVE;
	return n;
}

static sockmem_seg_t *setup(const char *name, uint32_t *g)
{
	struct sockmem_open_opts o = {.create = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;

	fh_ns(ns, sizeof(ns), name);
	sockmem_unlink(ns);
	o.ns = ns;
	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_create(seg, "w", g), 0);
	return seg;
}

/* Control: an ordinary dead member is reaped in full. */
Test(reap_window, dead_member_is_reaped)
{
	uint32_t g;
	sockmem_seg_t *seg = setup("rwok", &g);
	int64_t bytes;

	dead_member(seg, g);
	cr_assert_geq(fh_usage(seg, "w"), CHARGE);
	cr_expect_eq(sockmem_reap(seg, &bytes), 1);
	cr_expect_eq(fh_usage(seg, "w"), 0);
	cr_expect_eq(live_slots(seg), 0);
	sockmem_close(seg);
}

/* A reaper (or the member's own unregister at exit) was killed right after
 * its CAS LIVE -> DEAD: the record is DEAD, its slot still LIVE, nothing
 * returned yet. The next reap must return the CHARGE bytes. */
Test(reap_window, reaper_killed_after_marking_dead)
{
	uint32_t g, proc;
	sockmem_seg_t *seg = setup("rwdead", &g);
	struct sockmem_proc *p;
	int64_t bytes;
	int slots;

	proc = dead_member(seg, g);
	p = sockmem_proc_at(seg, proc);
	cr_assert_not_null(p);
	atomic_store(&p->state, SOCKMEM_DEAD); /* the killed reaper's CAS */
	sockmem_reap(seg, &bytes);
	slots = live_slots(seg);
	fprintf(stderr,
		"[INFO] reap after a reaper died mid-release: returned %lld B; usage %lld B; "
		"%d slots still LIVE\n",
		(long long)bytes, (long long)fh_usage(seg, "w"), slots);
	cr_expect_eq(fh_usage(seg, "w"), 0,
		     "%lld bytes of a dead member are lost for good: the record was freed "
		     "without returning them",
		     (long long)fh_usage(seg, "w"));
	cr_expect_eq(slots, 0, "%d orphaned slots (of record %u) left LIVE", slots, proc);
	sockmem_close(seg);
}

/*
 * A remote drainer raises a slot's `steal`, forces a barrier, waits for the
 * owner, takes the stock and lowers `steal`. If the drainer is killed in
 * between, nobody else lowers it unless `steal` says who holds it: then the
 * owner would back off on every charge (a bounded 2 ms wait, then the
 * uncached path), and after the owner's thread exits the slot would go back
 * to the free pool still stolen. `steal` holds the drainer's pid, so a
 * reaper, the owner or the next claimer can see that its holder died.
 */
TestSuite(drain_window, .fini = teardown, .timeout = 30);

Test(drain_window, drainer_killed_holding_steal)
{
	uint32_t g, proc;
	sockmem_seg_t *seg = setup("dwsteal", &g);
	struct sockmem_cache c;
	struct sockmem_slot *s;
	uint64_t t0, fast_ns, stuck_ns;
	pid_t pid;
	int st;

	cr_assert_eq(sockmem_proc_register(seg, g, &proc), 0);
	cr_assert_eq(sockmem_cache_attach(seg, proc, 0, &c), 0);
	s = c.slot;
	t0 = sockmem_now_ns();
	for (int i = 0; i < 200; i++) {
		sockmem_cache_charge(&c, 1000, true, NULL);
		sockmem_cache_uncharge(&c, 1000);
	}
	fast_ns = sockmem_now_ns() - t0;
	/* A drainer in another process takes `steal` and is SIGKILLed. */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint32_t zero = 0;

		/* What drain_chunk does: steal names the drainer's pid. */
		_exit(atomic_compare_exchange_strong(&s->steal, &zero, (uint32_t)getpid()) ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	{
		int64_t bytes;

		sockmem_reap(seg, &bytes); /* whatever a reaper can do */
	}
	t0 = sockmem_now_ns();
	for (int i = 0; i < 200; i++) {
		sockmem_cache_charge(&c, 1000, true, NULL);
		sockmem_cache_uncharge(&c, 1000);
	}
	stuck_ns = sockmem_now_ns() - t0;
	fprintf(stderr,
		"[INFO] 200 charge+uncharge pairs: %llu us before, %llu us after a drainer died "
		"holding steal\n",
		(unsigned long long)(fast_ns / 1000), (unsigned long long)(stuck_ns / 1000));
	/* Functional, not timed: the dead drainer's `steal` is down and the
	 * owner's charges come out of its stock again (the uncached path,
	 * taken while a drain holds the slot, leaves the stock alone). */
	cr_expect_eq(atomic_load(&s->steal), 0, "the dead drainer's steal is still raised");
	{
		int64_t stock0 = atomic_load(&s->stock);

		cr_assert_geq(stock0, 10 * 1000);
		for (int i = 0; i < 10; i++)
			sockmem_cache_charge(&c, 1000, true, NULL);
		cr_expect_eq(atomic_load(&s->stock), stock0 - 10 * 1000,
			     "the owner's cache is wedged: its charges bypass the stock (200 "
			     "pairs took %llu us, %llu us before)",
			     (unsigned long long)(stuck_ns / 1000),
			     (unsigned long long)(fast_ns / 1000));
		for (int i = 0; i < 10; i++)
			sockmem_cache_uncharge(&c, 1000);
	}
	sockmem_cache_detach(&c);
	cr_expect_eq(atomic_load(&s->steal), 0,
		     "the slot went back to the free pool with `steal` still raised");
	sockmem_proc_unregister(seg, proc);
	sockmem_close(seg);
}

/* A releaser killed after moving the slot into the record but before
 * uncharging it: the record is DEAD and holds the bytes, its slot is
 * FREE. The next reap uncharges them, once. */
Test(reap_window, reaper_killed_after_moving_slots)
{
	uint32_t g, proc;
	sockmem_seg_t *seg = setup("rwmoved", &g);
	struct sockmem_proc *p;
	struct sockmem_slot *s;
	int64_t bytes, moved = 0;

	proc = dead_member(seg, g);
	p = sockmem_proc_at(seg, proc);
	cr_assert_not_null(p);
	atomic_store(&p->state, SOCKMEM_DEAD);
	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++) {
		if (atomic_load(&s->state) != SOCKMEM_LIVE || atomic_load(&s->proc) != proc)
			continue;
		moved += atomic_exchange(&s->stock, 0) + atomic_exchange(&s->sock, 0);
		atomic_store(&s->proc, SOCKMEM_NONE);
		atomic_store(&s->state, SOCKMEM_FREE);
	}
	cr_assert_geq(moved, CHARGE);
	atomic_fetch_add(&p->sock, moved);
	cr_expect_eq(sockmem_reap(seg, &bytes), 1);
	cr_expect_eq(bytes, moved);
	cr_expect_eq(fh_usage(seg, "w"), 0);
	cr_expect_eq(sockmem_reap(seg, &bytes), 0, "a second reap finds nothing");
	cr_expect_eq(fh_usage(seg, "w"), 0);
	sockmem_close(seg);
}

/* A releaser killed inside release_slot, after it cleared the slot's
 * `proc` but before freeing it: a DEAD slot that no record names. A reap
 * frees it and returns what it still held to the slot's group. */
Test(reap_window, orphaned_dead_slot)
{
	uint32_t g, proc;
	sockmem_seg_t *seg = setup("rworphan", &g);
	struct sockmem_proc *p;
	struct sockmem_slot *s, *orphan = NULL;
	int64_t bytes;

	proc = dead_member(seg, g);
	p = sockmem_proc_at(seg, proc);
	cr_assert_not_null(p);
	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++)
		if (atomic_load(&s->state) == SOCKMEM_LIVE && atomic_load(&s->proc) == proc)
			orphan = s;
	cr_assert_not_null(orphan);
	atomic_store(&orphan->state, SOCKMEM_DEAD);
	atomic_store(&orphan->proc, SOCKMEM_NONE);
	sockmem_reap(seg, &bytes);
	cr_expect_eq(fh_usage(seg, "w"), 0, "usage %lld after the reap",
		     (long long)fh_usage(seg, "w"));
	cr_expect_eq(atomic_load(&orphan->state), SOCKMEM_FREE);
	cr_expect_eq(live_slots(seg), 0);
	sockmem_close(seg);
}

/* A drainer that is alive (here: stopped) keeps its `steal`: nobody may
 * take the slot from under a drain in progress. */
Test(drain_window, live_drainer_keeps_steal)
{
	uint32_t g, proc, zero = 0;
	sockmem_seg_t *seg = setup("dwlive", &g);
	struct sockmem_cache c;
	int64_t bytes;
	pid_t pid;
	int st;

	cr_assert_eq(sockmem_proc_register(seg, g, &proc), 0);
	cr_assert_eq(sockmem_cache_attach(seg, proc, 0, &c), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	cr_assert(atomic_compare_exchange_strong(&c.slot->steal, &zero, (uint32_t)pid));
	sockmem_reap(seg, &bytes);
	cr_expect_eq(atomic_load(&c.slot->steal), (uint32_t)pid,
		     "a live drainer's steal was lowered");
	/* The owner still works (uncached) while the drain is "in progress". */
	cr_expect(sockmem_cache_charge(&c, 1000, false, NULL));
	sockmem_cache_uncharge(&c, 1000);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	sockmem_reap(seg, &bytes);
	cr_expect_eq(atomic_load(&c.slot->steal), 0, "the dead drainer's steal stayed up");
	sockmem_cache_detach(&c);
	sockmem_proc_unregister(seg, proc);
	cr_expect_eq(fh_usage(seg, "w"), 0);
	sockmem_close(seg);
}

/* A member dies while a drainer that is alive (here: stopped, as a drainer
 * preempted or waiting out busy owners in its chunk can be) holds one of
 * its slots. The reaper returns the slot's bytes (atomic exchanges, like the
 * drainer's) but leaves `steal` to its holder: lowering it would let the
 * slot's next owner update its stock with plain stores while the drainer's
 * exchange of the same stock is still to come. */
Test(drain_window, live_drainer_keeps_steal_through_reap)
{
	uint32_t g, proc, zero = 0;
	sockmem_seg_t *seg = setup("dwreap", &g);
	struct sockmem_slot *s, *held = NULL;
	int64_t bytes;
	pid_t pid;
	int st;

	proc = dead_member(seg, g);
	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++)
		if (atomic_load(&s->state) == SOCKMEM_LIVE && atomic_load(&s->proc) == proc)
			held = s;
	cr_assert_not_null(held);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	cr_assert(atomic_compare_exchange_strong(&held->steal, &zero, (uint32_t)pid));
	cr_expect_eq(sockmem_reap(seg, &bytes), 1);
	cr_expect_eq(fh_usage(seg, "w"), 0, "usage %lld after the reap",
		     (long long)fh_usage(seg, "w"));
	cr_expect_eq(atomic_load(&held->steal), (uint32_t)pid,
		     "the reaper lowered a live drainer's steal (now %u)",
		     atomic_load(&held->steal));
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	sockmem_reap(seg, &bytes);
	cr_expect_eq(atomic_load(&held->steal), 0, "the dead drainer's steal stayed up");
	cr_expect_eq(live_slots(seg), 0);
	cr_expect_eq(fh_usage(seg, "w"), 0);
	sockmem_close(seg);
}
