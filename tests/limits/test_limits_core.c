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

/* A level with a max and no high counts its max alone; the tightest level
 * decides, with its own subtree's socket count. */
Test(limits_core, room_per_socket_levels, .init = setup, .fini = teardown)
{
	char why[SOCKMEM_ERRLEN];
	uint32_t p, a;

	cr_assert_eq(sockmem_group_create(seg, "q/a", &a), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "q", &p), 0);
	cr_assert_eq(
		sockmem_group_set_limits(seg, a, 8 * MiB, SOCKMEM_UNLIMITED, 0, why, sizeof(why)),
		0, "%s", why);
	sockmem_charge(seg, a, 2 * MiB);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), 6 * MiB, "max only: the room under it");
	cr_expect_eq(sm_room_per_socket(seg, p, 1), INT64_MAX, "q itself has no limit");
	atomic_store(&sockmem_group_at(seg, a)->sockets, 3);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), 2 * MiB);
	/* q: a larger room, but more sockets under it (its own 97 and a's 3). */
	cr_assert_eq(sockmem_group_set_limits(seg, p, 64 * MiB, 32 * MiB, 0, why, sizeof(why)), 0,
		     "%s", why);
	atomic_store(&sockmem_group_at(seg, p)->sockets, 97);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), 30 * MiB / 100,
		     "q's high: 30 MiB of room for 100 sockets");
	cr_expect_eq(sm_room_per_socket(seg, p, 1), 30 * MiB / 100);
	atomic_store(&sockmem_group_at(seg, p)->sockets, 0);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), 2 * MiB, "a's max is nearer again");
	atomic_store(&sockmem_group_at(seg, a)->sockets, 0);
	sockmem_uncharge(seg, a, 2 * MiB);
}

/* A crossing of an ancestor's high wakes the reclaimers of a descendant
 * that waits on a high of its own (they wait on their nearest level only). */
Test(limits_core, ancestor_crossing_wakes_descendants_with_a_high, .init = setup, .fini = teardown)
{
	char why[SOCKMEM_ERRLEN];
	uint32_t p, c, d;

	cr_assert_eq(sockmem_group_create(seg, "w/c", &c), 0);
	cr_assert_eq(sockmem_group_create(seg, "w/d", &d), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "w", &p), 0);
	cr_assert_eq(sockmem_group_set_limits(seg, p, SOCKMEM_UNLIMITED, MiB, 0, why, sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(
		sockmem_group_set_limits(seg, c, SOCKMEM_UNLIMITED, 100 * MiB, 0, why, sizeof(why)),
		0, "%s", why);
	cr_expect_eq(sm_high_level(seg, c), c, "c's helpers wait on c");
	uint32_t sp = sm_reclaim_seq(seg, p), sc = sm_reclaim_seq(seg, c),
		 sd = sm_reclaim_seq(seg, d);
	sockmem_charge(seg, d, 2 * MiB); /* w crosses its high; c is far from its own */
	cr_expect_eq(sm_reclaim_seq(seg, p), sp + 1);
	cr_expect_eq(sm_reclaim_seq(seg, c), sc + 1, "c's waiters not woken by w's crossing");
	cr_expect_eq(sm_reclaim_seq(seg, d), sd, "d has no high: its helpers wait on w");
	sockmem_uncharge(seg, d, 2 * MiB);
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
	cr_expect_eq(sm_room_per_socket(seg, a, 1), INT64_MAX, "no limit anywhere");
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
	cr_expect_eq(sm_headroom(seg, a), 17 * MiB);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), MiB, "the high is nearer than the max");
	cr_expect_eq(sm_room_per_socket(seg, a, 16), MiB / 16, "floor on the divisor");
	/* The room is shared by every socket under p, both children's. */
	atomic_store(&sockmem_group_at(seg, a)->sockets, 30);
	atomic_store(&sockmem_group_at(seg, b)->sockets, 10);
	cr_expect_eq(sm_room_per_socket(seg, a, 16), MiB / 40);
	cr_expect_eq(sm_room_per_socket(seg, b, 16), MiB / 40);
	atomic_store(&sockmem_group_at(seg, a)->sockets, 0);
	atomic_store(&sockmem_group_at(seg, b)->sockets, 0);
	sockmem_charge(seg, a, 2 * MiB);
	cr_expect_eq(sm_reclaim_seq(seg, p), s0 + 1, "crossing: one wake-up");
	sockmem_charge(seg, b, MiB);
	cr_expect_eq(sm_reclaim_seq(seg, p), s0 + 1, "still above: no more");
	cr_expect_eq(sm_headroom(seg, a), 32 * MiB - 18 * MiB);
	cr_expect_eq(sm_room_per_socket(seg, a, 1), 0, "above p's high: no room under it");
	int64_t u, h;
	cr_expect_eq(sm_over_high(seg, b, &u, &h), p);
	cr_expect_eq(u, 18 * MiB);
	/* The waiter sees a change at once, and times out without one. */
	cr_expect(sm_reclaim_wait(seg, p, s0, 1000000));
	cr_expect_not(sm_reclaim_wait(seg, p, sm_reclaim_seq(seg, p), 1000000));
	sockmem_uncharge(seg, a, 17 * MiB);
	sockmem_uncharge(seg, b, MiB);
}

