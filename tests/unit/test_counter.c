/* The hierarchical counter (page_counter semantics) on a 3-level tree. */
#include <errno.h>

#include "tutil.h"

TestSuite(counter, .fini = t_fini);

struct tree {
	sockmem_seg_t *seg;
	uint32_t a, b, c;
};

/* a (max 300K) / b (max 200K) / c (max 100K) */
static struct tree tree(const char *name)
{
	struct tree t;

	t.seg = t_open(name);
	t.c = t_group(t.seg, "a/b/c");
	sockmem_group_lookup(t.seg, "a/b", &t.b);
	sockmem_group_lookup(t.seg, "a", &t.a);
	t_limits(t.seg, t.a, 300000, SOCKMEM_KEEP, SOCKMEM_KEEP);
	t_limits(t.seg, t.b, 200000, SOCKMEM_KEEP, SOCKMEM_KEEP);
	t_limits(t.seg, t.c, 100000, SOCKMEM_KEEP, SOCKMEM_KEEP);
	return t;
}

static uint64_t failcnt(sockmem_seg_t *seg, uint32_t g)
{
	return atomic_load(&sockmem_group_at(seg, g)->failcnt);
}

static uint64_t ev_max(sockmem_seg_t *seg, uint32_t g)
{
	return atomic_load(&sockmem_group_at(seg, g)->ev_max);
}

Test(counter, charge_propagates_to_ancestors)
{
	struct tree t = tree("c-prop");

	cr_assert(sockmem_try_charge(t.seg, t.c, 1000, NULL));
	cr_expect_eq(t_usage(t.seg, t.c), 1000);
	cr_expect_eq(t_usage(t.seg, t.b), 1000);
	cr_expect_eq(t_usage(t.seg, t.a), 1000);
	sockmem_uncharge(t.seg, t.c, 1000);
	cr_expect_eq(t_usage(t.seg, t.a), 0);
	cr_expect(sockmem_try_charge(t.seg, t.c, 0, NULL), "zero is a no-op");
	cr_expect(!sockmem_try_charge(t.seg, t.c, -1, NULL), "negative refused");
	cr_expect(!sockmem_try_charge(t.seg, 9999, 1, NULL), "bad index refused");
	sockmem_close(t.seg);
}

/* Fill so that each level in turn is the one that refuses. */
Test(counter, limit_at_each_level)
{
	struct tree t = tree("c-levels");
	uint32_t fail = 12345;

	/* Level c: 100000 at c. */
	cr_assert(sockmem_try_charge(t.seg, t.c, 100000, &fail));
	cr_expect(!sockmem_try_charge(t.seg, t.c, 1, &fail));
	cr_expect_eq(fail, t.c);
	cr_expect_eq(failcnt(t.seg, t.c), 1);
	cr_expect_eq(ev_max(t.seg, t.c), 1);
	cr_expect_eq(failcnt(t.seg, t.b), 0);
	cr_expect_eq(failcnt(t.seg, t.a), 0);
	cr_expect_eq(t_usage(t.seg, t.c), 100000, "nothing charged on failure");
	cr_expect_eq(t_usage(t.seg, t.b), 100000);
	cr_expect_eq(t_usage(t.seg, t.a), 100000);

	/* Level b: b itself charges 100000 more, then c's charge fails at b. */
	sockmem_uncharge(t.seg, t.c, 50000);
	cr_assert(sockmem_try_charge(t.seg, t.b, 150000, NULL));
	cr_expect_eq(t_usage(t.seg, t.b), 200000);
	cr_expect(!sockmem_try_charge(t.seg, t.c, 10, &fail));
	cr_expect_eq(fail, t.b);
	cr_expect_eq(failcnt(t.seg, t.b), 1);
	cr_expect_eq(ev_max(t.seg, t.b), 1);
	cr_expect_eq(failcnt(t.seg, t.c), 1, "c unchanged");
	cr_expect_eq(t_usage(t.seg, t.c), 50000, "c was undone");
	cr_expect_eq(t_usage(t.seg, t.a), 200000);

	/* Level a: a charges up to its max; c and b fit but a refuses. */
	sockmem_uncharge(t.seg, t.b, 100000);
	cr_assert(sockmem_try_charge(t.seg, t.a, 200000, NULL));
	cr_expect_eq(t_usage(t.seg, t.a), 300000);
	cr_expect(!sockmem_try_charge(t.seg, t.c, 10, &fail));
	cr_expect_eq(fail, t.a);
	cr_expect_eq(failcnt(t.seg, t.a), 1);
	cr_expect_eq(t_usage(t.seg, t.c), 50000, "undone at c");
	cr_expect_eq(t_usage(t.seg, t.b), 100000, "undone at b");
	cr_expect(sockmem_under_pressure(t.seg, t.a), "a max hit puts the level under pressure");
	sockmem_close(t.seg);
}

