/*
 * Groups: paths, lock-free lookup, creation with implicit parents under the
 * table lock, removal, limits, statistics, iteration and pressure.
 */
#include <errno.h>
#include <string.h>

#include "core.h"

#define ACQ(p) atomic_load_explicit((p), memory_order_acquire)
#define RLX(p) atomic_load_explicit((p), memory_order_relaxed)

uint64_t sm_pressure_period_ns = 1000000000u;

void sockmem_set_pressure_period(uint64_t period_ns)
{
	if (period_ns > 0)
		__atomic_store_n(&sm_pressure_period_ns, period_ns, __ATOMIC_RELAXED);
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static const char *component_error(const char *p, size_t cl)
{
	if (cl == 0)
		return "empty component (leading, trailing or double '/')";
	if ((cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
		return "'.' and '..' are not group names";
	for (size_t k = 0; k < cl; k++)
		if (!name_char(p[k]))
			return "invalid character (allowed: A-Z a-z 0-9 _ . - and '/' between "
			       "names)";
	return NULL;
}

/* Concurrency: pure function. */
int sockmem_path_valid(const char *path, const char **why)
{
	const char *w = NULL, *p = path;

	if (!path || !*path)
		w = "empty path";
	else if (strnlen(path, SOCKMEM_PATH_MAX) >= SOCKMEM_PATH_MAX)
		w = "path too long (at most 127 characters)";
	while (!w) {
		size_t cl = strcspn(p, "/");

		w = component_error(p, cl);
		if (p[cl] == '\0')
			break;
		p += cl + 1;
	}
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

/* ---- internal accessors ---------------------------------------------- */

struct sockmem_group *sm_group_live(sockmem_seg_t *seg, uint32_t idx)
{
	struct sockmem_group *g = sockmem_group_at(seg, idx);

	return g && ACQ(&g->state) == SOCKMEM_LIVE ? g : NULL;
}

struct sockmem_group *sm_group_parent(sockmem_seg_t *seg, const struct sockmem_group *g)
{
	return g->parent == SOCKMEM_NONE ? NULL : sockmem_group_at(seg, g->parent);
}

/* Concurrency: lock-free; the parent chain of a live group is immutable. */
bool sm_group_within(sockmem_seg_t *seg, uint32_t idx, uint32_t anc)
{
	const struct sockmem_group *g;

	for (int d = 0; d <= SM_DEPTH_MAX && idx != SOCKMEM_NONE; d++) {
		if (idx == anc)
			return true;
		g = sockmem_group_at(seg, idx);
		if (!g)
			return false;
		idx = g->parent;
	}
	return false;
}

/* ---- lookup / create / remove ---------------------------------------- */

/* Scan for a live group with exactly this path (first `len` chars). */
static uint32_t find(sockmem_seg_t *seg, const char *path, size_t len)
{
	for (uint32_t i = 0; i < seg->ngroups; i++) {
		struct sockmem_group *g = &seg->groups[i];
		uint32_t gen;

		if (ACQ(&g->state) != SOCKMEM_LIVE)
			continue;
		gen = ACQ(&g->generation);
		if (strncmp(g->path, path, len) != 0 || g->path[len] != '\0')
			continue;
		/* Recheck: the slot was not freed and reused while we compared. */
		if (ACQ(&g->state) == SOCKMEM_LIVE && ACQ(&g->generation) == gen)
			return i;
	}
	return SOCKMEM_NONE;
}

/* Concurrency: lock-free, any thread; works on a read-only mapping. */
int sockmem_group_lookup(sockmem_seg_t *seg, const char *path, uint32_t *idx)
{
	uint32_t i;

	if (sockmem_path_valid(path, NULL) < 0)
		return -EINVAL;
	i = find(seg, path, strlen(path));
	if (i == SOCKMEM_NONE)
		return -ENOENT;
	if (idx)
		*idx = i;
	return 0;
}

static void reset_group(struct sockmem_group *g)
{
	atomic_store_explicit(&g->usage, 0, memory_order_relaxed);
	atomic_store_explicit(&g->peak, 0, memory_order_relaxed);
	atomic_store_explicit(&g->max, SOCKMEM_UNLIMITED, memory_order_relaxed);
	atomic_store_explicit(&g->high, SOCKMEM_UNLIMITED, memory_order_relaxed);
	atomic_store_explicit(&g->low, 0, memory_order_relaxed);
	atomic_store_explicit(&g->pressure_until_ns, 0, memory_order_relaxed);
	memset((char *)g + offsetof(struct sockmem_group, failcnt), 0,
	       offsetof(struct sockmem_group, path) - offsetof(struct sockmem_group, failcnt));
	memset(g->path, 0, sizeof(g->path));
}

/* Under the table lock: claim a free entry for path[0..len). */
static int add_group(sockmem_seg_t *seg, const char *path, size_t len, uint32_t parent,
		     uint32_t *idx)
{
	struct sockmem_group *pg = parent == SOCKMEM_NONE ? NULL : &seg->groups[parent];

	for (uint32_t i = 0; i < seg->ngroups; i++) {
		struct sockmem_group *g = &seg->groups[i];

		if (RLX(&g->state) != SOCKMEM_FREE)
			continue;
		atomic_store_explicit(&g->state, SOCKMEM_CLAIMED, memory_order_relaxed);
		atomic_fetch_add_explicit(&g->generation, 1, memory_order_release);
		reset_group(g);
		memcpy(g->path, path, len);
		g->parent = parent;
		g->depth = pg ? pg->depth + 1 : 0;
		atomic_store_explicit(&g->state, SOCKMEM_LIVE, memory_order_release);
		*idx = i;
		return 0;
	}
	return -ENOSPC;
}

/* Concurrency: takes the table lock when something must be created. */
int sockmem_group_create(sockmem_seg_t *seg, const char *path, uint32_t *idx)
{
	uint32_t parent = SOCKMEM_NONE, i = SOCKMEM_NONE, made[SM_DEPTH_MAX + 1];
	size_t len = 0, total, nmade = 0;
	int rc;

	if (sockmem_path_valid(path, NULL) < 0)
		return -EINVAL;
	if (sockmem_group_lookup(seg, path, idx) == 0)
		return 0;
	rc = sm_table_lock(seg);
	if (rc < 0)
		return rc;
	total = strlen(path);
	while (len < total) {
		const char *slash = strchr(path + len, '/');

		len = slash ? (size_t)(slash - path) : total;
		i = find(seg, path, len);
		if (i == SOCKMEM_NONE) {
			if ((rc = add_group(seg, path, len, parent, &i)) < 0)
				break;
			if (nmade < SM_DEPTH_MAX + 1)
				made[nmade++] = i;
		}
		parent = i;
		len += slash ? 1 : 0;
	}
	/* Refused part way (the table is full): take back the ancestors this
	 * call created, so a refused request leaves nothing behind. Nobody can
	 * have registered in them: that takes the lock we hold. */
	while (rc < 0 && nmade > 0) {
		struct sockmem_group *g = &seg->groups[made[--nmade]];

		atomic_store_explicit(&g->state, SOCKMEM_DEAD, memory_order_release);
		reset_group(g);
		atomic_store_explicit(&g->state, SOCKMEM_FREE, memory_order_release);
	}
	sm_table_unlock(seg);
	if (rc == 0 && idx)
		*idx = i;
	return rc;
}

static bool has_children(sockmem_seg_t *seg, uint32_t idx)
{
	for (uint32_t i = 0; i < seg->ngroups; i++)
		if (RLX(&seg->groups[i].state) == SOCKMEM_LIVE && seg->groups[i].parent == idx)
			return true;
	return false;
}

/* Concurrency: table lock. Racy against a concurrent charge by a process
 * that is not registered in the group (it would charge a freed entry); the
 * registered members are excluded by the `processes` check. */
int sockmem_group_remove(sockmem_seg_t *seg, const char *path)
{
	uint32_t i;
	int rc;

	rc = sm_table_lock(seg);
	if (rc < 0)
		return rc;
	rc = sockmem_group_lookup(seg, path, &i);
	if (rc == 0) {
		struct sockmem_group *g = &seg->groups[i];

		if (has_children(seg, i) || RLX(&g->processes) > 0 || RLX(&g->usage) != 0) {
			rc = -EBUSY;
		} else {
			atomic_store_explicit(&g->state, SOCKMEM_DEAD, memory_order_release);
			reset_group(g);
			atomic_store_explicit(&g->state, SOCKMEM_FREE, memory_order_release);
		}
	}
	sm_table_unlock(seg);
	return rc;
}

/* ---- limits ----------------------------------------------------------- */

static int check_limit(int64_t v, const char *what, char *err, size_t errlen)
{
	if (v != SOCKMEM_KEEP && v < 0)
		return sm_fail(err, errlen, -EINVAL, "%s must not be negative", what);
	return 0;
}

/* Concurrency: table lock (serialises writers); charges read the limits
 * relaxed and may use the old or the new value while the change lands. */
static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* See core.h. Concurrency: pure function. */
void sm_limits_steps(const int64_t from[3], const int64_t to[3], int64_t steps[5][3])
{
	int64_t h1 = min64(from[1], to[1]);

	if (h1 != SOCKMEM_UNLIMITED)
		h1 = min64(h1, min64(from[0], to[0]));
	/* lower low; lower high; set max; set high; set low */
	steps[0][0] = from[0], steps[0][1] = from[1], steps[0][2] = min64(from[2], to[2]);
	steps[1][0] = from[0], steps[1][1] = h1, steps[1][2] = steps[0][2];
	steps[2][0] = to[0], steps[2][1] = h1, steps[2][2] = steps[0][2];
	steps[3][0] = to[0], steps[3][1] = to[1], steps[3][2] = steps[0][2];
	steps[4][0] = to[0], steps[4][1] = to[1], steps[4][2] = to[2];
}

/* One store per step (each step changes one field), in sm_limits_steps'
 * order: a reader without the lock, or the next lock holder after this one
 * was killed between two stores, never sees an inconsistent triple (which
 * validation would refuse). Table lock. */
static void store_limits(struct sockmem_group *g, int64_t max, int64_t high, int64_t low)
{
	const int64_t from[3] = {RLX(&g->max), RLX(&g->high), RLX(&g->low)};
	const int64_t to[3] = {max, high, low};
	_Atomic int64_t *field[3] = {&g->max, &g->high, &g->low};
	static const int which[5] = {2, 1, 0, 1, 2};
	int64_t steps[5][3];

	sm_limits_steps(from, to, steps);
	for (int k = 0; k < 5; k++)
		atomic_store_explicit(field[which[k]], steps[k][which[k]], memory_order_relaxed);
}

/* Set limits on the group at idx, or (path not NULL) on the live group with
 * that path, found under the table lock: creating, removing and reusing an
 * entry take that lock too, so the limits cannot land on a group that took
 * the entry of one removed in between. */
static int set_limits(sockmem_seg_t *seg, uint32_t idx, const char *path, int64_t max, int64_t high,
		      int64_t low, char *err, size_t errlen)
{
	struct sockmem_group *g;
	int64_t nmax, nhigh, nlow;
	int rc;

	if (check_limit(max, "max", err, errlen) || check_limit(high, "high", err, errlen) ||
	    check_limit(low, "low", err, errlen))
		return -EINVAL;
	if (path && sockmem_path_valid(path, NULL) < 0)
		return sm_fail(err, errlen, -EINVAL, "'%s' is not a group path", path);
	rc = sm_table_lock(seg);
	if (rc == -ETIMEDOUT)
		return sm_fail(err, errlen, rc,
			       "segment %s: table lock not released within %u ms (a member "
			       "stopped while holding it?)",
			       seg->name, sm_table_lock_timeout_ms);
	if (rc < 0)
		return sm_fail(err, errlen, rc, "segment %s: table lock: %s", seg->name,
			       strerror(-rc));
	if (path)
		idx = find(seg, path, strlen(path));
	g = sm_group_live(seg, idx);
	if (!g) {
		if (path)
			rc = sm_fail(err, errlen, -ENOENT, "group '%s' does not exist", path);
		else
			rc = sm_fail(err, errlen, -ENOENT, "group %u does not exist", idx);
		goto out;
	}
	nmax = max == SOCKMEM_KEEP ? RLX(&g->max) : max;
	nhigh = high == SOCKMEM_KEEP ? RLX(&g->high) : high;
	nlow = low == SOCKMEM_KEEP ? RLX(&g->low) : low;
	rc = sockmem_limits_check(nmax, nhigh, nlow, err, errlen);
	if (rc == 0) {
		store_limits(g, nmax, nhigh, nlow);
		if (RLX(&g->usage) > nmax)
			sockmem_enter_pressure(
				seg, idx,
				__atomic_load_n(&sm_pressure_period_ns, __ATOMIC_RELAXED));
	}
out:
	sm_table_unlock(seg);
	return rc;
}

int sockmem_group_set_limits(sockmem_seg_t *seg, uint32_t idx, int64_t max, int64_t high,
			     int64_t low, char *err, size_t errlen)
{
	return set_limits(seg, idx, NULL, max, high, low, err, errlen);
}

int sockmem_group_set_limits_path(sockmem_seg_t *seg, const char *path, int64_t max, int64_t high,
				  int64_t low, char *err, size_t errlen)
{
	return set_limits(seg, SOCKMEM_NONE, path, max, high, low, err, errlen);
}

/* Concurrency: racy by design (a concurrent charge may raise it again). */
int sockmem_group_reset_peak(sockmem_seg_t *seg, uint32_t idx)
{
	struct sockmem_group *g = sm_group_live(seg, idx);

	if (!g)
		return -ENOENT;
	if (seg->readonly)
		return -EROFS;
	atomic_store_explicit(&g->peak, RLX(&g->usage), memory_order_relaxed);
	return 0;
}

/* ---- statistics ------------------------------------------------------- */

/* Bytes in the stock of live slots charging idx or a descendant, in
 * [0, INT64_MAX]: a stock is never negative (one that is, written by a
 * misbehaving member, counts as 0) and the sum saturates. */
static int64_t cached_bytes(sockmem_seg_t *seg, uint32_t idx)
{
	int64_t sum = 0;

	for (uint32_t i = 0; i < seg->nslots; i++) {
		struct sockmem_slot *s = &seg->slots[i];
		int64_t stock;

		if (ACQ(&s->state) != SOCKMEM_LIVE ||
		    !sm_group_within(seg, atomic_load_explicit(&s->group, memory_order_relaxed),
				     idx))
			continue;
		stock = RLX(&s->stock);
		if (stock > 0)
			sum = sm_add_sat(sum, stock);
	}
	return sum;
}

static void copy_counters(const struct sockmem_group *g, struct sockmem_group_stat *st)
{
	st->current = RLX(&g->usage);
	st->max = RLX(&g->max);
	st->high = RLX(&g->high);
	st->low = RLX(&g->low);
	st->peak = RLX(&g->peak);
	st->failcnt = RLX(&g->failcnt);
	st->ev_low = RLX(&g->ev_low);
	st->ev_high = RLX(&g->ev_high);
	st->ev_max = RLX(&g->ev_max);
	st->ev_pressure = RLX(&g->ev_pressure);
	st->ev_throttled = RLX(&g->ev_throttled);
	st->underflows = RLX(&g->underflows);
	st->throttle_ns = RLX(&g->throttle_ns);
	st->reclaim_passes = RLX(&g->reclaim_passes);
	st->reclaim_drained = RLX(&g->reclaim_drained);
	st->reclaim_reconciled = RLX(&g->reclaim_reconciled);
	st->reclaim_clamped = RLX(&g->reclaim_clamped);
	st->sockets = RLX(&g->sockets);
	st->processes = RLX(&g->processes);
}

/* Concurrency: lock-free snapshot, fields read one by one; no writes. */
int sockmem_group_stat(sockmem_seg_t *seg, uint32_t idx, struct sockmem_group_stat *st)
{
	struct sockmem_group *g = sm_group_live(seg, idx);

	if (!g)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	memcpy(st->path, g->path, sizeof(st->path));
	st->path[sizeof(st->path) - 1] = '\0';
	st->idx = idx;
	st->parent = g->parent;
	st->depth = g->depth;
	copy_counters(g, st);
	st->cached = cached_bytes(seg, idx);
	/* cached >= 0, so current - cached cannot overflow here. */
	st->sock = st->current > st->cached ? st->current - st->cached : 0;
	st->under_pressure = sockmem_under_pressure(seg, idx);
	return 0;
}

/* Concurrency: lock-free. */
uint32_t sockmem_group_next(sockmem_seg_t *seg, uint32_t from)
{
	for (uint32_t i = from; i < seg->ngroups; i++)
		if (ACQ(&seg->groups[i].state) == SOCKMEM_LIVE)
			return i;
	return SOCKMEM_NONE;
}

/* ---- pressure --------------------------------------------------------- */

/* Concurrency: lock-free, any thread; no writes. */
bool sockmem_under_pressure(sockmem_seg_t *seg, uint32_t group)
{
	uint64_t now = 0;
	struct sockmem_group *g = sockmem_group_at(seg, group);

	for (int d = 0; g && d <= SM_DEPTH_MAX; d++, g = sm_group_parent(seg, g)) {
		uint64_t until = RLX(&g->pressure_until_ns);

		if (until == 0)
			continue;
		if (!now)
			now = sockmem_now_ns();
		if (until > now)
			return true;
	}
	return false;
}

/* Concurrency: lock-free; the deadline only moves forward (CAS). Counts
 * ev_pressure when the group was not already under pressure. */
void sockmem_enter_pressure(sockmem_seg_t *seg, uint32_t group, uint64_t period_ns)
{
	struct sockmem_group *g = sockmem_group_at(seg, group);
	uint64_t now = sockmem_now_ns(), until = now + period_ns, old;

	if (!g || seg->readonly)
		return;
	old = RLX(&g->pressure_until_ns);
	do {
		if (old >= until)
			return;
	} while (!atomic_compare_exchange_weak_explicit(
		&g->pressure_until_ns, &old, until, memory_order_relaxed, memory_order_relaxed));
	if (old <= now)
		atomic_fetch_add_explicit(&g->ev_pressure, 1, memory_order_relaxed);
}
