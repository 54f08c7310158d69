/*
 * Call-site tracing end to end: helpers run preloaded with SOCKMEM_TRACE=1
 * make their group hit max; `sockmemctl traces` must name the helper's
 * sender function, with counts and bytes, within the rate limit. Also:
 * tracing off, libunwind missing, C++ exceptions after libunwind was loaded,
 * records merged across processes, corrupt records, bad command lines.
 *
 * Uses tests/ctl's harness (children with a built environment, never the
 * runner itself preloaded; a namespace per test, unlinked at the end).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_harness.h"
#include "sockmem/sockmem.h"

TestSuite(traces, .init = h_setup, .fini = h_teardown, .timeout = 120);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

static const char *env_buf[16];

/* Environment of a preloaded helper in group "g" (+ `more`). */
static void helper_env(const char *const *more)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	int n = 0;

	env_buf[n++] = h_fmt("LD_PRELOAD=%s%s%s", asan && *asan ? asan : "",
			     asan && *asan ? ":" : "", h_build("libsockmem.so"));
	env_buf[n++] = "SOCKMEM_GROUP=g";
	env_buf[n++] = "ASAN_OPTIONS=detect_leaks=0";
	for (; more && *more && n < 15; more++)
		env_buf[n++] = *more;
	env_buf[n] = NULL;
	h_env(env_buf);
}

/* Run trace-helper MODE CHUNK COUNT [NTHREADS] (or another helper with
 * CHUNK COUNT) preloaded; expects exit 0. */
static void run_mode(struct h_out *r, const char *prog, const char *mode, const char *chunk,
		     const char *count, const char *nthreads, const char *const *more)
{
	const char *helper = h_fmt("%s/%s", getenv("SOCKMEM_HELPER_DIR"), prog);

	helper_env(more);
	if (strcmp(prog, "trace-helper") == 0)
		h_run(r, (const char *const[]){helper, mode, chunk, count, nthreads, NULL}, NULL);
	else
		h_run(r, (const char *const[]){helper, chunk, count, NULL}, NULL);
	h_env(NULL);
	cr_assert_eq(r->status, 0, "%s: status %d, stderr: %s", prog, r->status, r->err);
	cr_assert(strstr(r->out, "sent "), "%s", r->out);
}

static void blast(struct h_out *r, const char *prog, const char *chunk, const char *count,
		  const char *const *more)
{
	run_mode(r, prog, "blast", chunk, count, NULL, more);
}

static void make_group(const char *max)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "set", "g", h_fmt("max=%s", max)), 0, "%s", r.err);
	h_free(&r);
}

/* Sum of the counts of the live records (core API, read-only). */
static uint64_t recorded(int *nrec)
{
	struct sockmem_open_opts o = {.ns = h_ns(), .readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	struct sockmem_trace t;
	uint64_t sum = 0;

	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	*nrec = 0;
	for (uint32_t i = 0; i < sockmem_header(seg)->trace_capacity; i++)
		if (sockmem_trace_read(seg, i, &t) == 0) {
			sum += atomic_load(&t.count);
			(*nrec)++;
		}
	sockmem_close(seg);
	return sum;
}

static uint64_t events_max(void)
{
	struct sockmem_open_opts o = {.ns = h_ns(), .readonly = true};
	struct sockmem_group_stat st;
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	uint32_t idx;

	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_lookup(seg, "g", &idx), 0);
	cr_assert_eq(sockmem_group_stat(seg, idx, &st), 0);
	sockmem_close(seg);
	return st.ev_max;
}

/* "#1  count N  bytes ..." of the first site in the table output. */
static void first_site(const char *out, unsigned long long *count, unsigned long long *bytes)
{
	const char *p = strstr(out, "#1  count ");
	char human[32];

	cr_assert(p, "no site in: %s", out);
	cr_assert_eq(sscanf(p, "#1  count %llu  bytes %31s (%llu)", count, human, bytes), 3, "%s",
		     p);
}

static const char *const trace_on[] = {"SOCKMEM_TRACE=1", NULL};

