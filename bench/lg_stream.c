/*
 * sockmem-bench: the bulk stream mode.
 *
 * Each of -c connections is a loopback TCP pair; the -t worker threads each
 * own a share of the pairs and pump both ends with non-blocking calls,
 * polling only when no end made progress. Throughput is what the receiving
 * ends read during the measured window (a warm-up is excluded).
 *
 * --slow-reader RATE caps what each receiving end reads to RATE bytes/s
 * (a token bucket), so data piles up in the kernel's send and receive
 * queues; the main thread samples the kernel's own figures for every socket
 * (SO_MEMINFO: rmem_alloc + wmem_queued) and reports the peak.
 */
#include <errno.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

#define PUMP_MAX    16 /* calls per end before moving on (fairness) */
#define POLL_MAX_MS 20 /* so that workers notice `stop` promptly */

struct conn {
	int tx, rx;
	double tokens;	    /* slow reader: bytes it may read now */
	uint64_t refill_ns; /* when tokens were last topped up */
};

/* Holds the workers between lockstep slices (--turns). */
struct gate {
	_Atomic bool paused;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

struct worker {
	_Atomic uint64_t rx_bytes; /* W: the worker. R: main (window sums) */
	_Atomic uint64_t tx_bytes;
	pthread_t th;
	const struct sm_lg_opts *o;
	struct conn *conns;
	int n;
	char *buf;
	struct pollfd *pfd;
	_Atomic bool *stop;
	struct gate *gate;
	struct sm_lg_alloc before, after;
} __attribute__((aligned(64)));

static int pump_tx(struct worker *w, struct conn *c)
{
	int progress = 0;

	for (int k = 0; k < PUMP_MAX; k++) {
		ssize_t n = send(c->tx, w->buf, w->o->size, MSG_NOSIGNAL);

		if (n > 0) {
			atomic_fetch_add_explicit(&w->tx_bytes, (uint64_t)n, memory_order_relaxed);
			progress = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		sm_lg_die("stream send: %s", n < 0 ? strerror(errno) : "sent nothing");
	}
	return progress;
}

/* Slow reader: how many bytes the connection may read now (0: wait). */
static size_t rx_allowance(const struct sm_lg_opts *o, struct conn *c, uint64_t now)
{
	double rate = (double)o->slow_rate, burst = rate / 20.0; /* 50 ms worth */
	double chunk;

	if (o->slow_rate == 0)
		return o->size;
	if (burst < 1.0)
		burst = 1.0;
	c->tokens += rate * (double)(now - c->refill_ns) / 1e9;
	c->refill_ns = now;
	if (c->tokens > burst)
		c->tokens = burst;
	chunk = burst < (double)o->size ? burst : (double)o->size;
	if (c->tokens < chunk)
		return 0;
	return c->tokens < (double)o->size ? (size_t)c->tokens : o->size;
}

static int pump_rx(struct worker *w, struct conn *c, uint64_t now)
{
	int progress = 0;

	for (int k = 0; k < PUMP_MAX; k++) {
		size_t want = rx_allowance(w->o, c, now);
		ssize_t n;

		if (want == 0)
			break;
		n = recv(c->rx, w->buf, want, 0);
		if (n > 0) {
			atomic_fetch_add_explicit(&w->rx_bytes, (uint64_t)n, memory_order_relaxed);
			c->tokens -= (double)n;
			progress = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		sm_lg_die("stream recv: %s", n < 0 ? strerror(errno) : "peer closed");
	}
	return progress;
}

/* Poll every end that can make progress; throttled readers wait on time. */
static void wait_ready(struct worker *w, uint64_t now)
{
	int timeout = POLL_MAX_MS;

	for (int i = 0; i < w->n; i++) {
		struct conn *c = &w->conns[i];

		w->pfd[2 * i] = (struct pollfd){.fd = c->tx, .events = POLLOUT};
		w->pfd[2 * i + 1] = (struct pollfd){.fd = c->rx, .events = POLLIN};
		if (w->o->slow_rate && rx_allowance(w->o, c, now) == 0) {
			w->pfd[2 * i + 1].fd = -1;
			timeout = 1; /* the bucket refills with time */
		}
	}
	if (poll(w->pfd, (nfds_t)(2 * w->n), timeout) < 0 && errno != EINTR)
		sm_lg_die("poll: %s", strerror(errno));
}

static void gate_set(struct gate *g, bool paused)
{
	pthread_mutex_lock(&g->mu);
	atomic_store(&g->paused, paused);
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gate_wait(struct gate *g, _Atomic bool *stop)
{
	pthread_mutex_lock(&g->mu);
	while (atomic_load(&g->paused) && !atomic_load(stop))
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	sm_lg_alloc_snap(&w->before);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		uint64_t now;
		int progress = 0;

		if (atomic_load_explicit(&w->gate->paused, memory_order_relaxed)) {
			gate_wait(w->gate, w->stop); /* between lockstep slices */
			continue;
		}
		now = w->o->slow_rate ? sm_lg_now_ns() : 0;
		for (int i = 0; i < w->n; i++) {
			progress |= pump_tx(w, &w->conns[i]);
			progress |= pump_rx(w, &w->conns[i], now);
		}
		if (!progress)
			wait_ready(w, now);
	}
	sm_lg_alloc_snap(&w->after);
	return NULL;
}

/* Kernel memory held by one socket's queues (what DESIGN.md charges). */
static uint64_t sock_kmem(int fd)
{
	uint32_t mem[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mem);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0)
		return 0;
	return (uint64_t)mem[SK_MEMINFO_RMEM_ALLOC] + mem[SK_MEMINFO_WMEM_QUEUED];
}

struct stream_run {
	const struct sm_lg_opts *o;
	struct conn *conns;
	struct worker *w;
	int nthreads;
	_Atomic bool stop;
	struct gate gate;
	uint64_t kmem_peak, kmem_last, samples;
};

static void sample_kmem(struct stream_run *s)
{
	uint64_t sum = 0;

	for (int i = 0; i < s->o->connections; i++)
		sum += sock_kmem(s->conns[i].tx) + sock_kmem(s->conns[i].rx);
	s->kmem_last = sum;
	if (sum > s->kmem_peak)
		s->kmem_peak = sum;
	s->samples++;
}

/* Sleep until `until` (monotonic ns), sampling kernel memory on the way. */
static void sleep_sampling(struct stream_run *s, uint64_t until)
{
	for (;;) {
		uint64_t now = sm_lg_now_ns(), step;
		struct timespec ts;

		if (now >= until)
			return;
		step = until - now;
		if (s->o->sample_ms > 0 && step > (uint64_t)s->o->sample_ms * 1000000u)
			step = (uint64_t)s->o->sample_ms * 1000000u;
		ts.tv_sec = (time_t)(step / 1000000000u);
		ts.tv_nsec = (long)(step % 1000000000u);
		nanosleep(&ts, NULL);
		if (s->o->sample_ms > 0)
			sample_kmem(s);
	}
}

static uint64_t sum_rx(const struct stream_run *s)
{
	uint64_t v = 0;

	for (int i = 0; i < s->nthreads; i++)
		v += atomic_load_explicit(&s->w[i].rx_bytes, memory_order_relaxed);
	return v;
}

static void setup_conns(struct stream_run *s)
{
	const struct sm_lg_opts *o = s->o;
	int lfd = sm_lg_listen(o->ipv6, o->connections);

	s->conns = calloc((size_t)o->connections, sizeof(*s->conns));
	if (!s->conns)
		sm_lg_die("out of memory");
	for (int i = 0; i < o->connections; i++) {
		struct conn *c = &s->conns[i];

		sm_lg_tcp_pair(lfd, &c->tx, &c->rx);
		sm_lg_set_nonblock(c->tx);
		sm_lg_set_nonblock(c->rx);
		c->refill_ns = sm_lg_now_ns();
	}
	close(lfd);
}

/* Split the connections into contiguous shares, one per worker. */
static void start_workers(struct stream_run *s)
{
	const struct sm_lg_opts *o = s->o;
	int next = 0;

	s->nthreads = o->threads < o->connections ? o->threads : o->connections;
	if (posix_memalign((void **)&s->w, 64, sizeof(*s->w) * (size_t)s->nthreads))
		sm_lg_die("out of memory");
	for (int i = 0; i < s->nthreads; i++) {
		struct worker *w = &s->w[i];
		int rc;

		memset(w, 0, sizeof(*w));
		w->o = o;
		w->stop = &s->stop;
		w->gate = &s->gate;
		w->n = o->connections / s->nthreads + (i < o->connections % s->nthreads);
		w->conns = &s->conns[next];
		next += w->n;
		w->buf = calloc(1, o->size);
		w->pfd = calloc((size_t)(2 * w->n), sizeof(*w->pfd));
		if (!w->buf || !w->pfd)
			sm_lg_die("out of memory");
		rc = pthread_create(&w->th, NULL, worker_main, w);
		if (rc)
			sm_lg_die("pthread_create: %s", strerror(rc));
	}
}

static void stop_workers(struct stream_run *s, struct sm_lg_report *r)
{
	uint64_t tx = 0, rx = 0;

	atomic_store(&s->stop, true);
	gate_set(&s->gate, false);
	for (int i = 0; i < s->nthreads; i++) {
		pthread_join(s->w[i].th, NULL);
		sm_lg_alloc_add(r, &s->w[i].before, &s->w[i].after);
		tx += s->w[i].tx_bytes;
		rx += s->w[i].rx_bytes;
		free(s->w[i].buf);
		free(s->w[i].pfd);
	}
	r->alloc_scope = "the stream worker threads";
	sm_lg_result_int(r, "tx_bytes", (int64_t)tx);
	sm_lg_result_int(r, "rx_bytes", (int64_t)rx);
	for (int i = 0; i < s->o->connections; i++) {
		close(s->conns[i].tx);
		close(s->conns[i].rx);
	}
	free(s->conns);
	free(s->w);
}

static uint64_t process_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The measured window: one slice, or -b slices taken in turns (--turns)
 * with the workers held in between. Reports Gbit/s of wall time and Gbit
 * per CPU-second of the whole process (what the stream costs, whatever
 * else the machine runs); the samples follow --clock.
 */
static void measure(struct stream_run *s, struct sm_lg_report *r, double *rate)
{
	const struct sm_lg_opts *o = s->o;
	int slices = o->turn_in >= 0 ? o->batches : 1;
	uint64_t slice = (uint64_t)(o->duration * 1e9) / (uint64_t)slices;
	uint64_t bytes = 0, ns = 0, cpu = 0;

	if (slices > 1)
		gate_set(&s->gate, true);
	sm_lg_turn_ready(o); /* the workers held: nothing of ours runs until our turn */
	for (int k = 0; k < slices; k++) {
		uint64_t rx0, rx1, t0, t1, c0, c1;

		sm_lg_turn_wait(o);
		if (slices > 1)
			gate_set(&s->gate, false);
		rx0 = sum_rx(s);
		t0 = sm_lg_now_ns();
		c0 = process_cpu_ns();
		sleep_sampling(s, t0 + slice);
		rx1 = sum_rx(s);
		t1 = sm_lg_now_ns();
		c1 = process_cpu_ns();
		if (slices > 1)
			gate_set(&s->gate, true);
		sm_lg_turn_pass(o);
		rate[k] = (double)(rx1 - rx0) * 8.0 / (double)(o->cpu_clock ? c1 - c0 : t1 - t0);
		bytes += rx1 - rx0;
		ns += t1 - t0;
		cpu += c1 - c0;
	}
	sm_lg_result_samples(r, rate, slices);
	sm_lg_result_dbl(r, "gbit_per_s", (double)bytes * 8.0 / (double)ns);
	sm_lg_result_dbl(r, "gbit_per_cpu_s", (double)bytes * 8.0 / (double)cpu);
	sm_lg_result_dbl(r, "rx_mib_per_s_per_conn",
			 (double)bytes * 1e9 / (double)ns / 1048576.0 / o->connections);
	sm_lg_result_dbl(r, "window_s", (double)ns / 1e9);
	sm_lg_result_dbl(r, "cpu_s", (double)cpu / 1e9);
}

int sm_lg_stream(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	struct stream_run s = {.o = o};
	uint64_t warm = (uint64_t)(o->duration * 0.1e9);
	double *rate = calloc((size_t)o->batches + 1, sizeof(*rate));

	if (!rate)
		sm_lg_die("out of memory");
	pthread_mutex_init(&s.gate.mu, NULL);
	pthread_cond_init(&s.gate.cv, NULL);
	if (warm > 500000000u)
		warm = 500000000u;
	setup_conns(&s);
	start_workers(&s);
	sleep_sampling(&s, sm_lg_now_ns() + warm);
	measure(&s, r, rate);
	sm_lg_result_int(r, "threads_used", s.nthreads);
	if (o->sample_ms > 0) {
		sample_kmem(&s);
		sm_lg_result_int(r, "kmem_peak_bytes", (int64_t)s.kmem_peak);
		sm_lg_result_int(r, "kmem_end_bytes", (int64_t)s.kmem_last);
		sm_lg_result_int(r, "kmem_samples", (int64_t)s.samples);
	}
	stop_workers(&s, r);
	return 0;
}
