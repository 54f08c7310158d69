/*
 * The reclaimer (issue 4; the 2008 RFC's background reclaim, per process).
 *
 * It runs in the helper thread (reconcile.c): low priority (nice +10), all
 * signals blocked, restarted lazily in a fork child, stopped at exit. Each
 * tick it re-reads the limits (so `sockmemctl set` takes effect within one
 * tick), the budget share and pressure. Between ticks it sleeps on the
 * futex of the nearest level with a high watermark; the counter wakes it
 * when a charge crosses that level's high (lib/counter.c), in whatever
 * process the charge happened.
 *
 * An episode starts when a level is above high and lasts until it is below
 * low (or below high when low is 0): each pass takes back idle cache bytes
 * in every process of the level (sockmem_drain_caches), reconciles this
 * process's sockets (releasing what the kernel already freed), and, if
 * still above the target, clamps this process's largest sockets first
 * (their buffers held at what they hold, clamp.c) until the clamped ones
 * cover the excess. A few passes per wake-up or tick, sched_yield between
 * them; if the level is still above high afterwards it enters pressure.
 * Clamping frees nothing by itself: it stops growth while the programs
 * read (a clamped stream's send buffer goes to half what it queues, so the
 * queue drains rather than being refilled at its level), so usage saws
 * between low and high. The episode's end counts
 * events.low and gives the clamped sockets back. Below high and outside an
 * episode the reclaimer costs nothing beyond the tick.
 */
#include <sched.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "reclaim.h"
#include "state.h"

#define PASSES	    2  /* passes per wake-up or tick */
#define TOP_SOCKETS 16 /* largest sockets considered per pass */

static uint32_t reclaim_lvl = SOCKMEM_NONE; /* helper only */
static uint32_t episode_lvl = SOCKMEM_NONE; /* level being reclaimed */
static bool clamped_any;		    /* some socket is rclamped */
static bool warned_gap;

uint32_t sm_reclaim_level(void)
{
	return reclaim_lvl;
}

static void warn_gap(uint32_t lvl)
{
	struct sockmem_group *g = sockmem_group_at(sm_seg, lvl);

	if (warned_gap || !g)
		return;
	if (sm_low_too_close(atomic_load(&g->high), atomic_load(&g->low))) {
		warned_gap = true;
		sm_log(SM_LOG_WARN,
		       "group \"%.128s\": low is too close to high to be useful "
		       "(gap < max(high/8, 128K)): the reclaimer will run often for little gain",
		       g->path);
	}
}

void sm_limits_tick_begin(void)
{
	sm_limit_refresh();
	atomic_store_explicit(&sm_buf_share,
			      sm_limit_is_on()
				      ? sm_budget_share(sm_seg, sm_group, SM_SHARE_MIN_SOCKETS)
				      : INT64_MAX,
			      memory_order_relaxed);
	atomic_store_explicit(&sm_buf_pressure, sockmem_under_pressure(sm_seg, sm_group),
			      memory_order_relaxed);
	reclaim_lvl = sm_high_level(sm_seg, sm_group);
	if (reclaim_lvl != SOCKMEM_NONE)
		warn_gap(reclaim_lvl);
}

/* ---- one pass ---------------------------------------------------------- */

struct top {
	struct sm_sock *st[TOP_SOCKETS];
	int fd[TOP_SOCKETS];
	int64_t e[TOP_SOCKETS];
	int n;
	int64_t released; /* bytes the reconcile pass released */
};

int64_t sm_tick_released;

static void reconcile_one(int fd, struct sm_sock *st, void *arg)
{
	struct top *t = arg;
	int64_t e0, e1;

	if (!sm_sock_owned(st))
		return;
	e0 = atomic_load(&st->est);
	sm_reconcile(fd, st);
	e1 = atomic_load(&st->est);
	if (e0 > e1 && e1 >= 0)
		t->released += e0 - e1;
}

/* Keep the TOP_SOCKETS largest unclamped sockets (dups once). */
static void largest_one(int fd, struct sm_sock *st, void *arg)
{
	struct top *t = arg;
	int64_t e = atomic_load(&st->est);
	int k;

	if (!sm_sock_owned(st) || atomic_load_explicit(&st->rclamped, memory_order_relaxed) ||
	    e <= 0)
		return;
	for (k = 0; k < t->n; k++)
		if (t->st[k] == st)
			return;
	if (t->n < TOP_SOCKETS) {
		k = t->n++;
	} else {
		k = 0;
		for (int j = 1; j < t->n; j++)
			if (t->e[j] < t->e[k])
				k = j;
		if (t->e[k] >= e)
			return;
	}
	t->st[k] = st;
	t->fd[k] = fd;
	t->e[k] = e;
}

