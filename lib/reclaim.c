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

#define DELAY_PRECISION_SHIFT 20	  /* MEMCG_DELAY_PRECISION_SHIFT */
#define DELAY_SCALING_SHIFT   14	  /* MEMCG_DELAY_SCALING_SHIFT */
#define CHARGE_BATCH_BYTES    (64 * 4096) /* MEMCG_CHARGE_BATCH pages */

uint64_t sm_throttle_delay_ns(int64_t usage, int64_t high, int64_t nr)
{
	uint64_t overage, d, ns;

	if (usage <= high || nr <= 0 || high == SOCKMEM_UNLIMITED)
		return 0;
	if (high < 1)
		high = 1;
	/* Relative overage in 1/2^20 units, capped at 4x high: beyond that
	 * the result is the 2 s cap anyway, and the square stays in 64 bits. */
	if (usage - high >= 4 * high)
		overage = 4ull << DELAY_PRECISION_SHIFT;
	else
		overage = ((uint64_t)(usage - high) << DELAY_PRECISION_SHIFT) / (uint64_t)high;
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
			double rel = (double)(u - h) / (double)(h > 0 ? h : 1);

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

/* Accounted sockets open in `anc`'s subtree. */
static int64_t subtree_sockets(sockmem_seg_t *seg, uint32_t anc)
{
	int64_t n = 0;

	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1))
		if (sm_group_within(seg, i, anc))
			n += RLX(&seg->groups[i].sockets);
	return n;
}

int64_t sm_budget_share(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	int64_t share = INT64_MAX;
	uint32_t i = group;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++) {
		int64_t m = RLX(&g->max);

		if (m != SOCKMEM_UNLIMITED) {
			int64_t n = subtree_sockets(seg, i);
			int64_t s = m / (n > min_sockets ? n : (min_sockets > 0 ? min_sockets : 1));

			if (s < share)
				share = s;
		}
		i = g->parent;
		g = sm_group_parent(seg, g);
	}
	return share;
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
	return high - low < gap;
}

int64_t sm_headroom(sockmem_seg_t *seg, uint32_t group)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	int64_t room = INT64_MAX;

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++, g = sm_group_parent(seg, g)) {
		int64_t m = RLX(&g->max), u = RLX(&g->usage);

		if (m != SOCKMEM_UNLIMITED && m - u < room)
			room = m > u ? m - u : 0;
	}
	return room;
}
