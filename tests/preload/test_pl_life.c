/*
 * Sockets coming and going under the shim: dups share state, close_range,
 * fd reuse, exiting threads, fork and exec. Reconciliation is off except in
 * the stale-entry test, so the expected figures are exact. See pl_life.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pl_harness.h"

#define N   32768
#define ANY (-1)

struct step {
	const char *phase;
	int64_t sock, sockets, processes, current;
};

static const char *no_tick[] = {"SOCKMEM_RECONCILE_MS=60000", "SOCKMEM_RECONCILE_BYTES=0", NULL};

static void run(const char *mode, const struct step *steps, const char *const *extra)
{
	char ns[64], name[64], rest[64];
	struct pl_opts o = {.group = "life", .preload = true};
	const char *args[] = {mode, NULL};
	struct sockmem_group_stat st;
	struct pl_child c;
	int status;

	for (int i = 0; extra && extra[i]; i++)
		o.extra[i] = extra[i];
	snprintf(name, sizeof(name), "life-%s", mode);
	pl_ns(ns, sizeof(ns), name);
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	for (const struct step *s = steps; s->phase; s++) {
		cr_assert_eq(pl_expect(&c, s->phase, rest, sizeof(rest)), 0, "phase %s", s->phase);
		cr_assert_eq(pl_stat(ns, "life", &st), 0);
		if (s->sock != ANY)
			cr_expect_eq(st.sock, s->sock, "%s: sock %lld, expected %lld", s->phase,
				     (long long)st.sock, (long long)s->sock);
		if (s->sockets != ANY)
			cr_expect_eq(st.sockets, s->sockets, "%s: sockets %lld, expected %lld",
				     s->phase, (long long)st.sockets, (long long)s->sockets);
		if (s->processes != ANY)
			cr_expect_eq(st.processes, s->processes,
				     "%s: processes %lld, expected %lld", s->phase,
				     (long long)st.processes, (long long)s->processes);
		if (s->current != ANY)
			cr_expect_eq(st.current, s->current, "%s: current %lld, expected %lld",
				     s->phase, (long long)st.current, (long long)s->current);
		pl_go(&c);
	}
	status = pl_wait(&c, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.current, 0, "current %lld after exit", (long long)st.current);
	cr_expect_eq(st.sockets, 0);
	cr_expect_eq(st.processes, 0);
	cr_expect_eq(st.underflows, 0);
	sockmem_unlink(ns);
}

static const struct step dup_steps[] = {{"sent", N, 2, 1, ANY},
					{"duped", N, 2, 1, ANY},
					{"closed_orig", N, 2, 1, ANY},
					{"sent_dup", 2 * N, 2, 1, ANY},
					{"closed_dup", 0, 1, 1, ANY},
					{"closed", 0, 0, 1, ANY},
					{NULL, 0, 0, 0, 0}};
static const struct step dup2_steps[] = {
	{"sent", N, 2, 1, ANY},		{"target", N, 3, 1, ANY},
	{"duped", N, 2, 1, ANY},	{"closed_orig", N, 2, 1, ANY},
	{"sent_dup", 2 * N, 2, 1, ANY}, {"closed_dup", 0, 1, 1, ANY},
	{"closed", 0, 0, 1, ANY},	{NULL, 0, 0, 0, 0}};

Test(life, dup_shares_state)
{
	run("dup", dup_steps, no_tick);
}
Test(life, fcntl_dupfd_shares_state)
{
	run("dupfd", dup_steps, no_tick);
}
Test(life, fcntl_dupfd_cloexec_shares_state)
{
	run("dupfd_cloexec", dup_steps, no_tick);
}
Test(life, dup2_over_socket)
{
	run("dup2", dup2_steps, no_tick);
}
Test(life, dup3_over_socket)
{
	run("dup3", dup2_steps, no_tick);
}

/* The dup's fd-table chunk cannot be mapped: the dup goes unaccounted, but
 * the original socket keeps its state (charges, close, socket count). */
Test(life, dup2_without_table_chunk_keeps_original)
{
	static const struct step s[] = {
		{"sent", N, 2, 1, ANY},		 {"duped", N, 2, 1, ANY},
		{"sent_more", 2 * N, 2, 1, ANY}, {"closed_orig", 0, 1, 1, ANY},
		{"closed", 0, 0, 1, ANY},	 {NULL, 0, 0, 0, 0}};
	run("dup_nomem", s, no_tick);
}

Test(life, close_range)
{
	static const struct step s[] = {{"sent", N, 3, 1, ANY},
					{"cloexec", N, 3, 1, ANY},
					{"refused", N, 3, 1, ANY},
					{"closed", 0, 0, 1, ANY},
					{NULL, 0, 0, 0, 0}};
	run("close_range", s, no_tick);
}

