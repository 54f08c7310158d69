/* Groups: names, creation with implicit parents, lookup, removal, limits,
 * statistics, iteration, pressure. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "tutil.h"

TestSuite(group, .fini = t_fini);

struct path_case {
	const char *path;
	bool ok;
};

static const struct path_case path_cases[] = {
	{"a", true},	   {"a/b/c", true},  {"tenant-a/web_1.x", true},
	{"...", true},	   {".a/..b", true}, {"", false},
	{"/a", false},	   {"a/", false},    {"a//b", false},
	{".", false},	   {"..", false},    {"a/./b", false},
	{"a/../b", false}, {"a/..", false},  {"a b", false},
	{"a\tb", false},   {"a:b", false},   {"caf\xc3\xa9", false},
};

Test(group, path_validation_table)
{
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const char *why = NULL;
		int rc = sockmem_path_valid(path_cases[i].path, &why);

		cr_expect_eq(rc == 0, path_cases[i].ok, "\"%s\": %d (%s)", path_cases[i].path, rc,
			     why ? why : "-");
		cr_expect_eq(why == NULL, path_cases[i].ok, "why set iff invalid");
	}
	cr_expect_eq(sockmem_path_valid(NULL, NULL), -EINVAL);
}

Test(group, path_length_limit)
{
	char p[SOCKMEM_PATH_MAX + 2];

	memset(p, 'a', sizeof(p));
	p[SOCKMEM_PATH_MAX - 1] = '\0'; /* 127 characters: the longest */
	cr_expect_eq(sockmem_path_valid(p, NULL), 0);
	p[SOCKMEM_PATH_MAX - 1] = 'a';
	p[SOCKMEM_PATH_MAX] = '\0'; /* 128 */
	cr_expect_eq(sockmem_path_valid(p, NULL), -EINVAL);
}

Test(group, create_with_implicit_parents)
{
	sockmem_seg_t *seg = t_open("g-create");
	uint32_t c, b, a, again;
	struct sockmem_group *gc, *gb, *ga;

	c = t_group(seg, "a/b/c");
	cr_assert_eq(sockmem_group_lookup(seg, "a/b", &b), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "a", &a), 0);
	gc = sockmem_group_at(seg, c);
	gb = sockmem_group_at(seg, b);
	ga = sockmem_group_at(seg, a);
	cr_expect_eq(gc->parent, b);
	cr_expect_eq(gb->parent, a);
	cr_expect_eq(ga->parent, SOCKMEM_NONE);
	cr_expect_eq(ga->depth, 0);
	cr_expect_eq(gb->depth, 1);
	cr_expect_eq(gc->depth, 2);
	cr_expect_str_eq(gc->path, "a/b/c");
	cr_expect_eq(gc->max, SOCKMEM_UNLIMITED);
	cr_expect_eq(gc->high, SOCKMEM_UNLIMITED);
	cr_expect_eq(gc->low, 0);
	/* Idempotent; a sibling reuses the parents. */
	cr_expect_eq(sockmem_group_create(seg, "a/b/c", &again), 0);
	cr_expect_eq(again, c);
	cr_expect_eq(sockmem_group_at(seg, t_group(seg, "a/b/d"))->parent, b);
	cr_expect_eq(sockmem_group_create(seg, "a//x", &again), -EINVAL);
	cr_expect_eq(sockmem_group_lookup(seg, "a/b/zz", &again), -ENOENT);
	cr_expect_eq(sockmem_group_lookup(seg, "a/b/", &again), -EINVAL);
	/* Prefix of a name is not a match. */
	cr_expect_eq(sockmem_group_lookup(seg, "a/b/cc", &again), -ENOENT);
	sockmem_close(seg);
}

Test(group, table_full)
{
	struct sockmem_open_opts o = {.groups = 4};
	sockmem_seg_t *seg = t_open_opts("g-full", &o);
	uint32_t i;

	t_group(seg, "a/b");
	t_group(seg, "c");
	cr_expect_eq(sockmem_group_create(seg, "d/e", &i), -ENOSPC);
	/* "d" took the last entry before "d/e" found none: a refused request
	 * leaves nothing behind, so the entry is free again. */
	cr_expect_eq(sockmem_group_lookup(seg, "d", NULL), -ENOENT);
	cr_expect_eq(sockmem_group_create(seg, "x", &i), 0);
	cr_expect_eq(sockmem_group_create(seg, "y", &i), -ENOSPC);
	cr_expect_eq(sockmem_group_remove(seg, "x"), 0);
	cr_expect_eq(sockmem_group_create(seg, "y", &i), 0);
	sockmem_close(seg);
}

