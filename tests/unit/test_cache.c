/* Per-thread charge caches: consume, refill, give back, detach, and the
 * remote drain of idle caches in other threads and other processes. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "cache.h"
#include "tutil.h"

TestSuite(cache, .fini = t_fini);

#define BATCH SOCKMEM_DEFAULT_BATCH

static uint32_t reg(sockmem_seg_t *seg, uint32_t g)
{
	uint32_t p;

	cr_assert_eq(sockmem_proc_register(seg, g, &p), 0);
	return p;
}

Test(cache, charge_uncharge_detach)
{
	sockmem_seg_t *seg = t_open("k-basic");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;
	struct sockmem_group_stat st;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	cr_assert_not_null(c.slot);
	cr_expect_eq(c.batch, BATCH);
	cr_expect(sockmem_cache_charge(&c, 1000, false, NULL));
	cr_expect_eq(t_usage(seg, g), 1000 + BATCH, "a miss charges the deficit plus a batch");
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH);
	cr_expect_eq(atomic_load(&c.slot->sock), 1000);
	/* Hits do not touch the counter. */
	for (int i = 0; i < 60; i++)
		cr_assert(sockmem_cache_charge(&c, 1000, false, NULL));
	cr_expect_eq(t_usage(seg, g), 1000 + BATCH);
	cr_assert_eq(sockmem_group_stat(seg, g, &st), 0);
	cr_expect_eq(st.cached, BATCH - 60000);
	cr_expect_eq(st.sock, 61000);
	/* Uncharges refill the stock up to 2 x batch, then give back to 1 batch. */
	sockmem_cache_uncharge(&c, 61000);
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH + 1000);
	cr_expect_eq(t_usage(seg, g), 1000 + BATCH);
	/* A big charge: deficit plus one batch; its uncharge gives back all
	 * but one batch. */
	cr_expect(sockmem_cache_charge(&c, 3 * BATCH, false, NULL));
	cr_expect_eq(t_usage(seg, g), 4 * BATCH);
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH);
	sockmem_cache_uncharge(&c, 3 * BATCH);
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH, "surplus above 2 x batch returned");
	cr_expect_eq(t_usage(seg, g), BATCH);
	cr_expect_eq(atomic_load(&c.slot->sock), 0);
	sockmem_cache_detach(&c);
	cr_expect_null(c.slot);
	cr_expect_eq(t_usage(seg, g), 0, "detach returns the stock");
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

