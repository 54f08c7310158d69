/*
 * The hierarchical counter, after Linux mm/page_counter.c.
 *
 * A charge walks from the group up through its ancestors. Unlike the
 * kernel's try_charge (which adds first and backs out), each level here is a
 * compare-and-swap loop that refuses before adding, so no observer ever sees
 * a level above its max because of a try_charge; only forced charges (memory
 * the kernel already allocated) and a max lowered below usage can do that.
 * The walk is bounded by SM_DEPTH_MAX so a corrupted parent chain cannot loop.
 */
#include <errno.h>

#include "core.h"
#include "reclaim.h"

#define RLX(p)	  atomic_load_explicit((p), memory_order_relaxed)
#define ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

/*
 * A charge of nr left usage u above `high` at this level: count the event
 * and, on the crossing itself (usage was at or below high before this
 * charge), wake the reclaimers waiting on this level (issue 4), and those
 * of the groups under it that wait on a high of their own (a helper waits
 * on its nearest level with a high only: without this, a member of p/c
 * with its own high slept through p's crossing until its next tick).
 * Charges that stay above high do not wake anyone: the reclaimers re-check
 * every tick. Concurrency: lock-free; the walk is O(groups x depth), on a
 * crossing only.
 */
static void sm_high_crossed(sockmem_seg_t *seg, uint32_t idx, int64_t u, int64_t nr, int64_t high)
{
	ADD(&seg->groups[idx].ev_high, 1);
	if (u - nr > high)
		return;
	sm_reclaim_wake(seg, idx);
	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1))
		if (i != idx && RLX(&seg->groups[i].high) != SOCKMEM_UNLIMITED &&
		    sm_group_within(seg, i, idx))
			sm_reclaim_wake(seg, i);
}

static void update_peak(struct sockmem_group *g, int64_t u)
{
	int64_t p = RLX(&g->peak);

	while (u > p && !atomic_compare_exchange_weak_explicit(
				&g->peak, &p, u, memory_order_relaxed, memory_order_relaxed))
		;
}

/* After a successful charge at one level: peak and high. */
static void charged(sockmem_seg_t *seg, uint32_t idx, int64_t u, int64_t nr)
{
	struct sockmem_group *g = &seg->groups[idx];
	int64_t high = RLX(&g->high);

	update_peak(g, u);
	if (u > high)
		sm_high_crossed(seg, idx, u, nr, high);
}

/* One level of try_charge: add nr unless that would exceed max. Usage and
 * max are whatever a member wrote: a sum that overflows is over any max. */
static bool level_try(struct sockmem_group *g, int64_t nr, int64_t *nu)
{
	int64_t u = RLX(&g->usage);

	do {
		if (__builtin_add_overflow(u, nr, nu) || *nu > RLX(&g->max))
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&g->usage, &u, *nu, memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

/* One level of uncharge (nr > 0), clamped at zero. Returns the bytes not
 * found; a usage below zero (written by a misbehaving member) found none. */
static int64_t level_uncharge(struct sockmem_group *g, int64_t nr)
{
	int64_t u = RLX(&g->usage), nu;

	do {
		nu = u >= nr ? u - nr : 0;
	} while (!atomic_compare_exchange_weak_explicit(&g->usage, &u, nu, memory_order_relaxed,
							memory_order_relaxed));
	return u >= nr ? 0 : u > 0 ? nr - u : nr;
}

/* One level of a forced charge: add nr, saturating at INT64_MAX. */
static int64_t level_force(struct sockmem_group *g, int64_t nr)
{
	int64_t u = RLX(&g->usage), nu;

	do {
		nu = sm_add_sat(u, nr);
	} while (!atomic_compare_exchange_weak_explicit(&g->usage, &u, nu, memory_order_relaxed,
							memory_order_relaxed));
	return nu;
}

/* Next level up, or SOCKMEM_NONE (top, or a corrupt index). */
static uint32_t up(sockmem_seg_t *seg, uint32_t idx)
{
	uint32_t p = seg->groups[idx].parent;

	return p < seg->ngroups ? p : SOCKMEM_NONE;
}

static void undo(sockmem_seg_t *seg, uint32_t from, uint32_t stop, int64_t nr)
{
	for (int d = 0; from != stop && from != SOCKMEM_NONE && d <= SM_DEPTH_MAX; d++) {
		level_uncharge(&seg->groups[from], nr);
		from = up(seg, from);
	}
}

/* Concurrency: lock-free, any thread of any process; see the file comment.
 * `count`: a refusal is a real failure (failcnt, events.max, pressure); the
 * cache's speculative batch attempts pass false. */
bool sm_try_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr, uint32_t *fail, bool count)
{
	uint32_t i = group < seg->ngroups ? group : SOCKMEM_NONE;
	int64_t nu;

	if (nr < 0 || i == SOCKMEM_NONE) {
		if (fail)
			*fail = SOCKMEM_NONE;
		return false;
	}
	if (nr == 0)
		return true;
	for (int d = 0; i != SOCKMEM_NONE && d <= SM_DEPTH_MAX; d++, i = up(seg, i)) {
		struct sockmem_group *g = &seg->groups[i];

		if (!level_try(g, nr, &nu)) {
			undo(seg, group, i, nr);
			if (count) {
				ADD(&g->failcnt, 1);
				ADD(&g->ev_max, 1);
				sockmem_enter_pressure(
					seg, i,
					__atomic_load_n(&sm_pressure_period_ns, __ATOMIC_RELAXED));
			}
			if (fail)
				*fail = i;
			return false;
		}
		charged(seg, i, nu, nr);
	}
	return true;
}

bool sockmem_try_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr, uint32_t *fail)
{
	return sm_try_charge(seg, group, nr, fail, true);
}

/* Concurrency: lock-free, any thread. Never fails. */
void sockmem_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr)
{
	uint32_t i = group < seg->ngroups ? group : SOCKMEM_NONE;

	if (nr <= 0)
		return;
	for (int d = 0; i != SOCKMEM_NONE && d <= SM_DEPTH_MAX; d++, i = up(seg, i)) {
		struct sockmem_group *g = &seg->groups[i];
		int64_t nu = level_force(g, nr);

		if (nu > RLX(&g->max)) {
			ADD(&g->ev_max, 1);
			sockmem_enter_pressure(
				seg, i, __atomic_load_n(&sm_pressure_period_ns, __ATOMIC_RELAXED));
		}
		charged(seg, i, nu, nr);
	}
}

/* Concurrency: lock-free, any thread. An uncharge below zero is a caller
 * bug somewhere: clamp, count it per level and log once per process. */
void sockmem_uncharge(sockmem_seg_t *seg, uint32_t group, int64_t nr)
{
	uint32_t i = group < seg->ngroups ? group : SOCKMEM_NONE;

	if (nr <= 0)
		return;
	for (int d = 0; i != SOCKMEM_NONE && d <= SM_DEPTH_MAX; d++, i = up(seg, i)) {
		struct sockmem_group *g = &seg->groups[i];
		int64_t missing = level_uncharge(g, nr);

		if (missing) {
			ADD(&g->underflows, 1);
			sm_log_once(SM_LOG_ERROR,
				    "segment %s: group \"%.128s\" uncharged %lld bytes below zero "
				    "(an accounting bug; clamped)",
				    seg->name, g->path, (long long)missing);
		}
	}
}