Test(life, fd_reuse_after_raw_close)
{
	static const struct step s[] = {{"sent", N, 2, 1, ANY},
					{"rawclosed", N, 2, 1, ANY},
					{"reused", 0, 2, 1, ANY},
					{"closed", 0, 0, 1, ANY},
					{NULL, 0, 0, 0, 0}};
	run("reuse", s, no_tick);
}

static bool sockets_eq(const struct sockmem_group_stat *st, int64_t n)
{
	return st->sockets == n;
}

/* A raw close whose fd number is then reused by a file: the helper's tick
 * finds the entry is no longer that socket and drops it. */
Test(life, stale_entry_dropped_by_tick)
{
	static const char *tick[] = {"SOCKMEM_RECONCILE_MS=20", NULL};
	const char *args[] = {"stale", NULL};
	struct pl_opts o = {.group = "life", .preload = true, .extra = {tick[0]}};
	struct sockmem_group_stat st;
	struct pl_child c;
	char ns[64];

	pl_ns(ns, sizeof(ns), "life-stale");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "pair", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.sockets, 2);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "file", NULL, 0), 0);
	cr_expect(pl_stat_until(ns, "life", &st, sockets_eq, 1, 5000),
		  "stale entry still counted: sockets %lld", (long long)st.sockets);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "closed", NULL, 0), 0);
	cr_expect(pl_stat_until(ns, "life", &st, sockets_eq, 0, 2000));
	cr_expect_eq(st.sock, 0);
	pl_go(&c);
	cr_expect_eq(pl_wait(&c, 10000), 0);
	sockmem_unlink(ns);
}

Test(life, exiting_threads_give_caches_back)
{
	static const struct step s[] = {
		{"running", 4 * N, 8, 1, ANY}, {"joined", 0, 0, 1, 0}, {NULL, 0, 0, 0, 0}};
	run("threads", s, no_tick);
}

/* The child's sends on inherited sockets are not charged (the parent owns
 * them), its own socket is; closing inherited fds releases nothing. */
Test(life, fork_child_no_double_count)
{
	static const struct step s[] = {{"sent", N, 2, 1, ANY},		{"child", 2 * N, 4, 2, ANY},
					{"child_closed", N, 2, 2, ANY}, {"parent", N, 2, 1, ANY},
					{"closed", 0, 0, 1, ANY},	{NULL, 0, 0, 0, 0}};
	run("fork", s, no_tick);
}

Test(life, exec_child_joins_group)
{
	static const struct step s[] = {{"sent", N, 2, 1, ANY},
					{"exec_child", 2 * N, 4, 2, ANY},
					{"parent", N, 2, 1, ANY},
					{"closed", 0, 0, 1, ANY},
					{NULL, 0, 0, 0, 0}};
	run("exec", s, no_tick);
}

/* exec without fork: the old image's charges go back at once; the new image
 * finds the old image's sockets open at load and accounts them from the
 * kernel's figure (sm_adopt_existing), besides its own pair: 4 sockets;
 * sock is N plus that figure (N bytes of data in truesize), so not exact. */
Test(life, self_exec_returns_old_image_charges)
{
	static const struct step s[] = {
		{"sent", N, 2, 1, ANY}, {"exec_child", ANY, 4, 1, ANY}, {NULL, 0, 0, 0, 0}};
	run("self_exec", s, no_tick);
}

/* exec without fork into an image whose shim refuses its limits (low above
 * high) and runs unaccounted: the old image's record is still returned, at
 * the new image's load (its pid and start time look alive to any reaper). */
Test(life, self_exec_into_refused_limits_returns_old_image_charges)
{
	static const struct step s[] = {
		{"sent", N, 2, 1, ANY}, {"unaccounted", 0, 0, 0, 0}, {NULL, 0, 0, 0, 0}};
	run("self_exec_refused", s, no_tick);
}

/* A thread cancelled in close() before the system call: the socket stays
 * open, charged, and is released by the later close. */
Test(life, cancel_in_close_keeps_the_socket)
{
	static const struct step s[] = {
		{"cancelled", N, 2, 1, ANY}, {"closed", 0, 0, 1, ANY}, {NULL, 0, 0, 0, 0}};
	run("cancel", s, no_tick);
}

/* 24 threads' first calls (urcu-bp registers each, growing its registry)
 * leave errno as it was. */
