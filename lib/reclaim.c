/*
 * Limits that hold (issue 4): wake-up and wait of the reclaimers across
 * processes, the kernel's overage curve, budget shares. See reclaim.h.
 */
#include "reclaim.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define RLX(p) atomic_load_explicit((p), memory_order_relaxed)

/*
 * Every figure read from a group (usage, max, high, low, sockets) is
 * whatever a member last wrote: any int64 value. The arithmetic below
 * saturates rather than overflows (UBSan-clean for any input).
 */

/* a - b, saturated at INT64_MIN / INT64_MAX. */
static inline int64_t sub_sat(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_sub_overflow(a, b, &r))
		return b < 0 ? INT64_MAX : INT64_MIN;
	return r;
}

#define DELAY_PRECISION_SHIFT 20	  /* MEMCG_DELAY_PRECISION_SHIFT */
#define DELAY_SCALING_SHIFT   14	  /* MEMCG_DELAY_SCALING_SHIFT */
#define CHARGE_BATCH_BYTES    (64 * 4096) /* MEMCG_CHARGE_BATCH pages */

uint64_t sm_throttle_delay_ns(int64_t usage, int64_t high, int64_t nr)
{
	uint64_t over, overage, d, ns;

	if (usage <= high || nr <= 0 || high == SOCKMEM_UNLIMITED)
		return 0;
	if (high < 1)
		high = 1;
	/* Relative overage in 1/2^20 units, capped at 4x high: beyond that
	 * the result is the 2 s cap anyway, and the square stays in 64 bits.
	 * usage > high >= 1, so usage - high fits; the test avoids 4 * high
	 * and the shift is done in 128 bits. */
	over = (uint64_t)usage - (uint64_t)high;
	if (over / 4 >= (uint64_t)high)
		overage = 4ull << DELAY_PRECISION_SHIFT;
	else
		overage = (uint64_t)(((unsigned __int128)over << DELAY_PRECISION_SHIFT) /
				     (uint64_t)high);
	d = (overage * overage) >> DELAY_PRECISION_SHIFT; /* <= 2^24 */
	ns = (d * 1000000000ull) >> DELAY_SCALING_SHIFT;  /* <= 2^40 */
	if (nr > 16 * CHARGE_BATCH_BYTES)
		nr = 16 * CHARGE_BATCH_BYTES;
	ns = ns * (uint64_t)nr / CHARGE_BATCH_BYTES; /* own share of the overage */
	return ns > SM_THROTTLE_MAX_NS ? SM_THROTTLE_MAX_NS : ns;
}

uint32_t sm_over_high(sockmem_seg_t *seg, uint32_t group, int64_t *usage, int64_t *high)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	uint32_t best = SOCKMEM_NONE, i = group;
	double worst = 0;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++) {
		int64_t u = RLX(&g->usage), h = RLX(&g->high);

		if (h != SOCKMEM_UNLIMITED && u > h) {
			/* In double: u - h overflows int64 for a negative h. */
			double rel = ((double)u - (double)h) / (double)(h > 0 ? h : 1);

			if (best == SOCKMEM_NONE || rel > worst) {
				best = i;
				worst = rel;
				*usage = u;
				*high = h;
			}
		}
		i = g->parent;
		g = sm_group_parent(seg, g);
	}
	return best;
}

uint32_t sm_high_level(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	uint32_t i = group;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++) {
		if (RLX(&g->high) != SOCKMEM_UNLIMITED)
			return i;
		i = g->parent;
		g = sm_group_parent(seg, g);
	}
	return SOCKMEM_NONE;
}

bool sm_limited(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++, g = sm_group_parent(seg, g))
		if (RLX(&g->max) != SOCKMEM_UNLIMITED)
			return true;
	return false;
}

bool sm_comfortable(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	bool any = false;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++, g = sm_group_parent(seg, g)) {
		int64_t m = RLX(&g->max), h = RLX(&g->high), u = RLX(&g->usage);

		if (h != SOCKMEM_UNLIMITED && u > h)
			return false;
		if (m == SOCKMEM_UNLIMITED)
			continue;
		/* m / DEN * NUM: no overflow for any m (a member wrote it). */
		if (m < 0 || u > m / SM_COMFORT_DEN * SM_COMFORT_NUM +
					     m % SM_COMFORT_DEN * SM_COMFORT_NUM / SM_COMFORT_DEN)
			return false;
		any = true;
	}
	return any;
}

