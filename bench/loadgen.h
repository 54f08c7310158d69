/*
 * sockmem-bench: the bundled loopback load generator (private header).
 *
 * The program is single-purpose and short-lived, so errors on setup paths
 * end it with one line on stderr (sm_lg_die) instead of being propagated.
 * Measured loops never allocate: every buffer is set up before the clock
 * starts, and jemalloc's per-thread counters (the program's allocator) are
 * read around each loop to prove it, shim included when one is preloaded.
 */
#ifndef SOCKMEM_LOADGEN_H
#define SOCKMEM_LOADGEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sm_lg_mode { LG_PERCALL, LG_PINGPONG, LG_STREAM };

struct sm_lg_opts {
	enum sm_lg_mode mode;
	const char *mode_name;
	size_t size;	    /* message size (bytes) */
	long iterations;    /* percall: pairs per batch; pingpong: round trips */
	int batches;	    /* percall: measured batches (median reported) */
	double duration;    /* seconds: stream length; pingpong: upper bound */
	int connections;    /* stream */
	int threads;	    /* stream */
	uint64_t slow_rate; /* stream: receiver bytes/s per connection; 0: unlimited */
	int sample_ms;	    /* stream: SO_MEMINFO sampling period; 0: off */
	int timeout_s;	    /* blocking I/O timeout (percall, pingpong) */
	bool ipv6;
	bool json;
	bool samples;	/* JSON: include every batch's value */
	bool cpu_clock; /* percall: time with the thread's CPU clock; stream: per CPU-s */
	int turn_in;	/* --turns: wait for a byte here before each batch (-1: off) */
	int turn_out;	/* ... and pass it on here after the batch */
};

/* ---- results: a flat list of named values printed as JSON or text ---- */

enum sm_lg_kind { LG_INT, LG_DBL, LG_STR, LG_NULL };

struct sm_lg_kv {
	const char *key;
	enum sm_lg_kind kind;
	int64_t i;
	double d;
	const char *s;
};

#define LG_KV_MAX 32

struct sm_lg_report {
	struct sm_lg_kv params[LG_KV_MAX];
	struct sm_lg_kv results[LG_KV_MAX];
	int nparams, nresults;
	/* bytes jemalloc counted for the measured loops' threads; -1: unknown */
	int64_t alloc_bytes, dealloc_bytes;
	const char *alloc_scope; /* which threads the counters cover */
	double *samples;	 /* owned */
	int nsamples;
};

void sm_lg_param_int(struct sm_lg_report *r, const char *key, int64_t v);
void sm_lg_param_str(struct sm_lg_report *r, const char *key, const char *v);
void sm_lg_result_int(struct sm_lg_report *r, const char *key, int64_t v);
void sm_lg_result_dbl(struct sm_lg_report *r, const char *key, double v);
/* Per-batch values (percall ns/pair, pingpong p50 us, stream Gbit/s),
 * printed as "samples" with --samples. Takes ownership of the malloc'd v
 * (freed by main after printing). */
void sm_lg_result_samples(struct sm_lg_report *r, double *v, int n);
void sm_lg_print(const struct sm_lg_opts *o, const struct sm_lg_report *r);

/* ---- lockstep turns (--turns IN:OUT) -----------------------------------
 * Several configurations of the program (e.g. with and without a preloaded
 * shim) run at once and take turns from a driver (bench/benchlib.py), so
 * that each batch of one is measured right next to a batch of the others
 * and slow drifts of a noisy machine cancel out in their ratios. Ready:
 * once set up and warmed up, with nothing left running (stream workers
 * held), before the first batch. */
void sm_lg_turn_ready(const struct sm_lg_opts *o);
void sm_lg_turn_wait(const struct sm_lg_opts *o);
void sm_lg_turn_pass(const struct sm_lg_opts *o);

/* ---- allocation counters (jemalloc mallctl thread.allocatedp) -------- */

struct sm_lg_alloc {
	uint64_t alloc, dealloc;
	bool ok;
};

/* Snapshot the calling thread's cumulative counters. ok=false if the
 * process allocator is not jemalloc or was built without statistics. */
void sm_lg_alloc_snap(struct sm_lg_alloc *a);
/* Add (after - before) of one thread to the report's totals. */
void sm_lg_alloc_add(struct sm_lg_report *r, const struct sm_lg_alloc *before,
		     const struct sm_lg_alloc *after);

/* ---- sockets (loopback only) ----------------------------------------- */

/* A connected TCP pair over 127.0.0.1 (or ::1): *tx the connecting end,
 * *rx the accepted end. TCP_NODELAY on both. */
void sm_lg_tcp_pair(int lfd, int *tx, int *rx);
/* A listening socket on an ephemeral loopback port. */
int sm_lg_listen(bool ipv6, int backlog);
void sm_lg_set_timeout(int fd, int seconds);
void sm_lg_set_nonblock(int fd);
/* Blocking exact transfers; die on error, timeout or EOF (unless eof_ok,
 * then return false on EOF before the first byte). *calls counts syscalls. */
void sm_lg_send_all(int fd, const char *buf, size_t len, uint64_t *calls);
bool sm_lg_recv_all(int fd, char *buf, size_t len, bool eof_ok, uint64_t *calls);

/* ---- utilities -------------------------------------------------------- */

uint64_t sm_lg_now_ns(void);
/* CPU time of the calling thread (user + system), ns. */
uint64_t sm_lg_thread_cpu_ns(void);
/* CPU time of the calling thread (user + system), ns. */
uint64_t sm_lg_thread_cpu_ns(void);
void sm_lg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int sm_lg_cmp_dbl(const void *a, const void *b);
/* Value at quantile q (0..1) of a sorted array. */
double sm_lg_quantile(const double *sorted, size_t n, double q);

int sm_lg_percall(const struct sm_lg_opts *o, struct sm_lg_report *r);
int sm_lg_pingpong(const struct sm_lg_opts *o, struct sm_lg_report *r);
int sm_lg_stream(const struct sm_lg_opts *o, struct sm_lg_report *r);

#endif /* SOCKMEM_LOADGEN_H */
