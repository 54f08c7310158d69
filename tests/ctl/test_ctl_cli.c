/*
 * sockmemctl: help, usage errors, and refusal of missing, corrupt, truncated
 * and foreign segments (exit status and the one-line message).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_harness.h"
#include "sockmem/sockmem.h"

TestSuite(cli, .init = h_setup, .fini = h_teardown, .timeout = 60);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

static const char *const commands[] = {"list", "stat",	     "set",  "watch", "run",   "record",
				       "plot", "reset-peak", "reap", "rm",    "traces"};

Test(cli, help_for_the_tool_and_every_command)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "--help"), 0);
	cr_assert(strstr(r.out, "Usage: sockmemctl"), "%s", r.out);
	cr_assert(strstr(r.out, "Exit status"), "the exit status is documented");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		cr_assert(strstr(r.out, h_fmt("  %s ", commands[i])), "%s not listed", commands[i]);
	h_free(&r);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		cr_assert_eq(CTL(&r, commands[i], "--help"), 0, "%s --help: %s", commands[i],
			     r.err);
		cr_assert(strstr(r.out, h_fmt("Usage: sockmemctl %s", commands[i])), "%s: %s",
			  commands[i], r.out);
		cr_assert(strstr(r.out, "Exit status"), "%s --help lacks the exit status",
			  commands[i]);
		cr_assert_eq(r.errlen, 0);
		h_free(&r);
	}
	cr_assert_eq(CTL(&r, "--version"), 0);
	cr_assert(strncmp(r.out, "sockmemctl ", 11) == 0 && h_one_line(r.out), "%s", r.out);
	h_free(&r);
}

/* Each usage error: status 2 and one line on stderr that points to help. */
static void expect_usage(const char *const args[], const char *needle)
{
	struct h_out r;

	cr_assert_eq(h_ctl(&r, args), 2, "%s: status %d, stderr %s", args[0], r.status, r.err);
	cr_assert(h_one_line(r.err), "not one line: '%s'", r.err);
	cr_assert(strstr(r.err, needle), "'%s' lacks '%s'", r.err, needle);
	cr_assert(strstr(r.err, "--help"), "'%s' does not say where to look", r.err);
	cr_assert_eq(r.outlen, 0, "stdout: %s", r.out);
	h_free(&r);
}

#define USAGE(needle, ...) expect_usage((const char *const[]){__VA_ARGS__, NULL}, needle)

Test(cli, usage_errors_exit_2_with_one_line)
{
	struct h_out r;

	cr_assert_eq(h_ctl(&r, (const char *const[]){NULL}), 2);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no command"), "%s", r.err);
	h_free(&r);
	USAGE("unknown command 'frobnicate'", "frobnicate");
	USAGE("unknown option '--bogus'", "--bogus");
	USAGE("unknown option '--bogus'", "list", "--bogus");
	USAGE("unexpected argument", "list", "extra");
	USAGE("unknown option '-x'", "stat", "-x");
	USAGE("option '--json' takes no value", "stat", "--json=yes");
	USAGE("unknown option '--bogus=1'", "stat", "--bogus=1");
	USAGE("needs a value", "watch", "--interval");
	USAGE("bad interval 'soon'", "watch", "--interval", "soon");
	USAGE("bad count '-1'", "watch", "--count", "-1");
	USAGE("invalid group name 'a/../b'", "stat", "a/../b");
	USAGE("invalid group name '/abs'", "stat", "/abs");
	USAGE("exclude each other", "stat", "--json", "--prometheus");
	USAGE("missing GROUP", "rm");
	USAGE("missing GROUP", "reset-peak");
	USAGE("missing --out", "record", "g");
	USAGE("bad duration 'x'", "record", "g", "--out", "f.csv", "--duration", "x");
	USAGE("missing FILE.csv", "plot", "--out", "x.png");
	USAGE("missing COMMAND", "run", "-g", "g");
	USAGE("bad size '12Q' for --max", "run", "--max", "12Q", "--", "true");
}

Test(cli, bad_namespace_names_its_source)
{
	static const char *const env[] = {"SOCKMEM_NAMESPACE=no/slash", NULL};
	struct h_out r;

	cr_assert_eq(CTL(&r, "--namespace", "bad ns", "list"), 2);
	cr_assert(h_one_line(r.err) &&
			  strstr(r.err, "invalid namespace 'bad ns' (from --namespace)"),
		  "%s", r.err);
	h_free(&r);
	h_env(env);
	cr_assert_eq(CTL(&r, "list"), 2);
	cr_assert(h_one_line(r.err) && strstr(r.err, "(from SOCKMEM_NAMESPACE)"), "%s", r.err);
	h_free(&r);
}

