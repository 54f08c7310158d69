#include "fh.h"

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

#include "internal.h"

#ifndef FH_BUILD_DIR_DEFAULT
#define FH_BUILD_DIR_DEFAULT "."
#endif
#ifndef FH_ASAN_LIB_DEFAULT
#define FH_ASAN_LIB_DEFAULT ""
#endif

extern char **environ;

uint64_t fh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *fh_build_dir(void)
{
	const char *d = getenv("SOCKMEM_BUILD_DIR");

	return d && *d ? d : FH_BUILD_DIR_DEFAULT;
}

void fh_helper_path(char *buf, size_t len, const char *prog)
{
	const char *d = getenv("SOCKMEM_HELPER_DIR");

	if (prog[0] == '/')
		snprintf(buf, len, "%s", prog);
	else if (d && *d)
		snprintf(buf, len, "%s/%s", d, prog);
	else
		snprintf(buf, len, "%s/tests/%s", fh_build_dir(), prog);
}

const char *fh_asan_lib(void)
{
	const char *a = getenv("SOCKMEM_ASAN_LIB");

	return a && *a ? a : FH_ASAN_LIB_DEFAULT;
}

void fh_default_preload(char *buf, size_t len)
{
	const char *asan = fh_asan_lib();

	snprintf(buf, len, "%s%s%s/libsockmem.so", asan, *asan ? ":" : "", fh_build_dir());
}

void fh_ns(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "t-f%s-%d", name, (int)getpid());
}

