/*
 * Harness of the sockmemctl tests (see ctl_harness.h).
 */
#include "ctl_harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sockmem/sockmem.h"

extern char **environ;

static char ns[64];
static char tmpdir[512];
static const char *const *extra_env;

static const char *ring(void)
{
	static char buf[32][4096];
	static int next;

	return buf[next++ % 32];
}

const char *h_fmt(const char *fmt, ...)
{
	char *b = (char *)ring();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, 4096, fmt, ap);
	va_end(ap);
	return b;
}

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

const char *h_build(const char *name)
{
	return h_fmt("%s/%s", env_or("SOCKMEM_BUILD_DIR", CTL_BUILD_DIR), name);
}

const char *h_src(const char *name)
{
	return h_fmt("%s/%s", CTL_SRC_DIR, name);
}

const char *h_ns(void)
{
	return ns;
}

const char *h_tmpdir(void)
{
	return tmpdir;
}

void h_env(const char *const *extra)
{
	extra_env = extra;
}

void h_setup(void)
{
	const char *name = criterion_current_test->name;

	/* Unique per test and per run: the test name, shortened, plus pid. */
	snprintf(ns, sizeof(ns), "t-%.40s-%d", name, (int)getpid());
	for (char *p = ns; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    *p))
			*p = '-';
	sockmem_unlink(ns);
	snprintf(tmpdir, sizeof(tmpdir), "%s/ctl-%s-XXXXXX",
		 env_or("SOCKMEM_HELPER_DIR", CTL_BUILD_DIR "/tests"), ns);
	cr_assert(mkdtemp(tmpdir), "mkdtemp %s: %s", tmpdir, strerror(errno));
	extra_env = NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

void h_teardown(void)
{
	sockmem_unlink(ns);
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool overridden(const char *entry)
{
	static const char *const ours[] = {"SOCKMEM_NAMESPACE=", "LD_PRELOAD=", NULL};

	for (const char *const *o = ours; *o; o++)
		if (strncmp(entry, *o, strlen(*o)) == 0)
			return true;
	for (const char *const *e = extra_env; e && *e; e++) {
		size_t n = strcspn(*e, "=") + 1;

		if (strncmp(entry, *e, n) == 0)
			return true;
	}
	return false;
}

static bool extra_has(const char *prefix)
{
	for (const char *const *e = extra_env; e && *e; e++)
		if (strncmp(*e, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* Our environment minus SOCKMEM_NAMESPACE/LD_PRELOAD, plus the test's. */
static char **child_env(void)
{
	size_t n = 0, j = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 32, sizeof(*env));
	cr_assert(env);
	for (size_t i = 0; i < n; i++)
		if (!overridden(environ[i]))
			env[j++] = environ[i];
	if (!extra_has("SOCKMEM_NAMESPACE="))
		env[j++] = (char *)h_fmt("SOCKMEM_NAMESPACE=%s", ns);
	for (const char *const *e = extra_env; e && *e && j < n + 31; e++)
		env[j++] = (char *)*e;
	return env;
}

static int status_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int h_wait(pid_t pid, int timeout_ms)
{
	struct timespec ts = {0, 5 * 1000000L};
	int st;

	for (int waited = 0; waited < timeout_ms; waited += 5) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return status_of(st);
		if (r < 0)
			return -1;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static char *slurp(int fd, size_t *len)
{
	off_t n = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)(n > 0 ? n : 0) + 1);

	cr_assert(buf);
	*len = n > 0 && pread(fd, buf, (size_t)n, 0) == n ? (size_t)n : 0;
	buf[*len] = '\0';
	close(fd);
	return buf;
}

int h_run(struct h_out *r, const char *const argv[], const char *input)
{
	int in = memfd_create("stdin", 0), out = memfd_create("stdout", 0),
	    err = memfd_create("stderr", 0);
	posix_spawn_file_actions_t fa;
	char **env = child_env();
	pid_t pid;
	int rc;

	cr_assert(in >= 0 && out >= 0 && err >= 0);
	if (input)
		cr_assert(write(in, input, strlen(input)) == (ssize_t)strlen(input));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, err, 2);
	lseek(in, 0, SEEK_SET);
	rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	cr_assert(rc == 0, "spawn %s: %s", argv[0], strerror(rc));
	r->status = h_wait(pid, H_TIMEOUT_MS);
	close(in);
	r->out = slurp(out, &r->outlen);
	r->err = slurp(err, &r->errlen);
	cr_assert(r->status != -1, "%s timed out", argv[0]);
	return r->status;
}

int h_ctl(struct h_out *r, const char *const args[])
{
	const char *argv[64] = {h_build("sockmemctl")};
	size_t n = 1;

	for (; args[n - 1] && n < 63; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	return h_run(r, argv, NULL);
}

void h_free(struct h_out *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

pid_t h_start(const char *const argv[], const char *ready)
{
	posix_spawn_file_actions_t fa;
	char **env = child_env(), line[256] = "";
	int fds[2], rc;
	size_t len = 0;
	pid_t pid;

	cr_assert(pipe2(fds, O_CLOEXEC) == 0);
	posix_spawn_file_actions_init(&fa);
	if (ready) {
		posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	} else {
		/* Nobody reads it: a server that logs must not die of EPIPE. */
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	}
	rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	close(fds[1]);
	cr_assert(rc == 0, "spawn %s: %s", argv[0], strerror(rc));
	while (ready && len < sizeof(line) - 1 && !strchr(line, '\n')) {
		struct pollfd p = {fds[0], POLLIN, 0};
		ssize_t n;

		cr_assert(poll(&p, 1, H_TIMEOUT_MS) == 1, "%s: no '%s' line", argv[0], ready);
		n = read(fds[0], line + len, sizeof(line) - 1 - len);
		cr_assert(n > 0, "%s exited before '%s'", argv[0], ready);
		len += (size_t)n;
		line[len] = '\0';
	}
	close(fds[0]);
	cr_assert(!ready || strncmp(line, ready, strlen(ready)) == 0, "%s said '%s'", argv[0],
		  line);
	return pid;
}

bool h_one_line(const char *s)
{
	size_t n = strlen(s);

	return n > 1 && s[n - 1] == '\n' && !memchr(s, '\n', n - 1);
}
