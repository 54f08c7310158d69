/*
 * Configuration: the option table's parser (direct), pass-through without a
 * group, and bad values (one stderr line naming variable and value; the
 * program runs unaccounted and succeeds; no segment touched; no thread).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "pl_harness.h"

/* ---- the parser ------------------------------------------------------- */

static int parse(const char *const *env, struct sm_config *c, char *err)
{
	return sm_config_parse(env, c, err, 256);
}

Test(config, defaults)
{
	const char *env[] = {"HOME=/", "SOCKMEM_UNKNOWN=1", NULL};
	struct sm_config c;
	char err[256];

	cr_assert_eq(parse(env, &c, err), 0);
	cr_expect_str_eq(c.group, "");
	cr_expect_str_eq(c.ns, "");
	cr_expect_eq(c.max, SOCKMEM_KEEP);
	cr_expect_eq(c.high, SOCKMEM_KEEP);
	cr_expect_eq(c.low, SOCKMEM_KEEP);
	cr_expect_eq(c.batch, 64 * 1024);
	cr_expect_eq(c.reconcile_ms, 100);
	cr_expect_eq(c.reconcile_bytes, 1024 * 1024);
	cr_expect_eq(c.pressure_ms, 1000);
	cr_expect_eq(c.log_level, 1); /* warn */
	cr_expect_eq(c.families, SM_FAM_INET | SM_FAM_INET6);
	cr_expect_eq(c.trace, 0);
	cr_expect_eq(c.trace_rate, 100);
	cr_expect_str_eq(c.trace_lib, "", "unset: the shim loads " SM_TRACE_LIB_DEFAULT);
}

Test(config, values)
{
	const char *env[] = {"SOCKMEM_GROUP=a/b",
			     "SOCKMEM_NAMESPACE=x-1",
			     "SOCKMEM_MAX=64M",
			     "SOCKMEM_HIGH=max",
			     "SOCKMEM_LOW=1k",
			     "SOCKMEM_BATCH=0",
			     "SOCKMEM_RECONCILE_MS=5",
			     "SOCKMEM_LOG=debug",
			     "SOCKMEM_FAMILIES=unix,inet6",
			     "SOCKMEM_TRACE=1",
			     "SOCKMEM_TRACE_RATE=100000",
			     "SOCKMEM_TRACE_LIB=/opt/x/libunwind.so.8",
			     "SOCKMEM_PRESSURE_MS=", /* empty: unset */
			     NULL};
	struct sm_config c;
	char err[256];

	cr_assert_eq(parse(env, &c, err), 0, "%s", err);
	cr_expect_str_eq(c.group, "a/b");
	cr_expect_str_eq(c.ns, "x-1");
	cr_expect_eq(c.max, 64 << 20);
	cr_expect_eq(c.high, SOCKMEM_UNLIMITED);
	cr_expect_eq(c.low, 1024);
	cr_expect_eq(c.batch, 0);
	cr_expect_eq(c.reconcile_ms, 5);
	cr_expect_eq(c.log_level, 3);
	cr_expect_eq(c.families, SM_FAM_UNIX | SM_FAM_INET6);
	cr_expect_eq(c.trace, 1);
	cr_expect_eq(c.trace_rate, 100000);
	cr_expect_str_eq(c.trace_lib, "/opt/x/libunwind.so.8");
	cr_expect_eq(c.pressure_ms, 1000);
}