/* Clamp the largest sockets until they cover `excess`. Runs inside an RCU
 * read-side section (the states must stay valid). */
static void clamp_largest(struct sockmem_group *g, int64_t excess)
{
	struct top t = {.n = 0};
	int64_t covered = 0;

	sm_fd_for_each(largest_one, &t);
	while (covered < excess && t.n > 0) {
		int b = 0;

		for (int j = 1; j < t.n; j++)
			if (t.e[j] > t.e[b])
				b = j;
		if (sm_fd_peek(t.fd[b]) == t.st[b]) {
			atomic_store_explicit(&t.st[b]->rclamped, true, memory_order_relaxed);
			sm_buf_apply(t.fd[b], t.st[b]);
			/* Send side: below what it queues (half), so the queue
			 * drains as the peer reads instead of being refilled at
			 * its level; usage then falls below low, the episode
			 * ends and the buffers are given back: the sawtooth. */
			if (t.st[b]->type == SOCK_STREAM)
				sm_buf_moderate(t.fd[b], t.st[b]);
			atomic_fetch_add_explicit(&g->reclaim_clamped, 1, memory_order_relaxed);
			clamped_any = true;
			covered += t.e[b];
		}
		t.st[b] = t.st[--t.n];
		t.fd[b] = t.fd[t.n];
		t.e[b] = t.e[t.n];
	}
}

static void unclamp_one(int fd, struct sm_sock *st, void *arg)
{
	if (atomic_load_explicit(&st->rclamped, memory_order_relaxed) && sm_sock_owned(st)) {
		atomic_store_explicit(&st->rclamped, false, memory_order_relaxed);
		sm_buf_apply(fd, st);
	}
}

static int64_t target_of(struct sockmem_group *g)
{
	int64_t low = atomic_load(&g->low);

	return low > 0 ? low : atomic_load(&g->high);
}

static void end_episode(struct sockmem_group *g)
{
	atomic_fetch_add_explicit(&g->ev_low, 1, memory_order_relaxed);
	episode_lvl = SOCKMEM_NONE;
	if (clamped_any) {
		clamped_any = false;
		sm_fd_for_each(unclamp_one, NULL);
	}
}

/* One pass on level lvl; true once the level is below its target. */
static bool pass(uint32_t lvl, struct sockmem_group *g, bool reconciled)
{
	struct top top = {.n = 0};
	int64_t drained, u, t;

	atomic_fetch_add_explicit(&g->reclaim_passes, 1, memory_order_relaxed);
	drained = sockmem_drain_caches(sm_seg, lvl);
	if (drained > 0)
		atomic_fetch_add_explicit(&g->reclaim_drained, (uint64_t)drained,
					  memory_order_relaxed);
	if (!reconciled)
		sm_fd_for_each(reconcile_one, &top);
	else
		top.released = sm_tick_released;
	if (top.released > 0)
		atomic_fetch_add_explicit(&g->reclaim_reconciled, (uint64_t)top.released,
					  memory_order_relaxed);
	u = atomic_load(&g->usage);
	t = target_of(g); /* any value a member wrote: no u - t overflow */
	if (u < t)
		return true;
	sm_rcu_lock();
	clamp_largest(g, t > 0 ? u - t : u);
	sm_rcu_unlock();
	return false;
}

/* Run an episode's passes (tick or wake-up). `reconciled`: every socket
 * was reconciled just before (the tick). */
static void reclaim(bool reconciled)
{
	uint32_t lvl = reclaim_lvl;
	struct sockmem_group *g;
	int64_t u, h;

	if (episode_lvl == SOCKMEM_NONE && sm_over_high(sm_seg, sm_group, &u, &h) == SOCKMEM_NONE)
		return;
	if (episode_lvl == SOCKMEM_NONE) {
		lvl = sm_over_high(sm_seg, sm_group, &u, &h);
		episode_lvl = lvl;
	}
	lvl = episode_lvl;
	g = sockmem_group_at(sm_seg, lvl);
	if (!g || atomic_load(&g->high) == SOCKMEM_UNLIMITED) { /* limits changed */
		episode_lvl = SOCKMEM_NONE;
		if (clamped_any) {
			clamped_any = false;
			sm_fd_for_each(unclamp_one, NULL);
		}
		return;
	}
	for (int i = 0; i < PASSES; i++) {
		if (pass(lvl, g, reconciled && i == 0)) {
			end_episode(g);
			return;
		}
		sched_yield();
	}
	if (atomic_load(&g->usage) > atomic_load(&g->high))
		sockmem_enter_pressure(sm_seg, lvl, (uint64_t)sm_cfg.pressure_ms * 1000000u);
}

void sm_limits_tick_end(void)
{
	reclaim(true);
}

void sm_reclaim_woken(void)
{
	reclaim(false);
}