Test(traces, names_the_function_that_hit_max)
{
	unsigned long long count, bytes;
	struct h_out r;

	make_group("64K");
	blast(&r, "trace-helper", "1000", "3000", trace_on);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "sm_test_blast_sender+0x"), "%s", r.out);
	cr_assert(strstr(r.out, "trace-helper"), "object and program named: %s", r.out);
	cr_assert(strstr(r.out, "  max  "), "kind shown: %s", r.out);
	first_site(r.out, &count, &bytes);
	cr_expect_gt(count, 0);
	cr_expect_gt(bytes, 0);
	h_free(&r);

	cr_assert_eq(CTL(&r, "traces", "g", "--json"), 0, "%s", r.err);
	{
		struct h_out j;
		const char *py = h_fmt("%s/check_traces_json.py", TRACES_SRC_DIR);

		h_run(&j,
		      (const char *const[]){"/usr/bin/env", "python3", py, "sm_test_blast_sender",
					    NULL},
		      r.out);
		cr_expect_eq(j.status, 0, "%s\n%s", j.err, r.out);
		h_free(&j);
	}
	h_free(&r);
}

Test(traces, captures_are_rate_limited)
{
	const char *const more[] = {"SOCKMEM_TRACE=1", "SOCKMEM_TRACE_RATE=5", NULL};
	struct timespec a, b;
	struct h_out r;
	uint64_t total;
	double secs;
	int n;

	make_group("64K");
	clock_gettime(CLOCK_MONOTONIC, &a);
	blast(&r, "trace-helper", "200", "20000", more);
	clock_gettime(CLOCK_MONOTONIC, &b);
	h_free(&r);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	total = recorded(&n);
	/* A bucket of 5 captures, refilled at 5 per second while it ran. */
	cr_expect_geq(total, 1);
	cr_expect_leq((double)total, 5 + 5 * secs + 1, "%llu captures in %.2f s",
		      (unsigned long long)total, secs);
	cr_expect_gt(events_max(), total, "the limit was hit more often than captured (%llu)",
		     (unsigned long long)total);
}

/* Run the helper with the malloc counter preloaded too; its count. */
static unsigned long mallocs_with_rate(const char *rate, uint64_t *captured)
{
	const char *const more[] = {"SOCKMEM_TRACE=1", h_fmt("SOCKMEM_TRACE_RATE=%s", rate), NULL};
	const char *helper = h_fmt("%s/trace-helper", getenv("SOCKMEM_HELPER_DIR"));
	unsigned long n = 0;
	struct h_out r;
	const char *p;
	int nrec;

	helper_env(more);
	env_buf[0] = h_fmt("LD_PRELOAD=%s/trace-malloc-count.so:%s", getenv("SOCKMEM_HELPER_DIR"),
			   h_build("libsockmem.so"));
	h_run(&r, (const char *const[]){helper, "blast", "200", "20000", NULL}, NULL);
	h_env(NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	p = strstr(r.err, "mallocs ");
	cr_assert(p && sscanf(p, "mallocs %lu", &n) == 1, "%s", r.err);
	h_free(&r);
	*captured = recorded(&nrec);
	cr_assert_eq(sockmem_unlink(h_ns()), 0);
	make_group("64K");
	return n;
}

Test(traces, captures_do_not_allocate)
{
	uint64_t one, many;
	unsigned long m1, m2;

	if (getenv("SOCKMEM_ASAN_LIB") && *getenv("SOCKMEM_ASAN_LIB"))
		cr_skip_test("the ASan runtime owns malloc; checked in the default build");
	make_group("64K");
	m1 = mallocs_with_rate("1", &one);
	m2 = mallocs_with_rate("100000", &many);
	cr_assert_geq(one, 1);
	cr_assert_gt(many, one + 20, "many captures (%llu vs %llu)", (unsigned long long)many,
		     (unsigned long long)one);
	cr_expect_leq(m2, m1, "%llu captures made %lu mallocs, 1 capture %lu",
		      (unsigned long long)many, m2, m1);
}

/* trace-helper MODE (signal, thread_signal) with the malloc counter: what
 * the signal handler's sends allocated. */
static unsigned long handler_mallocs(const char *mode)
{
	const char *const more[] = {"SOCKMEM_TRACE=1", NULL};
	const char *helper = h_fmt("%s/trace-helper", getenv("SOCKMEM_HELPER_DIR"));
	unsigned long n = ~0ul;
	struct h_out r;
	const char *p;
	int nrec;

	if (getenv("SOCKMEM_ASAN_LIB") && *getenv("SOCKMEM_ASAN_LIB"))
		cr_skip_test("the ASan runtime owns malloc; checked in the default build");
	make_group("64K");
	helper_env(more);
	env_buf[0] = h_fmt("LD_PRELOAD=%s/trace-malloc-count.so:%s", getenv("SOCKMEM_HELPER_DIR"),
			   h_build("libsockmem.so"));
	h_run(&r, (const char *const[]){helper, mode, "1000", "3000", NULL}, NULL);
	h_env(NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	p = strstr(r.err, "handler mallocs ");
	cr_assert(p && sscanf(p, "handler mallocs %lu", &n) == 1, "%s", r.err);
	h_free(&r);
	cr_expect_geq(recorded(&nrec), 1, "the handler's hits were captured");
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "sm_test_blast_sender+0x"), "%s", r.out);
	h_free(&r);
	return n;
}

