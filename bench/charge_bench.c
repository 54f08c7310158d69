/*
 * sockmem-charge-bench: the charge-path microbenchmark.
 *
 * Time per charge+uncharge pair, per thread, for:
 *   cache    sm_cache_charge/sm_cache_uncharge (lib/cache.h) on the thread's
 *            own slot: plain loads and stores on its own cache line
 *   atomic   fetch_add/fetch_sub on one shared _Atomic int64 in the segment
 *            (the group's usage word, the line every uncached charge hits)
 *   mutex    a process-shared pthread mutex guarding a shared int64
 *   counter  sockmem_try_charge/sockmem_uncharge: the uncached hierarchical
 *            page_counter path (CAS per level, peak tracking)
 * with T threads in each of P processes. Every measurement runs in freshly
 * forked worker processes that attach to the namespace themselves (a forked
 * child is a new mm and must register for membarrier on its own); threads
 * start together on a flag in shared memory and stop together after the
 * duration, so contention covers the whole measured window.
 *
 * Output: one JSON object per line per (variant, threads, procs), the median
 * over --repeat interleaved measurements.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "sockmem/sockmem.h"

#define CHUNK		 1024 /* pairs between looks at the stop flag */
#define MAX_WORKERS	 64   /* threads x procs */
#define MAX_COMBOS	 64
#define MAX_REPEAT	 101
#define READY_TIMEOUT_NS (10ull * 1000000000ull)

enum variant { V_CACHE, V_ATOMIC, V_MUTEX, V_COUNTER, V_NR };
static const char *const variant_names[V_NR] = {"cache", "atomic", "mutex", "counter"};

struct opts {
	char ns[SOCKMEM_NS_MAX];
	int64_t nr, batch;
	uint64_t iterations; /* per thread; 0: duration only */
	int duration_ms, repeat;
	bool pin; /* worker thread i on CPU i mod ncpus */
	int variants[V_NR], nvariants;
	int threads[8], nthreads;
	int procs[8], nprocs;
};

/* Anonymous shared mapping, inherited by the worker processes. */
struct shared {
	_Atomic int ready;
	_Atomic int go;
	_Atomic int stop;
	_Atomic int failed;
	pthread_mutex_t mtx __attribute__((aligned(64)));
	int64_t guarded; /* W/R: under mtx */
	struct {
		double ns_per_pair, cpu_ns_per_pair;
		uint64_t pairs, fails;
	} res[MAX_WORKERS] __attribute__((aligned(64)));
};

struct worker {
	struct shared *sh;
	const struct opts *o;
	sockmem_seg_t *seg;
	uint32_t group, proc;
	enum variant v;
	int id;
	struct sockmem_cache cache;
	_Atomic int64_t *usage;
	pthread_t th;
};

static char cb_ns[SOCKMEM_NS_MAX]; /* unlinked at exit if set */
static struct shared *cb_sh;	   /* released at exit: no worker spins on */

static void cleanup(void)
{
	if (cb_sh) {
		atomic_store(&cb_sh->stop, 1);
		atomic_store(&cb_sh->go, 1);
	}
	if (cb_ns[0])
		sockmem_unlink(cb_ns);
}