Test(cache, detach_hands_socket_bytes_to_the_process)
{
	sockmem_seg_t *seg = t_open("k-handover");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;
	struct sockmem_slot *s;

	cr_assert_eq(sockmem_cache_attach(seg, p, 4096, &c), 0);
	s = c.slot;
	cr_assert(sockmem_cache_charge(&c, 10000, false, NULL));
	sockmem_cache_detach(&c);
	cr_expect_eq(atomic_load(&sockmem_proc_at(seg, p)->sock), 10000);
	cr_expect_eq(t_usage(seg, g), 10000, "only the stock went back");
	cr_expect_eq(atomic_load(&s->state), SOCKMEM_FREE);
	/* A detached cache goes straight to the counter and the process record. */
	cr_assert(sockmem_cache_charge(&c, 500, false, NULL));
	sockmem_cache_uncharge(&c, 10500);
	cr_expect_eq(atomic_load(&sockmem_proc_at(seg, p)->sock), 0);
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

Test(cache, nested_use_goes_uncached)
{
	sockmem_seg_t *seg = t_open("k-nested");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	cr_assert(sockmem_cache_charge(&c, 100, false, NULL));
	/* As if a signal handler ran inside this thread's fast path. */
	atomic_store(&c.slot->busy, 1);
	cr_assert(sockmem_cache_charge(&c, 7, false, NULL));
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH, "the interrupted stock is untouched");
	cr_expect_eq(atomic_load(&sockmem_proc_at(seg, p)->sock), 7);
	cr_expect_eq(t_usage(seg, g), 100 + BATCH + 7);
	sockmem_cache_uncharge(&c, 7);
	cr_expect_eq(atomic_load(&sockmem_proc_at(seg, p)->sock), 0);
	atomic_store(&c.slot->busy, 0);
	sockmem_cache_uncharge(&c, 100);
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

Test(cache, failure_at_limit_names_level)
{
	sockmem_seg_t *seg = t_open("k-limit");
	uint32_t c3 = t_group(seg, "a/b"), a, p = reg(seg, c3), fail = 0;
	struct sockmem_cache c;
	int n = 0;

	sockmem_group_lookup(seg, "a", &a);
	t_limits(seg, a, 100000, SOCKMEM_KEEP, SOCKMEM_KEEP);
	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	while (n < 1000 && sockmem_cache_charge(&c, 1000, false, &fail))
		n++;
	cr_expect_eq(n, 100, "exactly max / 1000 charges fit");
	cr_expect_eq(fail, a);
	cr_expect_eq(t_usage(seg, a), 100000);
	cr_expect_eq(atomic_load(&sockmem_group_at(seg, a)->failcnt), 1,
		     "one failure counted for one refused charge");
	/* Forced: succeeds, over max, counted. */
	cr_expect(sockmem_cache_charge(&c, 1000, true, &fail));
	cr_expect_eq(t_usage(seg, a), 101000);
	cr_expect_eq(atomic_load(&sockmem_group_at(seg, a)->ev_max), 2);
	sockmem_cache_uncharge(&c, 101000);
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, a), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

/* ---- drain of another thread's idle cache ---- */

struct idle_arg {
	sockmem_seg_t *seg;
	uint32_t proc;
	pthread_barrier_t charged, drained;
	bool ok_after;
};

static void *idle_thread(void *p)
{
	struct idle_arg *a = p;
	struct sockmem_cache c;

	cr_assert_eq(sockmem_cache_attach(a->seg, a->proc, 0, &c), 0);
	cr_assert(sockmem_cache_charge(&c, 1000, false, NULL));
	pthread_barrier_wait(&a->charged);
	pthread_barrier_wait(&a->drained); /* idle meanwhile */
	a->ok_after = sockmem_cache_charge(&c, 1000, false, NULL);
	sockmem_cache_uncharge(&c, 2000);
	sockmem_cache_detach(&c);
	return NULL;
}

Test(cache, drain_idle_thread)
{
	sockmem_seg_t *seg = t_open("k-drain-thread");
	uint32_t g = t_group(seg, "a/b"), a;
	struct idle_arg arg = {.seg = seg};
	pthread_t t;

	sockmem_group_lookup(seg, "a", &a);
	arg.proc = reg(seg, g);
	pthread_barrier_init(&arg.charged, NULL, 2);
	pthread_barrier_init(&arg.drained, NULL, 2);
	pthread_create(&t, NULL, idle_thread, &arg);
	pthread_barrier_wait(&arg.charged);
	cr_expect_eq(t_usage(seg, a), 1000 + BATCH);
	/* Draining the ancestor reaches the descendant's cache. */
	cr_expect_eq(sockmem_drain_caches(seg, a), BATCH);
	cr_expect_eq(t_usage(seg, a), 1000);
	cr_expect_eq(t_usage(seg, g), 1000);
	cr_expect_eq(sockmem_drain_caches(seg, a), 0, "nothing left");
	pthread_barrier_wait(&arg.drained);
	pthread_join(t, NULL);
	cr_expect(arg.ok_after, "the owner keeps working after a drain");
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_proc_unregister(seg, arg.proc);
	sockmem_close(seg);
}

Test(cache, drain_skips_other_subtrees)
{
	sockmem_seg_t *seg = t_open("k-drain-scope");
	uint32_t x = t_group(seg, "x"), y = t_group(seg, "y"), p = reg(seg, x);
	struct sockmem_cache c;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	cr_assert(sockmem_cache_charge(&c, 10, false, NULL));
	cr_expect_eq(sockmem_drain_caches(seg, y), 0);
	cr_expect_eq(t_usage(seg, x), 10 + BATCH);
	cr_expect_eq(sockmem_drain_caches(seg, x), BATCH, "our own idle cache, too");
	cr_expect_eq(atomic_load(&c.slot->stock), 0);
	cr_assert(sockmem_cache_charge(&c, 10, false, NULL));
	sockmem_cache_uncharge(&c, 20);
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, x), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

/* ---- drain of another process's idle cache ---- */

static void child_charge_and_sleep(const char *ns, int wfd)
{
	struct sockmem_open_opts o = {.ns = ns};
	char err[SOCKMEM_ERRLEN];
	struct sockmem_cache c;
	sockmem_seg_t *seg;
	uint32_t g, p;
	char ok = 'n';

	if (sockmem_open(&o, &seg, err, sizeof(err)) == 0 &&
	    sockmem_group_lookup(seg, "a/b", &g) == 0 && sockmem_proc_register(seg, g, &p) == 0 &&
	    sockmem_cache_attach(seg, p, 0, &c) == 0 && sockmem_cache_charge(&c, 3000, false, NULL))
		ok = 'y';
	if (write(wfd, &ok, 1) != 1)
		_exit(2);
	sleep(20); /* idle; the parent kills us */
	_exit(0);
}

Test(cache, drain_idle_process)
{
	sockmem_seg_t *seg = t_open("k-drain-proc");
	uint32_t g = t_group(seg, "a/b"), a;
	int fds[2], status;
	char ok = 0;
	int64_t back = -1;
	pid_t pid;

	sockmem_group_lookup(seg, "a", &a);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		child_charge_and_sleep(t_ns, fds[1]);
	cr_assert_eq(read(fds[0], &ok, 1), 1);
	cr_assert_eq(ok, 'y', "child set up");
	cr_expect_eq(t_usage(seg, a), 3000 + BATCH);
	cr_expect_eq(sockmem_drain_caches(seg, a), BATCH);
	cr_expect_eq(t_usage(seg, a), 3000, "the child's stock came back without its help");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_expect_eq(sockmem_reap(seg, &back), 1);
	cr_expect_eq(back, 3000);
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_close(seg);
}

/* ---- caches never take the counter over max ---- */

#define FILL_MAX (1 << 20)

struct fill_arg {
	sockmem_seg_t *seg;
	uint32_t proc;
	int64_t charged;
	pthread_barrier_t *done;
};

static void *fill_thread(void *p)
{
	struct fill_arg *a = p;
	struct sockmem_cache c;
	int fails = 0;

	cr_assert_eq(sockmem_cache_attach(a->seg, a->proc, 0, &c), 0);
	for (int i = 0; i < 100000 && fails < 50; i++) {
		if (sockmem_cache_charge(&c, 1000, false, NULL))
			a->charged += 1000;
		else
			fails++;
	}
	pthread_barrier_wait(a->done); /* nobody frees before both are full */
	sockmem_cache_uncharge(&c, a->charged);
	sockmem_cache_detach(&c);
	return NULL;
}

Test(cache, never_over_max_from_two_threads)
{
	sockmem_seg_t *seg = t_open("k-fill");
	uint32_t g = t_group(seg, "a");
	pthread_barrier_t done;
	struct fill_arg arg[2];
	pthread_t t[2];
	int64_t top = 0;
	struct sockmem_group *gr = sockmem_group_at(seg, g);

	t_limits(seg, g, FILL_MAX, SOCKMEM_KEEP, SOCKMEM_KEEP);
	pthread_barrier_init(&done, NULL, 2);
	for (int i = 0; i < 2; i++) {
		arg[i] = (struct fill_arg){.seg = seg, .proc = reg(seg, g), .done = &done};
		pthread_create(&t[i], NULL, fill_thread, &arg[i]);
	}
	for (int n = 0; n < 200000; n++) {
		int64_t u = atomic_load(&gr->usage);

		top = u > top ? u : top;
		if (n % 1000 == 0 && atomic_load(&gr->usage) == 0 && n > 100000)
			break;
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		sockmem_proc_unregister(seg, arg[i].proc);
	}
	cr_expect_leq(top, FILL_MAX, "sampled usage %lld above max", (long long)top);
	cr_expect_leq(atomic_load(&gr->peak), FILL_MAX);
	cr_expect_geq(arg[0].charged + arg[1].charged, FILL_MAX - 2 * BATCH - 2000,
		      "caches let the threads use (almost) all of max: %lld",
		      (long long)(arg[0].charged + arg[1].charged));
	cr_expect_leq(arg[0].charged + arg[1].charged, FILL_MAX);
	cr_expect_eq(atomic_load(&gr->usage), 0);
	sockmem_close(seg);
}

/* A slot whose owner died inside an update (busy stuck at 1) cannot block a
 * drain: the drainer gives up on it after a bounded wait and releases it. */
Test(cache, drain_bounded_on_stuck_owner)
{
	sockmem_seg_t *seg = t_open("k-stuck");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;
	uint64_t t0;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	cr_assert(sockmem_cache_charge(&c, 10, false, NULL));
	atomic_store(&c.slot->busy, 1);
	t0 = sockmem_now_ns();
	cr_expect_eq(sockmem_drain_caches(seg, g), 0, "a busy slot is not touched");
	cr_expect_lt(sockmem_now_ns() - t0, 500u * 1000 * 1000, "bounded wait");
	cr_expect_eq(atomic_load(&c.slot->steal), 0, "released");
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH);
	atomic_store(&c.slot->busy, 0);
	cr_expect_eq(sockmem_drain_caches(seg, g), BATCH);
	sockmem_cache_uncharge(&c, 10);
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

/* The slot's stock and sock are whatever another member wrote (issue 7,
 * hostile input): the slow paths saturate instead of overflowing (the
 * Sanitize build aborts on signed overflow). */
Test(cache, slow_paths_on_extreme_slot_values)
{
	sockmem_seg_t *seg = t_open("k-extreme");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	atomic_store(&c.slot->stock, INT64_MIN);
	atomic_store(&c.slot->sock, INT64_MAX);
	cr_expect(sockmem_cache_charge(&c, 1000, false, NULL));
	cr_expect_eq(atomic_load(&c.slot->sock), INT64_MAX, "saturated");
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH, "the negative stock counted as none");
	cr_expect_eq(t_usage(seg, g), 1000 + BATCH);
	atomic_store(&c.slot->stock, 2 * BATCH);
	atomic_store(&c.slot->sock, INT64_MIN);
	sockmem_cache_uncharge(&c, 1000);
	cr_expect_eq(atomic_load(&c.slot->sock), INT64_MIN, "saturated");
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH);
	atomic_store(&c.slot->sock, 0);
	sockmem_cache_detach(&c);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