Test(config, trace_options)
{
	const char *lo[] = {"SOCKMEM_TRACE_RATE=1", "SOCKMEM_TRACE_LIB=", NULL};
	char lib[SM_TRACE_LIB_MAX + 32], err[256];
	const char *longest[] = {lib, NULL};
	struct sm_config c;
	int n;

	cr_assert_eq(parse(lo, &c, err), 0, "%s", err);
	cr_expect_eq(c.trace_rate, 1);
	cr_expect_str_eq(c.trace_lib, "", "empty is unset");
	/* The longest value that fits is taken whole. */
	n = snprintf(lib, sizeof(lib), "SOCKMEM_TRACE_LIB=/");
	memset(lib + n, 'l', SM_TRACE_LIB_MAX - 2);
	lib[n + SM_TRACE_LIB_MAX - 2] = '\0';
	cr_assert_eq(parse(longest, &c, err), 0, "%s", err);
	cr_expect_eq(strlen(c.trace_lib), SM_TRACE_LIB_MAX - 1);
	/* One byte more is refused (the message shows the value's start). */
	lib[n + SM_TRACE_LIB_MAX - 2] = 'l';
	lib[n + SM_TRACE_LIB_MAX - 1] = '\0';
	cr_expect_eq(parse(longest, &c, err), -EINVAL);
	cr_expect(strstr(err, "SOCKMEM_TRACE_LIB='/lll") && strstr(err, "too long"), "%s", err);
	cr_expect(strchr(err, '\n') == NULL);
}

static void bad(const char *kv, const char *needle)
{
	const char *env[] = {"SOCKMEM_GROUP=g", kv, NULL};
	char name[64], err[256];
	struct sm_config c;

	snprintf(name, sizeof(name), "%.*s", (int)(strchr(kv, '=') - kv), kv);
	cr_expect_eq(parse(env, &c, err), -EINVAL, "%s accepted", kv);
	cr_expect(strstr(err, name) != NULL, "'%s' does not name %s", err, name);
	cr_expect(strstr(err, strchr(kv, '=') + 1) != NULL, "'%s' does not show the value", err);
	cr_expect(strstr(err, needle) != NULL, "'%s' lacks '%s'", err, needle);
	cr_expect(strchr(err, '\n') == NULL);
}

Test(config, bad_values)
{
	bad("SOCKMEM_MAX=12Q", "not a size");
	bad("SOCKMEM_HIGH=-1", "not a size");
	bad("SOCKMEM_LOW=1 M", "not a size");
	bad("SOCKMEM_BATCH=1G", "out of range");
	bad("SOCKMEM_RECONCILE_MS=0", "out of range");
	bad("SOCKMEM_RECONCILE_MS=1e3", "integer");
	bad("SOCKMEM_RECONCILE_BYTES=99999999999999999999", "not a size");
	bad("SOCKMEM_LOG=loud", "error|warn|info|debug");
	bad("SOCKMEM_FAMILIES=inet,ipx", "inet");
	bad("SOCKMEM_FAMILIES=,", "inet");
	bad("SOCKMEM_TRACE=2", "out of range");
	bad("SOCKMEM_TRACE_RATE=0", "out of range (1..100000");
	bad("SOCKMEM_TRACE_RATE=100001", "out of range");
	bad("SOCKMEM_TRACE_RATE=-5", "integer");
	bad("SOCKMEM_TRACE_RATE=10/s", "integer");
	bad("SOCKMEM_TRACE_RATE=99999999999999999999", "integer");
	bad("SOCKMEM_GROUP=../x", "SOCKMEM_GROUP");
	bad("SOCKMEM_NAMESPACE=a/b", "namespace");
}

Test(config, markdown_table_lists_every_option)
{
	char path[] = "/tmp/sockmem-opt-XXXXXX", text[8192];
	int fd = mkstemp(path);
	ssize_t n;

	cr_assert_geq(fd, 0);
	sm_config_print_markdown(fd);
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	unlink(path);
	cr_assert_gt(n, 0);
	text[n] = '\0';
	for (size_t i = 0; i < sm_noptions; i++)
		cr_expect(strstr(text, sm_options[i].name) != NULL, "%s missing",
			  sm_options[i].name);
	cr_expect(strstr(text, "| `SOCKMEM_BATCH` | 64K |") != NULL, "%s", text);
}

/* ---- in a real process ------------------------------------------------ */

