/*
 * sockmemctl run: the command's environment, the static/setuid warnings, exit
 * statuses, and a real program (curl against python's http.server on
 * loopback) accounted in the group through libsockmem.so.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl_harness.h"

TestSuite(run, .init = h_setup, .fini = h_teardown, .timeout = 90);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

/* A harmless library to preload where the shim is not the point. */
static const char *harmless_lib(void)
{
	static const char *const libs[] = {"/lib/x86_64-linux-gnu/libm.so.6",
					   "/usr/lib/x86_64-linux-gnu/libm.so.6",
					   "/lib64/libm.so.6", "/lib/libm.so.6"};

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++)
		if (access(libs[i], R_OK) == 0)
			return libs[i];
	cr_assert_fail("no libm.so.6 found");
	return NULL;
}

/* SOCKMEM_LIB and LD_PRELOAD for sockmemctl. Under the sanitizer build the
 * ASan runtime must stay first in any LD_PRELOAD of the instrumented
 * sockmemctl, and leak checking is left to the other tests (the commands run
 * here are not instrumented). */
static void use_lib(const char *lib, const char *ld_preload)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	static const char *env[4];

	env[0] = h_fmt("SOCKMEM_LIB=%s", lib);
	env[1] = "ASAN_OPTIONS=detect_leaks=0";
	if (asan && *asan)
		env[2] = h_fmt("LD_PRELOAD=%s%s%s", asan, ld_preload ? ":" : "",
			       ld_preload ? ld_preload : "");
	else
		env[2] = ld_preload ? h_fmt("LD_PRELOAD=%s", ld_preload) : NULL;
	env[3] = NULL;
	h_env(env);
}

/* What run puts before an LD_PRELOAD it was given: the ASan runtime. */
static const char *asan_prefix(void)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");

	return asan && *asan ? h_fmt("%s:", asan) : "";
}

Test(run, dry_run_shows_the_environment)
{
	const char *lib = harmless_lib();
	char real[4096];
	struct h_out r;

	cr_assert(realpath(lib, real));
	use_lib(lib, lib); /* an LD_PRELOAD that holds our library already */
	cr_assert_eq(CTL(&r, "run", "--dry-run", "--", "true", "x"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "group: run-"), "default group: %s", r.out);
	cr_assert(strstr(r.out, h_fmt("\nLD_PRELOAD=%s%s\n", asan_prefix(), real)),
		  "not deduplicated:\n%s", r.out);
	cr_assert(strstr(r.out, "\nSOCKMEM_GROUP=run-"), "%s", r.out);
	cr_assert(strstr(r.out, "command: /usr/bin/true x\n") ||
			  strstr(r.out, "command: /bin/true x\n"),
		  "PATH not searched: %s", r.out);
	cr_assert_eq(r.errlen, 0, "a dynamic binary got a warning: %s", r.err);
	h_free(&r);
	/* The existing LD_PRELOAD stays, after ours. */
	use_lib("/dev/null", lib);
	cr_assert_eq(CTL(&r, "--namespace", h_ns(), "run", "-g", "t/x", "--max", "1M", "--dry-run",
			 "--", "true"),
		     0, "%s", r.err);
	cr_assert(strstr(r.out, h_fmt("LD_PRELOAD=%s/dev/null:%s\n", asan_prefix(), lib)), "%s",
		  r.out);
	cr_assert(strstr(r.out, "SOCKMEM_GROUP=t/x\n"), "%s", r.out);
	cr_assert(strstr(r.out, h_fmt("SOCKMEM_NAMESPACE=%s\n", h_ns())), "%s", r.out);
	h_free(&r);
	/* Sanitizer runtimes stay first, as ASan requires. */
	use_lib("/dev/null", "/x/libasan.so.8:/y/libz.so");
	cr_assert_eq(CTL(&r, "run", "--dry-run", "--", "true"), 0, "%s", r.err);
	cr_assert(strstr(r.out, h_fmt("\nLD_PRELOAD=%s/x/libasan.so.8:/dev/null:/y/libz.so\n",
				      asan_prefix())),
		  "%s", r.out);
	h_free(&r);
	/* --dry-run changes nothing: no segment was created. */
	cr_assert_eq(CTL(&r, "list"), 1);
	h_free(&r);
}