static void __attribute__((format(printf, 1, 2), noreturn)) die(const char *fmt, ...)
{
	va_list ap;

	fputs("sockmem-charge-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---- the measured loops: CHUNK pairs each; return failed charges ------ */

static uint64_t chunk_cache(struct worker *w)
{
	int64_t nr = w->o->nr;
	uint64_t fails = 0;

	for (int k = 0; k < CHUNK; k++) {
		if (sm_likely(sm_cache_charge(&w->cache, nr, false, NULL)))
			sm_cache_uncharge(&w->cache, nr);
		else
			fails++;
	}
	return fails;
}

static uint64_t chunk_atomic(struct worker *w)
{
	_Atomic int64_t *u = w->usage;
	int64_t nr = w->o->nr;

	for (int k = 0; k < CHUNK; k++) {
		atomic_fetch_add(u, nr);
		atomic_fetch_sub(u, nr);
	}
	return 0;
}

static uint64_t chunk_mutex(struct worker *w)
{
	struct shared *sh = w->sh;
	int64_t nr = w->o->nr;

	for (int k = 0; k < CHUNK; k++) {
		pthread_mutex_lock(&sh->mtx);
		sh->guarded += nr;
		pthread_mutex_unlock(&sh->mtx);
		pthread_mutex_lock(&sh->mtx);
		sh->guarded -= nr;
		pthread_mutex_unlock(&sh->mtx);
	}
	return 0;
}

static uint64_t chunk_counter(struct worker *w)
{
	int64_t nr = w->o->nr;
	uint64_t fails = 0;

	for (int k = 0; k < CHUNK; k++) {
		if (sockmem_try_charge(w->seg, w->group, nr, NULL))
			sockmem_uncharge(w->seg, w->group, nr);
		else
			fails++;
	}
	return fails;
}

static uint64_t (*const chunk_fn[V_NR])(struct worker *) = {chunk_cache, chunk_atomic, chunk_mutex,
							    chunk_counter};

/* ---- one worker thread ----------------------------------------------- */

static void thread_fail(struct worker *w, const char *what, int rc)
{
	fprintf(stderr, "sockmem-charge-bench: %s: %s\n", what, strerror(-rc));
	atomic_store(&w->sh->failed, 1);
	atomic_fetch_add(&w->sh->ready, 1); /* don't leave the parent waiting */
}

/* CPU time of the calling thread: unlike wall time, it does not grow when
 * another process takes the thread's CPU away on a busy machine. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Pinning keeps two workers off the same CPU, so that whenever both run
 * they run at the same time and really share the contended line. */
static void pin_self(int id)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (ncpu < 1)
		return;
	CPU_ZERO(&set);
	CPU_SET((int)(id % ncpu), &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "sockmem-charge-bench: sched_setaffinity: %s\n", strerror(errno));
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	uint64_t n = 0, fails = 0, t0, t1, c0, c1;
	int rc;

	if (w->o->pin)
		pin_self(w->id);

	if (w->v == V_CACHE &&
	    (rc = sockmem_cache_attach(w->seg, w->proc, w->o->batch, &w->cache)) < 0) {
		thread_fail(w, "cache attach", rc);
		return NULL;
	}
	chunk_fn[w->v](w); /* warm-up: fills the cache, faults the lines in */
	atomic_fetch_add(&sh->ready, 1);
	t0 = sockmem_now_ns();
	while (!atomic_load_explicit(&sh->go, memory_order_acquire))
		if (sockmem_now_ns() - t0 > 2 * READY_TIMEOUT_NS)
			_exit(1); /* the coordinator is gone */
	t0 = sockmem_now_ns();
	c0 = thread_cpu_ns();
	/* At least one chunk: on a loaded machine a thread can first run after
	 * the coordinator already set stop, and 0 pairs would divide by zero. */
	do {
		fails += chunk_fn[w->v](w);
		n += CHUNK;
	} while (!atomic_load_explicit(&sh->stop, memory_order_relaxed) &&
		 (w->o->iterations == 0 || n < w->o->iterations));
	t1 = sockmem_now_ns();
	c1 = thread_cpu_ns();
	if (w->v == V_CACHE)
		sockmem_cache_detach(&w->cache);
	sh->res[w->id].ns_per_pair = (double)(t1 - t0) / (double)n;
	sh->res[w->id].cpu_ns_per_pair = (double)(c1 - c0) / (double)n;
	sh->res[w->id].pairs = n;
	sh->res[w->id].fails = fails;
	return NULL;
}

/* ---- one worker process ---------------------------------------------- */

static int attach(const struct opts *o, sockmem_seg_t **seg, uint32_t *group, uint32_t *proc)
{
	struct sockmem_open_opts oo = {.ns = o->ns};
	char err[SOCKMEM_ERRLEN] = "";
	int rc = sockmem_open(&oo, seg, err, sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "sockmem-charge-bench: attach %s: %s\n", o->ns, err);
		return rc;
	}
	rc = sockmem_group_lookup(*seg, "bench", group);
	if (rc == 0)
		rc = sockmem_proc_register(*seg, *group, proc);
	if (rc < 0)
		fprintf(stderr, "sockmem-charge-bench: group/proc: %s\n", strerror(-rc));
	return rc;
}