Test(cli, missing_segment_is_one_line_saying_what_to_do)
{
	const char *const *cmds[] = {
		(const char *const[]){"list", NULL},
		(const char *const[]){"stat", NULL},
		(const char *const[]){"stat", "g", "--json", NULL},
		(const char *const[]){"watch", "--count", "1", NULL},
		(const char *const[]){"reap", NULL},
		(const char *const[]){"rm", "g", NULL},
		(const char *const[]){"reset-peak", "g", NULL},
		(const char *const[]){"record", "g", "--out", "/dev/null", NULL},
	};
	struct h_out r;
	struct stat st;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		cr_assert_eq(h_ctl(&r, cmds[i]), 1, "%s: %d %s", cmds[i][0], r.status, r.err);
		cr_assert(h_one_line(r.err), "%s", r.err);
		cr_assert(strstr(r.err, h_fmt("no segment for namespace '%s' (/dev/shm/sockmem-%s)",
					      h_ns(), h_ns())),
			  "%s", r.err);
		cr_assert(strstr(r.err, "sockmemctl set"), "no advice: %s", r.err);
		h_free(&r);
	}
	/* Reading commands must not have created it. */
	cr_assert_neq(stat(h_fmt("/dev/shm/sockmem-%s", h_ns()), &st), 0);
}

/* Write `len` bytes of `fill` (or the start of a real segment) as the
 * namespace's segment, private to us so only the content is wrong. */
static void write_segment(const char *fill, size_t len)
{
	int fd = open(h_fmt("/dev/shm/sockmem-%s", h_ns()), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert(fd >= 0);
	for (size_t i = 0; i < len; i++)
		cr_assert(write(fd, &fill[i % strlen(fill)], 1) == 1);
	close(fd);
}

static void expect_refused(const char *needle)
{
	const char *const *cmds[] = {
		(const char *const[]){"list", NULL},
		(const char *const[]){"stat", "--json", NULL},
		(const char *const[]){"set", "g", "max=1M", NULL},
		(const char *const[]){"reap", NULL},
	};
	struct h_out r;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		cr_assert_eq(h_ctl(&r, cmds[i]), 1, "%s: %d %s", cmds[i][0], r.status, r.err);
		cr_assert(h_one_line(r.err), "%s", r.err);
		cr_assert(strstr(r.err, needle), "'%s' lacks '%s'", r.err, needle);
		cr_assert(strstr(r.err, h_ns()), "'%s' does not name the namespace", r.err);
		cr_assert_eq(r.outlen, 0);
		h_free(&r);
	}
}

Test(cli, garbage_segment_is_refused)
{
	write_segment("garbage!", 65536);
	expect_refused("bad magic");
	expect_refused("delete /dev/shm/sockmem-");
}

Test(cli, truncated_segment_is_refused)
{
	write_segment("x", 100);
	expect_refused("truncated");
}

Test(cli, foreign_segment_is_refused)
{
	struct h_out r;
	const char *path = h_fmt("/dev/shm/sockmem-%s", h_ns());

	cr_assert_eq(CTL(&r, "set", "g", "max=1M"), 0, "%s", r.err);
	h_free(&r);
	/* Another user's segment (we are root in CI; otherwise widen the mode,
	 * which the core refuses just the same). */
	if (geteuid() == 0) {
		cr_assert_eq(chown(path, 65534, 65534), 0);
		expect_refused("owned by uid 65534");
	} else {
		cr_assert_eq(chmod(path, 0644), 0);
		expect_refused("wider than 0600");
	}
	cr_assert_eq(chmod(path, 0644), 0);
	expect_refused("your own");
	/* Advice that works: --allow-foreign only for the commands that take
	 * it (reap writes: it would refuse the option). */
	cr_assert_eq(CTL(&r, "list"), 1);
	cr_expect(strstr(r.err, "--allow-foreign"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "reap"), 1);
	cr_expect(h_one_line(r.err) && !strstr(r.err, "--allow-foreign"), "%s", r.err);
	h_free(&r);
}

/* Give the segment away as another user would own it: file and header
 * (root only), else only widen its mode (refused just the same). Returns the
 * message a plain attach gives. */
static const char *make_foreign(void)
{
	const char *path = h_fmt("/dev/shm/sockmem-%s", h_ns());
	uint32_t uid = 65534;
	int fd;

	if (geteuid() != 0) {
		cr_assert_eq(chmod(path, 0644), 0);
		return "wider than 0600";
	}
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(pwrite(fd, &uid, sizeof(uid), offsetof(struct sockmem_header, owner_uid)),
		     (ssize_t)sizeof(uid));
	cr_assert_eq(fchown(fd, uid, uid), 0);
	close(fd);
	return "owned by uid 65534";
}

/* --allow-foreign (threat model G8): reading commands look at another
 * user's segment, read-only; writing commands refuse the option. */
