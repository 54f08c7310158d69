/*
 * Fault cases (issue 7, "Faults"): each test runs one subcommand of
 * sockmem-fault-cases under LD_PRELOAD in its own namespace, bounds it with
 * a timeout, checks the group at the helper's phases, and after exit checks
 * that nothing is left: usage exactly 0, no record, no slot, no socket.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fh.h"

#define GROUP "cases"
#define BATCH (64 * 1024)

static char ns[64];
static struct fh_child kid = {.pid = -1, .out = -1, .in = -1};
static sockmem_seg_t *seg;

static void teardown(void)
{
	if (kid.pid > 0)
		fh_wait(&kid, 1);
	fh_close(&kid);
	if (seg)
		sockmem_close(seg);
	seg = NULL;
	if (ns[0])
		sockmem_unlink(ns);
}

TestSuite(cases, .fini = teardown, .timeout = 60);
TestSuite(preloads, .fini = teardown, .timeout = 60);

/* Spawn the helper with `preload` (NULL: the default list). */
static void start(const char *name, const char *preload, const char *const *args)
{
	struct fh_opts o = {.ns = ns,
			    .group = GROUP,
			    .preload = preload,
			    .stdin_pipe = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=50"}};

	fh_ns(ns, sizeof(ns), name);
	sockmem_unlink(ns);
	cr_assert_eq(fh_spawn(&kid, "sockmem-fault-cases", args, &o), 0);
}

/* The segment appears when the helper's shim attaches. */
static void open_seg(void)
{
	for (int i = 0; i < 500 && !seg; i++) {
		seg = fh_open(ns);
		if (!seg)
			usleep(10000);
	}
	cr_assert_not_null(seg, "namespace %s never appeared (shim not active?)", ns);
}

static long expect_phase(const char *word, int timeout_ms)
{
	char rest[256];

	cr_assert_eq(fh_expect(&kid, word, rest, sizeof(rest), timeout_ms), 0,
		     "no %s from the helper", word);
	return atol(rest);
}

static void finish(int timeout_ms)
{
	int st;

	fh_go(&kid);
	fh_close(&kid); /* stdin EOF: any later phase goes on by itself */
	st = fh_wait(&kid, timeout_ms);
	cr_assert(st >= 0, "the helper hung (killed after %d ms)", timeout_ms);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "helper status %#x", st);
}

/* After exit: nothing of the process may remain. */
static void expect_empty(void)
{
	struct sockmem_group_stat st;
	struct fh_held h;

	if (!seg)
		open_seg();
	cr_assert_eq(fh_stat(seg, GROUP, &st), 0);
	fh_held(seg, NULL, 0, false, &h);
	cr_expect_eq(st.current, 0, "usage %lld after exit", (long long)st.current);
	cr_expect_eq(st.sockets, 0, "%lld sockets after exit", (long long)st.sockets);
	cr_expect_eq(st.processes, 0, "%lld processes after exit", (long long)st.processes);
	cr_expect_eq(st.underflows, 0, "%llu underflows", (unsigned long long)st.underflows);
	cr_expect_eq(h.nprocs, 0, "%d records left", h.nprocs);
	cr_expect_eq(h.nslots, 0, "%d slots left", h.nslots);
}

/* At a phase where the helper has closed every socket: no socket charge,
 * and what is cached is within the cache bound of its live slots. */
static void expect_closed(void)
{
	struct sockmem_group_stat st;
	struct fh_held h;

	cr_assert_eq(fh_stat(seg, GROUP, &st), 0);
	fh_held(seg, NULL, 0, false, &h);
	cr_expect_eq(h.sock, 0, "the tables still hold %lld socket bytes", (long long)h.sock);
	cr_expect_eq(st.sockets, 0, "%lld sockets open", (long long)st.sockets);
	cr_expect_leq(st.current, (int64_t)h.nslots * 2 * BATCH,
		      "usage %lld above %d slots x 2 x batch", (long long)st.current, h.nslots);
	cr_expect_eq(st.current, h.stock, "usage %lld != cached %lld", (long long)st.current,
		     (long long)h.stock);
}

static bool sock_at_least(int64_t n, int timeout_ms)
{
	uint64_t end = fh_now_ms() + (uint64_t)timeout_ms;
	struct fh_held h;

	do {
		fh_held(seg, NULL, 0, false, &h);
		if (h.sock >= n)
			return true;
		usleep(10000);
	} while (fh_now_ms() < end);
	return false;
}