static void __attribute__((noreturn))
child_main(struct shared *sh, const struct opts *o, enum variant v, int nthreads, int base)
{
	struct worker w[MAX_WORKERS];
	sockmem_seg_t *seg = NULL;
	uint32_t group = 0, proc = 0;

	/* Never outlive the coordinator, whatever happens to it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	if (attach(o, &seg, &group, &proc) < 0) {
		atomic_store(&sh->failed, 1);
		atomic_fetch_add(&sh->ready, nthreads);
		_exit(1);
	}
	for (int i = 0; i < nthreads; i++) {
		w[i] = (struct worker){.sh = sh,
				       .o = o,
				       .seg = seg,
				       .group = group,
				       .proc = proc,
				       .v = v,
				       .id = base + i};
		w[i].usage = &sockmem_group_at(seg, group)->usage;
		if (pthread_create(&w[i].th, NULL, thread_main, &w[i]) != 0)
			_exit(1);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(w[i].th, NULL);
	sockmem_proc_unregister(seg, proc);
	sockmem_close(seg);
	_exit(atomic_load(&sh->failed) ? 1 : 0);
}

/* ---- the coordinator ------------------------------------------------- */

static void reset_shared(struct shared *sh)
{
	atomic_store(&sh->ready, 0);
	atomic_store(&sh->go, 0);
	atomic_store(&sh->stop, 0);
	atomic_store(&sh->failed, 0);
	sh->guarded = 0;
	memset(sh->res, 0, sizeof(sh->res));
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Wait until every thread is ready; a worker process that dies early or a
 * setup that hangs ends the program instead of the wait. */
static void wait_ready(struct shared *sh, int want, const pid_t *pids, int n)
{
	uint64_t start = sockmem_now_ns();

	while (atomic_load(&sh->ready) < want) {
		for (int i = 0; i < n; i++)
			if (waitpid(pids[i], NULL, WNOHANG) == pids[i])
				die("a worker process exited before the start");
		if (sockmem_now_ns() - start > READY_TIMEOUT_NS)
			die("worker threads not ready after 10 s");
		sleep_ms(1);
	}
	if (atomic_load(&sh->failed))
		die("a worker failed to set up (see above)");
}

/* Let the workers run for the duration (or until they reach --iterations,
 * bounded by 60 s), then stop them and collect their exit status. */
static void run_and_reap(struct shared *sh, const struct opts *o, const pid_t *pids, int n)
{
	int limit = o->duration_ms ? o->duration_ms : 60000, waited = 0, live = n;
	int st[8] = {0};
	bool done[8] = {false};

	atomic_store_explicit(&sh->go, 1, memory_order_release);
	while (waited < limit && live > 0) {
		int step = limit - waited < 10 ? limit - waited : 10;

		sleep_ms(step);
		waited += step;
		for (int i = 0; i < n; i++)
			if (!done[i] && waitpid(pids[i], &st[i], WNOHANG) == pids[i]) {
				done[i] = true;
				live--;
			}
	}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < n; i++) {
		if (!done[i] && waitpid(pids[i], &st[i], 0) != pids[i])
			die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(st[i]) || WEXITSTATUS(st[i]))
			die("a worker process failed (status 0x%x)", st[i]);
	}
}

struct sample {
	double ns, cpu_ns;
	uint64_t pairs, fails;
};

static struct sample run_once(struct shared *sh, const struct opts *o, enum variant v, int threads,
			      int procs)
{
	struct sample s = {0};
	pid_t pids[8];

	reset_shared(sh);
	fflush(stdout);
	for (int p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] < 0)
			die("fork: %s", strerror(errno));
		if (pids[p] == 0)
			child_main(sh, o, v, threads, p * threads);
	}
	wait_ready(sh, threads * procs, pids, procs);
	run_and_reap(sh, o, pids, procs);
	for (int i = 0; i < threads * procs; i++) {
		s.ns += sh->res[i].ns_per_pair / (threads * procs);
		s.cpu_ns += sh->res[i].cpu_ns_per_pair / (threads * procs);
		s.pairs += sh->res[i].pairs;
		s.fails += sh->res[i].fails;
	}
	s.pairs /= (uint64_t)(threads * procs);
	return s;
}

/* ---- options --------------------------------------------------------- */

static const char usage_text[] =
	"usage: sockmem-charge-bench [options]\n"
	"\n"
	"ns per charge+uncharge pair, per thread, for each variant:\n"
	"  cache    per-thread charge cache fast path (lib/cache.h)\n"
	"  atomic   one shared _Atomic int64 in the segment (fetch_add/fetch_sub)\n"
	"  mutex    a process-shared pthread mutex around a shared int64\n"
	"  counter  sockmem_try_charge/sockmem_uncharge (uncached, hierarchical)\n"
	"One JSON object per line per (variant, threads, procs): the median of\n"
	"--repeat interleaved measurements.\n"
	"\n"
	"options:\n"
	"  --variants LIST     comma-separated (cache,atomic,mutex,counter)\n"
	"  --threads LIST      threads per process, e.g. 1,2 (1,2; 1 with --procs)\n"
	"  --procs LIST        worker processes, e.g. 2 (1)\n"
	"  --duration-ms MS    measured time per measurement (300; 0: --iterations only,\n"
	"                      at most 60 s)\n"
	"  --iterations N      pairs per thread, rounded up to 1024 (0: duration only)\n"
	"  --repeat N          measurements per combination, median reported (3)\n"
	"  --nr BYTES          bytes per charge (1500)\n"
	"  --batch BYTES       cache batch (65536)\n"
	"  --namespace NS      shm namespace (default cb-<pid>); removed at the end\n"
	"  --pin               pin worker thread i (over all processes) to CPU i mod\n"
	"                      the number of CPUs\n"
	"  -h, --help          this text\n";

