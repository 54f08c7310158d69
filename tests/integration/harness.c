/*
 * Integration-test harness: children, paths, cleanup, group snapshots.
 * The kernel side (ss, /proc/net, files) is in harness_kernel.c.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef SM_BUILD_DIR_DEFAULT
#define SM_BUILD_DIR_DEFAULT "."
#endif
#ifndef SM_ASAN_LIB_DEFAULT
#define SM_ASAN_LIB_DEFAULT ""
#endif

/* What h_cleanup must undo. Copies, not pointers: a failed assertion leaves
 * the test's stack behind, the registry must not point into it. */
static struct {
	pid_t pid;
	int in_fd, out_fd;
	bool reaped;
} reg[H_MAX_CHILDREN];
static int nreg;
static char owned_ns[SOCKMEM_NS_MAX];
static char tmpdir[PATH_MAX];

int64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

void h_test_name(char *buf, size_t len, const char *test)
{
	snprintf(buf, len, "t-%s-%d", test, (int)getpid());
}

void h_own_namespace(const char *ns)
{
	snprintf(owned_ns, sizeof(owned_ns), "%s", ns);
	sockmem_unlink(ns); /* a stale segment from a crashed run of this pid */
}

const char *h_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir[0])
		return tmpdir;
	snprintf(tmpdir, sizeof(tmpdir), "%s/sockmem-int-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir))
		tmpdir[0] = '\0';
	return tmpdir;
}

const char *h_tmp_path(const char *name)
{
	static char bufs[4][PATH_MAX];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, PATH_MAX, "%s/%s", h_tmpdir(), name);
	return b;
}

const char *h_build_dir(void)
{
	const char *d = getenv("SOCKMEM_BUILD_DIR");

	return d && *d ? d : SM_BUILD_DIR_DEFAULT;
}

const char *h_shim_path(void)
{
	static char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/libsockmem.so", h_build_dir());
	return p;
}

const char *h_helper_path(void)
{
	static char p[PATH_MAX];
	const char *d = getenv("SOCKMEM_HELPER_DIR");

	if (d && *d)
		snprintf(p, sizeof(p), "%s/sockmem-int-helper", d);
	else
		snprintf(p, sizeof(p), "%s/tests/sockmem-int-helper", h_build_dir());
	return p;
}

static const char *asan_lib(void)
{
	const char *a = getenv("SOCKMEM_ASAN_LIB");

	return a ? a : SM_ASAN_LIB_DEFAULT;
}

bool h_asan_active(void)
{
	return *asan_lib() != '\0';
}

/* Resolve a program name through PATH. */
static bool which(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char buf[4096];
	char *save = NULL;

	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return access(out, X_OK) == 0;
	}
	snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", d, prog);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

bool h_have_program(const char *prog)
{
	char p[PATH_MAX];

	return which(prog, p, sizeof(p));
}

/* The distribution's python, not a pyenv shim script (a shell script would
 * put bash, not python, first under the preload). */
const char *h_python(void)
{
	static char p[PATH_MAX];

	if (access("/usr/bin/python3", X_OK) == 0)
		return "/usr/bin/python3";
	if (!which("python3", p, sizeof(p)))
		return "python3";
	return p;
}

/* ---- environment ---- */

static bool env_dropped(const char *kv)
{
	return !strncmp(kv, "LD_PRELOAD=", 11) || !strncmp(kv, "SOCKMEM_", 8) ||
	       !strncmp(kv, "ASAN_OPTIONS=", 13);
}

/* "name=value" in one of a few static buffers: the worker is single-threaded
 * and execve copies the strings, so each spawn can reuse them. */
static char *kv(const char *name, const char *val)
{
	static char store[3][2 * PATH_MAX + 64];
	static int next;
	char *b = store[next++ % 3];

	snprintf(b, sizeof(store[0]), "%s=%s", name, val);
	return b;
}

/* The child's environment: the worker's, minus anything that would change
 * the shim's behaviour, plus what this spawn asks for. */
static char **build_env(const struct h_spawn_opts *o)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + H_MAX_ENV + 8, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!env_dropped(environ[i]))
			env[k++] = environ[i];
	if (o->preload) {
		const char *asan = asan_lib();
		char preload[2 * PATH_MAX + 2];

		snprintf(preload, sizeof(preload), "%s%s%s", asan, *asan ? ":" : "", h_shim_path());
		env[k++] = kv("LD_PRELOAD", preload);
		if (o->ns)
			env[k++] = kv("SOCKMEM_NAMESPACE", o->ns);
		if (o->group)
			env[k++] = kv("SOCKMEM_GROUP", o->group);
		if (*asan)
			env[k++] =
				(char *)(o->third_party ? "ASAN_OPTIONS=detect_leaks=0:verify_asan_"
							  "link_order=0"
							: "ASAN_OPTIONS=verify_asan_link_order=0");
	}
	for (int i = 0; i < H_MAX_ENV && o->env[i]; i++)
		env[k++] = (char *)o->env[i];
	env[k] = NULL;
	return env;
}