Test(cases, fork_while_threads_send)
{
	const char *args[] = {"fork_mt", "40", NULL};

	struct fh_held h;
	uint64_t t0;

	start("fork", NULL, args);
	open_seg();
	expect_phase("CLOSED", 40000);
	/* Half the children left by _exit (no destructor, like a crash):
	 * the parent's helper must reap their records within 2 s. */
	t0 = fh_now_ms();
	do {
		fh_held(seg, NULL, 0, false, &h);
		if (h.nprocs == 1)
			break;
		usleep(20000);
	} while (fh_now_ms() - t0 < 2000);
	fprintf(stderr, "[INFO] fork: dead children reaped by the parent's helper in %llu ms\n",
		(unsigned long long)(fh_now_ms() - t0));
	cr_expect_eq(h.nprocs, 1, "%d records (1 expected: the parent) 2 s after the forks",
		     h.nprocs);
	expect_closed();
	finish(5000);
	expect_empty();
}

Test(cases, vfork_exec_and_posix_spawn_while_threads_send)
{
	const char *args[] = {"vfork_exec", "20", NULL};

	start("vfork", NULL, args);
	open_seg();
	expect_phase("CLOSED", 40000);
	expect_closed();
	finish(5000);
	expect_empty();
}

static void signal_case(const char *name, const char *limit)
{
	const char *args[] = {"signal_send", "3", NULL};
	struct fh_opts o = {
		.group = GROUP, .stdin_pipe = true, .extra = {"SOCKMEM_RECONCILE_MS=50", limit}};
	long handled;

	fh_ns(ns, sizeof(ns), name);
	sockmem_unlink(ns);
	o.ns = ns;
	cr_assert_eq(fh_spawn(&kid, "sockmem-fault-cases", args, &o), 0);
	open_seg();
	handled = expect_phase("CLOSED", 20000);
	fprintf(stderr, "[INFO] %s: signal handlers run: %ld\n", name, handled);
	cr_expect_gt(handled, 1000, "the handler ran (%ld times)", handled);
	expect_closed();
	finish(5000);
	expect_empty();
}

Test(cases, signal_handler_sends_inside_interposed_send)
{
	signal_case("signal", NULL);
}

/* The same with a limit far below what the traffic wants: the handler's
 * sends and the interrupted ones are refused or admitted partly, and
 * nothing may hang (every send is MSG_DONTWAIT). */
Test(cases, signal_handler_sends_at_the_limit)
{
	signal_case("siglim", "SOCKMEM_MAX=128K");
}

Test(cases, thousand_threads_come_and_go)
{
	const char *args[] = {"threads", "1000", NULL};
	struct sockmem_group_stat st;
	int slots;

	start("threads", NULL, args);
	open_seg();
	cr_assert_eq(expect_phase("DONE", 40000), 1000);
	/* Alive: main, the reader, 2 background threads (the shim's helper
	 * charges uncached). Every exited thread gave its slot back. */
	slots = fh_slots_of(seg, kid.pid);
	cr_expect_leq(slots, 4, "%d slots still claimed after 1000 threads exited", slots);
	cr_assert_eq(fh_stat(seg, GROUP, &st), 0);
	cr_expect_leq(st.cached, (int64_t)slots * 2 * BATCH, "cached %lld", (long long)st.cached);
	fh_go(&kid);
	expect_phase("CLOSED", 10000);
	expect_closed();
	finish(5000);
	expect_empty();
}

Test(cases, fd_above_65536)
{
	const char *args[] = {"highfd", NULL};
	struct sockmem_group_stat st;
	long n, fd;

	start("highfd", NULL, args);
	open_seg();
	fd = expect_phase("FD", 10000);
	n = expect_phase("QUEUED", 10000);
	/* 64 KiB queued on the high fd: the kernel holds at least that much. */
	cr_expect(sock_at_least(n, 3000), "64 KiB queued at fd %ld not accounted", fd);
	cr_assert_eq(fh_stat(seg, GROUP, &st), 0);
	cr_expect_eq(st.sockets, 2, "sockets %lld", (long long)st.sockets);
	fh_go(&kid);
	cr_expect_gt(expect_phase("DUP", 10000), fd);
	cr_expect(sock_at_least(8192, 3000), "8 KiB queued on the dup not accounted");
	fh_go(&kid);
	expect_phase("CLOSED", 10000);
	expect_closed();
	finish(5000);
	expect_empty();
	/* Visible, not hidden: without CAP_SYS_RESOURCE and a hard limit
	 * below 70000 the same checks ran at the highest fd allowed. */
	if (fd < 65536) {
		teardown(); /* a skipped test does not reach the suite's .fini */
		cr_skip_test("RLIMIT_NOFILE cannot be raised above 65536 here (no "
			     "CAP_SYS_RESOURCE): checked at fd %ld instead",
			     fd);
	}
}