static const struct option long_opts[] = {
	{"variants", required_argument, NULL, 'V'},
	{"threads", required_argument, NULL, 't'},
	{"procs", required_argument, NULL, 'p'},
	{"duration-ms", required_argument, NULL, 'd'},
	{"iterations", required_argument, NULL, 'i'},
	{"repeat", required_argument, NULL, 'r'},
	{"nr", required_argument, NULL, 'n'},
	{"batch", required_argument, NULL, 'b'},
	{"namespace", required_argument, NULL, 'N'},
	{"pin", no_argument, NULL, 'P'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int64_t parse_num(const char *opt, const char *s, int64_t lo, int64_t hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		die("%s: invalid value '%s' (an integer in [%lld, %lld])", opt, s, (long long)lo,
		    (long long)hi);
	return v;
}

static int parse_int_list(const char *opt, const char *s, int *out, int max, int hi)
{
	char buf[128], *save = NULL;
	int n = 0;

	if (strlen(s) >= sizeof(buf))
		die("%s: list too long", opt);
	strcpy(buf, s);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			die("%s: at most %d values", opt, max);
		out[n++] = (int)parse_num(opt, tok, 1, hi);
	}
	if (n == 0)
		die("%s: empty list", opt);
	return n;
}

static int parse_variants(const char *s, int *out)
{
	char buf[128], *save = NULL;
	int n = 0;

	if (strlen(s) >= sizeof(buf))
		die("--variants: list too long");
	strcpy(buf, s);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int v = 0;

		while (v < V_NR && strcmp(tok, variant_names[v]) != 0)
			v++;
		if (v == V_NR)
			die("--variants: unknown variant '%s' (cache, atomic, mutex, counter)",
			    tok);
		if (n == V_NR)
			die("--variants: at most %d values", V_NR);
		out[n++] = v;
	}
	if (n == 0)
		die("--variants: empty list");
	return n;
}

static void parse_one(struct opts *o, int c, const char *arg, bool *threads_set)
{
	switch (c) {
	case 'V':
		o->nvariants = parse_variants(arg, o->variants);
		break;
	case 't':
		o->nthreads = parse_int_list("--threads", arg, o->threads, 8, 32);
		*threads_set = true;
		break;
	case 'p':
		o->nprocs = parse_int_list("--procs", arg, o->procs, 8, 8);
		break;
	case 'd':
		o->duration_ms = (int)parse_num("--duration-ms", arg, 0, 60000);
		break;
	case 'i':
		o->iterations = (uint64_t)parse_num("--iterations", arg, 0, INT64_MAX / 2);
		break;
	case 'r':
		o->repeat = (int)parse_num("--repeat", arg, 1, MAX_REPEAT);
		break;
	case 'n':
		o->nr = parse_num("--nr", arg, 1, 1 << 20);
		break;
	case 'b':
		o->batch = parse_num("--batch", arg, 1, 1 << 30);
		break;
	case 'P':
		o->pin = true;
		break;
	case 'N':
		if (sockmem_ns_valid(arg) < 0)
			die("--namespace: invalid name '%s'", arg);
		snprintf(o->ns, sizeof(o->ns), "%s", arg);
		break;
	case 'h':
		fputs(usage_text, stdout);
		exit(0);
	case ':':
		die("option needs a value (see --help)");
	default:
		die("invalid option (see --help)");
	}
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	bool threads_set = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1)
		parse_one(o, c, optarg, &threads_set);
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (!threads_set && (o->nprocs > 1 || o->procs[0] > 1)) {
		o->threads[0] = 1;
		o->nthreads = 1;
	}
	if (o->duration_ms == 0 && o->iterations == 0)
		die("--duration-ms 0 needs --iterations");
	for (int p = 0; p < o->nprocs; p++)
		for (int t = 0; t < o->nthreads; t++)
			if (o->procs[p] * o->threads[t] > MAX_WORKERS)
				die("at most %d threads in all (procs x threads)", MAX_WORKERS);
	if (!o->ns[0])
		snprintf(o->ns, sizeof(o->ns), "cb-%d", (int)getpid());
}

/* ---- setup and output ------------------------------------------------ */

