/*
 * Integration-test harness: run real programs under the shim, read their
 * group from the segment, and read the kernel's own socket memory for them.
 *
 * Everything here runs in the (never preloaded) Criterion worker. Children
 * get an environment built from scratch by h_spawn, die with the worker
 * (PR_SET_PDEATHSIG) and are killed and reaped by h_cleanup even when an
 * assertion fails half-way through a test.
 *
 * Concurrency: none. One test = one process = one thread using the harness.
 */
#ifndef SOCKMEM_TEST_HARNESS_H
#define SOCKMEM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockmem/sockmem.h"

#define H_MAX_CHILDREN 16
#define H_MAX_ENV      32

/* A spawned child. */
struct h_proc {
	pid_t pid;
	int in_fd;  /* write end of the child's stdin (pipe_in), else -1 */
	int out_fd; /* read end of the child's stdout (pipe_out), else -1 */
	bool reaped;
	int status; /* wait status once reaped */
};

struct h_spawn_opts {
	bool preload;		    /* LD_PRELOAD libsockmem.so (behind libasan if any) */
	bool third_party;	    /* not our code: no leak checking under ASan */
	const char *ns;		    /* SOCKMEM_NAMESPACE (preload only) */
	const char *group;	    /* SOCKMEM_GROUP (preload only) */
	const char *env[H_MAX_ENV]; /* extra "NAME=value", NULL-terminated */
	bool pipe_in, pipe_out;
	const char *out_path; /* stdout to this file (if !pipe_out); NULL: /dev/null */
	const char *err_path; /* stderr to this file; NULL: inherit the worker's */
};

/* Test-unique names and scratch space. */
void h_test_name(char *buf, size_t len, const char *test); /* "t-<test>-<pid>" */
/* A fresh directory under $TMPDIR (or /tmp); removed by h_cleanup. */
const char *h_tmpdir(void);
/* Path "<tmpdir>/<name>" in a static rotating buffer. */
const char *h_tmp_path(const char *name);
/* The namespace to unlink in h_cleanup (sockmem_unlink). */
void h_own_namespace(const char *ns);

/* Build directory, shim path, helper binary path, python3 path. */
const char *h_build_dir(void);
const char *h_shim_path(void);
const char *h_helper_path(void);
const char *h_python(void);
/* True under the Sanitize build (children get libasan preloaded first). */
bool h_asan_active(void);
/* True if `prog` is found in PATH (tests that need it fail loudly if not). */
bool h_have_program(const char *prog);

/* ---- children ---- */

/* Spawn argv[0] (looked up in PATH if it has no '/'). 0 or -errno. */
int h_spawn(struct h_proc *p, const char *const argv[], const struct h_spawn_opts *o);
/* Wait up to timeout_ms. 0 (p->status set), -ETIMEDOUT, or -errno. */
int h_wait(struct h_proc *p, int timeout_ms);
/* Exit status 0..255, or -signal if killed, or -1000 if not reaped. */
int h_exit_code(const struct h_proc *p);
/* Send a signal (if still running). */
void h_signal(struct h_proc *p, int sig);
/* Read one '\n'-terminated line from the child's stdout, within timeout_ms.
 * Returns the length (newline stripped) or -ETIMEDOUT / -EPIPE / -errno. */
int h_read_line(struct h_proc *p, char *buf, size_t len, int timeout_ms);
/* Write a string to the child's stdin. 0 or -errno. */
int h_write(struct h_proc *p, const char *s);
/* Close the child's stdin (EOF). */
void h_close_stdin(struct h_proc *p);
/* Done with a child: kill it if still running, reap it, close its pipes
 * and free its registry entry. */
void h_release(struct h_proc *p);
/* Kill (SIGKILL) and reap every child still running, close their pipes,
 * unlink the owned namespace, remove the tmpdir. Idempotent. */
void h_cleanup(void);

/* ---- the group, as the segment shows it ---- */

/* One snapshot of `group` in namespace `ns`: 0, -ENOENT (no segment or no
 * group yet), or another -errno. Opens read-only; writes nothing. */
int h_group_stat(const char *ns, const char *group, struct sockmem_group_stat *st);