Test(cases, program_closes_every_fd)
{
	const char *args[] = {"closeall", NULL};
	int st;

	start("closeall", NULL, args);
	open_seg();
	expect_phase("CLOSING", 10000);
	st = fh_wait(&kid, 20000);
	cr_assert(st >= 0, "hung after closing every fd");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x after closing every fd", st);
	expect_empty();
}

/* exit() from main while other threads are inside interposed send/recv:
 * the shim's destructor unregisters the process (releasing every slot of
 * the record) while those threads still charge through their slots. Run
 * many times in one namespace; afterwards nothing may be left. */
Test(cases, exit_while_threads_send)
{
	struct fh_opts o = {
		.group = GROUP, .stdin_pipe = false, .extra = {"SOCKMEM_RECONCILE_MS=50"}};
	const char *args[] = {"exit_busy", "30", NULL};
	int bad = 0;

	fh_ns(ns, sizeof(ns), "exitbusy");
	sockmem_unlink(ns);
	o.ns = ns;
	for (int i = 0; i < 40; i++) {
		int st;

		cr_assert_eq(fh_spawn(&kid, "sockmem-fault-cases", args, &o), 0);
		st = fh_wait(&kid, 10000);
		fh_close(&kid);
		bad += !(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	cr_expect_eq(bad, 0, "%d of 40 runs did not exit 0", bad);
	open_seg();
	{
		const char *reap[] = {"reap", NULL};
		struct fh_held h;

		fh_held(seg, NULL, 0, false, &h);
		fprintf(stderr,
			"[INFO] exit_busy: after 40 runs: usage %lld, %d records, %d slots\n",
			(long long)fh_usage(seg, GROUP), h.nprocs, h.nslots);
		/* A leftover record would be a dead process: reap first, so
		 * that only bytes nobody owns remain. */
		fh_ctl(ns, reap, NULL, 0);
	}
	expect_empty();
}

/* ---- other preloads beside ours, and another library's constructor ---- */

#define JEMALLOC "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"

static void traffic_under(const char *name, const char *preload)
{
	const char *args[] = {"traffic", NULL};

	start(name, preload, args);
	open_seg();
	expect_phase("QUEUED", 20000);
	cr_expect(sock_at_least(32768, 3000), "32 KiB queued not accounted (LD_PRELOAD=%s)",
		  preload);
	fh_go(&kid);
	expect_phase("CLOSED", 10000);
	expect_closed();
	finish(5000);
	expect_empty();
}

Test(preloads, jemalloc_before_ours)
{
	char pre[1500], shim[1100];

	fh_default_preload(shim, sizeof(shim));
	/* The ASan runtime, when present, must stay first. */
	if (*fh_asan_lib())
		snprintf(pre, sizeof(pre), "%s:%s:%s/libsockmem.so", fh_asan_lib(), JEMALLOC,
			 fh_build_dir());
	else
		snprintf(pre, sizeof(pre), "%s:%s", JEMALLOC, shim);
	traffic_under("jebefore", pre);
}

Test(preloads, jemalloc_after_ours)
{
	char pre[1500], shim[1100];

	fh_default_preload(shim, sizeof(shim));
	snprintf(pre, sizeof(pre), "%s:%s", shim, JEMALLOC);
	traffic_under("jeafter", pre);
}

/* libsockmem-fault-ctor's constructor runs socket calls before main. They
 * must work; whether they are accounted depends on whether our constructor
 * ran first. Both outcomes are consistent; the test says which. */
Test(preloads, socket_calls_in_another_librarys_constructor)
{
	const char *args[] = {"ctor", NULL};
	struct fh_held h;
	long n;

	start("ctor", NULL, args);
	open_seg();
	n = expect_phase("QUEUED", 10000);
	cr_assert_eq(n, 48 * 1024);
	usleep(300000); /* a few helper ticks: a tracked socket gets reconciled */
	fh_held(seg, NULL, 0, false, &h);
	fprintf(stderr,
		"[INFO] "
		"constructor sockets: %lld socket bytes accounted for %ld bytes queued (%s)\n",
		(long long)h.sock, n, h.sock >= n ? "accounted" : "passed through");
	cr_expect(h.sock == 0 || h.sock >= n, "partly accounted: %lld of %ld", (long long)h.sock,
		  n);
	fh_go(&kid);
	expect_phase("CLOSED", 10000);
	expect_closed();
	finish(5000);
	expect_empty();
}