static int run_plain(const struct pl_opts *o, char *out, size_t olen, char *err, size_t elen)
{
	struct pl_child c;
	int status;

	cr_assert_eq(pl_spawn(&c, "sockmem-pl-plain", NULL, o), 0);
	cr_expect_eq(pl_line(&c, out, olen, 10000), 0);
	status = pl_wait(&c, 10000);
	pl_stderr(&c, err, elen);
	return status;
}

Test(config, no_group_is_pass_through)
{
	struct pl_opts o = {.preload = true};
	char ns[64], out[128], err[4096];
	int status;

	pl_ns(ns, sizeof(ns), "nogroup");
	o.ns = ns;
	status = run_plain(&o, out, sizeof(out), err, sizeof(err));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	cr_expect_str_eq(out, "threads 1", "a pass-through shim started a thread?");
	cr_expect_str_eq(err, "");
	cr_expect(!pl_segment_exists(ns), "segment created without a group");
}

Test(config, group_active_starts_helper)
{
	struct pl_opts o = {.group = "g", .preload = true};
	char ns[64], out[128], err[4096];
	struct sockmem_group_stat st;
	int status;

	pl_ns(ns, sizeof(ns), "active");
	o.ns = ns;
	status = run_plain(&o, out, sizeof(out), err, sizeof(err));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	cr_expect_str_eq(out, "threads 2");
	cr_expect_str_eq(err, "");
	cr_assert_eq(pl_stat(ns, "g", &st), 0);
	cr_expect_gt(st.peak, 0, "nothing was ever charged");
	cr_expect_eq(st.current, 0);
	sockmem_unlink(ns);
}

static void bad_env(const char *kv, const char *kv2, bool segment_ok)
{
	struct pl_opts o = {.group = "g", .preload = true, .extra = {kv, kv2}};
	char ns[64], out[128], err[4096], *nl;
	int status;

	pl_ns(ns, sizeof(ns), "badcfg");
	o.ns = ns;
	status = run_plain(&o, out, sizeof(out), err, sizeof(err));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %#x", kv, status);
	cr_expect_str_eq(out, "threads 1", "%s: accounted anyway?", kv);
	nl = strchr(err, '\n');
	cr_expect(nl && nl[1] == '\0', "%s: not exactly one stderr line: '%s'", kv, err);
	cr_expect(strstr(err, "running unaccounted") != NULL, "%s: '%s'", kv, err);
	cr_expect(strncmp(err, "sockmem", 7) == 0, "%s: '%s'", kv, err);
	if (!segment_ok)
		cr_expect(!pl_segment_exists(ns), "%s: segment touched", kv);
	sockmem_unlink(ns);
}

Test(config, bad_values_run_unaccounted)
{
	bad_env("SOCKMEM_MAX=12Q", NULL, false);
	bad_env("SOCKMEM_LOG=loud", NULL, false);
	bad_env("SOCKMEM_FAMILIES=ipx", NULL, false);
	bad_env("SOCKMEM_BATCH=-5", NULL, false);
	bad_env("SOCKMEM_NAMESPACE=../../etc", NULL, false);
	bad_env("SOCKMEM_TRACE_RATE=0", NULL, false);
	bad_env("SOCKMEM_TRACE_RATE=fast", "SOCKMEM_TRACE=1", false);
	/* Parsed fine but refused by the core (low > high): the segment was
	 * opened to find that out, but nothing is accounted. */
	bad_env("SOCKMEM_LOW=2M", "SOCKMEM_HIGH=1M", true);
}

Test(config, bad_group_runs_unaccounted)
{
	struct pl_opts o = {.group = "a//b", .preload = true};
	char ns[64], out[128], err[4096];
	int status;

	pl_ns(ns, sizeof(ns), "badgroup");
	o.ns = ns;
	status = run_plain(&o, out, sizeof(out), err, sizeof(err));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_expect_str_eq(out, "threads 1");
	cr_expect(strstr(err, "SOCKMEM_GROUP='a//b'") != NULL, "'%s'", err);
	cr_expect(!pl_segment_exists(ns));
}