/* The process's first capture happens in a signal handler (send is
 * async-signal-safe, so a program may call it there): it must allocate
 * nothing, or a handler that interrupted malloc deadlocks on its lock. */
Test(traces, first_capture_in_a_signal_handler_does_not_allocate)
{
	unsigned long n = handler_mallocs("signal");

	cr_expect_eq(n, 0, "the handler's sends (first capture included) made %lu mallocs", n);
}

/* The same for a thread started after load: the unwinder's per-thread state
 * (dynamic TLS of a dlopen'd library: malloc'd on first use) must not be
 * set up by its first capture. */
Test(traces, first_capture_of_a_thread_in_a_signal_handler_does_not_allocate)
{
	unsigned long n = handler_mallocs("thread_signal");

	cr_expect_eq(n, 0, "the thread's handler (its first capture) made %lu mallocs", n);
}

/* Four threads race on the process's one token bucket. */
Test(traces, threads_share_one_rate_limit)
{
	const char *const more[] = {"SOCKMEM_TRACE=1", "SOCKMEM_TRACE_RATE=5", NULL};
	struct timespec a, b;
	struct h_out r;
	uint64_t total;
	double secs;
	int n;

	make_group("64K");
	clock_gettime(CLOCK_MONOTONIC, &a);
	run_mode(&r, "trace-helper", "threads", "200", "20000", "4", more);
	clock_gettime(CLOCK_MONOTONIC, &b);
	h_free(&r);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	total = recorded(&n);
	cr_expect_geq(total, 1);
	cr_expect_leq((double)total, 5 + 5 * secs + 1, "%llu captures in %.2f s",
		      (unsigned long long)total, secs);
	cr_expect_gt(events_max(), total);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "sm_test_blast_sender+0x"), "%s", r.out);
	cr_expect(strstr(r.out, "run_job+0x"), "the thread's entry: %s", r.out);
	h_free(&r);
}

/* A fork child inherits the loaded unwinder and the segment: its own call
 * site is recorded too. */
Test(traces, fork_child_is_traced)
{
	struct h_out r;

	make_group("64K");
	run_mode(&r, "trace-helper", "fork", "1000", "3000", NULL, trace_on);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g", "--top", "0"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "sm_test_child_sender+0x"), "%s", r.out);
	cr_expect(strstr(r.out, "group 'g': 2 call sites,"), "parent's and child's: %s", r.out);
	h_free(&r);
}

/* Issue 4's throttling above high (SOCKMEM_THROTTLE=1) is traced too. */
Test(traces, throttled_calls_are_traced)
{
	const char *const more[] = {"SOCKMEM_TRACE=1", "SOCKMEM_THROTTLE=1", NULL};
	unsigned long long count, bytes;
	struct h_out r;

	cr_assert_eq(CTL(&r, "set", "g", "high=16K"), 0, "%s", r.err);
	h_free(&r);
	/* Tiny sends: each sleeps ~25 ms (the overage curve scales with size). */
	blast(&r, "trace-helper", "10", "20", more);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "  throttled  "), "kind shown: %s", r.out);
	cr_expect(strstr(r.out, "sm_test_blast_sender+0x"), "%s", r.out);
	first_site(r.out, &count, &bytes);
	cr_expect_gt(count, 0);
	cr_expect_gt(bytes, 0);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g", "--json"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "\"kinds\":[\"throttled\"]"), "%s", r.out);
	h_free(&r);
}