Test(group, remove_busy_cases)
{
	sockmem_seg_t *seg = t_open("g-remove");
	uint32_t c = t_group(seg, "a/b/c"), p, i;

	cr_expect_eq(sockmem_group_remove(seg, "a/b"), -EBUSY, "has a child");
	cr_expect_eq(sockmem_group_remove(seg, "zz"), -ENOENT);
	cr_assert(sockmem_try_charge(seg, c, 100, NULL));
	cr_expect_eq(sockmem_group_remove(seg, "a/b/c"), -EBUSY, "usage != 0");
	sockmem_uncharge(seg, c, 100);
	cr_assert_eq(sockmem_proc_register(seg, c, &p), 0);
	cr_expect_eq(sockmem_group_remove(seg, "a/b/c"), -EBUSY, "a process is a member");
	sockmem_proc_unregister(seg, p);
	cr_expect_eq(sockmem_group_remove(seg, "a/b/c"), 0);
	cr_expect_eq(sockmem_group_lookup(seg, "a/b/c", &i), -ENOENT);
	cr_expect_eq(sockmem_group_remove(seg, "a/b"), 0);
	cr_expect_eq(sockmem_group_remove(seg, "a"), 0);
	cr_expect_eq(sockmem_group_next(seg, 0), SOCKMEM_NONE);
	/* A re-created group starts from scratch. */
	i = t_group(seg, "a/b/c");
	cr_expect_eq(t_usage(seg, i), 0);
	cr_expect_eq(sockmem_group_at(seg, i)->failcnt, 0);
	sockmem_close(seg);
}

/* An index kept to register later (a fork child's first socket) outlives
 * the group if it is removed meanwhile; the entry may go to another. */
