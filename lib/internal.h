/*
 * Private declarations shared by lib/ and shim/ (not installed).
 */
#ifndef SOCKMEM_INTERNAL_H
#define SOCKMEM_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockmem/sockmem.h"

/* A process's view of one mapped segment. Immutable after sockmem_open,
 * except lock_wedged_until. The capacities and table pointers come from the
 * header copy that validation checked, never from a second read of the
 * shared header (which another process may change at any time). */
struct sockmem_seg {
	struct sockmem_header *hdr;
	size_t size;
	struct sockmem_group *groups;
	struct sockmem_proc *procs;
	struct sockmem_slot *slots;
	struct sockmem_trace *traces;
	uint32_t ngroups, nprocs, nslots, ntraces;
	bool readonly;
	char name[SOCKMEM_NS_MAX + 16]; /* shm name, "/sockmem-<ns>" */
	/* Process-local: CLOCK_MONOTONIC ns until which sm_table_lock only
	 * tries the lock once, because a wait for it just timed out. */
	_Atomic uint64_t lock_wedged_until;
};

/* ---- logging (lib/log.c): allocation-free, one write(2) per line ------ */

enum sm_log_level { SM_LOG_ERROR = 0, SM_LOG_WARN, SM_LOG_INFO, SM_LOG_DEBUG };
extern int sm_log_level; /* default SM_LOG_WARN */

/* "sockmem[<prog>:<pid>]: <level>: <message>\n" on stderr; async-signal-safe
 * formatting into a stack buffer; errno preserved. */
void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Log at most once per call site per process. The flag is a plain int used
 * only through the __atomic builtins (clang rejects them on an _Atomic);
 * fetch_or rather than exchange, which tests/fuzz/clang_compat.h redefines. */
#define sm_log_once(level, ...)                                                                    \
	do {                                                                                       \
		static int sm__once_;                                                              \
		if (!__atomic_fetch_or(&sm__once_, 1, __ATOMIC_RELAXED))                           \
			sm_log((level), __VA_ARGS__);                                              \
	} while (0)

/* Copy at most `max` bytes of src (up to its NUL) into dst (always
 * terminated, truncated to fit) with every byte outside printable ASCII
 * written as \n, \r, \t or \xHH, and '\\' as "\\\\": for echoing
 * untrusted text (environment values, names) in one-line messages. Returns
 * dst. Concurrency: pure function. */
char *sm_escape(char *dst, size_t dstlen, const char *src, size_t max);

/* Timeouts longer than this (a century) end at UINT64_MAX: the kernel keeps
 * finite ones up to LONG_MAX jiffies, past what nanoseconds since boot hold
 * in 64 bits. */
#define SM_TIMEO_FOREVER_S (100ull * 365 * 86400)
/* The absolute deadline (sockmem_now_ns() clock) of a socket timeout as
 * SO_SNDTIMEO reads it: 0 for none (0 s 0 us), UINT64_MAX for one too far
 * to hold (or a negative field, which the kernel never returns). */
uint64_t sm_timeout_deadline(uint64_t now, long sec, long usec);

/* a + b, saturated at INT64_MIN / INT64_MAX instead of overflowing: for
 * arithmetic on values read from the shared segment, which any member can
 * set to anything. */
static inline int64_t sm_add_sat(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b < 0 ? INT64_MIN : INT64_MAX;
	return r;
}

/* sockmem_proc_register, if the live group at index `group` still has
 * `path` (NULL: any): -ESTALE if the group the caller looked up was removed
 * and its entry now holds another. An index can be kept for as long as the
 * process may register with it later (a fork child registers with its first
 * socket, by its parent's index). */
int sm_proc_register_as(sockmem_seg_t *seg, uint32_t group, const char *path, uint32_t *proc);

/* snprintf into err (if not NULL) and return rc: for 0/-errno + message APIs. */
int sm_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif /* SOCKMEM_INTERNAL_H */