/* A batch too large for the cache's arithmetic (2 x batch is its bound) is
 * clamped at attach: before, INT64_MAX wrapped that bound negative and one
 * uncharge left an unlimited stock (every later charge bypassed max). */
Test(cache, huge_batch_is_clamped)
{
	sockmem_seg_t *seg = t_open("k-hugebatch");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_group *gr = sockmem_group_at(seg, g);
	struct sockmem_cache c;

	t_limits(seg, g, 1 << 20, SOCKMEM_KEEP, SOCKMEM_KEEP);
	cr_assert_eq(sockmem_cache_attach(seg, p, INT64_MAX, &c), 0);
	cr_expect_eq(c.batch, SOCKMEM_BATCH_MAX);
	cr_assert(sockmem_cache_charge(&c, 1000, false, NULL));
	sockmem_cache_uncharge(&c, 1000);
	cr_expect_leq(atomic_load(&c.slot->stock), 2 * SOCKMEM_BATCH_MAX, "stock %lld",
		      (long long)atomic_load(&c.slot->stock));
	cr_expect_eq(t_usage(seg, g), atomic_load(&c.slot->stock), "the stock is all charged");
	cr_expect(!sockmem_cache_charge(&c, 2 << 20, false, NULL), "max still holds");
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, g), 0);
	cr_expect_eq(atomic_load(&gr->underflows), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}

