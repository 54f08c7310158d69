/*
 * sockmemctl set, list, stat (table, --json, --prometheus), reset-peak, reap
 * and rm against a real segment, with helper processes that charge groups.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl_harness.h"

TestSuite(groups, .init = h_setup, .fini = h_teardown, .timeout = 90);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

/* sockmemctl must succeed; its output is freed. */
#define OK(...)                                                                                    \
	do {                                                                                       \
		struct h_out ok_;                                                                  \
		cr_assert_eq(CTL(&ok_, __VA_ARGS__), 0, "stderr: %s", ok_.err);                    \
		h_free(&ok_);                                                                      \
	} while (0)

/* `stat ARGS --json` piped into check_json.py with expressions. */
static void check_json(const char *const stat_args[], const char *const exprs[])
{
	const char *argv[32] = {"/usr/bin/python3", h_src("check_json.py")};
	const char *args[16] = {"stat"};
	struct h_out r, j;
	size_t n = 2, k = 1;

	for (; stat_args[k - 1]; k++)
		args[k] = stat_args[k - 1];
	args[k++] = "--json";
	args[k] = NULL;
	cr_assert_eq(h_ctl(&r, args), 0, "stat --json: %s", r.err);
	for (; exprs[n - 2] && n < 31; n++)
		argv[n] = exprs[n - 2];
	argv[n] = NULL;
	cr_assert_eq(h_run(&j, argv, r.out), 0, "%s\njson: %s", j.err, r.out);
	h_free(&j);
	h_free(&r);
}

#define JSON(args, ...)                                                                            \
	check_json((const char *const[]){args, NULL}, (const char *const[]){__VA_ARGS__, NULL})

static pid_t hold(const char *group, const char *bytes, const char *ms, const char *pressure)
{
	return h_start((const char *const[]){h_build("tests/ctl-helper"), "hold", h_ns(), group,
					     bytes, ms, pressure, NULL},
		       "ready");
}

Test(groups, set_creates_and_validates)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "set", "a/b", "max=64M", "high=48M", "low=32M"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "a/b: max=64M high=48M low=32M"), "%s", r.out);
	h_free(&r);
	JSON("a/b", "group=\"a/b\"", "max=67108864", "high=50331648", "low=33554432", "current=0");
	/* The parent was created implicitly, unlimited. */
	JSON("a", "max=\"max\"", "high=\"max\"", "low=0");

	/* max alone: high stays unlimited (no watermark), as cgroup's memory.high. */
	OK("set", "c", "max=1G");
	JSON("c", "max=1073741824", "high=\"max\"");
	OK("set", "c", "max=max", "high=max");
	JSON("c", "max=\"max\"", "high=\"max\"");

	/* Inconsistent among the given values: refused before anything. */
	cr_assert_eq(CTL(&r, "set", "d", "low=2M", "high=1M"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "refused: low 2M is above high 1M"), "%s",
		  r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "stat", "d"), 1, "a refused set left group d behind");
	h_free(&r);
	/* Inconsistent with the current limits: the core refuses. */
	cr_assert_eq(CTL(&r, "set", "a/b", "low=50M"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "refused"), "%s", r.err);
	h_free(&r);
	JSON("a/b", "low=33554432");
	/* Malformed: usage errors. */
	cr_assert_eq(CTL(&r, "set", "a/b", "max=64Q"), 2);
	cr_assert(h_one_line(r.err) && strstr(r.err, "bad size '64Q' for max"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "a/b", "max=-5"), 2);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "a/b", "limit=5"), 2);
	cr_assert(h_one_line(r.err) && strstr(r.err, "bad assignment 'limit=5'"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "a/b", "max=1M", "max=2M"), 2);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "a/b"), 2);
	cr_assert(strstr(r.err, "nothing to set"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "a//b", "max=1M"), 2);
	h_free(&r);
	/* A small low-high gap: accepted with a warning. */
	cr_assert_eq(CTL(&r, "set", "a/b", "low=47M"), 0);
	cr_assert(strstr(r.err, "warning: low 47M is close to high 48M"), "%s", r.err);
	h_free(&r);
}

