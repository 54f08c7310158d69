/*
 * Stress: 2 processes x 4 threads, each doing SOCKMEM_STRESS_OPS (default
 * 10^6) random charge/uncharge operations, mixing cache operations and
 * direct try_charge at random levels, on a shared 3-level tree with limits
 * at every level. A watcher thread samples every level continuously: usage
 * never above max, peak never above max. At the end, after every cache is
 * detached and every process unregistered, every usage is exactly 0.
 * A drainer thread meanwhile takes back idle stock continuously (as the
 * reclaimer will), racing every owner's fast path: a torn update of a
 * cache's stock would show up as a non-zero usage or an underflow.
 * (No forced charges here: they may legitimately exceed max.)
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "tutil.h"

TestSuite(stress, .fini = t_fini, .timeout = 170);

#define THREADS 4
#define NGROUPS 4 /* s, s/x, s/x/p0, s/x/p1 */

static const char *const paths[NGROUPS] = {"s", "s/x", "s/x/p0", "s/x/p1"};
/* Tight enough that every level refuses charges regularly. */
static const int64_t limits[NGROUPS] = {1600 << 10, 1400 << 10, 900 << 10, 900 << 10};

struct worker {
	sockmem_seg_t *seg;
	uint32_t proc, leaf;
	uint32_t levels[3]; /* leaf, mid, root */
	long ops;
	uint64_t rng;
	long fails;
};

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *work(void *p)
{
	struct worker *w = p;
	struct sockmem_cache c;
	int64_t cached = 0, direct[3] = {0};

	cr_assert_eq(sockmem_cache_attach(w->seg, w->proc, 16 << 10, &c), 0);
	for (long i = 0; i < w->ops; i++) {
		uint64_t r = next_rand(&w->rng);
		int64_t n = (int64_t)(r >> 40) % (12 << 10) + 1;
		int op = (int)(r & 15), lvl = (int)((r >> 4) % 3);

		if (op < 8) { /* drifts up: the threads keep pressing on the limits */
			if (cached < (256 << 10) && sm_cache_charge(&c, n, false, NULL))
				cached += n;
			else if (cached < (256 << 10))
				w->fails++;
		} else if (op < 14) {
			n = n < cached ? n : cached;
			sm_cache_uncharge(&c, n);
			cached -= n;
		} else if (op == 14) {
			if (direct[lvl] < (64 << 10) &&
			    sockmem_try_charge(w->seg, w->levels[lvl], n, NULL))
				direct[lvl] += n;
		} else {
			sockmem_uncharge(w->seg, w->levels[lvl], direct[lvl]);
			direct[lvl] = 0;
		}
	}
	sm_cache_uncharge(&c, cached);
	sockmem_cache_detach(&c);
	for (int l = 0; l < 3; l++)
		sockmem_uncharge(w->seg, w->levels[l], direct[l]);
	return NULL;
}

struct watch {
	sockmem_seg_t *seg;
	uint32_t idx[NGROUPS];
	_Atomic bool stop;
	long samples, over, peak_over;
	int64_t drained;
	long drains;
};

static void *drainer(void *p)
{
	struct watch *w = p;

	while (!atomic_load(&w->stop)) {
		w->drained += sockmem_drain_caches(w->seg, w->idx[0]);
		w->drains++;
		usleep(200);
	}
	return NULL;
}

static void *watcher(void *p)
{
	struct watch *w = p;

	while (!atomic_load(&w->stop)) {
		for (int i = 0; i < NGROUPS; i++) {
			struct sockmem_group *g = sockmem_group_at(w->seg, w->idx[i]);
			int64_t max = atomic_load(&g->max);

			w->over += atomic_load(&g->usage) > max;
			w->peak_over += atomic_load(&g->peak) > max;
		}
		w->samples++;
	}
	return NULL;
}

static long ops_per_thread(void)
{
	const char *e = getenv("SOCKMEM_STRESS_OPS");

	return e && atol(e) > 0 ? atol(e) : 1000000;
}

/* One process's share: 4 threads charging through its leaf. */
static long run_process(sockmem_seg_t *seg, uint32_t leaf, uint32_t mid, uint32_t root,
			uint64_t seed)
{
	struct worker w[THREADS];
	pthread_t t[THREADS];
	uint32_t proc;
	long fails = 0;

	if (sockmem_proc_register(seg, leaf, &proc) < 0)
		return -1;
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.seg = seg,
				       .proc = proc,
				       .leaf = leaf,
				       .levels = {leaf, mid, root},
				       .ops = ops_per_thread(),
				       .rng = seed * 7919 + (uint64_t)i * 104729 + 1};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		fails += w[i].fails;
	}
	sockmem_proc_unregister(seg, proc);
	return fails;
}

Test(stress, two_processes_four_threads_each)
{
	sockmem_seg_t *seg = t_open("stress");
	struct watch wt = {.seg = seg};
	pthread_t wth, dth;
	long fails;
	int status, go[2];
	pid_t pid;

	for (int i = 0; i < NGROUPS; i++) {
		wt.idx[i] = t_group(seg, paths[i]);
		t_limits(seg, wt.idx[i], limits[i], SOCKMEM_KEEP, SOCKMEM_KEEP);
	}
	/* Fork before starting any thread: a child forked while another thread
	 * holds an allocator lock (ASan's, say) can hang on it. The child
	 * waits on a pipe until the watcher and drainer run. */
	cr_assert_eq(pipe(go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sockmem_open_opts o = {.ns = t_ns};
		char err[SOCKMEM_ERRLEN], c;
		sockmem_seg_t *s2;

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(4);
		if (sockmem_open(&o, &s2, err, sizeof(err)) < 0)
			_exit(2);
		_exit(run_process(s2, wt.idx[3], wt.idx[1], wt.idx[0], 2) < 0 ? 3 : 0);
	}
	close(go[0]);
	pthread_create(&wth, NULL, watcher, &wt);
	pthread_create(&dth, NULL, drainer, &wt);
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	fails = run_process(seg, wt.idx[2], wt.idx[1], wt.idx[0], 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	atomic_store(&wt.stop, true);
	pthread_join(wth, NULL);
	pthread_join(dth, NULL);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	cr_expect_geq(fails, 0);
	cr_log_info("ops/thread %ld, refused charges (parent) %ld, watcher samples %ld, "
		    "drains %ld took %lld bytes",
		    ops_per_thread(), fails, wt.samples, wt.drains, (long long)wt.drained);
	cr_expect_gt(wt.drained, 0, "the drainer took stock from live caches");
	cr_expect_gt(wt.samples, 1000, "the watcher ran");
	cr_expect_gt(fails, 0, "the limits were actually hit");
	cr_expect_eq(wt.over, 0, "%ld samples saw usage above max", wt.over);
	cr_expect_eq(wt.peak_over, 0, "%ld samples saw peak above max", wt.peak_over);
	for (int i = 0; i < NGROUPS; i++) {
		struct sockmem_group *g = sockmem_group_at(seg, wt.idx[i]);

		cr_expect_eq(atomic_load(&g->usage), 0, "%s usage %lld at the end", paths[i],
			     (long long)atomic_load(&g->usage));
		cr_expect_leq(atomic_load(&g->peak), limits[i]);
		cr_expect_eq(atomic_load(&g->underflows), 0, "%s", paths[i]);
		cr_expect_eq(atomic_load(&g->processes), 0);
	}
	sockmem_close(seg);
}
