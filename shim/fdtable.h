/*
 * fd -> socket state.
 *
 * The table is two-level: a fixed array of chunk pointers (BSS) and chunks of
 * SM_FD_CHUNK entries mmap'd on first use by a slow path (socket, accept,
 * dup), so fds above 65536 work and an unused table costs nothing. Chunks are
 * never freed. An entry points to a refcounted struct sm_sock shared by every
 * dup of the socket.
 *
 * Concurrency contract:
 *  - Readers (the data path, any application thread, also signal handlers)
 *    load an entry with acquire order and dereference it only inside an
 *    urcu-bp read-side critical section (sm_rcu_lock). They never write the
 *    table and never take a lock.
 *  - Writers (socket/accept/dup/close paths and the helper thread) change an
 *    entry only with an atomic exchange or compare-and-swap; whoever removes
 *    a pointer from the table owns the reference it held and drops it with
 *    sm_sock_put().
 *  - A state whose last reference is dropped is released (its charge is
 *    returned), then retired; the helper thread recycles retired states
 *    after an RCU grace period, so a reader that still holds the pointer
 *    never sees it reused.
 */
#ifndef SOCKMEM_SHIM_FDTABLE_H
#define SOCKMEM_SHIM_FDTABLE_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE /* inline urcu-bp read-side fast paths */
#endif
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <urcu-bp.h>

#include "state.h"

#define SM_SOCK_DEAD INT64_MIN /* est after the final release */

/*
 * One socket's accounting state, shared by every fd that refers to it.
 */
struct sm_sock {
	/* Bytes charged for this socket (the estimate E); SM_SOCK_DEAD once
	 * released. W: CAS by any thread (charge/uncharge/reconcile), exchange
	 * by the final release. A charge that finds DEAD is undone. */
	_Atomic int64_t est;
	/* Traffic since the last reconcile. Relaxed load/store, racy on
	 * purpose: it only decides when to reconcile. */
	_Atomic int64_t pending;
	_Atomic uint32_t refs; /* table entries referring to it (RMW) */
	_Atomic uint32_t next; /* free/retired list link (pool index) */
	_Atomic uint32_t tick; /* W/R: helper only: last tick that reconciled it */
	/* The epoch (sm_hot.epoch) of the process charging it: set by the
	 * creator before install; in a fork child, CAS to SM_EPOCH_ADOPTING
	 * then to the child's epoch by the thread that adopts it (account.c). */
	_Atomic uint32_t epoch;
	int32_t owner_pid;     /* pid of the process charging it (same writers) */
	uint32_t idx;	       /* own pool index (immutable) */
	uint16_t family, type; /* W: creator before install */
	uint64_t ino;	       /* st_ino at creation (stale-entry detection) */

	/* ---- buffer control (clamp.c, issue 4) ---- */
	/* What the program asked for with SO_SNDBUF/SO_RCVBUF (the value it
	 * passed; whether it did is a bit of user_force, clamp.c SET_*: any
	 * value may be passed) and SO_BUF_LOCK / TCP_WINDOW_CLAMP (-1: never).
	 * W: the program's setsockopt (relaxed). R: clamp.c, getsockopt. */
	_Atomic int32_t user_snd, user_rcv, user_locks, user_wclamp;
	_Atomic uint32_t user_force; /* clamp.c: FORCE_*, SET_*, DIRTY bits */
	/* Held while the imposed state below is read or changed (helper tick,
	 * setsockopt, the send path's moderation): a spin flag, never held
	 * across anything but a few setsockopt calls on this socket. */
	_Atomic uint32_t bl;
	int32_t set_snd, set_rcv; /* kernel buffer size we imposed; 0: none */
	int32_t wclamp0;	  /* window clamp before our first; 0: never clamped */
	int32_t rcv0, snd0;	  /* kernel buffer sizes before we imposed one */
	bool moderated;		  /* send path moderated SO_SNDBUF at max */
	_Atomic bool rclamped;	  /* the reclaimer clamped it (largest first); relaxed */
	/* tcpi_bytes_received when the receive buffer was last sized (clamp.c
	 * natural_rcv); 0: not seen yet. */
	uint64_t rx_seen;
	/* Last SO_MEMINFO figures (reconcile): send queue (wmem_queued, or
	 * wmem_alloc for datagrams) and receive queue. Relaxed. */
	_Atomic int32_t k_wmem, k_rmem;
	uint8_t idle; /* helper only: consecutive ticks with nothing held */
};

