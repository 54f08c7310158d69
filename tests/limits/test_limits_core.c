/*
 * The core-side pieces of issue 4 (lib/reclaim.c), without any process:
 * the throttle curve, the low/high gap warning, budget shares, headroom,
 * and the reclaimer's wake-up on a crossing of high (futex seq bumped once
 * per crossing, not per charge).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

#include "reclaim.h"
#include "sockmem/sockmem.h"

#define MiB (1024 * 1024)

Test(limits_core, throttle_curve)
{
	int64_t h = 8 * MiB, b = 256 * 1024;

	cr_expect_eq(sm_throttle_delay_ns(h, h, b), 0, "at high: no delay");
	cr_expect_eq(sm_throttle_delay_ns(h / 2, h, b), 0);
	cr_expect_eq(sm_throttle_delay_ns(h + MiB, SOCKMEM_UNLIMITED, b), 0, "no high set");
	/* Just over high: well under a millisecond; 1% over: milliseconds. */
	cr_expect_lt(sm_throttle_delay_ns(h + 4096, h, b), 1000000ull);
	cr_expect_gt(sm_throttle_delay_ns(h + h / 100, h, b), 1000000ull);
	cr_expect_lt(sm_throttle_delay_ns(h + h / 100, h, b), 20000000ull);
	/* Quadratic: 4x the overage, ~16x the delay. */
	uint64_t d1 = sm_throttle_delay_ns(h + h / 50, h, b),
		 d4 = sm_throttle_delay_ns(h + h / 50 * 4, h, b);
	cr_expect(d4 > 14 * d1 && d4 < 18 * d1, "d1 %llu d4 %llu", (unsigned long long)d1,
		  (unsigned long long)d4);
	/* Far over: capped at 2 s; proportional to the caller's share. */
	cr_expect_eq(sm_throttle_delay_ns(3 * h, h, b), SM_THROTTLE_MAX_NS);
	cr_expect_eq(sm_throttle_delay_ns(INT64_MAX / 2, h, b), SM_THROTTLE_MAX_NS);
	cr_expect_lt(sm_throttle_delay_ns(h + h / 10, h, b / 4),
		     sm_throttle_delay_ns(h + h / 10, h, b));
}

Test(limits_core, low_too_close)
{
	cr_expect(sm_low_too_close(8 * MiB, 8 * MiB - 64 * 1024));
	cr_expect(sm_low_too_close(8 * MiB, 7 * MiB + 512 * 1024)); /* gap < high/8 */
	cr_expect_not(sm_low_too_close(8 * MiB, 4 * MiB));
	cr_expect_not(sm_low_too_close(8 * MiB, 0), "no low: nothing to warn about");
	cr_expect_not(sm_low_too_close(SOCKMEM_UNLIMITED, 4 * MiB));
	cr_expect(sm_low_too_close(512 * 1024, 448 * 1024)); /* gap < 128K */
}

static sockmem_seg_t *seg;
static char ns[64];

static void setup(void)
{
	struct sockmem_open_opts o = {.create = true};
	char err[SOCKMEM_ERRLEN];

	snprintf(ns, sizeof(ns), "t-limcore-%d", (int)getpid());
	o.ns = ns;
	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	sockmem_close(seg);
	sockmem_unlink(ns);
}

Test(limits_core, shares_headroom_wakeups, .init = setup, .fini = teardown)
{
	char why[SOCKMEM_ERRLEN];
	uint32_t p, a, b;

	cr_assert_eq(sockmem_group_create(seg, "p/a", &a), 0);
	cr_assert_eq(sockmem_group_create(seg, "p/b", &b), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "p", &p), 0);
	cr_expect_eq(sm_budget_share(seg, a, 16), INT64_MAX, "no max anywhere");
	cr_expect_not(sm_limited(seg, a));
	cr_assert_eq(
		sockmem_group_set_limits(seg, p, 32 * MiB, 16 * MiB, 8 * MiB, why, sizeof(why)), 0,
		"%s", why);
	cr_expect(sm_limited(seg, a), "an ancestor's max limits the child");
	cr_expect_eq(sm_high_level(seg, a), p);
	/* 40 sockets under p (both children count): 32M / 40. */
	atomic_store(&sockmem_group_at(seg, a)->sockets, 30);
	atomic_store(&sockmem_group_at(seg, b)->sockets, 10);
	cr_expect_eq(sm_budget_share(seg, a, 16), 32 * MiB / 40);
	cr_expect_eq(sm_budget_share(seg, b, 64), 32 * MiB / 64, "floor on the divisor");
	atomic_store(&sockmem_group_at(seg, a)->sockets, 0);
	atomic_store(&sockmem_group_at(seg, b)->sockets, 0);

	/* Crossing high wakes once; charges that stay above it do not. */
	uint32_t s0 = sm_reclaim_seq(seg, p);
	sockmem_charge(seg, a, 15 * MiB);
	cr_expect_eq(sm_reclaim_seq(seg, p), s0, "below high: no wake-up");
	sockmem_charge(seg, a, 2 * MiB);
	cr_expect_eq(sm_reclaim_seq(seg, p), s0 + 1, "crossing: one wake-up");
	sockmem_charge(seg, b, MiB);
	cr_expect_eq(sm_reclaim_seq(seg, p), s0 + 1, "still above: no more");
	cr_expect_eq(sm_headroom(seg, a), 32 * MiB - 18 * MiB);
	int64_t u, h;
	cr_expect_eq(sm_over_high(seg, b, &u, &h), p);
	cr_expect_eq(u, 18 * MiB);
	/* The waiter sees a change at once, and times out without one. */
	cr_expect(sm_reclaim_wait(seg, p, s0, 1000000));
	cr_expect_not(sm_reclaim_wait(seg, p, sm_reclaim_seq(seg, p), 1000000));
	sockmem_uncharge(seg, a, 17 * MiB);
	sockmem_uncharge(seg, b, MiB);
}