Test(cli, allow_foreign_reads_only)
{
	const char *const *reads[] = {
		(const char *const[]){"--allow-foreign", "list", NULL},
		(const char *const[]){"--allow-foreign", "stat", "g", "--json", NULL},
		(const char *const[]){"--allow-foreign", "stat", "--prometheus", NULL},
		(const char *const[]){"--allow-foreign", "watch", "--count", "1", NULL},
		(const char *const[]){"--allow-foreign", "traces", "g", NULL},
	};
	const char *const *writes[] = {
		(const char *const[]){"--allow-foreign", "set", "g", "max=2M", NULL},
		(const char *const[]){"--allow-foreign", "rm", "g", NULL},
		(const char *const[]){"--allow-foreign", "reset-peak", "g", NULL},
		(const char *const[]){"--allow-foreign", "reap", NULL},
	};
	const char *why;
	struct h_out r;
	struct stat st0, st1;

	cr_assert_eq(CTL(&r, "set", "g", "max=1M"), 0, "%s", r.err);
	h_free(&r);
	why = make_foreign();
	cr_assert_eq(CTL(&r, "list"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, why) && strstr(r.err, "--allow-foreign"),
		  "the refusal should say how to read it anyway: %s", r.err);
	h_free(&r);
	cr_assert_eq(stat(h_fmt("/dev/shm/sockmem-%s", h_ns()), &st0), 0);
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		cr_assert_eq(h_ctl(&r, reads[i]), 0, "%s: %d %s", reads[i][1], r.status, r.err);
		cr_assert(strstr(r.out, "g"), "%s: %s", reads[i][1], r.out);
		h_free(&r);
	}
	cr_assert_eq(CTL(&r, "--allow-foreign", "stat", "g", "--json"), 0);
	cr_assert(strstr(r.out, "\"max\":1048576"), "%s", r.out);
	h_free(&r);
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		cr_assert_eq(h_ctl(&r, writes[i]), 2, "%s: %d %s", writes[i][1], r.status, r.err);
		cr_assert(h_one_line(r.err) && strstr(r.err, "--allow-foreign is only for") &&
				  strstr(r.err, h_fmt("'%s' changes the segment", writes[i][1])),
			  "%s", r.err);
		h_free(&r);
	}
	/* Nothing wrote to it: same size, same modification time. */
	cr_assert_eq(stat(h_fmt("/dev/shm/sockmem-%s", h_ns()), &st1), 0);
	cr_expect(st0.st_size == st1.st_size && st0.st_mtim.tv_sec == st1.st_mtim.tv_sec &&
			  st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec,
		  "the foreign segment was modified");
	/* Still validated: a header that disagrees with the file's owner. */
	if (geteuid() == 0) {
		uint32_t uid = 0;
		int fd = open(h_fmt("/dev/shm/sockmem-%s", h_ns()), O_RDWR);

		cr_assert(fd >= 0);
		cr_assert_eq(
			pwrite(fd, &uid, sizeof(uid), offsetof(struct sockmem_header, owner_uid)),
			(ssize_t)sizeof(uid));
		close(fd);
		cr_assert_eq(CTL(&r, "--allow-foreign", "list"), 1);
		cr_assert(h_one_line(r.err) && strstr(r.err, "header says owner uid 0"), "%s",
			  r.err);
		h_free(&r);
	}
	cr_assert_eq(CTL(&r, "--help"), 0);
	cr_assert(strstr(r.out, "--allow-foreign"), "not in --help");
	h_free(&r);
}

/* The default namespace follows the effective uid, as in the core (threat
 * model G7): with real uid 65534 and effective uid 0, sockmemctl names u0
 * (read-only: stat of a group that does not exist changes nothing). */
Test(cli, default_namespace_is_the_effective_uid)
{
	static const char *const env[] = {"SOCKMEM_NAMESPACE=", NULL};
	char want[64];
	struct h_out r;

	if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0)
		cr_skip_test("needs root and setpriv(1) to run with real uid != effective uid");
	h_env(env);
	h_run(&r,
	      (const char *const[]){"/usr/bin/setpriv", "--ruid", "65534", "--euid", "0",
				    h_build("sockmemctl"), "stat", "no-such-group-g7", NULL},
	      NULL);
	snprintf(want, sizeof(want), "namespace 'u%u'", (unsigned)geteuid());
	cr_assert_eq(r.status, 1, "%d %s", r.status, r.err);
	cr_assert(h_one_line(r.err) && strstr(r.err, want) && !strstr(r.err, "u65534"), "%s",
		  r.err);
	h_free(&r);
}

/* traces itself is tested in tests/traces (H9). */
Test(cli, traces_without_a_segment)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "traces", "g"), 1);
	cr_assert(h_one_line(r.err) && !strstr(r.err, "not implemented"), "%s", r.err);
	h_free(&r);
}