Test(life, first_call_of_a_thread_keeps_errno)
{
	const char *args[] = {"errno", NULL};
	struct pl_opts o = {.group = "life", .preload = true};
	struct pl_child c;
	char ns[64], rest[64];

	pl_ns(ns, sizeof(ns), "life-errno");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "errno_changed", rest, sizeof(rest)), 0);
	cr_expect_eq(atoi(rest), 0, "%s of 24 threads saw errno changed by a successful send",
		     rest);
	pl_go(&c);
	pl_wait(&c, 10000);
	sockmem_unlink(ns);
}

/* Key destructors that run after the shim's (glibc's later rounds) still
 * send: their charges must not attach new slots that nothing gives back.
 * Once the threads are gone and the pair closed, only the main thread's
 * stock remains (at most two batches). */
Test(life, late_key_destructors_leave_no_slot)
{
	const char *args[] = {"keyd", NULL};
	struct pl_opts o = {.group = "life",
			    .preload = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=60000", "SOCKMEM_RECONCILE_BYTES=0"}};
	struct sockmem_group_stat st;
	struct pl_child c;
	char ns[64];

	pl_ns(ns, sizeof(ns), "life-keyd");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "joined", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.sock, 0);
	cr_expect_leq(st.current, 2 * 65536, "current %lld: exited threads' stock left behind",
		      (long long)st.current);
	pl_go(&c);
	pl_wait(&c, 10000);
	sockmem_unlink(ns);
}

#define RUNS 100

/* exit() in one thread while another forks in a loop, RUNS times with the
 * exit at different points: every run exits, and the group is left clean
 * (the children never registered; the parent's exit returned its charge). */
Test(life, exit_while_another_thread_forks)
{
	struct pl_opts o = {.group = "life", .preload = true};
	struct sockmem_group_stat st;
	char ns[64], us[16];
	int hung = 0, failed = 0;

	pl_ns(ns, sizeof(ns), "life-fork-exit");
	o.ns = ns;
	for (int i = 0; i < RUNS; i++) {
		const char *args[] = {"fork_exit", us, NULL};
		struct pl_child c;
		int status;

		snprintf(us, sizeof(us), "%d", 200 + 53 * i);
		cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
		status = pl_wait(&c, 5000);
		if (status == -1)
			hung++;
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	cr_expect_eq(hung, 0, "%d of %d runs hung at exit", hung, RUNS);
	cr_expect_eq(failed, 0, "%d of %d runs failed", failed, RUNS);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.current, 0, "current %lld", (long long)st.current);
	cr_expect_eq(st.processes, 0, "processes %lld", (long long)st.processes);
	sockmem_unlink(ns);
}

static bool sock_near(const struct sockmem_group_stat *st, int64_t truth)
{
	int64_t tol = truth / 20 > 65536 ? truth / 20 : 65536;

	return st->sock >= truth - tol && st->sock <= truth + tol;
}

/* Data the program moved behind the shim's back (raw syscalls) is still
 * charged within a few ticks: the helper reconciles every socket. */
Test(life, tick_finds_untouched_data)
{
	const char *args[] = {"untouched", NULL};
	struct pl_opts o = {.group = "life",
			    .preload = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=50", "SOCKMEM_RECONCILE_BYTES=0"}};
	struct sockmem_group_stat st;
	struct pl_child c;
	char ns[64], rest[64];
	long truth;

	pl_ns(ns, sizeof(ns), "life-untouched");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "queued", rest, sizeof(rest)), 0);
	truth = atol(rest);
	cr_assert_gt(truth, 3 * 65536, "too little queued (%ld) for the test to mean much", truth);
	cr_expect(pl_stat_until(ns, "life", &st, sock_near, truth, 3000), "sock %lld, kernel %ld",
		  (long long)st.sock, truth);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "closed", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.sock, 0);
	cr_expect_eq(st.sockets, 0);
	pl_go(&c);
	cr_expect_eq(pl_wait(&c, 10000), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.current, 0);
	sockmem_unlink(ns);
}

/* A vfork child shares the parent's memory (and the shim's table): its
 * close() before exec must not release the parent's sockets. */
Test(life, vfork_child_close_keeps_parent_charge)
{
	static const struct step s[] = {{"sent", N, 2, 1, ANY},
					{"parent", N, 2, 1, ANY},
					{"closed", 0, 0, 1, ANY},
					{NULL, 0, 0, 0, 0}};
	run("vfork", s, no_tick);
}

/* The data path re-entered from a signal handler (async-signal-safety):
 * no deadlock, no torn charge: everything returns to zero. */
Test(life, send_recv_in_signal_handlers)
{
	static const struct step s[] = {{"closed", 0, 0, 1, ANY}, {NULL, 0, 0, 0, 0}};
	static const char *fast[] = {"SOCKMEM_RECONCILE_MS=5", "SOCKMEM_RECONCILE_BYTES=4K", NULL};
	run("signals", s, fast);
}

