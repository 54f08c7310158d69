/*
 * The one option table: every SOCKMEM_* environment variable the preload
 * shim reads, with its kind, default, range, unit and help (mimalloc's
 * options.c pattern). Read once, at load, by sm_config_parse().
 */
#ifndef SOCKMEM_CONFIG_H
#define SOCKMEM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockmem/abi.h"

/* Socket families to account (SOCKMEM_FAMILIES). */
#define SM_FAM_INET  0x1u
#define SM_FAM_INET6 0x2u
#define SM_FAM_UNIX  0x4u

/* SOCKMEM_TRACE_LIB: the unwinder library's name or path, with its NUL;
 * unset (every string option defaults to ""), the shim loads the default. */
#define SM_TRACE_LIB_MAX     256
#define SM_TRACE_LIB_DEFAULT "libunwind.so.8"

struct sm_config {
	char group[SOCKMEM_PATH_MAX];	  /* "" when SOCKMEM_GROUP is unset: pass-through */
	char ns[SOCKMEM_NS_MAX];	  /* "" for the core's default namespace */
	int64_t max, high, low;		  /* SOCKMEM_KEEP when unset */
	int64_t batch;			  /* per-thread cache batch, bytes */
	int64_t reconcile_ms;		  /* helper tick */
	int64_t reconcile_bytes;	  /* reconcile a socket every N bytes of traffic */
	int64_t pressure_ms;		  /* pressure period (issue 4) */
	int64_t log_level;		  /* enum sm_log_level */
	int64_t trace;			  /* 0/1: call-site tracing (issue 5) */
	int64_t trace_rate;		  /* captures per second per process */
	char trace_lib[SM_TRACE_LIB_MAX]; /* unwinder to dlopen; "": the default */
	int64_t throttle;		  /* 0/1: throttle charging threads over high */
	int64_t families;		  /* SM_FAM_* mask */
	int64_t groups, procs, slots;	  /* segment capacities when creating; 0: default */
};

enum sm_opt_kind { SM_OPT_SIZE, SM_OPT_INT, SM_OPT_ENUM, SM_OPT_STRING, SM_OPT_FAMILIES };

struct sm_option {
	const char *name; /* environment variable */
	enum sm_opt_kind kind;
	size_t offset;	  /* field in struct sm_config */
	size_t len;	  /* SM_OPT_STRING: buffer size */
	const char *def;  /* default, as the user would write it ("" = unset) */
	int64_t min, max; /* inclusive range (SIZE, INT) */
	const char *unit;
	const char *values; /* SM_OPT_ENUM / FAMILIES: "a|b|c" accepted words */
	const char *help;
};

/* The table itself (immutable) and its length. */
extern const struct sm_option sm_options[];
extern const size_t sm_noptions;

/*
 * Parse the SOCKMEM_* variables of `envp` (a NULL-terminated "NAME=value"
 * array, e.g. environ) into `out`, starting from the defaults. Pure and
 * allocation-free (no getenv, no malloc: libc may not be ready when the shim
 * calls it), so it is also the fuzz target. Unknown SOCKMEM_* names are
 * ignored. Strict: the first bad value stops parsing; `err` then holds one
 * line naming the variable and the value, and -EINVAL is returned.
 * Thread-safe (touches only its arguments).
 */
int sm_config_parse(const char *const *envp, struct sm_config *out, char *err, size_t errlen);

/* Fill `out` with the defaults only. */
void sm_config_defaults(struct sm_config *out);

/* Write the option table as a Markdown table to `fd` (docs generation). */
int sm_config_print_markdown(int fd);

#endif /* SOCKMEM_CONFIG_H */