Test(run, environment_of_the_command_and_exit_status)
{
	const char *lib = harmless_lib();
	char real[4096];
	struct h_out r;

	cr_assert(realpath(lib, real));
	use_lib(lib, NULL);
	cr_assert_eq(CTL(&r, "run", "-g", "e/f", "--max", "2M", "--low", "1K", "--", "env"), 0,
		     "%s", r.err);
	cr_assert(strstr(r.out, h_fmt("\nLD_PRELOAD=%s%s\n", asan_prefix(), real)), "%s", r.out);
	cr_assert(strstr(r.out, "\nSOCKMEM_GROUP=e/f\n"), "%s", r.out);
	h_free(&r);
	/* The group exists with the limits. */
	cr_assert_eq(CTL(&r, "stat", "e/f"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "(2097152 bytes)") && strstr(r.out, "(1024 bytes)"), "%s", r.out);
	h_free(&r);
	cr_assert_eq(CTL(&r, "run", "-g", "e/f", "--", "/bin/sh", "-c", "exit 7"), 7);
	h_free(&r);
	cr_assert_eq(CTL(&r, "run", "--", "no-such-command-xyz"), 127);
	cr_assert(h_one_line(r.err) && strstr(r.err, "'no-such-command-xyz' not found in PATH"),
		  "%s", r.err);
	h_free(&r);
	/* A file that cannot be executed: 126, one line, and the group made
	 * for it is gone again (it used up a table entry per attempt). */
	const char *plain = h_fmt("%s/not-executable", h_tmpdir());
	FILE *f = fopen(plain, "w");

	cr_assert(f && fputs("data\n", f) >= 0 && fclose(f) == 0 && chmod(plain, 0644) == 0);
	cr_assert_eq(CTL(&r, "run", "-g", "e/noexec/g", "--", plain), 126, "%s", r.err);
	cr_assert(h_one_line(r.err) && strstr(r.err, "cannot execute"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "stat", "e/noexec"), 1, "a group outlived the failed run: %s", r.out);
	h_free(&r);
	cr_assert_eq(CTL(&r, "stat", "e"), 0, "e was there before: %s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "run", "-g", "e/f", "--high", "3M", "--", "true"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "refused"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "run", "--max", "1M", "--high", "2M", "--", "true"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "refused: high 2M is above max 1M"), "%s",
		  r.err);
	h_free(&r);
	use_lib("/nonexistent/libsockmem.so", NULL);
	cr_assert_eq(CTL(&r, "run", "--", "true"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "preload library") &&
			  strstr(r.err, "SOCKMEM_LIB"),
		  "%s", r.err);
	h_free(&r);
}

/* Inherited SOCKMEM_* variables the command's shim would refuse (a bad value,
 * or limits that break low <= high <= max on top of run's): the shim would
 * run the command unaccounted, so run refuses first, naming the variable,
 * and creates nothing. Compatible ones pass. */