Test(groups, list_is_a_tree_and_read_only)
{
	struct h_out r;
	struct stat before, after;
	const char *seg = h_fmt("/dev/shm/sockmem-%s", h_ns());
	char *a, *b, *c, *ac;

	OK("set", "a/b/c", "max=1M");
	OK("set", "a-c", "max=2M");
	OK("set", "a/b2", "low=1K");
	cr_assert_eq(stat(seg, &before), 0);
	cr_assert_eq(CTL(&r, "list"), 0, "%s", r.err);
	cr_assert_eq(stat(seg, &after), 0);
	cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec, "list wrote to the segment");
	cr_assert(strncmp(r.out, "GROUP", 5) == 0, "%s", r.out);
	a = strstr(r.out, "\na ");
	b = strstr(r.out, "\n  b ");
	c = strstr(r.out, "\n    c ");
	ac = strstr(r.out, "\na-c ");
	cr_assert(a && b && c && ac, "tree not indented by depth:\n%s", r.out);
	cr_assert(a < b && b < c && c < ac, "children do not follow their parent:\n%s", r.out);
	cr_assert(strstr(c, " 1M "), "human size missing:\n%s", r.out);
	cr_assert(strstr(r.out, "\n  b2 "), "%s", r.out);
	h_free(&r);
}

