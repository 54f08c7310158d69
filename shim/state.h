/*
 * Process-wide state of the preload shim (private to shim/).
 *
 * Everything here is written once by the constructor (or by the fork child
 * handler, single-threaded) before sm_hot.active is raised, and only read after;
 * except sm_hot.active itself (cleared by the destructor while other threads
 * run) and sm_proc, which are atomics.
 */
#ifndef SOCKMEM_SHIM_STATE_H
#define SOCKMEM_SHIM_STATE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "config.h"
#include "real.h"
#include "sockmem/sockmem.h"

#define SM_EXPORT __attribute__((visibility("default")))
#define SM_TLS	  __attribute__((tls_model("initial-exec"))) __thread
/* The data path's interposers: kept together in .text.hot (fewer code pages
 * per call; see struct sm_hot in real.h). */
#define SM_HOT __attribute__((hot))

/*
 * The pass-through switch: false until the constructor has attached to the
 * segment, registered the process and bound the real symbols; false for ever
 * when SOCKMEM_GROUP is unset or the configuration is bad. Every interposer
 * tests it first: one load, one predictable branch.
 * W: constructor (release store, after the state above it is published),
 * destructor (relaxed store, then an RCU grace period: see sm_fini), while
 * other threads read it. R: every interposer's first test, sm_is_active()
 * (relaxed: one plain load on x86-64 and arm64); the slow paths re-check it
 * inside their RCU read-side section with sm_active_acquire() before they
 * use the state the constructor published (sm_seg, sm_cfg, ...): a thread
 * that another library's constructor started before ours needs that order.
 */
static inline bool sm_is_active(void)
{
	return atomic_load_explicit(&sm_hot.active, memory_order_relaxed);
}

static inline bool sm_active_acquire(void)
{
	return atomic_load_explicit(&sm_hot.active, memory_order_acquire);
}

extern struct sm_config sm_cfg; /* W: constructor. R: all */
extern sockmem_seg_t *sm_seg;	/* W: constructor. R: all */
extern uint32_t sm_group;	/* W: constructor. R: all */
/* This process's record; SOCKMEM_NONE in a fork child until it needs one.
 * W: constructor, sm_proc_ensure (under sm_proc_lock). R: slow paths. */
extern _Atomic uint32_t sm_proc;
/* sm_hot.epoch, bumped in a fork child: a socket state created under
 * another epoch belongs to an ancestor process and is passed through (see
 * fdtable.h). W: fork child handler (single-threaded). R: all. */
extern int sm_pid; /* getpid() of this process (reset in the fork child) */

/* Re-entry guard: raised while the shim runs its own code in this thread,
 * so that libc calls made by the shim (or by allocators and loggers it
 * calls) pass straight through. */
extern SM_TLS unsigned sm_nest;

/* The calling thread's charge cache (attached lazily; see account.c). */
struct sockmem_cache *sm_tcache(void);
/* Drop the calling thread's cache handle without detaching (fork child:
 * the slot belongs to the parent's thread). */
void sm_tcache_forget(void);
/* The helper thread charges straight to the counter (no slot): it never
 * exits while the process lives, so a cache would hold stock for ever. So
 * does every thread with SOCKMEM_BATCH=0 (no caching). */
void sm_tcache_uncached(void);
/* Detach the calling thread's cache (thread exit, process exit). */
void sm_tcache_detach(void);

/* Register this process (fork child: lazily) and start the helper thread.
 * Slow path. Returns false if the process cannot charge (then sockets it
 * creates are left unaccounted). */
bool sm_proc_ensure(void);

/* Keep the caller's errno across the shim's own system calls. */
#define SM_SAVE_ERRNO(stmt)                                                                        \
	do {                                                                                       \
		int sm_saved_errno_ = errno;                                                       \
		stmt;                                                                              \
		errno = sm_saved_errno_;                                                           \
	} while (0)

#endif /* SOCKMEM_SHIM_STATE_H */