static struct shared *map_shared(void)
{
	pthread_mutexattr_t ma;
	struct shared *sh =
		mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	if (pthread_mutex_init(&sh->mtx, &ma) != 0)
		die("pthread_mutex_init failed");
	pthread_mutexattr_destroy(&ma);
	return sh;
}

/* Create the namespace and the group the workers attach to. */
static sockmem_seg_t *setup_ns(const struct opts *o, uint32_t *group)
{
	struct sockmem_open_opts oo = {.ns = o->ns, .create = true};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg;
	int rc = sockmem_open(&oo, &seg, err, sizeof(err));

	if (rc < 0)
		die("open namespace %s: %s", o->ns, err[0] ? err : strerror(-rc));
	snprintf(cb_ns, sizeof(cb_ns), "%s", o->ns);
	atexit(cleanup);
	rc = sockmem_group_create(seg, "bench", group);
	if (rc < 0)
		die("create group: %s", strerror(-rc));
	return seg;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_sample(const void *a, const void *b)
{
	double x = ((const struct sample *)a)->ns, y = ((const struct sample *)b)->ns;

	return (x > y) - (x < y);
}

static double median_cpu(const struct sample *s, int n)
{
	double v[MAX_REPEAT];

	for (int i = 0; i < n; i++)
		v[i] = s[i].cpu_ns;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return v[n / 2];
}

static void print_combo(const struct opts *o, enum variant v, int threads, int procs,
			struct sample *s, int64_t usage_after)
{
	uint64_t fails = 0;
	double cpu = median_cpu(s, o->repeat);

	qsort(s, (size_t)o->repeat, sizeof(*s), cmp_sample);
	for (int r = 0; r < o->repeat; r++)
		fails += s[r].fails;
	printf("{\"variant\":\"%s\",\"threads\":%d,\"procs\":%d,\"ns_per_op\":%.3f,"
	       "\"ns_per_op_min\":%.3f,\"ns_per_op_max\":%.3f,\"cpu_ns_per_op\":%.3f,"
	       "\"repeat\":%d,\"pairs_per_thread\":%llu,\"nr\":%lld,\"batch\":%lld,"
	       "\"fails\":%llu,\"usage_after\":%lld}\n",
	       variant_names[v], threads, procs, s[o->repeat / 2].ns, s[0].ns, s[o->repeat - 1].ns,
	       cpu, o->repeat, (unsigned long long)s[o->repeat / 2].pairs, (long long)o->nr,
	       (long long)o->batch, (unsigned long long)fails, (long long)usage_after);
}

struct combo {
	enum variant v;
	int threads, procs;
	int64_t usage_after;
	struct sample s[MAX_REPEAT];
};

/* Repeats interleaved across combinations, so that a noisy moment on the
 * machine spreads over all of them instead of skewing one. */
static void run_all(const struct opts *o, struct shared *sh, sockmem_seg_t *seg, uint32_t group,
		    struct combo *cs, int n)
{
	struct sockmem_group_stat st;

	for (int r = 0; r < o->repeat; r++) {
		for (int i = 0; i < n; i++) {
			cs[i].s[r] = run_once(sh, o, cs[i].v, cs[i].threads, cs[i].procs);
			if (sockmem_group_stat(seg, group, &st) == 0 && st.current != 0)
				cs[i].usage_after = st.current;
		}
	}
}

int main(int argc, char **argv)
{
	static struct combo cs[MAX_COMBOS];
	struct opts o = {.nr = 1500,
			 .batch = SOCKMEM_DEFAULT_BATCH,
			 .duration_ms = 300,
			 .repeat = 3,
			 .variants = {V_CACHE, V_ATOMIC, V_MUTEX, V_COUNTER},
			 .nvariants = V_NR,
			 .threads = {1, 2},
			 .nthreads = 2,
			 .procs = {1},
			 .nprocs = 1};
	uint32_t group;
	sockmem_seg_t *seg;
	struct shared *sh;
	int n = 0;

	parse_args(&o, argc, argv);
	sh = map_shared();
	cb_sh = sh;
	seg = setup_ns(&o, &group);
	for (int v = 0; v < o.nvariants; v++)
		for (int p = 0; p < o.nprocs; p++)
			for (int t = 0; t < o.nthreads; t++)
				cs[n++] = (struct combo){.v = (enum variant)o.variants[v],
							 .threads = o.threads[t],
							 .procs = o.procs[p]};
	run_all(&o, sh, seg, group, cs, n);
	for (int i = 0; i < n; i++)
		print_combo(&o, cs[i].v, cs[i].threads, cs[i].procs, cs[i].s, cs[i].usage_after);
	sockmem_close(seg);
	return 0;
}
