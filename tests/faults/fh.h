/*
 * Harness for the fault tests: spawn helper programs with libsockmem.so
 * preloaded in a built environment (never the Criterion runner itself), read
 * their report lines, stop/kill/wait them with timeouts, and read the group
 * and the process/slot tables straight from the segment (read-only).
 */
#ifndef SOCKMEM_FH_H
#define SOCKMEM_FH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockmem/sockmem.h"

#define FH_MAXENV 24

struct fh_child {
	pid_t pid;
	int out; /* read end of the helper's stdout */
	int in;	 /* write end of its stdin (-1: /dev/null) */
	char buf[4096];
	size_t len;
};

struct fh_opts {
	const char *ns;	   /* SOCKMEM_NAMESPACE */
	const char *group; /* SOCKMEM_GROUP (NULL: not set) */
	/* LD_PRELOAD value; NULL: the default (ASan runtime if any, then the
	 * shim); "" : no LD_PRELOAD at all. */
	const char *preload;
	const char *extra[8]; /* more NAME=value entries */
	bool quiet_stderr;    /* send the helper's stderr to /dev/null */
	bool stdin_pipe;      /* give the helper a stdin pipe (fh_go) */
};

/* "t-f<name>-<pid>": unique to the test and the runner's process. */
void fh_ns(char *buf, size_t len, const char *name);
/* Build directory (SOCKMEM_BUILD_DIR, else the configured one). */
const char *fh_build_dir(void);
/* Path of a program in the helper directory. */
void fh_helper_path(char *buf, size_t len, const char *prog);
/* The ASan runtime to preload first ("" when not a sanitizer build). */
const char *fh_asan_lib(void);
/* The default LD_PRELOAD value: "[asan:]<build>/libsockmem.so". */
void fh_default_preload(char *buf, size_t len);

/* Spawn `prog` (a helper name, or an absolute path) with argv args[]
 * (argv[0] filled in). 0 or -errno. */
int fh_spawn(struct fh_child *c, const char *prog, const char *const *args,
	     const struct fh_opts *o);
/* Next stdout line (without '\n') within timeout_ms: 0, or -1. */
int fh_line(struct fh_child *c, char *line, size_t len, int timeout_ms);
/* Wait for a line starting with `word`, skipping others; the rest of the
 * line goes to rest. 0, or -1 on timeout / EOF. */
int fh_expect(struct fh_child *c, const char *word, char *rest, size_t len, int timeout_ms);
/* Let the helper go on (one byte on its stdin). */
void fh_go(struct fh_child *c);
/* Wait for exit within timeout_ms: the wait status, or -1 (then killed). */
int fh_wait(struct fh_child *c, int timeout_ms);
void fh_close(struct fh_child *c);
/* Stop a process (SIGSTOP) and wait until every thread stopped. */
bool fh_stop(pid_t pid, int timeout_ms);
void fh_cont(pid_t pid);

uint64_t fh_now_ms(void);

/* Open the namespace's segment read-only (NULL if missing). */
sockmem_seg_t *fh_open(const char *ns);
/* Stat of `group`: 0 or -errno. */
int fh_stat(sockmem_seg_t *seg, const char *group, struct sockmem_group_stat *st);
int64_t fh_usage(sockmem_seg_t *seg, const char *group);

/* What the segment's tables say the members hold. */
struct fh_held {
	int64_t sock;  /* record + slot socket charges */
	int64_t stock; /* cached (slot stock) */
	int nprocs;    /* LIVE records */
	int nslots;    /* LIVE slots */
	int ndying;    /* records being set up or torn down (CLAIMED, DEAD), any pid */
};
/* Sum over LIVE records; `pids` (n entries) selects records by pid when
 * `match` is true, excludes them when false; pids == NULL: every record. */
void fh_held(sockmem_seg_t *seg, const pid_t *pids, int n, bool match, struct fh_held *h);
/* Does a LIVE (or CLAIMED) record name this pid? */
bool fh_has_record(sockmem_seg_t *seg, pid_t pid);
/* LIVE slots whose record names this pid. */
int fh_slots_of(sockmem_seg_t *seg, pid_t pid);

/* Run sockmemctl with args in namespace ns; returns the exit status (or
 * -1), stdout (trimmed) in out if not NULL. */
int fh_ctl(const char *ns, const char *const *args, char *out, size_t len);

#endif
