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

/* A process's view of one mapped segment. Immutable after sockmem_open. */
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
};

/* ---- logging (lib/log.c): allocation-free, one write(2) per line ------ */

enum sm_log_level { SM_LOG_ERROR = 0, SM_LOG_WARN, SM_LOG_INFO, SM_LOG_DEBUG };
extern int sm_log_level; /* default SM_LOG_WARN */

/* "sockmem[<prog>:<pid>]: <level>: <message>\n" on stderr; async-signal-safe
 * formatting into a stack buffer; errno preserved. */
void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_vlog(int level, const char *fmt, va_list ap);

/* Log at most once per call site per process. */
#define sm_log_once(level, ...)                                                    \
	do {                                                                       \
		static _Atomic int sm__once_;                                      \
		if (!__atomic_exchange_n(&sm__once_, 1, __ATOMIC_RELAXED))        \
			sm_log((level), __VA_ARGS__);                              \
	} while (0)

/* snprintf into err (if not NULL) and return rc: for 0/-errno + message APIs. */
int sm_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif /* SOCKMEM_INTERNAL_H */