Test(groups, stat_table_json_and_pids_of_members)
{
	struct h_out r;
	pid_t pid;

	OK("set", "web", "max=8M", "high=6M", "low=4M");
	pid = hold("web", "1048576", "20000", "5000");
	JSON("web", "current>1048575", "sock>1048575", "peak>1048575", "processes=1",
	     h_fmt("pids~%d", (int)pid), "under_pressure=true", "events.pressure>0");
	check_json((const char *const[]){NULL},
		   (const char *const[]){"--array", "1", "--group", "web", "processes=1", NULL});
	cr_assert_eq(CTL(&r, "stat", "web"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "group                  web\n"), "%s", r.out);
	cr_assert(strstr(r.out, "max                    8M       (8388608 bytes)"), "%s", r.out);
	cr_assert(strstr(r.out, "under_pressure         yes"), "%s", r.out);
	cr_assert(strstr(r.out, h_fmt("pids                   %d", (int)pid)), "%s", r.out);
	cr_assert(strstr(r.out, "events.throttled"), "%s", r.out);
	cr_assert(strstr(r.out, "reclaim.drained"), "%s", r.out);
	h_free(&r);
	kill(pid, SIGTERM);
	h_wait(pid, 5000);
	/* Unknown group: one line, exit 1. */
	cr_assert_eq(CTL(&r, "stat", "nope", "--json"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no group 'nope'"), "%s", r.err);
	cr_assert_eq(r.outlen, 0);
	h_free(&r);
}

/* Run the exposition checker on `text`; returns its exit status. */
static int check_prom(const char *text, char **why)
{
	const char *argv[] = {"/usr/bin/python3",
			      h_src("check_prom.py"),
			      "--prefix",
			      "sockmem_",
			      "--require-label",
			      "group",
			      NULL};
	struct h_out j;
	int rc = h_run(&j, argv, text);

	*why = strdup(j.err);
	h_free(&j);
	return rc;
}

Test(groups, prometheus_one_scrape_for_all_groups)
{
	struct h_out r;
	char *why;
	pid_t pid;

	OK("set", "p/q", "max=4M", "high=3M");
	OK("set", "z", "low=1K");
	pid = hold("p/q", "65536", "20000", NULL);
	cr_assert_eq(CTL(&r, "stat", "--prometheus"), 0, "%s", r.err);
	cr_assert_eq(check_prom(r.out, &why), 0, "%s\n%s", why, r.out);
	free(why);
	cr_assert(strstr(r.out, "sockmem_max_bytes{group=\"p/q\"} 4194304\n"), "%s", r.out);
	cr_assert(strstr(r.out, "sockmem_max_bytes{group=\"z\"} +Inf\n"), "%s", r.out);
	cr_assert(strstr(r.out, "sockmem_current_bytes{group=\"p\"} "), "%s", r.out);
	cr_assert(strstr(r.out, "sockmem_processes{group=\"p/q\"} 1\n"), "%s", r.out);
	cr_assert(strstr(r.out, "# TYPE sockmem_events_total counter\n"), "%s", r.out);
	cr_assert(strstr(r.out, "sockmem_events_total{group=\"z\",event=\"max\"} 0\n"), "%s",
		  r.out);
	h_free(&r);
	/* One group. */
	cr_assert_eq(CTL(&r, "stat", "p/q", "--prometheus"), 0, "%s", r.err);
	cr_assert_eq(check_prom(r.out, &why), 0, "%s\n%s", why, r.out);
	free(why);
	cr_assert_null(strstr(r.out, "group=\"z\""), "%s", r.out);
	h_free(&r);
	kill(pid, SIGTERM);
	h_wait(pid, 5000);
}

/* The checker must be able to fail: each of these is invalid. */
Test(groups, prometheus_checker_is_strict)
{
	static const char *const bad[] = {
		"sockmem_x{group=\"a\"} 1\n", /* no HELP/TYPE */
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\\q\"} 1\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\"} one\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\n# TYPE sockmem_x gauge\n"
		"sockmem_x{group=\"a\"} 1\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x counter\nsockmem_x{group=\"a\"} 1\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\"} 1",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\",group=\"b\"} "
		"1\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{9group=\"a\"} 1\n",
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x 1\n", /* no group label */
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\"} 1\n"
		"# HELP sockmem_y h\n# TYPE sockmem_y gauge\nsockmem_y{group=\"a\"} 1\n"
		"sockmem_x{group=\"b\"} 1\n", /* family not contiguous */
		"# HELP sockmem_x h\n# TYPE sockmem_x gauge\nsockmem_x{group=\"a\"} 1\n"
		"sockmem_x{group=\"a\"} 2\n",				      /* duplicate series */
		"# HELP other h\n# TYPE other gauge\nother{group=\"a\"} 1\n", /* prefix */
	};
	const char *good = "# HELP sockmem_x h\n# TYPE sockmem_x gauge\n"
			   "sockmem_x{group=\"a\\\\b\\\"c\\n\"} -1.5e3\n"
			   "sockmem_x{group=\"b\"} +Inf\n";
	char *why;

	cr_assert_eq(check_prom(good, &why), 0, "%s", why);
	free(why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(check_prom(bad[i], &why), 1, "accepted:\n%s", bad[i]);
		free(why);
	}
}

Test(groups, reset_peak_reap_and_rm)
{
	struct h_out r;
	long long bytes;
	pid_t pid;

	OK("set", "g/h", "max=16M");
	/* A member that finishes normally leaves a peak and no usage. */
	pid = hold("g/h", "2097152", "10", NULL);
	cr_assert_eq(h_wait(pid, 10000), 0);
	JSON("g/h", "peak>2097151", "current=0", "processes=0");
	OK("reset-peak", "g/h");
	JSON("g/h", "peak=0");
	cr_assert_eq(CTL(&r, "reset-peak", "nope"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no group 'nope'"), "%s", r.err);
	h_free(&r);

	/* A member killed by SIGKILL: reap returns what it held. */
	pid = hold("g/h", "3145728", "60000", NULL);
	JSON("g/h", "current>3145727", "processes=1");
	cr_assert_eq(CTL(&r, "rm", "g/h"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "refused to remove group 'g/h'") &&
			  strstr(r.err, "1 process"),
		  "%s", r.err);
	h_free(&r);
	kill(pid, SIGKILL);
	h_wait(pid, 5000);
	cr_assert_eq(CTL(&r, "reap"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "reaped 1 dead process record, returned"), "%s", r.out);
	cr_assert(h_one_line(r.out), "%s", r.out);
	/* At least what it charged; at most that plus one cache batch. */
	bytes = strrchr(r.out, '(') ? atoll(strrchr(r.out, '(') + 1) : -1;
	cr_assert(bytes >= 3145728 && bytes <= 3145728 + 65536, "returned %lld: %s", bytes, r.out);
	h_free(&r);
	JSON("g/h", "current=0", "processes=0");
	JSON("g", "current=0");

	/* rm: children first, then the parent. */
	cr_assert_eq(CTL(&r, "rm", "g"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "children"), "%s", r.err);
	h_free(&r);
	OK("rm", "g/h");
	OK("rm", "g");
	cr_assert_eq(CTL(&r, "rm", "g"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no group 'g'"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "list"), 0);
	cr_assert_null(strstr(r.out, "\ng"), "%s", r.out);
	h_free(&r);
}

/* high=max means "no high watermark", also next to a finite max. */
Test(groups, high_max_beside_a_max)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "set", "hm", "max=1M", "high=max"), 0, "%s", r.err);
	cr_expect(strstr(r.out, "hm: max=1M high=max low=0"), "%s", r.out);
	h_free(&r);
	/* (--dry-run: the limits are checked before anything runs.) */
	cr_assert_eq(CTL(&r, "run", "--dry-run", "-g", "hr", "--max", "1M", "--high", "max", "--",
			 "true"),
		     0, "%s", r.err);
	h_free(&r);
}

/* Output that cannot be written is an error: exit 1 and one line. */
Test(groups, stdout_write_error_fails)
{
	const char *argv[] = {"/bin/sh", "-c", "exec \"$0\" list > /dev/full",
			      h_build("sockmemctl"), NULL};
	struct h_out r;

	OK("set", "wf", "max=1M");
	cr_assert_eq(h_run(&r, argv, NULL), 1, "status %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, "write error on standard output"), "%s", r.err);
	cr_expect_eq(strchr(r.err, '\n'), strrchr(r.err, '\n'), "more than one line: %s", r.err);
	h_free(&r);
}
