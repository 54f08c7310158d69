/*
 * Sockets already open when the shim's constructor runs (F7): opened by an
 * earlier constructor, they are accounted from load; inherited over exec
 * while the member that forked still holds them, they are charged once (by
 * that member), and the exec'd member takes them over when it lets go.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/wait.h>

#include "pl_harness.h"

static bool at_least(const struct sockmem_group_stat *st, int64_t v)
{
	return st->current >= v;
}

/* current stays within [lo, hi] for `ms` (sampled every 10 ms). */
static void stays_within(const char *ns, int64_t lo, int64_t hi, int ms, const char *phase)
{
	struct sockmem_group_stat st;

	for (int t = 0; t < ms; t += 10) {
		cr_assert_eq(pl_stat(ns, "adopt", &st), 0);
		cr_assert(st.current >= lo && st.current <= hi,
			  "%s: current %lld outside [%lld, %lld]", phase, (long long)st.current,
			  (long long)lo, (long long)hi);
		usleep(10000);
	}
}

Test(adopt, constructor_sockets_charged_once_across_exec)
{
	struct pl_opts o = {.group = "adopt",
			    .preload = true,
			    /* No per-thread cache: its stock (up to a batch) would
			     * blur the figures compared below. */
			    .extra = {"SOCKMEM_RECONCILE_MS=20", "SOCKMEM_RECONCILE_BYTES=0",
				      "SOCKMEM_BATCH=0"}};
	struct sockmem_group_stat st;
	char ns[64], rest[128], err[4096];
	long held = 0;
	size_t sent = 0;
	struct pl_child c;
	int status;

	pl_ns(ns, sizeof(ns), "adopt");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-adopt", (const char *const[]){"parent", NULL}, &o),
		     0);
	cr_assert_eq(pl_expect(&c, "held", rest, sizeof(rest)), 0);
	cr_assert_eq(sscanf(rest, "%ld sent %zu", &held, &sent), 2, "'%s'", rest);
	cr_assert_geq(held, 64 * 1024, "the connection holds too little to tell: %s", rest);

	/* The forking member owns the constructor's connection (adopted at its
	 * load) and charges what the exec'd child queued; the child, which
	 * found the same fds held by it, charges nothing (else ~2x held). */
	cr_assert(pl_stat_until(ns, "adopt", &st, at_least, held * 9 / 10, 5000),
		  "the constructor's sockets are not accounted: current %lld, held %ld",
		  (long long)st.current, held);
	stays_within(ns, held * 9 / 10, held * 5 / 4, 300, "held by the parent");

	/* The parent closes its copies: the child takes the connection over. */
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "closed", NULL, 0), 0);
	cr_assert(pl_stat_until(ns, "adopt", &st, at_least, held * 9 / 10, 5000),
		  "the child did not adopt the connection: current %lld, held %ld",
		  (long long)st.current, held);
	stays_within(ns, held * 9 / 10, held * 5 / 4, 300, "held by the child");

	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "done", NULL, 0), 0);
	status = pl_wait(&c, 10000);
	pl_stderr(&c, err, sizeof(err));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
	cr_expect_str_eq(err, "");
	cr_assert_eq(pl_stat(ns, "adopt", &st), 0);
	cr_expect_eq(st.current, 0, "charges left after both exited");
	sockmem_unlink(ns);
}
