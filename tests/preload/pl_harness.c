#include "pl_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PL_BUILD_DIR_DEFAULT
#define PL_BUILD_DIR_DEFAULT "."
#endif
#ifndef PL_ASAN_LIB_DEFAULT
#define PL_ASAN_LIB_DEFAULT ""
#endif

static const char *build_dir(void)
{
	const char *d = getenv("SOCKMEM_BUILD_DIR");

	return d && *d ? d : PL_BUILD_DIR_DEFAULT;
}

const char *pl_lib(void)
{
	static char path[1024];

	snprintf(path, sizeof(path), "%s/libsockmem.so", build_dir());
	return path;
}

void pl_helper_path(char *buf, size_t len, const char *prog)
{
	const char *d = getenv("SOCKMEM_HELPER_DIR");

	if (d && *d)
		snprintf(buf, len, "%s/%s", d, prog);
	else
		snprintf(buf, len, "%s/tests/%s", build_dir(), prog);
}

/* The namespaces this test process named: removed when it exits, also after a
 * failed assertion (Criterion runs atexit handlers then), so a failing test
 * leaves no segment behind. Only by the process that named them: a forked
 * child's exit must not remove its parent's segment. */
static char owned[8][SOCKMEM_NS_MAX];
static int nowned;
static pid_t owner;

static void unlink_owned(void)
{
	if (getpid() != owner)
		return;
	for (int i = 0; i < nowned; i++)
		sockmem_unlink(owned[i]);
}

void pl_ns(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "t-%s-%d", name, (int)getpid());
	if (owner != getpid()) {
		owner = getpid();
		nowned = 0;
		atexit(unlink_owned);
	}
	if (nowned < (int)(sizeof(owned) / sizeof(owned[0])))
		snprintf(owned[nowned++], sizeof(owned[0]), "%s", buf);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pl_spawn(struct pl_child *c, const char *prog, const char *const *args, const struct pl_opts *o)
{
	static char env_store[16][1200];
	char *envp[24], *argv[16], path[1024];
	const char *asan = getenv("SOCKMEM_ASAN_LIB");
	int n = 0, in[2], out[2], err[2], rc;
	posix_spawn_file_actions_t fa;

	if (!asan || !*asan)
		asan = PL_ASAN_LIB_DEFAULT;
	pl_helper_path(path, sizeof(path), prog);
	snprintf(env_store[n], sizeof(env_store[0]), "PATH=%s",
		 getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	envp[n] = env_store[n], n++;
	if (o->preload) {
		if (*asan)
			snprintf(env_store[n], sizeof(env_store[0]), "LD_PRELOAD=%s:%s", asan,
				 pl_lib());
		else
			snprintf(env_store[n], sizeof(env_store[0]), "LD_PRELOAD=%s", pl_lib());
		envp[n] = env_store[n], n++;
	}
	snprintf(env_store[n], sizeof(env_store[0]), "ASAN_OPTIONS=detect_leaks=0");
	envp[n] = env_store[n], n++;
	if (o->ns) {
		snprintf(env_store[n], sizeof(env_store[0]), "SOCKMEM_NAMESPACE=%s", o->ns);
		envp[n] = env_store[n], n++;
	}
	if (o->group) {
		snprintf(env_store[n], sizeof(env_store[0]), "SOCKMEM_GROUP=%s", o->group);
		envp[n] = env_store[n], n++;
	}
	for (int i = 0; i < 8 && o->extra[i]; i++)
		envp[n++] = (char *)o->extra[i];
	envp[n] = NULL;
	argv[0] = path;
	for (int i = 0; args && args[i] && i < 14; i++)
		argv[i + 1] = (char *)args[i], argv[i + 2] = NULL;
	if (!args || !args[0])
		argv[1] = NULL;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	rc = posix_spawn(&c->pid, path, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]), close(out[1]), close(err[1]);
	c->in = in[1], c->out = out[0], c->err = err[0], c->len = 0;
	return rc == 0 ? 0 : -1;
}

int pl_line(struct pl_child *c, char *line, size_t len, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd p = {.fd = c->out, .events = POLLIN};
		uint64_t t = now_ms();
		ssize_t r;

		if (nl) {
			size_t l = (size_t)(nl - c->buf);

			snprintf(line, len, "%.*s", (int)l, c->buf);
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return 0;
		}
		if (t >= end || poll(&p, 1, (int)(end - t)) <= 0)
			return -1;
		r = read(c->out, c->buf + c->len, sizeof(c->buf) - c->len - 1);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

int pl_expect(struct pl_child *c, const char *word, char *rest, size_t len)
{
	char line[1024];
	size_t n = strlen(word);

	if (pl_line(c, line, sizeof(line), 10000) != 0) {
		fprintf(stderr, "helper: no '%s' line (timeout or exit)\n", word);
		return -1;
	}
	if (strncmp(line, word, n) != 0 || (line[n] != '\0' && line[n] != ' ')) {
		fprintf(stderr, "helper: expected '%s', got '%s'\n", word, line);
		return -1;
	}
	if (rest)
		snprintf(rest, len, "%s", line[n] ? line + n + 1 : "");
	return 0;
}

void pl_go(struct pl_child *c)
{
	ssize_t r = write(c->in, "g", 1);

	(void)r;
}

int pl_wait(struct pl_child *c, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int status;

	close(c->in);
	c->in = -1;
	while (now_ms() < end) {
		pid_t p = waitpid(c->pid, &status, WNOHANG);

		if (p == c->pid)
			return status;
		usleep(5000);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
	return -1;
}

ssize_t pl_stderr(struct pl_child *c, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < len && (r = read(c->err, buf + n, len - n - 1)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	return (ssize_t)n;
}

int pl_stat(const char *ns, const char *group, struct sockmem_group_stat *st)
{
	struct sockmem_open_opts o = {.ns = ns, .readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc = sockmem_open(&o, &seg, err, sizeof(err));

	if (rc != 0)
		return rc;
	rc = sockmem_group_lookup(seg, group, &idx);
	if (rc == 0)
		rc = sockmem_group_stat(seg, idx, st);
	sockmem_close(seg);
	return rc;
}

bool pl_stat_until(const char *ns, const char *group, struct sockmem_group_stat *st,
		   bool (*pred)(const struct sockmem_group_stat *, int64_t), int64_t arg,
		   int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	do {
		if (pl_stat(ns, group, st) == 0 && pred(st, arg))
			return true;
		usleep(10000);
	} while (now_ms() < end);
	return false;
}

bool pl_segment_exists(const char *ns)
{
	char path[256];

	snprintf(path, sizeof(path), "/dev/shm/sockmem-%s", ns);
	return access(path, F_OK) == 0;
}
