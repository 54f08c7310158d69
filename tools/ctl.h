/*
 * sockmemctl: private declarations shared by the command files.
 *
 * One file per concern: ctl_main.c (global options, command table, help),
 * ctl_util.c (errors, segment opening, option parsing helpers), ctl_list.c,
 * ctl_stat.c (table, JSON, Prometheus), ctl_admin.c (set, reset-peak, reap,
 * rm, traces), ctl_run.c, ctl_watch.c, ctl_record.c (record), ctl_plot.c.
 *
 * sockmemctl is single-threaded; nothing here is shared with other threads.
 */
#ifndef SOCKMEM_CTL_H
#define SOCKMEM_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sockmem/sockmem.h"

/* Exit status of every command (documented in `sockmemctl --help`). */
enum {
	CTL_OK = 0,    /* success */
	CTL_ERR = 1,   /* operational error: missing segment or group, refused */
	CTL_USAGE = 2, /* bad command line */
};

/*
 * Everything a command may need from the process's surroundings, read once
 * in main(): commands never call getenv() themselves.
 */
struct ctl {
	const char *cmd;     /* the command being run ("stat"), for messages */
	const char *ns;	     /* namespace; NULL: the core's default */
	const char *ns_from; /* where ns came from: "--namespace" or the variable */
	bool allow_foreign;  /* --allow-foreign: read another user's segment */
	const char *env_lib; /* SOCKMEM_LIB (run: preload library override) */
	char **environ;	     /* the environment given to `run`'s command */
};

/* A command: name, one-line summary (for the tool's --help), entry point. */
struct ctl_cmd {
	const char *name;
	const char *summary;
	int (*run)(struct ctl *ctx, int argc, char **argv);
};

/* The columns `record` writes and `plot` reads (stable: scripts use them). */
#define CTL_CSV_HEADER                                                                             \
	"time_s,current,sock,cached,max,high,low,peak,under_pressure,failcnt,events_low,"          \
	"events_high,events_max,events_pressure,events_throttled,throttle_ns,sockets,processes"

/* ---- messages (ctl_util.c) --------------------------------------------- */

/* "sockmemctl: <message>\n" on stderr, one line; returns `status`. */
int ctl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error of the current command: adds "see 'sockmemctl CMD --help'". */
int ctl_usage(const struct ctl *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "sockmemctl: warning: <message>\n" on stderr. */
void ctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- segment and groups (ctl_util.c) ----------------------------------- */

enum ctl_open_mode {
	CTL_READ,   /* map read-only; never changes the segment */
	CTL_WRITE,  /* attach read-write; the segment must exist */
	CTL_CREATE, /* attach read-write, creating the segment if missing */
};

/* The namespace name to show to users (the core's default spelled out). */
const char *ctl_ns_name(const struct ctl *ctx, char *buf, size_t len);
/* Open the namespace's segment; on failure print one line and return the exit
 * status (CTL_ERR) so the caller can `return` it. */
int ctl_open(const struct ctl *ctx, enum ctl_open_mode mode, sockmem_seg_t **seg);
/* Look a group up; on failure print one line and return CTL_ERR. */
int ctl_lookup(const struct ctl *ctx, sockmem_seg_t *seg, const char *path, uint32_t *idx);
/* Validate a group path given on the command line (usage error if bad). */
int ctl_check_path(const struct ctl *ctx, const char *path);

/*
 * A snapshot of every live group, sorted so that each group is followed by its
 * descendants (a depth-first walk of the tree). Racy by design, like
 * sockmem_group_stat: members keep charging while it is taken, and a group
 * removed meanwhile is left out. Returns the count, or -errno.
 * `*out` is malloc'd; free() it.
 */
int ctl_snapshot(sockmem_seg_t *seg, struct sockmem_group_stat **out);
/* Is `path` equal to `root` or inside it ("a" covers "a" and "a/b")? */
bool ctl_in_subtree(const char *path, const char *root);
/* Is the process of a LIVE record still there (same pid, same start time)? */
bool ctl_proc_alive(const struct sockmem_proc *p);
/* Live pids of processes whose record names group `idx` (up to `max`). */
int ctl_member_pids(sockmem_seg_t *seg, uint32_t idx, int32_t *pids, int max);

/* Refuse (one line, CTL_ERR) given limits that contradict each other:
 * low <= high <= max among those that are not SOCKMEM_KEEP. */
int ctl_precheck_limits(int64_t max, int64_t high, int64_t low);

/* The length of path's shortest prefix (at a '/' or its end) that is not a
 * group yet, 0 if the whole path exists: what ctl_undo_groups takes back. */
size_t ctl_missing_from(sockmem_seg_t *seg, const char *path);
/* Remove the groups on path whose prefix is at least `from` long (those a
 * creation made), deepest first; nothing if from is 0. */
void ctl_undo_groups(sockmem_seg_t *seg, const char *path, size_t from);
/* Find or create group `path` (and its parents) and apply the given limits
 * (SOCKMEM_KEEP: unchanged). Groups created here (parents too) are removed
 * again when the limits are refused. Prints one line and returns CTL_ERR on
 * failure. */
int ctl_ensure_group(sockmem_seg_t *seg, const char *path, int64_t max, int64_t high, int64_t low,
		     uint32_t *idx);

/* ---- command-line helpers (ctl_util.c) --------------------------------- */

/* Parse a size option ("64M", "max"); usage error naming `what` if bad. */
int ctl_parse_size(const struct ctl *ctx, const char *what, const char *s, int64_t *out);
/* Parse a non-negative integer in [min, max]; usage error naming `what`. */
int ctl_parse_uint(const struct ctl *ctx, const char *what, const char *s, uint64_t min,
		   uint64_t max, uint64_t *out);
/*
 * getopt_long wrapper: reports unknown options and missing arguments as one
 * usage line. Returns the option, -1 at the end, or '?' after printing.
 * `optstring` gets a leading ':' (and '+' if `in_order`) added internally.
 */
int ctl_getopt(const struct ctl *ctx, int argc, char **argv, const char *optstring,
	       const struct option *longopts, bool in_order);
/* Start a command's option parsing afresh (resets getopt's state). */
void ctl_getopt_reset(void);
/* Print a help text to stdout and return CTL_OK. */
int ctl_help(const char *text);

/* Sizes for humans: "64.0M", "max". */
const char *ctl_size(int64_t v, char *buf, size_t len);

/* ---- commands --------------------------------------------------------- */

int ctl_cmd_list(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_stat(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_set(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_reset_peak(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_reap(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_rm(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_traces(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_run(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_watch(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_record(struct ctl *ctx, int argc, char **argv);
int ctl_cmd_plot(struct ctl *ctx, int argc, char **argv);

#endif /* SOCKMEM_CTL_H */
