/*
 * Runner for Criterion test sources built against the TSan stand-in header
 * (tsan/criterion/criterion.h): every registered test runs in a forked
 * child, with the suite's and the test's init/fini, under a timeout.
 * Exit status: 0 when every test passed (or skipped), 1 otherwise. A
 * ThreadSanitizer report makes the child exit with TSan's exitcode (66),
 * which counts as a failure.
 *
 * Usage: prog [substring]   run only tests whose "suite/name" contains it.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

static struct crs_test *tests;
static int failed_here;

void crs_register(struct crs_test *t)
{
	t->next = tests;
	tests = t;
}

void crs_fail(bool fatal, const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: assertion failed: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed_here = 1;
	if (fatal)
		exit(1);
}

void crs_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "skipped: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(77);
}

void crs_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int run_one(struct crs_test *t)
{
	double timeout = t->timeout > 0 ? t->timeout : t->s->timeout > 0 ? t->s->timeout : 120;
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return 1;
	if (pid == 0) {
		alarm((unsigned)timeout + 1);
		if (t->s->init)
			t->s->init();
		if (t->init)
			t->init();
		t->fn();
		if (t->fini)
			t->fini();
		if (t->s->fini)
			t->s->fini();
		fflush(NULL);
		_exit(failed_here);
	}
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		fprintf(stderr, "[SKIP] %s::%s\n", t->suite, t->name);
		return 0;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
		return 0;
	}
	fprintf(stderr, "[FAIL] %s::%s: status %#x%s\n", t->suite, t->name, st,
		WIFEXITED(st) && WEXITSTATUS(st) == 66 ? " (ThreadSanitizer report)" : "");
	return 1;
}

int main(int argc, char **argv)
{
	int run = 0, failed = 0;

	for (struct crs_test *t = tests; t; t = t->next) {
		char full[256];

		snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
		if (t->disabled || t->s->disabled || (argc > 1 && !strstr(full, argv[1])))
			continue;
		run++;
		failed += run_one(t);
	}
	fprintf(stderr, "tsan: %d tests, %d failed\n", run, failed);
	return failed || run == 0 ? 1 : 0;
}