Test(traces, tracing_off_records_nothing)
{
	struct h_out r;
	int n;

	make_group("64K");
	blast(&r, "trace-helper", "1000", "3000", NULL);
	h_free(&r);
	cr_assert_gt(events_max(), 0, "the helper did hit max");
	cr_expect_eq(recorded(&n), 0);
	cr_expect_eq(n, 0);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(h_one_line(r.out), "%s", r.out);
	cr_expect(strstr(r.out, "no call sites recorded for group 'g'"), "%s", r.out);
	h_free(&r);
}

Test(traces, missing_libunwind_disables_tracing_with_one_line)
{
	const char *const more[] = {"SOCKMEM_TRACE=1",
				    "SOCKMEM_TRACE_LIB=/nonexistent/libunwind.so.8", NULL};
	struct h_out r;
	const char *p;
	int n, lines = 0;

	make_group("64K");
	blast(&r, "trace-helper", "1000", "3000", more);
	for (p = r.err; (p = strstr(p, "call-site tracing disabled")); p++)
		lines++;
	cr_expect_eq(lines, 1, "stderr: %s", r.err);
	cr_expect(strstr(r.err, "/nonexistent/libunwind.so.8"), "names the library: %s", r.err);
	h_free(&r);
	cr_expect_gt(events_max(), 0);
	cr_expect_eq(recorded(&n), 0);
}

Test(traces, one_site_across_processes)
{
	unsigned long long c1, c2, bytes;
	struct h_out r;

	make_group("64K");
	blast(&r, "trace-helper", "1000", "3000", trace_on);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	first_site(r.out, &c1, &bytes);
	h_free(&r);
	/* A second process (other pid, other load addresses): same site. */
	blast(&r, "trace-helper", "1000", "3000", trace_on);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "group 'g': 1 call site,"), "%s", r.out);
	first_site(r.out, &c2, &bytes);
	cr_expect_gt(c2, c1, "%s", r.out);
	h_free(&r);
}

Test(traces, cxx_exceptions_do_not_use_libunwind)
{
	struct h_out r;

	make_group("64K");
	blast(&r, "trace-cxx-helper", "1000", "3000", trace_on);
	cr_expect(strstr(r.out, "libunwind mapped: yes"), "tracing loaded libunwind: %s", r.out);
	cr_expect(strstr(r.out, "caught: through the frames"), "%s", r.out);
	{
		/* libgcc_s (or the ASan runtime, which wraps it), never libunwind. */
		const char *from = strstr(r.out, "_Unwind_RaiseException from: ");
		const char *eol = from ? strchr(from, '\n') : NULL;
		const char *lu = from ? strstr(from, "libunwind") : NULL;

		cr_expect(from && eol && (!lu || lu > eol) && !strstr(from, "from: ?"),
			  "the global scope binds libunwind's unwinder: %s", r.out);
	}
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "sm_test_cxx_sender+0x"), "%s", r.out);
	h_free(&r);
}

Test(traces, reset_forgets_the_sites)
{
	struct h_out r;

	make_group("64K");
	blast(&r, "trace-helper", "1000", "3000", trace_on);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g", "--reset"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "forgot 1 call-site record of group 'g'"), "%s", r.out);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "no call sites recorded"), "%s", r.out);
	h_free(&r);
}

