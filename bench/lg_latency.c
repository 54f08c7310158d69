/*
 * sockmem-bench: the per-call and ping-pong latency modes.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loadgen.h"

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		sm_lg_die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

/* One batch of same-thread send+recv pairs; returns ns per pair. */
static double percall_batch(int a, int b, char *buf, size_t size, long iters, uint64_t *calls)
{
	uint64_t t0 = sm_lg_now_ns();

	for (long i = 0; i < iters; i++) {
		sm_lg_send_all(a, buf, size, calls);
		sm_lg_recv_all(b, buf, size, false, calls);
	}
	return (double)(sm_lg_now_ns() - t0) / (double)iters;
}

/*
 * Same-thread send+recv pairs on one loopback connection: nothing waits on
 * another thread, so the time per pair is the cost of the two calls (and of
 * whatever a preloaded shim adds to them). Median of the batches.
 */
int sm_lg_percall(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	struct sm_lg_alloc before, after;
	double *ns = xcalloc((size_t)o->batches, sizeof(*ns));
	char *buf = xcalloc(1, o->size);
	uint64_t calls = 0, warm = 0;
	int lfd = sm_lg_listen(o->ipv6, 1), a, b;

	sm_lg_tcp_pair(lfd, &a, &b);
	close(lfd);
	sm_lg_set_timeout(a, o->timeout_s);
	sm_lg_set_timeout(b, o->timeout_s);
	percall_batch(a, b, buf, o->size, o->iterations / 10 + 1, &warm);

	sm_lg_alloc_snap(&before);
	for (int i = 0; i < o->batches; i++)
		ns[i] = percall_batch(a, b, buf, o->size, o->iterations, &calls);
	sm_lg_alloc_snap(&after);
	sm_lg_alloc_add(r, &before, &after);
	r->alloc_scope = "the thread running the send+recv batches";

	qsort(ns, (size_t)o->batches, sizeof(*ns), sm_lg_cmp_dbl);
	sm_lg_result_dbl(r, "ns_per_pair", sm_lg_quantile(ns, (size_t)o->batches, 0.5));
	sm_lg_result_dbl(r, "ns_per_pair_min", ns[0]);
	sm_lg_result_dbl(r, "ns_per_pair_max", ns[o->batches - 1]);
	sm_lg_result_dbl(r, "calls_per_pair", (double)calls / ((double)o->iterations * o->batches));
	close(a);
	close(b);
	free(buf);
	free(ns);
	return 0;
}

/* The echo side, in a forked child: receive one message, send it back. */
static void __attribute__((noreturn)) echo_server(int fd, size_t size)
{
	char *buf = xcalloc(1, size);
	uint64_t calls = 0;

	while (sm_lg_recv_all(fd, buf, size, true, &calls))
		sm_lg_send_all(fd, buf, size, &calls);
	close(fd);
	_exit(0);
}

static pid_t spawn_echo(int keep, int drop, size_t size)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		sm_lg_die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(drop);
		echo_server(keep, size);
	}
	close(keep);
	return pid;
}

static void reap_echo(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			sm_lg_die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		sm_lg_die("echo server process failed (status 0x%x)", st);
}

/* Round trips until `max` or the deadline; fills lat[] in µs. */
static long pingpong_loop(int fd, char *buf, size_t size, double *lat, long max, uint64_t deadline)
{
	uint64_t calls = 0;
	long i;

	for (i = 0; i < max; i++) {
		uint64_t t0 = sm_lg_now_ns(), t1;

		sm_lg_send_all(fd, buf, size, &calls);
		sm_lg_recv_all(fd, buf, size, false, &calls);
		t1 = sm_lg_now_ns();
		lat[i] = (double)(t1 - t0) / 1000.0;
		if (t1 >= deadline) {
			i++;
			break;
		}
	}
	return i;
}

static void pingpong_report(struct sm_lg_report *r, double *lat, long n, uint64_t ns)
{
	qsort(lat, (size_t)n, sizeof(*lat), sm_lg_cmp_dbl);
	sm_lg_result_int(r, "round_trips", n);
	sm_lg_result_dbl(r, "round_trips_per_s", (double)n * 1e9 / (double)ns);
	sm_lg_result_dbl(r, "p50_us", sm_lg_quantile(lat, (size_t)n, 0.50));
	sm_lg_result_dbl(r, "p99_us", sm_lg_quantile(lat, (size_t)n, 0.99));
	sm_lg_result_dbl(r, "min_us", lat[0]);
	sm_lg_result_dbl(r, "max_us", lat[n - 1]);
}

/*
 * Cross-process ping-pong: a forked child echoes each message. Latency of
 * every round trip is kept (the array is allocated and touched before the
 * clock starts) for exact percentiles.
 */
int sm_lg_pingpong(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	struct sm_lg_alloc before, after;
	double *lat = xcalloc((size_t)o->iterations, sizeof(*lat));
	char *buf = xcalloc(1, o->size);
	int lfd = sm_lg_listen(o->ipv6, 1), a, b;
	uint64_t t0, t1;
	pid_t pid;
	long n;

	sm_lg_tcp_pair(lfd, &a, &b);
	close(lfd);
	sm_lg_set_timeout(a, o->timeout_s);
	sm_lg_set_timeout(b, o->timeout_s);
	pid = spawn_echo(b, a, o->size);
	pingpong_loop(a, buf, o->size, lat, o->iterations / 10 + 1, UINT64_MAX); /* warm-up */

	sm_lg_alloc_snap(&before);
	t0 = sm_lg_now_ns();
	n = pingpong_loop(a, buf, o->size, lat, o->iterations, t0 + (uint64_t)(o->duration * 1e9));
	t1 = sm_lg_now_ns();
	sm_lg_alloc_snap(&after);
	sm_lg_alloc_add(r, &before, &after);
	r->alloc_scope = "the client thread (the echo process is not counted)";

	shutdown(a, SHUT_WR);
	reap_echo(pid);
	close(a);
	pingpong_report(r, lat, n, t1 - t0);
	free(buf);
	free(lat);
	return 0;
}