Test(run, inherited_limits_the_shim_would_refuse)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	const char *env[5] = {h_fmt("SOCKMEM_LIB=%s", harmless_lib()),
			      "ASAN_OPTIONS=detect_leaks=0"};
	const char **var = &env[2]; /* the inherited variable under test */
	struct h_out r;

	if (asan && *asan)
		*var++ = h_fmt("LD_PRELOAD=%s", asan);
	*var = "SOCKMEM_HIGH=64M";
	h_env(env);
	cr_assert_eq(CTL(&r, "run", "-g", "inh/a", "--max", "16M", "--", "true"), 1, "%s", r.out);
	cr_assert(h_one_line(r.err) && strstr(r.err, "high") && strstr(r.err, "SOCKMEM_HIGH") &&
			  strstr(r.err, "unaccounted"),
		  "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "stat", "inh"), 1, "the refused run created its group: %s", r.out);
	h_free(&r);
	/* The same against limits the group already has. */
	cr_assert_eq(CTL(&r, "set", "inh/b", "max=16M"), 0, "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "run", "-g", "inh/b", "--", "true"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "SOCKMEM_HIGH"), "%s", r.err);
	h_free(&r);
	/* Given here, it wins: the inherited one is dropped. */
	cr_assert_eq(CTL(&r, "run", "-g", "inh/b", "--high", "8M", "--", "true"), 0, "%s", r.err);
	h_free(&r);
	*var = "SOCKMEM_HIGH=8M";
	cr_assert_eq(CTL(&r, "run", "-g", "inh/c", "--max", "16M", "--", "true"), 0, "%s", r.err);
	h_free(&r);
	*var = "SOCKMEM_BATCH=lots";
	cr_assert_eq(CTL(&r, "run", "-g", "inh/d", "--", "true"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "SOCKMEM_BATCH") && strstr(r.err, "lots"),
		  "%s", r.err);
	h_free(&r);
}

/* A name found along PATH but not executable (as env(1) and the shells
 * judge it: execvp() goes on along PATH and reports EACCES at the end): 126
 * and "Permission denied", not 127 "not found"; an executable one later in
 * PATH still wins. */
Test(run, path_entry_not_executable_is_126)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	const char *dir = h_tmpdir(), *later = h_fmt("%s/later", dir);
	const char *name = "sockmem-noexec-xyz", *file = h_fmt("%s/%s", dir, name);
	static const char *env[5];
	struct h_out r;
	FILE *f = fopen(file, "w");

	cr_assert(f && fputs("#!/bin/sh\nexit 3\n", f) >= 0 && fclose(f) == 0);
	cr_assert(chmod(file, 0644) == 0);
	env[0] = h_fmt("SOCKMEM_LIB=%s", harmless_lib());
	env[1] = "ASAN_OPTIONS=detect_leaks=0";
	env[2] = h_fmt("PATH=%s:/usr/bin:/bin", dir);
	env[3] = asan && *asan ? h_fmt("LD_PRELOAD=%s", asan) : NULL;
	env[4] = NULL;
	h_env(env);
	cr_expect_eq(CTL(&r, "run", "-g", "p", "--", name), 126, "%s", r.err);
	cr_expect(h_one_line(r.err) && strstr(r.err, file) && strstr(r.err, "Permission denied"),
		  "%s", r.err);
	h_free(&r);
	cr_expect_eq(CTL(&r, "stat", "p"), 1, "a group outlived the failed run: %s", r.out);
	h_free(&r);
	/* An executable one further along PATH is the command. */
	cr_assert(mkdir(later, 0755) == 0);
	f = fopen(h_fmt("%s/%s", later, name), "w");
	cr_assert(f && fputs("#!/bin/sh\nexit 3\n", f) >= 0 && fclose(f) == 0);
	cr_assert(chmod(h_fmt("%s/%s", later, name), 0755) == 0);
	env[2] = h_fmt("PATH=%s:%s:/usr/bin:/bin", dir, later);
	cr_expect_eq(CTL(&r, "run", "-g", "p", "--", name), 3, "%s", r.err);
	h_free(&r);
}

static void expect_warning(const char *path, const char *needle)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "run", "--dry-run", "--", path), 0, "%s", r.err);
	cr_assert(h_one_line(r.err), "one warning line wanted: '%s'", r.err);
	cr_assert(strstr(r.err, "warning: ") && strstr(r.err, needle) &&
			  strstr(r.err, "not be accounted"),
		  "'%s' lacks '%s'", r.err, needle);
	h_free(&r);
}