/* Threads racing on shared sockets, dups and closes, with the helper
 * reconciling every 2 ms: every charge comes back. */
Test(life, threads_race_on_shared_sockets)
{
	static const struct step s[] = {{"closed", 0, 0, 1, ANY}, {NULL, 0, 0, 0, 0}};
	static const char *fast[] = {"SOCKMEM_RECONCILE_MS=2", "SOCKMEM_RECONCILE_BYTES=4K", NULL};
	run("stress", s, fast);
}

/* Accept-then-fork servers: the parent closes its copies after fork and the
 * child serves the connection: the child adopts the sockets (kcmp shows the
 * parent no longer holds them) and its use is charged, once. */
Test(life, fork_handoff_is_charged_by_the_child)
{
	const char *args[] = {"handoff", NULL};
	struct pl_opts o = {.group = "life",
			    .preload = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=20", "SOCKMEM_RECONCILE_BYTES=0"}};
	struct sockmem_group_stat st;
	struct pl_child c;
	char ns[64], rest[64];
	long truth;

	pl_ns(ns, sizeof(ns), "life-handoff");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "child_sent", rest, sizeof(rest)), 0);
	truth = atol(rest);
	cr_assert_gt(truth, N / 2, "kernel holds only %ld", truth);
	cr_expect(pl_stat_until(ns, "life", &st, sock_near, truth, 3000), "sock %lld, kernel %ld",
		  (long long)st.sock, truth);
	cr_expect_eq(st.sockets, 2, "sockets %lld", (long long)st.sockets);
	cr_expect_eq(st.processes, 2, "processes %lld", (long long)st.processes);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "child_closed", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.sock, 0);
	cr_expect_eq(st.sockets, 0);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "parent", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.processes, 1);
	pl_go(&c);
	cr_expect_eq(pl_wait(&c, 10000), 0);
	cr_assert_eq(pl_stat(ns, "life", &st), 0);
	cr_expect_eq(st.current, 0);
	sockmem_unlink(ns);
}

static bool no_processes(const struct sockmem_group_stat *st, int64_t arg)
{
	(void)arg;
	return st->processes == 0;
}

/*
 * A forked child registers with its first socket, by the group index its
 * parent's constructor found. If the group was removed meanwhile (nobody
 * was registered: the parent had exited) and its entry went to another
 * group, the child must not join that one.
 */
Test(life, late_child_never_joins_the_group_that_took_its_entry)
{
	struct pl_opts o = {.group = "orph/a", .preload = true};
	struct sockmem_open_opts so = {0};
	const char *args[] = {"orphan", NULL};
	struct sockmem_group_stat st;
	uint32_t old, other;
	char ns[64], err[SOCKMEM_ERRLEN], line[128], errbuf[2048];
	sockmem_seg_t *seg;
	struct pl_child c;
	int status;

	pl_ns(ns, sizeof(ns), "life-orphan");
	o.ns = ns;
	so.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-life", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "orphaned", NULL, 0), 0);
	cr_assert_eq(waitpid(c.pid, &status, 0), c.pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "parent status %#x", status);
	cr_assert(pl_stat_until(ns, "orph/a", &st, no_processes, 0, 3000), "processes %lld",
		  (long long)st.processes);
	cr_assert_eq(sockmem_open(&so, &seg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_lookup(seg, "orph/a", &old), 0);
	cr_assert_eq(sockmem_group_remove(seg, "orph/a"), 0);
	cr_assert_eq(sockmem_group_create(seg, "other", &other), 0);
	cr_assert_eq(other, old, "the freed entry is reused (index %u, was %u)", other, old);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "sent", NULL, 0), 0);
	cr_assert_eq(pl_stat(ns, "other", &st), 0);
	cr_expect_eq(st.processes, 0, "the child registered in 'other' (processes %lld)",
		     (long long)st.processes);
	cr_expect_eq(st.sockets, 0, "sockets %lld", (long long)st.sockets);
	cr_expect_eq(st.current, 0, "current %lld", (long long)st.current);
	pl_go(&c);
	while (pl_line(&c, line, sizeof(line), 5000) == 0) /* until the child exits */
		;
	pl_stderr(&c, errbuf, sizeof(errbuf));
	cr_expect(strstr(errbuf, "group 'orph/a' was removed while this process ran") != NULL,
		  "the child says why it runs unaccounted; stderr:\n%s", errbuf);
	sockmem_close(seg);
	sockmem_unlink(ns);
}