/* Make membarrier(2) fail with EPERM in this process (a seccomp filter, as
 * a sandbox installs). False if the filter could not be installed. */
static bool deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	       prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* A drainer whose membarrier(GLOBAL_EXPEDITED) fails cannot tell whether an
 * owner's fence-free fast path is inside an update: it must give the slots
 * back untouched. Before, it logged the failure and took the stock anyway,
 * racing the owners' plain stores (the torn updates the stress test sees
 * with the barrier removed). */
Test(cache, drain_takes_nothing_without_its_barrier)
{
	sockmem_seg_t *seg = t_open("k-nobarrier");
	uint32_t g = t_group(seg, "a"), p = reg(seg, g);
	struct sockmem_cache c;
	int fds[2], status;
	int64_t taken = -1;
	pid_t pid;

	cr_assert_eq(sockmem_cache_attach(seg, p, 0, &c), 0);
	if (c.fence)
		cr_skip_test("no membarrier(GLOBAL_EXPEDITED) here: owners use fences");
	cr_assert(sockmem_cache_charge(&c, 10, false, NULL));
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Another member's drainer, its barrier denied. */
		if (!deny_membarrier())
			_exit(3);
		taken = sockmem_drain_caches(seg, g);
		_exit(write(fds[1], &taken, sizeof(taken)) == sizeof(taken) ? 0 : 2);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 3, "seccomp filter refused");
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_eq(read(fds[0], &taken, sizeof(taken)), (ssize_t)sizeof(taken));
	cr_expect_eq(taken, 0, "the drainer took %lld bytes without its barrier", (long long)taken);
	cr_expect_eq(atomic_load(&c.slot->stock), BATCH);
	cr_expect_eq(atomic_load(&c.slot->steal), 0, "the slot was released");
	cr_expect_eq(t_usage(seg, g), 10 + BATCH);
	cr_expect_eq(sockmem_drain_caches(seg, g), BATCH, "a drainer with its barrier takes it");
	sockmem_cache_uncharge(&c, 10);
	sockmem_cache_detach(&c);
	cr_expect_eq(t_usage(seg, g), 0);
	sockmem_proc_unregister(seg, p);
	sockmem_close(seg);
}
