/*
 * Call-site tracing (issue 5, SOCKMEM_TRACE=1): who hits the limit.
 *
 * The admission and throttling paths call sm_trace_hit(); when tracing is on,
 * a rate-limited sample of those calls has its call stack captured (libunwind,
 * loaded privately by the constructor) into the segment's trace table,
 * where `sockmemctl traces GROUP` reads and symbolises it.
 */
#ifndef SOCKMEM_SHIM_TRACE_H
#define SOCKMEM_SHIM_TRACE_H

#include <stdint.h>

/* What happened to the traced call (bit values: a record ORs them; the
 * same values as SOCKMEM_TRACE_KIND_* in abi.h). */
enum {
	SM_TRACE_MAX = 1,      /* a charge hit max */
	SM_TRACE_THROTTLE = 2, /* the caller was throttled */
};

/*
 * Record that the calling thread's current call hit max or was throttled,
 * for `bytes` bytes. A no-op (one load, one branch) unless SOCKMEM_TRACE=1.
 * Otherwise rate-limited per process; a capture walks the stack and updates
 * one record with atomics, allocating nothing (the first one included:
 * libunwind was loaded by sm_trace_init). Never blocks, never fails, keeps
 * errno.
 * Concurrency: any thread, any time after the constructor; call it from a
 * slow path (it is not meant for the per-byte fast path). Safe when nested
 * inside the shim (sm_nest raised) and in signal handlers that do not
 * interrupt the dynamic loader.
 */
void sm_trace_hit(int64_t bytes, int kind);

/*
 * With SOCKMEM_TRACE=1, load the unwinder (dlopen RTLD_LOCAL) and set the
 * rate limit; on failure one log line and the process runs untraced. A
 * no-op otherwise. Concurrency: the constructor only, before sm_hot.active
 * is published (which orders what it stores before every capture).
 */
void sm_trace_init(void);

#endif /* SOCKMEM_SHIM_TRACE_H */
