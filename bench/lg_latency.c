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

/*
 * One batch of same-thread send+recv pairs; returns ns per pair. The CPU
 * clock leaves out the time the thread was preempted, which on a busy
 * machine is most of the noise; the batch never blocks (the data is always
 * there when recv is called), so on a quiet machine both clocks agree.
 */
static double percall_batch(int a, int b, char *buf, size_t size, long iters, uint64_t *calls,
			    uint64_t (*clk)(void))
{
	uint64_t t0 = clk();

	for (long i = 0; i < iters; i++) {
		sm_lg_send_all(a, buf, size, calls);
		sm_lg_recv_all(b, buf, size, false, calls);
	}
	return (double)(clk() - t0) / (double)iters;
}

/*
 * Same-thread send+recv pairs on one loopback connection: nothing waits on
 * another thread, so the time per pair is the cost of the two calls (and of
 * whatever a preloaded shim adds to them). Median of the batches.
 */
int sm_lg_percall(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	struct sm_lg_alloc before, after;
	/* ns[] stays in batch order for "samples" (handed to the report);
	 * sorted[] gives the median. */
	double *ns = xcalloc((size_t)o->batches, sizeof(*ns));
	double *sorted = xcalloc((size_t)o->batches, sizeof(*sorted));
	char *buf = xcalloc(1, o->size);
	uint64_t (*clk)(void) = o->cpu_clock ? sm_lg_thread_cpu_ns : sm_lg_now_ns;
	uint64_t calls = 0, warm = 0;
	int lfd = sm_lg_listen(o->ipv6, 1), a, b;

	sm_lg_tcp_pair(lfd, &a, &b);
	close(lfd);
	sm_lg_set_timeout(a, o->timeout_s);
	sm_lg_set_timeout(b, o->timeout_s);
	percall_batch(a, b, buf, o->size, o->iterations / 10 + 1, &warm, clk);
	sm_lg_turn_ready(o);

	sm_lg_alloc_snap(&before);
	for (int i = 0; i < o->batches; i++) {
		sm_lg_turn_wait(o);
		ns[i] = percall_batch(a, b, buf, o->size, o->iterations, &calls, clk);
		sm_lg_turn_pass(o);
	}
	sm_lg_alloc_snap(&after);
	sm_lg_alloc_add(r, &before, &after);
	r->alloc_scope = "the thread running the send+recv batches";

	memcpy(sorted, ns, sizeof(*ns) * (size_t)o->batches);
	qsort(sorted, (size_t)o->batches, sizeof(*sorted), sm_lg_cmp_dbl);
	sm_lg_result_dbl(r, "ns_per_pair", sm_lg_quantile(sorted, (size_t)o->batches, 0.5));
	sm_lg_result_dbl(r, "ns_per_pair_min", sorted[0]);
	sm_lg_result_dbl(r, "ns_per_pair_max", sorted[o->batches - 1]);
	sm_lg_result_dbl(r, "calls_per_pair", (double)calls / ((double)o->iterations * o->batches));
	sm_lg_result_samples(r, ns, o->batches);
	close(a);
	close(b);
	free(buf);
	free(sorted);
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
/* Per-chunk p50 (µs) of the round trips lat[from, to), for "samples". */
static double chunk_p50(const double *lat, long from, long to, double *tmp)
{
	memcpy(tmp, lat + from, sizeof(*tmp) * (size_t)(to - from));
	qsort(tmp, (size_t)(to - from), sizeof(*tmp), sm_lg_cmp_dbl);
	return sm_lg_quantile(tmp, (size_t)(to - from), 0.5);
}

/*
 * Cross-process ping-pong: a forked child echoes each message. Latency of
 * every round trip is kept (the arrays are allocated and touched before the
 * clock starts) for exact percentiles. With --turns the round trips are
 * split into -b chunks, one per turn.
 */
int sm_lg_pingpong(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	struct sm_lg_alloc before, after;
	int chunks = o->turn_in >= 0 ? o->batches : 1;
	long per = o->iterations / chunks > 0 ? o->iterations / chunks : 1, n = 0;
	double *lat = xcalloc((size_t)(per * chunks), sizeof(*lat));
	double *tmp = xcalloc((size_t)per, sizeof(*tmp));
	double *p50 = xcalloc((size_t)chunks, sizeof(*p50));
	long *end = xcalloc((size_t)chunks + 1, sizeof(*end));
	char *buf = xcalloc(1, o->size);
	int lfd = sm_lg_listen(o->ipv6, 1), a, b, done = 0;
	uint64_t ns = 0, deadline;
	pid_t pid;

	sm_lg_tcp_pair(lfd, &a, &b);
	close(lfd);
	sm_lg_set_timeout(a, o->timeout_s);
	sm_lg_set_timeout(b, o->timeout_s);
	pid = spawn_echo(b, a, o->size);
	pingpong_loop(a, buf, o->size, lat, per / 10 + 1, UINT64_MAX); /* warm-up */
	sm_lg_turn_ready(o);

	sm_lg_alloc_snap(&before);
	deadline = sm_lg_now_ns() + (uint64_t)(o->duration * 1e9);
	for (; done < chunks; done++) {
		uint64_t t0, m;

		sm_lg_turn_wait(o);
		t0 = sm_lg_now_ns();
		m = (uint64_t)pingpong_loop(a, buf, o->size, lat + n, per, deadline);
		ns += sm_lg_now_ns() - t0;
		sm_lg_turn_pass(o);
		n += (long)m;
		end[done + 1] = n;
	}
	sm_lg_alloc_snap(&after);
	/* After the snapshot: glibc's qsort may allocate. */
	for (int k = 0; k < chunks; k++)
		p50[k] = chunk_p50(lat, end[k], end[k + 1], tmp);
	sm_lg_alloc_add(r, &before, &after);
	r->alloc_scope = "the client thread (the echo process is not counted)";

	shutdown(a, SHUT_WR);
	reap_echo(pid);
	close(a);
	pingpong_report(r, lat, n, ns);
	sm_lg_result_samples(r, p50, chunks);
	free(buf);
	free(end);
	free(tmp);
	free(lat);
	return 0;
}