Test(run, warns_for_static_binaries)
{
	const char *st = h_build("tests/ctl-static-helper");
	const char *script = h_fmt("%s/script", h_tmpdir());
	struct h_out r;
	FILE *f;

	use_lib(harmless_lib(), NULL);
	/* The helper really is static and true(1) is not (independent check
	 * with binutils' readelf, which build-essential brings). */
	cr_assert_eq(h_run(&r, (const char *const[]){"/usr/bin/readelf", "-lW", st, NULL}, NULL),
		     0);
	cr_assert(strstr(r.out, "LOAD") && !strstr(r.out, "INTERP"), "%s", r.out);
	h_free(&r);
	cr_assert_eq(h_run(&r, (const char *const[]){"/usr/bin/readelf", "-lW", "/bin/true", NULL},
			   NULL),
		     0);
	cr_assert(strstr(r.out, "INTERP"), "%s", r.out);
	h_free(&r);
	expect_warning(st, "is a static binary (no ELF interpreter)");
	/* A script whose interpreter is static is just as unreachable. */
	f = fopen(script, "w");
	cr_assert(f);
	fprintf(f, "#!%s\n", st);
	fclose(f);
	cr_assert_eq(chmod(script, 0755), 0);
	expect_warning(script, st);
}

/* A copy of true(1) with the given owner and mode in the test's directory. */
static const char *special_copy(const char *name, uid_t uid, gid_t gid, mode_t mode)
{
	const char *path = h_fmt("%s/%s", h_tmpdir(), name);
	struct h_out r;

	cr_assert_eq(h_run(&r, (const char *const[]){"/bin/cp", "/bin/true", path, NULL}, NULL), 0);
	h_free(&r);
	cr_assert_eq(chown(path, uid, gid), 0);
	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

Test(run, warns_for_setuid_and_setgid_programs)
{
	struct h_out r;

	use_lib(harmless_lib(), NULL);
	if (geteuid() != 0) {
		/* Not root: passwd is setuid to someone else (root). */
		expect_warning("/usr/bin/passwd", "is a setuid program");
		return;
	}
	expect_warning(special_copy("suid", 65534, 0, 04755), "is a setuid program");
	expect_warning(special_copy("sgid", 0, 65534, 02755), "is a setgid program");
	/* Setuid to ourselves changes nothing: no warning. */
	cr_assert_eq(CTL(&r, "run", "--dry-run", "--", special_copy("self", 0, 0, 04755)), 0);
	cr_assert_eq(r.errlen, 0, "%s", r.err);
	h_free(&r);
}

/* The kernel ignores setuid/setgid bits (and file capabilities) on a "#!"
 * script: its interpreter runs with our credentials, the loader honours
 * LD_PRELOAD, and the script is accounted: no warning. */
Test(run, no_warning_for_setuid_scripts)
{
	const char *path = h_fmt("%s/suid-script", h_tmpdir());
	struct h_out r;
	FILE *f;

	if (geteuid() != 0)
		cr_skip_test("needs root to give a script to another owner");
	use_lib(harmless_lib(), NULL);
	f = fopen(path, "w");
	cr_assert(f && fputs("#!/bin/sh\nexit 0\n", f) >= 0 && fclose(f) == 0);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	cr_assert_eq(chmod(path, 06755), 0);
	cr_assert_eq(CTL(&r, "run", "--dry-run", "--", path), 0, "%s", r.err);
	cr_expect_eq(r.errlen, 0, "a warning for a script the preload reaches: %s", r.err);
	h_free(&r);
}

/* ---- a real program in the group ------------------------------------------ */

/* The command joins the group through the shim: a shell run in it sees
 * itself among the group's members. */
Test(run, the_command_is_a_member_of_the_group)
{
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	const char *script = h_fmt("echo $$; %s stat member --json; true", h_build("sockmemctl"));
	static const char *env[3];
	struct h_out r, j;
	char *json;

	cr_assert_eq(access(h_build("libsockmem.so"), R_OK), 0, "libsockmem.so is not built");
	env[0] = asan && *asan ? h_fmt("LD_PRELOAD=%s", asan) : "SOCKMEM_TEST_NOTHING=1";
	env[1] = "ASAN_OPTIONS=detect_leaks=0";
	h_env(env);
	cr_assert_eq(CTL(&r, "run", "-g", "member", "--", "/bin/sh", "-c", script), 0, "%s", r.err);
	json = strchr(r.out, '\n');
	cr_assert(json, "%s", r.out);
	*json++ = '\0';
	h_run(&j,
	      (const char *const[]){"/usr/bin/python3", h_src("check_json.py"), "group=\"member\"",
				    "processes>0", h_fmt("pids~%d", atoi(r.out)), NULL},
	      json);
	cr_assert_eq(j.status, 0, "%s\nshell %s: %s", j.err, r.out, json);
	h_free(&j);
	h_free(&r);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void wait_listening(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timespec ts = {0, 50 * 1000000L};

	for (int i = 0; i < 200; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

		rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		if (rc == 0)
			return;
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("http.server did not listen on port %d", port);
}

static void make_file(const char *path, size_t bytes)
{
	FILE *f = fopen(path, "w");

	cr_assert(f);
	for (size_t i = 0; i < bytes; i++)
		fputc('a' + (int)(i % 26), f);
	fclose(f);
}

/* Download `url` with a real client run in group "curl" (64M max). */
static void fetch_in_group(struct h_out *r, bool asan, const char *url)
{
	if (asan) {
		/* curl (not sockmem) deadlocks at start with the ASan runtime
		 * preloaded (a known ASan interceptor problem with uninstrumented
		 * programs); python's urllib does not, so it is the client there. */
		cr_assert_eq(CTL(r, "run", "-g", "curl", "--max", "64M", "--", "/usr/bin/python3",
				 "-c",
				 "import sys, urllib.request as u; "
				 "print(len(u.urlopen(sys.argv[1]).read()), end='')",
				 url),
			     0, "python3: %s", r->err);
	} else {
		cr_assert_eq(CTL(r, "run", "-g", "curl", "--max", "64M", "--", "curl", "-sS", "-o",
				 "/dev/null", "-w", "%{size_download}", url),
			     0, "curl: %s", r->err);
	}
}

Test(run, curl_is_accounted_in_the_group)
{
	const char *shim = h_build("libsockmem.so");
	static const char *env[4];
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	int port = free_port();
	struct h_out r, j;
	pid_t server;

	cr_assert_eq(access(shim, R_OK), 0, "%s is not built", shim);
	make_file(h_fmt("%s/file", h_tmpdir()), 4 << 20);
	server = h_start((const char *const[]){"/usr/bin/python3", "-m", "http.server",
					       h_fmt("%d", port), "--bind", "127.0.0.1",
					       "--directory", h_tmpdir(), NULL},
			 NULL);
	wait_listening(port);
	/* Under the sanitizer build the shim needs the ASan runtime first. */
	env[0] = asan && *asan ? h_fmt("LD_PRELOAD=%s", asan) : "SOCKMEM_TEST_NOTHING=1";
	env[1] = "ASAN_OPTIONS=detect_leaks=0";
	env[2] = NULL;
	h_env(env);
	fetch_in_group(&r, asan && *asan, h_fmt("http://127.0.0.1:%d/file", port));
	cr_assert_str_eq(r.out, "4194304", "curl downloaded %s bytes", r.out);
	h_free(&r);
	kill(server, SIGTERM);
	h_wait(server, 5000);
	cr_assert_eq(CTL(&r, "stat", "curl", "--json"), 0, "%s", r.err);
	/* curl's socket was charged while data sat in it, and all of it came
	 * back when curl exited. */
	h_run(&j,
	      (const char *const[]){"/usr/bin/python3", h_src("check_json.py"), "max=67108864",
				    "peak>0", "current=0", "processes=0", "sockets=0", NULL},
	      r.out);
	cr_assert_eq(j.status, 0, "%s\n%s", j.err, r.out);
	h_free(&j);
	h_free(&r);
}
