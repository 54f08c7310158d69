/*
 * Harness for the preload tests: spawn a helper program with libsockmem.so
 * preloaded (never the Criterion runner itself), talk to it over a line
 * protocol (it prints a phase name and waits for a byte on stdin), and read
 * the group's statistics from the segment, read-only.
 */
#ifndef SOCKMEM_PL_HARNESS_H
#define SOCKMEM_PL_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockmem/sockmem.h"

struct pl_child {
	pid_t pid;
	int in;	 /* write end: the helper's stdin */
	int out; /* read end: the helper's stdout */
	int err; /* read end: the helper's stderr */
	char buf[4096];
	size_t len;
};

struct pl_opts {
	const char *ns;	      /* SOCKMEM_NAMESPACE (NULL: not set) */
	const char *group;    /* SOCKMEM_GROUP (NULL: not set) */
	bool preload;	      /* set LD_PRELOAD (and the ASan runtime if any) */
	const char *extra[8]; /* more NAME=value entries */
};

/* A namespace unique to this test and process: "t-<name>-<pid>". Its segment
 * is removed when the process exits, whether the test passed or failed. */
void pl_ns(char *buf, size_t len, const char *name);
/* Path of a helper program (SOCKMEM_HELPER_DIR or the build default). */
void pl_helper_path(char *buf, size_t len, const char *prog);
const char *pl_lib(void);

/* Spawn helper `prog` with argv (argv[0] filled in) in a built envp. */
int pl_spawn(struct pl_child *c, const char *prog, const char *const *args,
	     const struct pl_opts *o);
/* Read the next stdout line (without '\n') within timeout_ms: 0 or -1. */
int pl_line(struct pl_child *c, char *line, size_t len, int timeout_ms);
/* Expect a line starting with `word`; returns the rest (after a space) in
 * rest, or -1 on timeout/mismatch (line printed to stderr). */
int pl_expect(struct pl_child *c, const char *word, char *rest, size_t len);
/* Let the helper go on to its next phase. */
void pl_go(struct pl_child *c);
/* Wait for exit within timeout_ms; returns the wait status or -1 (killed). */
int pl_wait(struct pl_child *c, int timeout_ms);
/* Everything the helper wrote to stderr (after it exited). */
ssize_t pl_stderr(struct pl_child *c, char *buf, size_t len);

/* Stat of `group` in namespace `ns`: 0, or -errno (e.g. -ENOENT). */
int pl_stat(const char *ns, const char *group, struct sockmem_group_stat *st);
/* Poll the stat until pred(st, arg) holds or timeout_ms passes. */
bool pl_stat_until(const char *ns, const char *group, struct sockmem_group_stat *st,
		   bool (*pred)(const struct sockmem_group_stat *, int64_t), int64_t arg,
		   int timeout_ms);
bool pl_segment_exists(const char *ns);

#endif