#define SM_EPOCH_ADOPTING UINT32_MAX
/* A socket this image found open at load (inherited over exec) while
 * another member still held it at the same fd number: owner_pid is that
 * member, and it is adopted like a fork child's (sm_hot.epoch starts at 1). */
#define SM_EPOCH_FOREIGN 0u

/*
 * A state is this process's own (charged) unless it was inherited over fork
 * (the child bumps sm_hot.epoch) and not adopted yet: a socket is charged by
 * one process at a time, its creator while the creator holds it, then the
 * first descendant that uses it (see sm_sock_adopt).
 */
static inline bool sm_sock_owned(const struct sm_sock *st)
{
	return atomic_load_explicit(&st->epoch, memory_order_acquire) == sm_hot.epoch;
}

struct sm_fdchunk {
	struct sm_sock *_Atomic e[SM_FD_CHUNK];
};
/* The first level is sm_hot.fd_l1 (real.h; SM_FD_* sizes there too). */

/* A thread's first read-side section registers it with urcu-bp, which may
 * grow its registry with an mremap that fails (ENOMEM) before it falls back
 * to mmap: errno is kept across that, once per thread (a successful send
 * must not change it). */
static __attribute__((noinline, cold)) void sm_rcu_register(void)
{
	int saved = errno;

	urcu_bp_register();
	errno = saved;
}

static inline void sm_rcu_lock(void)
{
	if (__builtin_expect(!URCU_TLS(urcu_bp_reader), 0))
		sm_rcu_register();
	urcu_bp_read_lock();
}

static inline void sm_rcu_unlock(void)
{
	urcu_bp_read_unlock();
}

/* The entry for fd, or NULL. Safe anywhere; dereferencing the result needs
 * sm_rcu_lock held (a NULL test does not). */
static inline struct sm_sock *sm_fd_peek(int fd)
{
	struct sm_fdchunk *c;

	if (sm_unlikely((unsigned)fd >= SM_FD_MAX))
		return NULL;
	c = atomic_load_explicit(&sm_hot.fd_l1[(unsigned)fd >> SM_FD_CHUNK_SHIFT],
				 memory_order_acquire);
	if (c == NULL)
		return NULL;
	return atomic_load_explicit(&c->e[(unsigned)fd & (SM_FD_CHUNK - 1)], memory_order_acquire);
}

/* A fresh state (refs 1, est 0, this epoch), or NULL if the pool is
 * exhausted. Lock-free; slow path. */
struct sm_sock *sm_sock_new(int family, int type, uint64_t ino);
/* Drop one reference; the last one releases the charge and retires it. */
void sm_sock_put(struct sm_sock *st);

/* Install st at fd (taking over the caller's reference), dropping whatever
 * stale state the entry held. False (reference dropped) if fd is too large
 * or a chunk cannot be mapped. */
bool sm_fd_install(int fd, struct sm_sock *st);
/* The same for a state that is (or was) in the table already: a dup's new
 * reference (sm_fd_ref), or one put back. On failure only the reference is
 * dropped; the state keeps its charge for the fds that hold it. */
bool sm_fd_install_ref(int fd, struct sm_sock *st);
/* Remove and return fd's state (the caller owns the reference), or NULL. */
struct sm_sock *sm_fd_take(int fd);
/* Remove fd's state only if it is still st; true if this call removed it. */
bool sm_fd_remove_if(int fd, struct sm_sock *st);
/* A new reference to fd's state (for a dup), or NULL. */
struct sm_sock *sm_fd_ref(int fd);
/* Drop the states of every fd in [lo, hi] (close_range). */
void sm_fd_drop_range(unsigned lo, unsigned hi);
/* Call fn(fd, st, arg) for every entry, each inside sm_rcu_lock. */
void sm_fd_for_each(void (*fn)(int fd, struct sm_sock *st, void *arg), void *arg);
/* Helper thread: recycle retired states after a grace period. Must not be
 * called inside a read-side critical section. */
void sm_sock_recycle(void);

/* account.c: take over an inherited socket if its owner no longer holds it
 * (slow path; true if this process charges it now). */
bool sm_sock_adopt(int fd, struct sm_sock *st);
/* account.c: the socket's final release (returns its whole charge). */
void sm_sock_release(struct sm_sock *st);
/* account.c: the pid of another live member of the segment that holds fd's
 * open file at the same fd number; 0 if none does; -1 if kcmp cannot tell.
 * Slow path (one kcmp per live member). */
int sm_sock_holder(int fd);

#endif /* SOCKMEM_SHIM_FDTABLE_H */