/* The envp: PATH, LD_PRELOAD, sanitizer options, SOCKMEM_*, extras. */
static void build_env(char store[][1200], char **envp, const struct fh_opts *o)
{
	int n = 0;

	snprintf(store[n], 1200, "PATH=%s", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	envp[n] = store[n], n++;
	if (!o->preload || o->preload[0]) {
		char pre[1100];

		if (o->preload)
			snprintf(pre, sizeof(pre), "%s", o->preload);
		else
			fh_default_preload(pre, sizeof(pre));
		snprintf(store[n], 1200, "LD_PRELOAD=%s", pre);
		envp[n] = store[n], n++;
	}
	/* The helpers' own leaks are not what these tests look for; the
	 * shim's would show up in valgrind/LSan runs of their own. */
	snprintf(store[n], 1200, "ASAN_OPTIONS=detect_leaks=0");
	envp[n] = store[n], n++;
	if (getenv("TSAN_OPTIONS")) {
		snprintf(store[n], 1200, "TSAN_OPTIONS=%s", getenv("TSAN_OPTIONS"));
		envp[n] = store[n], n++;
	}
	if (o->ns) {
		snprintf(store[n], 1200, "SOCKMEM_NAMESPACE=%s", o->ns);
		envp[n] = store[n], n++;
	}
	if (o->group) {
		snprintf(store[n], 1200, "SOCKMEM_GROUP=%s", o->group);
		envp[n] = store[n], n++;
	}
	for (int i = 0; i < 8 && o->extra[i]; i++) {
		snprintf(store[n], 1200, "%s", o->extra[i]);
		envp[n] = store[n], n++;
	}
	envp[n] = NULL;
}

int fh_spawn(struct fh_child *c, const char *prog, const char *const *args, const struct fh_opts *o)
{
	char store[FH_MAXENV][1200], *envp[FH_MAXENV + 1], *argv[32], path[1024];
	posix_spawn_file_actions_t fa;
	int out[2], in[2] = {-1, -1}, rc, n = 1;

	fh_helper_path(path, sizeof(path), prog);
	build_env(store, envp, o);
	argv[0] = path;
	for (int i = 0; args && args[i] && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if (pipe2(out, O_CLOEXEC))
		return -errno;
	if (o->stdin_pipe && pipe2(in, O_CLOEXEC)) {
		close(out[0]), close(out[1]);
		return -errno;
	}
	posix_spawn_file_actions_init(&fa);
	if (o->stdin_pipe)
		posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (o->quiet_stderr)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&c->pid, path, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (in[0] >= 0)
		close(in[0]);
	c->out = out[0];
	c->in = in[1];
	c->len = 0;
	if (rc != 0) {
		fh_close(c);
		c->pid = -1;
		return -rc;
	}
	return 0;
}

int fh_line(struct fh_child *c, char *line, size_t len, int timeout_ms)
{
	uint64_t end = fh_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd p = {.fd = c->out, .events = POLLIN};
		uint64_t t = fh_now_ms();
		ssize_t r;

		if (nl) {
			size_t l = (size_t)(nl - c->buf);

			snprintf(line, len, "%.*s", (int)l, c->buf);
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return 0;
		}
		if (c->out < 0 || t >= end || poll(&p, 1, (int)(end - t)) <= 0)
			return -1;
		r = read(c->out, c->buf + c->len, sizeof(c->buf) - c->len - 1);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

int fh_expect(struct fh_child *c, const char *word, char *rest, size_t len, int timeout_ms)
{
	uint64_t end = fh_now_ms() + (uint64_t)timeout_ms;
	size_t n = strlen(word);
	char line[1024];

	while (fh_now_ms() < end) {
		if (fh_line(c, line, sizeof(line), (int)(end - fh_now_ms())) != 0)
			break;
		if (strncmp(line, word, n) == 0 && (line[n] == '\0' || line[n] == ' ')) {
			if (rest)
				snprintf(rest, len, "%s", line[n] ? line + n + 1 : "");
			return 0;
		}
		fprintf(stderr, "[pid %d] %s\n", (int)c->pid, line);
	}
	fprintf(stderr, "[pid %d] no '%s' line (timeout or exit)\n", (int)c->pid, word);
	return -1;
}

int fh_wait(struct fh_child *c, int timeout_ms)
{
	uint64_t end = fh_now_ms() + (uint64_t)timeout_ms;
	int status;

	if (c->pid <= 0)
		return -1;
	for (;;) {
		pid_t p = waitpid(c->pid, &status, WNOHANG);

		if (p == c->pid) {
			c->pid = -1;
			return status;
		}
		if (fh_now_ms() >= end)
			break;
		usleep(2000);
	}
	fprintf(stderr, "[pid %d] did not exit within %d ms: killed\n", (int)c->pid, timeout_ms);
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
	c->pid = -1;
	return -1;
}

void fh_go(struct fh_child *c)
{
	if (c->in >= 0)
		(void)!write(c->in, "g", 1);
}

void fh_close(struct fh_child *c)
{
	if (c->out >= 0)
		close(c->out);
	if (c->in >= 0)
		close(c->in);
	c->out = -1;
	c->in = -1;
}

bool fh_stop(pid_t pid, int timeout_ms)
{
	uint64_t end = fh_now_ms() + (uint64_t)timeout_ms;
	int status;

	if (kill(pid, SIGSTOP) != 0)
		return false;
	/* The stop is reported to the parent once every thread has stopped. */
	while (fh_now_ms() < end) {
		pid_t p = waitpid(pid, &status, WNOHANG | WUNTRACED);

		if (p == pid && WIFSTOPPED(status))
			return true;
		if (p == pid) /* exited */
			return false;
		usleep(200);
	}
	return false;
}

void fh_cont(pid_t pid)
{
	kill(pid, SIGCONT);
}

sockmem_seg_t *fh_open(const char *ns)
{
	struct sockmem_open_opts o = {.ns = ns, .readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg = NULL;

	if (sockmem_open(&o, &seg, err, sizeof(err)) != 0)
		return NULL;
	return seg;
}

int fh_stat(sockmem_seg_t *seg, const char *group, struct sockmem_group_stat *st)
{
	uint32_t idx;
	int rc = sockmem_group_lookup(seg, group, &idx);

	return rc ? rc : sockmem_group_stat(seg, idx, st);
}

int64_t fh_usage(sockmem_seg_t *seg, const char *group)
{
	struct sockmem_group_stat st;

	return fh_stat(seg, group, &st) == 0 ? st.current : -1;
}

static bool pid_in(pid_t pid, const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

void fh_held(sockmem_seg_t *seg, const pid_t *pids, int n, bool match, struct fh_held *h)
{
	struct sockmem_proc *p;
	struct sockmem_slot *s;
	uint32_t np = sockmem_header(seg)->proc_capacity;
	bool *sel = calloc(np, sizeof(bool));

	memset(h, 0, sizeof(*h));
	for (uint32_t i = 0; sel && (p = sockmem_proc_at(seg, i)) != NULL; i++) {
		uint32_t st = atomic_load(&p->state);

		h->ndying += st == SOCKMEM_CLAIMED || st == SOCKMEM_DEAD;
		if (st != SOCKMEM_LIVE)
			continue;
		if (pids && pid_in(p->pid, pids, n) != match)
			continue;
		sel[i] = true;
		h->nprocs++;
		h->sock += atomic_load(&p->sock);
	}
	for (uint32_t i = 0; sel && (s = sockmem_slot_at(seg, i)) != NULL; i++) {
		if (atomic_load(&s->state) != SOCKMEM_LIVE || s->proc >= np || !sel[s->proc])
			continue;
		h->nslots++;
		h->sock += atomic_load(&s->sock);
		h->stock += atomic_load(&s->stock);
	}
	free(sel);
}

bool fh_has_record(sockmem_seg_t *seg, pid_t pid)
{
	struct sockmem_proc *p;

	for (uint32_t i = 0; (p = sockmem_proc_at(seg, i)) != NULL; i++) {
		uint32_t st = atomic_load(&p->state);

		if ((st == SOCKMEM_LIVE || st == SOCKMEM_CLAIMED) && p->pid == pid)
			return true;
	}
	return false;
}

int fh_slots_of(sockmem_seg_t *seg, pid_t pid)
{
	struct sockmem_slot *s;
	struct sockmem_proc *p;
	int n = 0;

	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++) {
		if (atomic_load(&s->state) != SOCKMEM_LIVE)
			continue;
		p = sockmem_proc_at(seg, s->proc);
		if (p && atomic_load(&p->state) == SOCKMEM_LIVE && p->pid == pid)
			n++;
	}
	return n;
}

int fh_ctl(const char *ns, const char *const *args, char *out, size_t len)
{
	char path[1024];
	const char *argv[16] = {"--namespace", ns};
	struct fh_opts o = {.ns = ns, .preload = ""};
	struct fh_child c;
	size_t got = 0;
	int n = 2, st;

	snprintf(path, sizeof(path), "%s/sockmemctl", fh_build_dir());
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (fh_spawn(&c, path, argv, &o) != 0)
		return -1;
	if (out && len) {
		char line[512];

		out[0] = '\0';
		while (fh_line(&c, line, sizeof(line), 5000) == 0 && got + 1 < len)
			got += (size_t)snprintf(out + got, len - got, "%s%s", got ? "\n" : "",
						line);
	}
	st = fh_wait(&c, 10000);
	fh_close(&c);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