/* ---- children ---- */

static int open_redirect(const char *path, int flags)
{
	return open(path, flags | O_CLOEXEC, 0600);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *path, const char *const argv[], char **env, int fds[3],
		       pid_t parent)
{
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0 && dup2(fds[i], i) < 0)
			_exit(126);
	execve(path, (char *const *)argv, env);
	_exit(127);
}

static int child_fds(const struct h_spawn_opts *o, int fds[3], int in_pipe[2], int out_pipe[2])
{
	fds[0] = fds[1] = fds[2] = -1;
	in_pipe[0] = in_pipe[1] = out_pipe[0] = out_pipe[1] = -1;
	if (o->pipe_in && pipe2(in_pipe, O_CLOEXEC) < 0)
		return -errno;
	if (o->pipe_out && pipe2(out_pipe, O_CLOEXEC) < 0)
		return -errno;
	fds[0] = o->pipe_in ? in_pipe[0] : open_redirect("/dev/null", O_RDONLY);
	fds[1] = o->pipe_out ? out_pipe[1]
			     : open_redirect(o->out_path ? o->out_path : "/dev/null",
					     O_WRONLY | O_CREAT | O_TRUNC);
	if (o->err_path)
		fds[2] = open_redirect(o->err_path, O_WRONLY | O_CREAT | O_TRUNC);
	if (fds[0] < 0 || fds[1] < 0 || (o->err_path && fds[2] < 0))
		return -EIO;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A registry entry: unused, or released (reaped, fds closed). */
static int free_slot(void)
{
	for (int i = 0; i < nreg; i++)
		if (reg[i].pid == 0)
			return i;
	return nreg < H_MAX_CHILDREN ? nreg++ : -1;
}

int h_spawn(struct h_proc *p, const char *const argv[], const struct h_spawn_opts *o)
{
	char path[PATH_MAX];
	int fds[3] = {-1, -1, -1}, in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, rc;
	char **env;
	pid_t parent = getpid();
	int slot;

	*p = (struct h_proc){.pid = -1, .in_fd = -1, .out_fd = -1};
	signal(SIGPIPE, SIG_IGN); /* a child that died must not kill the worker */
	slot = free_slot();
	if (slot < 0)
		return -EMFILE;
	if (!which(argv[0], path, sizeof(path)))
		return -ENOENT;
	env = build_env(o);
	rc = env ? child_fds(o, fds, in_pipe, out_pipe) : -ENOMEM;
	if (rc == 0) {
		p->pid = fork();
		if (p->pid == 0)
			child_exec(path, argv, env, fds, parent);
		if (p->pid < 0)
			rc = -errno;
	}
	free(env);
	close_fd(&in_pipe[0]);
	close_fd(&out_pipe[1]);
	if (!o->pipe_in)
		close_fd(&fds[0]);
	if (!o->pipe_out)
		close_fd(&fds[1]);
	close_fd(&fds[2]);
	p->in_fd = in_pipe[1];
	p->out_fd = out_pipe[0];
	if (rc == 0)
		reg[slot] = (typeof(reg[0])){p->pid, p->in_fd, p->out_fd, false};
	return rc;
}

static void mark_reaped(pid_t pid)
{
	for (int i = 0; i < nreg; i++)
		if (reg[i].pid == pid)
			reg[i].reaped = true;
}

int h_wait(struct h_proc *p, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	if (p->reaped)
		return 0;
	for (;;) {
		pid_t r = waitpid(p->pid, &p->status, WNOHANG);

		if (r == p->pid) {
			p->reaped = true;
			mark_reaped(p->pid);
			return 0;
		}
		if (r < 0)
			return -errno;
		if (h_now_ms() >= deadline)
			return -ETIMEDOUT;
		h_sleep_ms(5);
	}
}

int h_exit_code(const struct h_proc *p)
{
	if (!p->reaped)
		return -1000;
	if (WIFEXITED(p->status))
		return WEXITSTATUS(p->status);
	return -WTERMSIG(p->status);
}

void h_signal(struct h_proc *p, int sig)
{
	if (p->pid > 0 && !p->reaped)
		kill(p->pid, sig);
}

int h_read_line(struct h_proc *p, char *buf, size_t len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
		int left = (int)(deadline - h_now_ms());
		char c;
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, left) == 0)
			return -ETIMEDOUT;
		r = read(p->out_fd, &c, 1);
		if (r == 0)
			return -EPIPE;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r < 0)
			continue;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return (int)n;
}

