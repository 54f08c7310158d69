/*
 * Limits that hold (issue 4), asserted on the kernel's own figures
 * (SO_MEMINFO of the members' sockets through pidfd_getfd, sampled every
 * SAMPLE_MS) and on the group's counters. Helper programs
 * (sockmem-lim-helper) run preloaded in their own environment; this runner
 * is never preloaded. Each test uses its own namespace, unlinked at the end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sys/socket.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SAMPLE_MS 20
#define MiB	  (1024 * 1024)

static char ns[SOCKMEM_NS_MAX];

static void setup(void)
{
	h_test_name(ns, sizeof(ns), "lim");
	h_own_namespace(ns);
}

static void teardown(void)
{
	h_cleanup();
}

static const char *lim_helper(void)
{
	static char p[PATH_MAX];
	const char *d = getenv("SOCKMEM_HELPER_DIR");

	if (d && *d)
		snprintf(p, sizeof(p), "%s/sockmem-lim-helper", d);
	else
		snprintf(p, sizeof(p), "%s/tests/sockmem-lim-helper", h_build_dir());
	return p;
}

/* Spawn the helper with argv (after the program name) in `group`, with
 * extra env (NULL-terminated, up to 8). */
static void spawn(struct h_proc *p, bool preload, const char *group, const char *const *env,
		  const char *const *args)
{
	struct h_spawn_opts o = {.preload = preload, .ns = ns, .group = group, .pipe_in = true,
				 .pipe_out = true};
	const char *argv[12] = {lim_helper()};
	int rc;

	for (int i = 0; env && env[i] && i < 8; i++)
		o.env[i] = env[i];
	for (int i = 0; args[i] && i < 10; i++)
		argv[i + 1] = args[i];
	rc = h_spawn(p, argv, &o);
	cr_assert_eq(rc, 0, "spawn %s: %d", args[0], rc);
}

static void expect_line(struct h_proc *p, const char *prefix, char *line, size_t len, int ms)
{
	int rc = h_read_line(p, line, len, ms);

	cr_assert(rc > 0 && strncmp(line, prefix, strlen(prefix)) == 0,
		  "expected '%s...', got '%s' (%d)", prefix, rc > 0 ? line : "", rc);
}

static bool running(struct h_proc *p)
{
	return !p->reaped && h_wait(p, 0) == -ETIMEDOUT;
}

/* ---- slow reader ------------------------------------------------------ */

struct stream_result {
	int64_t peak, tx, rx, ms;
	struct sockmem_group_stat st;
};

/*
 * 8 streams, 6 MiB each; the receiver reads 256 KiB/s per connection for
 * `slow_ms`, then fast, so everything arrives. Kernel memory of both
 * processes' sockets sampled every SAMPLE_MS.
 */
static void run_streams(bool preload, const char *max, int slow_ms, struct stream_result *r)
{
	char port[16], line[128], maxenv[64], slow[16];
	const char *env[] = {maxenv, NULL};
	struct h_proc rcv, snd;
	int64_t t0 = h_now_ms();
	pid_t pids[2];
	struct h_kmem k;

	snprintf(port, sizeof(port), "%d", h_free_port(AF_INET, SOCK_STREAM));
	snprintf(maxenv, sizeof(maxenv), "SOCKMEM_MAX=%s", max);
	snprintf(slow, sizeof(slow), "%d", slow_ms);
	spawn(&rcv, preload, "slow", env, (const char *[]){"recv", port, "8", "262144", slow, NULL});
	expect_line(&rcv, "ready", line, sizeof(line), 10000);
	spawn(&snd, preload, "slow", env, (const char *[]){"send", port, "8", "6291456", NULL});
	pids[0] = rcv.pid;
	pids[1] = snd.pid;
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 60000 / SAMPLE_MS && running(&rcv); i++) {
		if (h_kernel_meminfo(pids, running(&snd) ? 2 : 1, &k) == 0 && k.total > r->peak)
			r->peak = k.total;
		if (preload)
			h_group_stat(ns, "slow", &r->st);
		h_sleep_ms(SAMPLE_MS);
	}
	r->ms = h_now_ms() - t0;
	expect_line(&snd, "tx ", line, sizeof(line), 5000);
	r->tx = atoll(line + 3);
	expect_line(&rcv, "rx ", line, sizeof(line), 5000);
	r->rx = atoll(line + 3);
	cr_assert_eq(h_wait(&rcv, 5000), 0);
	cr_assert_eq(h_exit_code(&rcv), 0, "receiver exit %d", h_exit_code(&rcv));
	h_release(&rcv);
	h_release(&snd);
}

Test(limits, slow_reader, .init = setup, .fini = teardown, .timeout = 90)
{
	struct stream_result lim, free_;
	int64_t max = 8 * MiB;

	run_streams(true, "8M", 3000, &lim);
	fprintf(stderr,
		"[limits] slow reader, max=8M: kernel peak %lld (%.2f x max), tx %lld rx %lld, "
		"%lld ms, failcnt %llu ev_max %llu pressure %llu group peak %lld\n",
		(long long)lim.peak, (double)lim.peak / (double)max, (long long)lim.tx,
		(long long)lim.rx, (long long)lim.ms, (unsigned long long)lim.st.failcnt,
		(unsigned long long)lim.st.ev_max, (unsigned long long)lim.st.ev_pressure,
		(long long)lim.st.peak);
	run_streams(false, "8M", 3000, &free_);
	fprintf(stderr, "[limits] slow reader, no shim: kernel peak %lld (%.2f x max), %lld ms\n",
		(long long)free_.peak, (double)free_.peak / (double)max, (long long)free_.ms);
	cr_expect_eq(lim.tx, 8ll * 6291456, "sent %lld", (long long)lim.tx);
	cr_expect_eq(lim.rx, lim.tx, "every byte arrives: rx %lld tx %lld", (long long)lim.rx,
		     (long long)lim.tx);
	cr_expect_leq(lim.peak, max + max / 10, "kernel peak %lld over max+10%%", (long long)lim.peak);
	cr_expect_geq(free_.peak, 3 * max, "without the shim the peak is only %lld",
		      (long long)free_.peak);
}