Test(counter, exact_fit_at_max)
{
	struct tree t = tree("c-exact");

	cr_expect(sockmem_try_charge(t.seg, t.c, 99999, NULL));
	cr_expect(sockmem_try_charge(t.seg, t.c, 1, NULL), "usage == max is allowed");
	cr_expect(!sockmem_try_charge(t.seg, t.c, 1, NULL));
	cr_expect_eq(t_usage(t.seg, t.c), 100000);
	sockmem_close(t.seg);
}

Test(counter, forced_charge_over_max_counts)
{
	struct tree t = tree("c-forced");

	cr_assert(sockmem_try_charge(t.seg, t.c, 90000, NULL));
	sockmem_charge(t.seg, t.c, 20000);
	cr_expect_eq(t_usage(t.seg, t.c), 110000, "forced charge never fails");
	cr_expect_eq(t_usage(t.seg, t.a), 110000);
	cr_expect_eq(ev_max(t.seg, t.c), 1, "event counted where max was exceeded");
	cr_expect_eq(ev_max(t.seg, t.b), 0);
	cr_expect_eq(failcnt(t.seg, t.c), 0, "a forced charge is not a failure");
	cr_expect_eq(atomic_load(&sockmem_group_at(t.seg, t.c)->peak), 110000);
	cr_expect(sockmem_under_pressure(t.seg, t.c));
	cr_expect(!sockmem_try_charge(t.seg, t.c, 1, NULL));
	sockmem_uncharge(t.seg, t.c, 110000);
	cr_expect_eq(t_usage(t.seg, t.a), 0);
	sockmem_close(t.seg);
}

Test(counter, uncharge_underflow_clamps_and_counts)
{
	struct tree t = tree("c-under");
	struct sockmem_group *c = sockmem_group_at(t.seg, t.c);

	cr_assert(sockmem_try_charge(t.seg, t.c, 100, NULL));
	cr_assert(sockmem_try_charge(t.seg, t.b, 1000, NULL));
	sockmem_uncharge(t.seg, t.c, 300);
	cr_expect_eq(t_usage(t.seg, t.c), 0, "clamped at zero");
	cr_expect_eq(atomic_load(&c->underflows), 1);
	cr_expect_eq(t_usage(t.seg, t.b), 800, "b had enough");
	cr_expect_eq(atomic_load(&sockmem_group_at(t.seg, t.b)->underflows), 0);
	sockmem_uncharge(t.seg, t.c, 1);
	cr_expect_eq(atomic_load(&c->underflows), 2);
	sockmem_close(t.seg);
}

Test(counter, peak_and_reset)
{
	struct tree t = tree("c-peak");
	struct sockmem_group *c = sockmem_group_at(t.seg, t.c);

	cr_assert(sockmem_try_charge(t.seg, t.c, 70000, NULL));
	sockmem_uncharge(t.seg, t.c, 50000);
	cr_expect_eq(atomic_load(&c->peak), 70000);
	cr_expect_eq(atomic_load(&sockmem_group_at(t.seg, t.a)->peak), 70000);
	cr_expect_eq(sockmem_group_reset_peak(t.seg, t.c), 0);
	cr_expect_eq(atomic_load(&c->peak), 20000, "reset to current usage");
	cr_assert(sockmem_try_charge(t.seg, t.c, 5000, NULL));
	cr_expect_eq(atomic_load(&c->peak), 25000);
	cr_expect_eq(sockmem_group_reset_peak(t.seg, 9999), -ENOENT);
	sockmem_close(t.seg);
}