int h_write(struct h_proc *p, const char *s)
{
	size_t len = strlen(s);

	if (write(p->in_fd, s, len) != (ssize_t)len)
		return -EIO;
	return 0;
}

void h_close_stdin(struct h_proc *p)
{
	for (int i = 0; i < nreg; i++)
		if (reg[i].pid == p->pid)
			reg[i].in_fd = -1;
	close_fd(&p->in_fd);
}

void h_release(struct h_proc *p)
{
	if (!p->reaped) {
		kill(p->pid, SIGKILL);
		h_wait(p, 5000);
	}
	for (int i = 0; i < nreg; i++)
		if (reg[i].pid == p->pid && reg[i].reaped)
			reg[i] = (typeof(reg[0])){0, -1, -1, true};
	close_fd(&p->in_fd);
	close_fd(&p->out_fd);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

void h_cleanup(void)
{
	for (int i = 0; i < nreg; i++) {
		if (reg[i].pid > 0 && !reg[i].reaped) {
			kill(reg[i].pid, SIGKILL);
			waitpid(reg[i].pid, NULL, 0); /* SIGKILL: bounded */
			reg[i].reaped = true;
		}
		close_fd(&reg[i].in_fd);
		close_fd(&reg[i].out_fd);
	}
	nreg = 0;
	if (owned_ns[0])
		sockmem_unlink(owned_ns);
	owned_ns[0] = '\0';
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

/* ---- the group ---- */

int h_group_stat(const char *ns, const char *group, struct sockmem_group_stat *st)
{
	struct sockmem_open_opts o = {.ns = ns, .readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc;

	rc = sockmem_open(&o, &seg, err, sizeof(err));
	if (rc < 0)
		return rc;
	rc = sockmem_group_lookup(seg, group, &idx);
	if (rc == 0)
		rc = sockmem_group_stat(seg, idx, st);
	sockmem_close(seg);
	return rc;
}

/* Is group `g` the group `top` or one of its descendants? */
static bool in_subtree(sockmem_seg_t *seg, uint32_t g, uint32_t top)
{
	for (int depth = 0; g != SOCKMEM_NONE && depth < SOCKMEM_PATH_MAX; depth++) {
		const struct sockmem_group *grp = sockmem_group_at(seg, g);

		if (g == top)
			return true;
		if (!grp)
			return false;
		g = grp->parent;
	}
	return false;
}

int h_group_pids(const char *ns, const char *group, pid_t *pids, int max)
{
	struct sockmem_open_opts o = {.ns = ns, .readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc, n = 0;

	rc = sockmem_open(&o, &seg, err, sizeof(err));
	if (rc < 0)
		return rc;
	rc = sockmem_group_lookup(seg, group, &idx);
	for (uint32_t i = 0; rc == 0 && i < sockmem_header(seg)->proc_capacity && n < max; i++) {
		const struct sockmem_proc *pr = sockmem_proc_at(seg, i);

		if (pr && atomic_load(&pr->state) == SOCKMEM_LIVE &&
		    in_subtree(seg, pr->group, idx))
			pids[n++] = pr->pid;
	}
	sockmem_close(seg);
	return rc < 0 ? rc : n;
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static void watch_kernel(struct h_watch *w, const char *ns, const char *group)
{
	pid_t pids[64];
	struct h_kmem k;
	int n = h_group_pids(ns, group, pids, 64);

	if (n > 0 && h_kernel_meminfo(pids, n, &k) == 0)
		w->max_kernel = max64(w->max_kernel, k.total);
}

void h_watch_sample(struct h_watch *w, const char *ns, const char *group)
{
	struct sockmem_group_stat st;

	w->samples++;
	if (h_group_stat(ns, group, &st) < 0)
		return;
	w->max_current = max64(w->max_current, st.current);
	w->max_sock = max64(w->max_sock, st.sock);
	w->max_processes = max64(w->max_processes, st.processes);
	w->max_sockets = max64(w->max_sockets, st.sockets);
	w->last = st;
	w->seen = true;
	if (w->kernel)
		watch_kernel(w, ns, group);
}

bool h_poll_stat(const char *ns, const char *group, h_stat_pred pred, void *arg, int timeout_ms,
		 struct sockmem_group_stat *st)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	memset(st, 0, sizeof(*st));
	for (;;) {
		struct sockmem_group_stat cur;

		if (h_group_stat(ns, group, &cur) == 0) {
			*st = cur;
			if (pred(st, arg))
				return true;
		}
		if (h_now_ms() >= deadline)
			return false;
		h_sleep_ms(10);
	}
}

bool h_pred_current_zero(const struct sockmem_group_stat *st, void *arg)
{
	return st->current == 0;
}

bool h_pred_sock_zero(const struct sockmem_group_stat *st, void *arg)
{
	return st->sock == 0;
}