Test(traces, bad_command_lines)
{
	struct h_out r;

	make_group("64K");
	cr_expect_eq(CTL(&r, "traces"), 2);
	cr_expect(h_one_line(r.err) && strstr(r.err, "missing GROUP"), "%s", r.err);
	h_free(&r);
	cr_expect_eq(CTL(&r, "traces", "nope"), 1);
	cr_expect(h_one_line(r.err) && strstr(r.err, "no group 'nope'"), "%s", r.err);
	h_free(&r);
	cr_expect_eq(CTL(&r, "traces", "g", "--top", "x"), 2);
	cr_expect(h_one_line(r.err), "%s", r.err);
	h_free(&r);
	cr_expect_eq(CTL(&r, "traces", "g", "--json", "--reset"), 2);
	cr_expect(h_one_line(r.err), "%s", r.err);
	h_free(&r);
	cr_expect_eq(CTL(&r, "traces", "g", "h"), 2);
	h_free(&r);
	cr_expect_eq(CTL(&r, "traces", "--help"), 0);
	cr_expect(strstr(r.out, "Usage: sockmemctl traces GROUP"), "%s", r.out);
	h_free(&r);
	sockmem_unlink(h_ns());
	cr_expect_eq(CTL(&r, "traces", "g"), 1, "missing segment");
	cr_expect(h_one_line(r.err), "%s", r.err);
	h_free(&r);
}

/* ---- corrupt records -------------------------------------------------- */

static sockmem_seg_t *open_rw(uint32_t *g)
{
	struct sockmem_open_opts o = {.ns = h_ns(), .create = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;

	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_create(seg, "g", g), 0);
	return seg;
}

/* A record that passes validation but whose content is garbage. */
static void plant_garbage(sockmem_seg_t *seg, uint32_t i, uint32_t g, const char *obj0)
{
	struct sockmem_trace *t = sockmem_trace_at(seg, i);

	memset(t, 0xa5, sizeof(*t));
	t->group = g;
	t->group_gen = atomic_load(&sockmem_group_at(seg, g)->generation);
	t->depth = SOCKMEM_TRACE_DEPTH;
	t->nobjs = 2;
	atomic_store(&t->hash, 0xa5a5 + i); /* distinct sites (equal hashes merge) */
	atomic_store(&t->count, 7);
	atomic_store(&t->bytes, 700);
	snprintf(t->objs[0], sizeof(t->objs[0]), "%s", obj0);
	for (int f = 0; f < SOCKMEM_TRACE_DEPTH; f++)
		t->obj[f] = (uint8_t)(f % 3 == 2 ? 200 : f % 2); /* 200: out of range */
	atomic_store(&t->state, SOCKMEM_LIVE);
}

Test(traces, garbage_records_do_not_crash_the_reader)
{
	static const char *const objs[] = {"/dev/zero",	   "/proc/self/mem", "/etc/passwd",
					   "/nonexistent", "/tmp",	     "/dev/stdin"};
	struct h_out r;
	sockmem_seg_t *seg;
	uint32_t g;

	seg = open_rw(&g);
	for (uint32_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
		plant_garbage(seg, i, g, objs[i]);
	/* A truncated copy of a real ELF object (section table cut off). */
	{
		const char *cut = h_fmt("%s/cut.so", h_tmpdir());
		FILE *in = fopen(h_build("libsockmem.so"), "rb"), *out = fopen(cut, "wb");
		char buf[4096];
		size_t n = in ? fread(buf, 1, sizeof(buf), in) : 0;

		cr_assert(in && out && n == sizeof(buf));
		fwrite(buf, 1, n, out);
		fclose(in);
		fclose(out);
		plant_garbage(seg, 6, g, cut);
	}
	sockmem_close(seg);
	cr_assert_eq(CTL(&r, "traces", "g", "--top", "0"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "#7  count 7"), "all 7 garbage sites listed: %s", r.out);
	for (const char *p = r.out; *p; p++) /* paths of garbage bytes are escaped */
		cr_assert(*p == '\n' || (*p >= 0x20 && *p < 0x7f), "byte 0x%02x in the output",
			  (unsigned char)*p);
	h_free(&r);
	cr_assert_eq(CTL(&r, "traces", "g", "--json"), 0, "%s", r.err);
	h_free(&r);
}

Test(traces, invalid_records_refuse_the_segment)
{
	struct h_out r;
	sockmem_seg_t *seg;
	uint32_t g;

	seg = open_rw(&g);
	plant_garbage(seg, 0, g, "/dev/zero");
	sockmem_trace_at(seg, 0)->depth = SOCKMEM_TRACE_DEPTH + 1;
	sockmem_close(seg);
	cr_assert_eq(CTL(&r, "traces", "g"), 1, "%s", r.out);
	cr_expect(h_one_line(r.err) && strstr(r.err, "trace 0"), "%s", r.err);
	h_free(&r);
}