Test(counter, high_counts_event)
{
	struct tree t = tree("c-high");
	struct sockmem_group *c = sockmem_group_at(t.seg, t.c);

	t_limits(t.seg, t.c, SOCKMEM_KEEP, 50000, 10000);
	cr_assert(sockmem_try_charge(t.seg, t.c, 50000, NULL));
	cr_expect_eq(atomic_load(&c->ev_high), 0, "at high is not over");
	cr_assert(sockmem_try_charge(t.seg, t.c, 1, NULL), "high never fails a charge");
	cr_expect_eq(atomic_load(&c->ev_high), 1);
	cr_expect_eq(atomic_load(&sockmem_group_at(t.seg, t.b)->ev_high), 0);
	sockmem_close(t.seg);
}

/*
 * Hostile input (issue 7, findings F2/F3): usage and max are whatever
 * another member wrote into the segment. The counter saturates or refuses
 * instead of overflowing (the Sanitize build aborts on signed overflow).
 */
Test(counter, extreme_values_saturate)
{
	struct tree t = tree("c-extreme");
	struct sockmem_group *c = sockmem_group_at(t.seg, t.c);
	uint32_t fail = 12345;

	atomic_store(&c->usage, INT64_MAX);
	sockmem_charge(t.seg, t.c, 1);
	cr_expect_eq(t_usage(t.seg, t.c), INT64_MAX, "forced charge saturates");
	cr_expect_eq(t_usage(t.seg, t.b), 1, "the levels above count it");
	cr_expect(!sockmem_try_charge(t.seg, t.c, 1, &fail));
	cr_expect_eq(fail, t.c);
	cr_expect_eq(t_usage(t.seg, t.b), 1, "nothing left charged above");

	/* usage + nr overflows even an unlimited max: refused, not wrapped. */
	atomic_store(&c->max, SOCKMEM_UNLIMITED);
	atomic_store(&c->usage, INT64_MAX - 10);
	cr_expect(!sockmem_try_charge(t.seg, t.c, 100, &fail));
	cr_expect_eq(t_usage(t.seg, t.c), INT64_MAX - 10);

	/* A negative max written after attach: refused, max - nr not computed. */
	atomic_store(&c->usage, 0);
	atomic_store(&c->max, INT64_MIN);
	cr_expect(!sockmem_try_charge(t.seg, t.c, 1, &fail));
	cr_expect_eq(t_usage(t.seg, t.c), 0);

	/* An uncharge on a negative usage found nothing: clamped to 0, counted. */
	atomic_store(&c->max, 100000);
	atomic_store(&c->usage, INT64_MIN + 4096);
	sockmem_uncharge(t.seg, t.c, 4096);
	cr_expect_eq(t_usage(t.seg, t.c), 0);
	cr_expect_eq(atomic_load(&c->underflows), 1);
	cr_expect_eq(t_usage(t.seg, t.b), 0, "b held 1 byte: 4095 missing there");
	cr_expect_eq(atomic_load(&sockmem_group_at(t.seg, t.b)->underflows), 1);
	sockmem_close(t.seg);
}

/* A max hit puts the refusing level under pressure for the configured
 * period (SOCKMEM_PRESSURE_MS reaches the core through this setter). */
Test(counter, pressure_period_is_settable)
{
	struct tree t = tree("c-pperiod");
	struct sockmem_group *c = sockmem_group_at(t.seg, t.c);
	uint64_t now, until;

	sockmem_set_pressure_period(250u * 1000000u);
	sockmem_set_pressure_period(0); /* ignored */
	now = sockmem_now_ns();
	cr_assert(!sockmem_try_charge(t.seg, t.c, 100001, NULL));
	until = atomic_load(&c->pressure_until_ns);
	cr_expect(sockmem_under_pressure(t.seg, t.c));
	cr_expect_geq(until, now + 250u * 1000000u);
	cr_expect_leq(until, sockmem_now_ns() + 250u * 1000000u);
	sockmem_set_pressure_period(1000u * 1000000u); /* the default, for other tests */
	sockmem_close(t.seg);
}