/*
 * Any member can write any value into a group: the walks and the curve
 * saturate instead of overflowing (the Sanitize build's UBSan aborts on
 * signed overflow), and still give sane answers.
 */
Test(limits_core, hostile_values_saturate, .init = setup, .fini = teardown)
{
	const int64_t ext[] = {INT64_MIN,     INT64_MIN + 1, -1,       0, 1, INT64_MAX / 4 + 1,
			       INT64_MAX / 2, INT64_MAX - 1, INT64_MAX};
	const size_t n = sizeof(ext) / sizeof(ext[0]);
	struct sockmem_group *gp, *ga;
	uint32_t p, a, b;

	/* The curve is scale-free: the same relative overage gives the same
	 * delay at 8 MiB and near 2^62 (the old 64-bit shift wrapped). */
	int64_t big = INT64_C(1) << 62;
	uint64_t small_d = sm_throttle_delay_ns(8 * MiB + 8 * MiB / 100, 8 * MiB, 256 * 1024);
	uint64_t big_d = sm_throttle_delay_ns(big + big / 100, big, 256 * 1024);
	cr_expect(big_d + big_d / 50 >= small_d && big_d <= small_d + small_d / 50,
		  "8M: %llu ns, 2^62: %llu ns", (unsigned long long)small_d,
		  (unsigned long long)big_d);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			uint64_t d = sm_throttle_delay_ns(ext[i], ext[j], ext[(i + j) % n]);

			cr_expect_leq(d, SM_THROTTLE_MAX_NS);
			(void)sm_low_too_close(ext[i], ext[j]);
		}
	cr_expect(sm_low_too_close(INT64_MIN, INT64_MAX), "high below low: too close");

	cr_assert_eq(sockmem_group_create(seg, "p/a", &a), 0);
	cr_assert_eq(sockmem_group_create(seg, "p/b", &b), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "p", &p), 0);
	gp = sockmem_group_at(seg, p);
	ga = sockmem_group_at(seg, a);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			int64_t u = 0, h = 0, room, share, per;

			atomic_store(&gp->usage, ext[i]);
			atomic_store(&gp->max, ext[j]);
			atomic_store(&gp->high, ext[j]);
			atomic_store(&gp->low, ext[i]);
			atomic_store(&ga->usage, ext[j]);
			atomic_store(&ga->max, ext[i]);
			atomic_store(&ga->high, ext[i]);
			atomic_store(&ga->sockets, ext[i]);
			atomic_store(&sockmem_group_at(seg, b)->sockets, ext[j]);
			room = sm_headroom(seg, a);
			share = sm_budget_share(seg, a, 16);
			per = sm_room_per_socket(seg, a, 16);
			(void)sm_over_high(seg, a, &u, &h);
			cr_expect_geq(room, 0, "usage %lld max %lld: headroom %lld",
				      (long long)ext[i], (long long)ext[j], (long long)room);
			cr_expect_geq(share, 0, "share %lld", (long long)share);
			cr_expect(per >= 0 && (per == INT64_MAX || per <= room),
				  "room %lld, per socket %lld", (long long)room, (long long)per);
		}
	/* Far under a huge max: the room saturates rather than wraps. */
	atomic_store(&gp->max, INT64_MAX - 1);
	atomic_store(&gp->usage, INT64_MIN);
	atomic_store(&ga->max, SOCKMEM_UNLIMITED);
	cr_expect_eq(sm_headroom(seg, a), INT64_MAX);
	/* Socket counts that would overflow a sum: the share is still >= 0
	 * and the floor of 16 holds. */
	atomic_store(&ga->sockets, INT64_MAX);
	atomic_store(&sockmem_group_at(seg, b)->sockets, INT64_MAX);
	atomic_store(&gp->max, 32 * MiB);
	cr_expect_eq(sm_budget_share(seg, a, 16), 0);
	atomic_store(&ga->sockets, -1000);
	atomic_store(&sockmem_group_at(seg, b)->sockets, 0);
	cr_expect_eq(sm_budget_share(seg, a, 16), 32 * MiB / 16);
	for (int k = 0; k < 3; k++) { /* leave it sane */
		struct sockmem_group *x = sockmem_group_at(seg, k == 0 ? p : k == 1 ? a : b);

		atomic_store(&x->usage, 0);
		atomic_store(&x->sockets, 0);
		atomic_store(&x->max, SOCKMEM_UNLIMITED);
		atomic_store(&x->high, SOCKMEM_UNLIMITED);
		atomic_store(&x->low, 0);
	}
}
