/*
 * Core stress for ThreadSanitizer, as a plain program (no Criterion, no
 * fork after threads: TSan supports neither).
 *
 *   tsan_core_stress [OPS]          parent: creates the namespace, spawns
 *                                   a second process of itself, runs its own
 *                                   share and a watcher, checks the end
 *   tsan_core_stress --child NS OPS the second process
 *
 * Each process registers in its own leaf of a 3-level tree with limits,
 * runs 4 threads of random cache charges/uncharges and direct charges, one
 * thread that drains every cache of the tree and one that reaps, all at
 * once. Exit 0 when every level ends at exactly 0, usage never exceeded
 * max, and nothing is left in the tables.
 */
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockmem/sockmem.h"

extern char **environ;

#define THREADS 4
static const char *const paths[4] = {"s", "s/x", "s/x/p0", "s/x/p1"};
static const int64_t limits[4] = {1600 << 10, 1400 << 10, 900 << 10, 900 << 10};

static sockmem_seg_t *seg;
static uint32_t idx[4], my_proc;
static long ops;
static _Atomic int stop;

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *work(void *p)
{
	uint64_t rng = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull + (uint64_t)getpid();
	uint32_t leaf = idx[getenv("TSAN_STRESS_CHILD") ? 3 : 2];
	uint32_t lv[3] = {leaf, idx[1], idx[0]};
	struct sockmem_cache c;
	int64_t cached = 0, direct[3] = {0};

	if (sockmem_cache_attach(seg, my_proc, 16 << 10, &c) != 0)
		abort();
	for (long i = 0; i < ops; i++) {
		uint64_t r = next_rand(&rng);
		int64_t n = (int64_t)(r >> 40) % (12 << 10) + 1;
		int op = (int)(r & 15), l = (int)((r >> 4) % 3);

		if (op < 7 && cached < (256 << 10)) {
			if (sockmem_cache_charge(&c, n, false, NULL))
				cached += n;
		} else if (op < 14) {
			n = n < cached ? n : cached;
			sockmem_cache_uncharge(&c, n);
			cached -= n;
		} else if (op == 14 && direct[l] < (64 << 10)) {
			if (sockmem_try_charge(seg, lv[l], n, NULL))
				direct[l] += n;
		} else {
			sockmem_uncharge(seg, lv[l], direct[l]);
			direct[l] = 0;
		}
	}
	sockmem_cache_uncharge(&c, cached);
	sockmem_cache_detach(&c);
	for (int l = 0; l < 3; l++)
		sockmem_uncharge(seg, lv[l], direct[l]);
	return NULL;
}

static void *drainer(void *p)
{
	while (!atomic_load(&stop)) {
		sockmem_drain_caches(seg, idx[0]);
		usleep(500);
	}
	return NULL;
}

static void *reaper(void *p)
{
	int64_t bytes;

	while (!atomic_load(&stop)) {
		sockmem_reap(seg, &bytes);
		usleep(2000);
	}
	return NULL;
}

static long over;

static void *watcher(void *p)
{
	while (!atomic_load(&stop))
		for (int i = 0; i < 4; i++) {
			struct sockmem_group *g = sockmem_group_at(seg, idx[i]);

			over += atomic_load(&g->usage) > atomic_load(&g->max);
		}
	return NULL;
}

/* One process's share: workers, then stop the side threads. */
static void run_share(bool parent)
{
	pthread_t w[THREADS], side[3];
	int nside = parent ? 3 : 2;

	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i], NULL, work, (void *)(uintptr_t)(i + 1));
	pthread_create(&side[0], NULL, drainer, NULL);
	pthread_create(&side[1], NULL, reaper, NULL);
	if (parent)
		pthread_create(&side[2], NULL, watcher, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < nside; i++)
		pthread_join(side[i], NULL);
	sockmem_proc_unregister(seg, my_proc);
}

static int open_ns(const char *ns, bool create)
{
	struct sockmem_open_opts o = {.ns = ns, .create = create};
	char err[SOCKMEM_ERRLEN];

	if (sockmem_open(&o, &seg, err, sizeof(err)) != 0) {
		fprintf(stderr, "tsan_core_stress: %s\n", err);
		return -1;
	}
	for (int i = 0; i < 4; i++)
		if (sockmem_group_create(seg, paths[i], &idx[i]) != 0)
			return -1;
	return 0;
}

int main(int argc, char **argv)
{
	static char child_flag[] = "--child";
	char ns[64], opsbuf[32], *cargv[5];
	int failed = 0, st;
	pid_t pid;

	if (argc == 4 && !strcmp(argv[1], "--child")) {
		ops = atol(argv[3]);
		setenv("TSAN_STRESS_CHILD", "1", 1);
		if (open_ns(argv[2], false) || sockmem_proc_register(seg, idx[3], &my_proc))
			return 2;
		run_share(false);
		return 0;
	}
	ops = argc > 1 ? atol(argv[1]) : 200000;
	snprintf(ns, sizeof(ns), "t-ftsan-core-%d", (int)getpid());
	snprintf(opsbuf, sizeof(opsbuf), "%ld", ops);
	sockmem_unlink(ns);
	if (open_ns(ns, true))
		return 2;
	for (int i = 0; i < 4; i++)
		if (sockmem_group_set_limits(seg, idx[i], limits[i], SOCKMEM_KEEP, SOCKMEM_KEEP,
					     NULL, 0) != 0)
			return 2;
	if (sockmem_proc_register(seg, idx[2], &my_proc))
		return 2;
	cargv[0] = argv[0], cargv[1] = child_flag, cargv[2] = ns, cargv[3] = opsbuf;
	cargv[4] = NULL;
	if (posix_spawn(&pid, argv[0], NULL, NULL, cargv, environ) != 0)
		return 2;
	run_share(true);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child status %#x\n", st);
		failed = 1;
	}
	for (int i = 0; i < 4; i++) {
		struct sockmem_group_stat gs;

		sockmem_group_stat(seg, idx[i], &gs);
		if (gs.current != 0 || gs.processes != 0 || gs.peak > limits[i] || gs.underflows) {
			fprintf(stderr,
				"%s: current %lld processes %lld peak %lld underflows %llu\n",
				paths[i], (long long)gs.current, (long long)gs.processes,
				(long long)gs.peak, (unsigned long long)gs.underflows);
			failed = 1;
		}
	}
	if (over) {
		fprintf(stderr, "%ld samples saw usage above max\n", over);
		failed = 1;
	}
	printf("tsan_core_stress: %ld ops/thread x %d threads x 2 processes: %s\n", ops, THREADS,
	       failed ? "FAILED" : "ok");
	sockmem_close(seg);
	sockmem_unlink(ns);
	return failed;
}