/* Accounted sockets open in `anc`'s subtree. */
static int64_t subtree_sockets(sockmem_seg_t *seg, uint32_t anc)
{
	int64_t n = 0;

	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1))
		if (sm_group_within(seg, i, anc))
			n = sm_add_sat(n, RLX(&seg->groups[i].sockets));
	return n;
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	/* Shared (no FUTEX_PRIVATE_FLAG): waiters are in other processes. */
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void sm_reclaim_wake(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);

	if (!g || seg->readonly)
		return;
	atomic_fetch_add_explicit(&g->reclaim_seq, 1, memory_order_release);
	int saved = errno;
	futex(&g->reclaim_seq, FUTEX_WAKE, INT32_MAX, NULL);
	errno = saved;
}

uint32_t sm_reclaim_seq(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);

	return g ? atomic_load_explicit(&g->reclaim_seq, memory_order_acquire) : 0;
}

bool sm_reclaim_wait(sockmem_seg_t *seg, uint32_t group, uint32_t seen, uint64_t timeout_ns)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
			      .tv_nsec = (long)(timeout_ns % 1000000000u)};
	int saved = errno;
	long rc;

	if (!g)
		return false;
	rc = futex(&g->reclaim_seq, FUTEX_WAIT, seen, &ts);
	errno = saved;
	return rc == 0 || atomic_load(&g->reclaim_seq) != seen;
}

bool sm_low_too_close(int64_t high, int64_t low)
{
	int64_t gap;

	if (high == SOCKMEM_UNLIMITED || low <= 0)
		return false;
	gap = high / 8 > 128 * 1024 ? high / 8 : 128 * 1024;
	return sub_sat(high, low) < gap;
}

/* Room under one level's limits: its finite max and, with `high`, its high
 * watermark too (0 once over either); INT64_MAX if neither is finite. */
static int64_t level_room(struct sockmem_group *g, bool high)
{
	int64_t u = RLX(&g->usage), room = INT64_MAX;
	int64_t lim[2] = {RLX(&g->max), high ? RLX(&g->high) : SOCKMEM_UNLIMITED};

	for (int i = 0; i < 2; i++) {
		int64_t r = lim[i] > u ? sub_sat(lim[i], u) : 0;

		if (lim[i] != SOCKMEM_UNLIMITED && r < room)
			room = r;
	}
	return room;
}

int64_t sm_headroom(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	int64_t room = INT64_MAX;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++, g = sm_group_parent(seg, g)) {
		int64_t r = level_room(g, false);

		if (r < room)
			room = r;
	}
	return room;
}

/* What one level offers for its sockets to share: its whole max (the
 * budget; a negative max offers nothing), or the room under its max and
 * high. INT64_MAX: no such limit on this level. */
static int64_t level_offer(struct sockmem_group *g, bool room)
{
	int64_t m;

	if (room)
		return level_room(g, true);
	m = RLX(&g->max);
	return m == SOCKMEM_UNLIMITED ? INT64_MAX : m > 0 ? m : 0;
}

/* The smallest, over the group and its ancestors, of what a level offers
 * divided by the sockets open in its subtree (at least min_sockets, at
 * least 1: the count may read negative). */
static int64_t per_socket(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets, bool room)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	int64_t least = INT64_MAX;
	uint32_t i = group;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++) {
		int64_t v = level_offer(g, room);

		if (v != INT64_MAX) {
			int64_t n = subtree_sockets(seg, i);

			if (n < min_sockets)
				n = min_sockets;
			if (n < 1)
				n = 1;
			if (v / n < least)
				least = v / n;
		}
		i = g->parent;
		g = sm_group_parent(seg, g);
	}
	return least;
}

int64_t sm_budget_share(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets)
{
	return per_socket(seg, group, min_sockets, false);
}

int64_t sm_room_per_socket(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets)
{
	return per_socket(seg, group, min_sockets, true);
}