Test(group, register_by_a_stale_index_refused)
{
	sockmem_seg_t *seg = t_open("g-stale");
	uint32_t x = t_group(seg, "x"), y, p;

	cr_assert_eq(sockmem_group_remove(seg, "x"), 0);
	cr_expect_eq(sm_proc_register_as(seg, x, "x", &p), -ENOENT);
	y = t_group(seg, "y");
	cr_assert_eq(y, x, "the entry is reused");
	cr_expect_eq(sm_proc_register_as(seg, x, "x", &p), -ESTALE);
	cr_expect_eq(atomic_load(&sockmem_group_at(seg, y)->processes), 0);
	cr_assert_eq(sm_proc_register_as(seg, y, "y", &p), 0);
	cr_expect_eq(atomic_load(&sockmem_group_at(seg, y)->processes), 1);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

Test(group, set_limits_validation)
{
	sockmem_seg_t *seg = t_open("g-limits");
	uint32_t g = t_group(seg, "a");
	char err[SOCKMEM_ERRLEN];
	struct sockmem_group *gr = sockmem_group_at(seg, g);

	/* max alone: an unlimited high is "no watermark", not above max. */
	t_limits(seg, g, 1 << 20, SOCKMEM_KEEP, SOCKMEM_KEEP);
	cr_expect_eq(gr->max, 1 << 20);
	cr_expect_eq(gr->high, SOCKMEM_UNLIMITED);
	t_limits(seg, g, SOCKMEM_KEEP, 512 << 10, 256 << 10);
	cr_expect_eq(gr->max, 1 << 20);
	cr_expect_eq(gr->high, 512 << 10);
	cr_expect_eq(gr->low, 256 << 10);

	err[0] = '\0';
	cr_expect_eq(sockmem_group_set_limits(seg, g, 256 << 10, SOCKMEM_KEEP, SOCKMEM_KEEP, err,
					      sizeof(err)),
		     -EINVAL);
	cr_expect(strstr(err, "high") && strstr(err, "max"), "names the pair: %s", err);
	cr_expect_eq(gr->max, 1 << 20, "unchanged on error");
	cr_expect_eq(sockmem_group_set_limits(seg, g, SOCKMEM_KEEP, SOCKMEM_KEEP, 600 << 10, err,
					      sizeof(err)),
		     -EINVAL);
	cr_expect(strstr(err, "low") && strstr(err, "high"), "names the pair: %s", err);
	cr_expect_eq(
		sockmem_group_set_limits(seg, g, -5, SOCKMEM_KEEP, SOCKMEM_KEEP, err, sizeof(err)),
		-EINVAL);
	cr_expect(strstr(err, "max"), "%s", err);
	/* low above max with an unlimited high */
	t_limits(seg, g, SOCKMEM_KEEP, SOCKMEM_UNLIMITED, 0);
	cr_expect_eq(sockmem_group_set_limits(seg, g, SOCKMEM_KEEP, SOCKMEM_KEEP, 2 << 20, err,
					      sizeof(err)),
		     -EINVAL);
	cr_expect(strstr(err, "low") && strstr(err, "max"), "%s", err);
	cr_expect_eq(sockmem_group_set_limits(seg, 9999, 1, 1, 1, err, sizeof(err)), -ENOENT);
	/* Back to unlimited. */
	t_limits(seg, g, SOCKMEM_UNLIMITED, SOCKMEM_UNLIMITED, 0);
	cr_expect_eq(gr->max, SOCKMEM_UNLIMITED);
	sockmem_close(seg);
}

/* sockmemctl creates a group, then sets its limits: by path, so that they
 * cannot land on another group that took the entry of one removed in between
 * (by index they would: the first assertion on `b` shows the hazard). */
Test(group, set_limits_by_path_never_lands_on_a_reused_entry)
{
	sockmem_seg_t *seg = t_open("g-limits-path");
	uint32_t a = t_group(seg, "a"), b;
	char err[SOCKMEM_ERRLEN];

	cr_assert_eq(sockmem_group_remove(seg, "a"), 0);
	b = t_group(seg, "b");
	cr_assert_eq(b, a, "precondition: b took a's entry");
	err[0] = '\0';
	cr_expect_eq(sockmem_group_set_limits_path(seg, "a", 1 << 20, SOCKMEM_KEEP, SOCKMEM_KEEP,
						   err, sizeof(err)),
		     -ENOENT);
	cr_expect(strstr(err, "'a'"), "names the path: %s", err);
	cr_expect_eq(sockmem_group_at(seg, b)->max, SOCKMEM_UNLIMITED, "b untouched");
	cr_expect_eq(sockmem_group_set_limits_path(seg, "b", 1 << 20, SOCKMEM_KEEP, SOCKMEM_KEEP,
						   err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(sockmem_group_at(seg, b)->max, 1 << 20);
	cr_expect_eq(sockmem_group_set_limits_path(seg, "b/../c", 1, 1, 1, err, sizeof(err)),
		     -EINVAL);
	cr_expect_eq(sockmem_group_set_limits_path(seg, "b", 1 << 19, 1 << 20, SOCKMEM_KEEP, err,
						   sizeof(err)),
		     -EINVAL, "the rule still holds");
	sockmem_close(seg);
}

Test(group, max_below_usage_accepted_with_pressure)
{
	sockmem_seg_t *seg = t_open("g-maxbelow");
	uint32_t g = t_group(seg, "a");
	struct sockmem_group_stat st;

	cr_assert(sockmem_try_charge(seg, g, 10000, NULL));
	cr_expect(!sockmem_under_pressure(seg, g));
	t_limits(seg, g, 5000, SOCKMEM_KEEP, SOCKMEM_KEEP);
	cr_expect(sockmem_under_pressure(seg, g));
	cr_assert_eq(sockmem_group_stat(seg, g, &st), 0);
	cr_expect_eq(st.ev_pressure, 1);
	cr_expect_eq(st.current, 10000);
	cr_expect(!sockmem_try_charge(seg, g, 1, NULL));
	sockmem_uncharge(seg, g, 10000);
	sockmem_close(seg);
}

Test(group, stat_and_iteration)
{
	sockmem_seg_t *seg = t_open("g-stat");
	uint32_t b = t_group(seg, "a/b"), a, n = 0;
	struct sockmem_group_stat st;

	sockmem_group_lookup(seg, "a", &a);
	t_limits(seg, b, 1 << 20, 1 << 19, 1 << 18);
	cr_assert(sockmem_try_charge(seg, b, 4096, NULL));
	cr_assert_eq(sockmem_group_stat(seg, b, &st), 0);
	cr_expect_str_eq(st.path, "a/b");
	cr_expect_eq(st.idx, b);
	cr_expect_eq(st.parent, a);
	cr_expect_eq(st.depth, 1);
	cr_expect_eq(st.current, 4096);
	cr_expect_eq(st.sock, 4096);
	cr_expect_eq(st.cached, 0);
	cr_expect_eq(st.max, 1 << 20);
	cr_expect_eq(st.high, 1 << 19);
	cr_expect_eq(st.low, 1 << 18);
	cr_expect_eq(st.peak, 4096);
	cr_expect_eq(sockmem_group_stat(seg, 9999, &st), -ENOENT);
	cr_expect_eq(sockmem_group_stat(seg, b + 50, &st), -ENOENT);
	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1))
		n++;
	cr_expect_eq(n, 2);
	sockmem_uncharge(seg, b, 4096);
	sockmem_close(seg);
}

Test(group, pressure_hierarchical_and_expiry)
{
	sockmem_seg_t *seg = t_open("g-pressure");
	uint32_t c = t_group(seg, "a/b/c"), a, b;
	struct timespec ts = {0, 60 * 1000 * 1000};

	sockmem_group_lookup(seg, "a", &a);
	sockmem_group_lookup(seg, "a/b", &b);
	cr_expect(!sockmem_under_pressure(seg, c));
	sockmem_enter_pressure(seg, a, 40 * 1000 * 1000);
	cr_expect(sockmem_under_pressure(seg, a));
	cr_expect(sockmem_under_pressure(seg, b), "an ancestor's pressure applies");
	cr_expect(sockmem_under_pressure(seg, c));
	cr_expect_eq(sockmem_group_at(seg, a)->ev_pressure, 1);
	/* Re-entering while under pressure extends without a new event. */
	sockmem_enter_pressure(seg, a, 20 * 1000 * 1000);
	cr_expect_eq(sockmem_group_at(seg, a)->ev_pressure, 1);
	/* A child's pressure does not apply to its parent. */
	sockmem_enter_pressure(seg, c, 1000u * 1000 * 1000);
	nanosleep(&ts, NULL);
	cr_expect(!sockmem_under_pressure(seg, a), "expired");
	cr_expect(!sockmem_under_pressure(seg, b));
	cr_expect(sockmem_under_pressure(seg, c));
	sockmem_enter_pressure(seg, a, 40 * 1000 * 1000);
	cr_expect_eq(sockmem_group_at(seg, a)->ev_pressure, 2, "a new episode counts");
	sockmem_close(seg);
}

/* Slot stocks are whatever members wrote (issue 7, finding F4): the cached
 * sum saturates, a negative stock counts as 0, current - cached stays sane. */
Test(group, stat_with_extreme_stocks)
{
	sockmem_seg_t *seg = t_open("g-stockx");
	uint32_t g = t_group(seg, "a"), p;
	struct sockmem_group_stat st;

	cr_assert_eq(sockmem_proc_register(seg, g, &p), 0);
	cr_assert(sockmem_try_charge(seg, g, 4096, NULL));
	cr_assert_geq(seg->nslots, 5);
	for (uint32_t i = 0; i < 5; i++) {
		struct sockmem_slot *s = sockmem_slot_at(seg, i);

		s->proc = p;
		s->group = g;
		atomic_store(&s->stock, i < 4 ? INT64_MAX : INT64_MIN);
		atomic_store(&s->state, SOCKMEM_LIVE);
	}
	cr_assert_eq(sockmem_group_stat(seg, g, &st), 0);
	cr_expect_eq(st.cached, INT64_MAX, "saturated");
	cr_expect_eq(st.sock, 0);
	atomic_store(&sockmem_slot_at(seg, 0)->stock, 1000);
	for (uint32_t i = 1; i < 4; i++)
		atomic_store(&sockmem_slot_at(seg, i)->stock, 0);
	cr_assert_eq(sockmem_group_stat(seg, g, &st), 0);
	cr_expect_eq(st.cached, 1000, "the INT64_MIN stock counts as 0");
	cr_expect_eq(st.sock, 4096 - 1000);
	atomic_store(&sockmem_group_at(seg, g)->usage, INT64_MIN);
	cr_assert_eq(sockmem_group_stat(seg, g, &st), 0);
	cr_expect_eq(st.sock, 0, "current below cached: no INT64_MIN - 1000");
	sockmem_close(seg);
}

/* set_limits moves through valid triples only, for every pair of valid
 * triples over a set of values that covers equal, crossing and unlimited
 * limits: a member killed between two stores leaves a consistent group. */
Test(group, set_limits_steps_stay_valid)
{
	static const int64_t v[] = {0, 1 << 20, 2 << 20, 4 << 20, 8 << 20, SOCKMEM_UNLIMITED};
	enum { N = sizeof(v) / sizeof(v[0]) };
	int64_t triples[N * N * N][3], steps[5][3];
	char err[SOCKMEM_ERRLEN];
	int n = 0, pairs = 0;

	for (int a = 0; a < N; a++)
		for (int b = 0; b < N; b++)
			for (int c = 0; c < N; c++)
				if (sockmem_limits_check(v[a], v[b], v[c], NULL, 0) == 0) {
					triples[n][0] = v[a], triples[n][1] = v[b];
					triples[n][2] = v[c];
					n++;
				}
	cr_assert_gt(n, 20);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++, pairs++) {
			sm_limits_steps(triples[i], triples[j], steps);
			for (int k = 0; k < 5; k++)
				cr_assert_eq(sockmem_limits_check(steps[k][0], steps[k][1],
								  steps[k][2], err, sizeof(err)),
					     0, "(%lld,%lld,%lld) -> (%lld,%lld,%lld), step %d: %s",
					     (long long)triples[i][0], (long long)triples[i][1],
					     (long long)triples[i][2], (long long)triples[j][0],
					     (long long)triples[j][1], (long long)triples[j][2], k,
					     err);
			cr_assert(memcmp(steps[4], triples[j], sizeof(steps[4])) == 0);
		}
	cr_log_info("%d valid triples, %d transitions checked", n, pairs);
}