/* Pids of the live member processes of `group` and its descendants, from
 * the segment's process table (for programs that fork). Returns how many
 * (at most max), or -errno. */
int h_group_pids(const char *ns, const char *group, pid_t *pids, int max);

/* What a test watches while programs run: maxima over the samples. */
struct h_watch {
	bool kernel; /* set by the caller: also sample the kernel (SO_MEMINFO)
		      * for the group's member pids, into max_kernel */
	int samples;
	int64_t max_current, max_sock, max_processes, max_sockets;
	int64_t max_kernel;		/* peak of the kernel's figure for the members */
	struct sockmem_group_stat last; /* last successful snapshot */
	bool seen;			/* at least one snapshot */
};
void h_watch_sample(struct h_watch *w, const char *ns, const char *group);

/* Poll until stat satisfies `pred` or timeout_ms passes. Returns true if
 * it did; *st holds the last snapshot either way (zeroed if none). */
typedef bool (*h_stat_pred)(const struct sockmem_group_stat *st, void *arg);
bool h_poll_stat(const char *ns, const char *group, h_stat_pred pred, void *arg, int timeout_ms,
		 struct sockmem_group_stat *st);
bool h_pred_current_zero(const struct sockmem_group_stat *st, void *arg);
bool h_pred_sock_zero(const struct sockmem_group_stat *st, void *arg);

/* ---- the kernel's truth ---- */

struct h_kmem {
	int64_t rmem;	 /* sum of skmem r (rmem_alloc) */
	int64_t wqueued; /* sum of skmem w (wmem_queued) */
	int64_t total;	 /* rmem + wqueued: what a socket is charged */
	int nsock;	 /* sockets owned by one of the pids */
	/* Buffer sizes (skmem rb/tb, SK_MEMINFO_RCVBUF/SNDBUF): sums and the
	 * largest, to see clamping and its release (issue 4). */
	int64_t rcvbuf, sndbuf, rcvbuf_max, sndbuf_max;
};
/* Run `ss -tuanmpH` and sum skmem over every socket an fd of one of `pids`
 * refers to (each socket once). 0 or -errno (-ENOENT: ss not found). */
int h_kernel_sockmem(const pid_t *pids, int npids, struct h_kmem *out);
/* The same figures through getsockopt(SO_MEMINFO) on a duplicate of each
 * socket fd of `pids` (pidfd_getfd; needs ptrace rights over them: same uid
 * and Yama scope 0, or root). TCP and UDP over IPv4/IPv6 only, each socket
 * once (by inode). ~100x cheaper than running ss: for sampling every few ms
 * (issue 4's peak checks). 0 or -errno. */
int h_kernel_meminfo(const pid_t *pids, int npids, struct h_kmem *out);
/* Parse ss output text (exposed for a parser self-test). */
int h_parse_ss(const char *text, const pid_t *pids, int npids, struct h_kmem *out);

/* CPU time (user + system, all threads) a process has used, in ms, from
 * /proc/<pid>/stat; -errno if gone. For "the helper uses under 2% of a core"
 * style checks: sample twice, divide by the wall time between. */
int64_t h_cpu_ms(pid_t pid);

/* ---- network and files ---- */

/* A loopback port free right now (bind port 0, read it, close). AF_INET or
 * AF_INET6; SOCK_STREAM or SOCK_DGRAM. 0 on failure. */
int h_free_port(int family, int type);
/* Wait until something listens on (tcp) / is bound to (udp) `port` per
 * /proc/net/{tcp,tcp6,udp,udp6}. */
bool h_wait_bound(int port, int type, int timeout_ms);
/* Write `size` pseudo-random bytes (seeded) to path. 0 or -errno. */
int h_make_file(const char *path, size_t size, uint64_t seed);
/* Size and FNV-1a 64 of a file. 0 or -errno. */
int h_file_sum(const char *path, int64_t *size, uint64_t *fnv);
/* Slurp a small file into a malloc'd NUL-terminated buffer (NULL on error). */
char *h_slurp(const char *path, size_t max);

/* Milliseconds on CLOCK_MONOTONIC; sleep ms. */
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

#endif
