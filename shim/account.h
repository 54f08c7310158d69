/*
 * Per-socket accounting and reconciliation (account.c, reconcile.c).
 * All of these may run on any thread, including from a signal handler,
 * except where noted; none blocks or allocates once the thread's cache is
 * attached.
 */
#ifndef SOCKMEM_SHIM_ACCOUNT_H
#define SOCKMEM_SHIM_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "fdtable.h"
#include "limit.h"

/* The calling thread's charge cache, valid while sm_tc_attached (see
 * sm_tcache). W/R: the owning thread only (and its signal handlers, which
 * find sm_nest raised and pass through). */
extern SM_TLS struct sockmem_cache sm_tc;
extern SM_TLS bool sm_tc_attached;

/* Constructor-time setup of the thread-exit hook. */
void sm_account_init(void);
/* io.c: whether the caller's vectors may be copied with process_vm_readv
 * (not under a seccomp filter); the constructor calls it once. */
void sm_io_init(void);

/* Charge n (> 0) bytes the kernel holds for st (forced; see account.c). */
void sm_sock_charge(struct sm_sock *st, int64_t n);
/* Move n bytes already charged (an admission's reservation) into st's
 * estimate; false if st was released meanwhile (give them back). */
bool sm_sock_publish(struct sm_sock *st, int64_t n);
/* Uncharge up to n bytes (never more than st's estimate). */
void sm_sock_uncharge(struct sm_sock *st, int64_t n);
/* Set st's estimate to the kernel's figure t, charging or uncharging the
 * difference. */
void sm_sock_set(struct sm_sock *st, int64_t t);
/* Count a newly created own socket in the group and process records. */
void sm_sock_opened(void);

/*
 * The data path's fast path (io.c) for a socket this process owns: n bytes
 * sent (tx) or received. It does what sm_sock_charge / sm_sock_uncharge and
 * sm_reconcile_traffic would, as long as the thread's cached stock covers it
 * and no reconcile is due; it makes no call and leaves errno alone.
 *  SM_FAST_NO:   nothing done; take the slow path.
 *  SM_FAST_DONE: accounted.
 *  SM_FAST_DRY:  accounted, and a receive left the estimate stale
 *                (sm_sock_rx_stale) while admission is on: check for a
 *                reconcile now (see io.c).
 * Caller: inside sm_rcu_lock, sm_nest raised.
 */
enum sm_fast { SM_FAST_NO, SM_FAST_DONE, SM_FAST_DRY };

/*
 * After a receive left st's estimate at e: has the program read at
 * least half of the receive queue the last reconcile saw (k_rmem), or
 * emptied the estimate? Then what it reads next has mostly arrived since,
 * unseen (data arrives without a call), and the estimate lags the kernel:
 * near a max the caller reconciles now. Reconciling only when the estimate
 * ran dry left it, on average, half a receive queue behind per socket.
 */
static inline bool sm_sock_rx_stale(struct sm_sock *st, int64_t e)
{
	int64_t w = atomic_load_explicit(&st->k_wmem, memory_order_relaxed);
	int64_t r = atomic_load_explicit(&st->k_rmem, memory_order_relaxed);

	return e >= 0 && e <= w + r / 2; /* e < 0: DEAD */
}

static inline enum sm_fast sm_sock_fast(struct sm_sock *st, int64_t n, bool tx)
{
	int64_t p, e, d;

	if (sm_unlikely(!sm_tc_attached) ||
	    __builtin_add_overflow(atomic_load_explicit(&st->pending, memory_order_relaxed), n,
				   &p) ||
	    p >= sm_stride())
		return SM_FAST_NO;
	e = atomic_load_explicit(&st->est, memory_order_relaxed);
	if (tx) {
		/* The order of sm_sock_charge: counter first, then E. */
		if (sm_unlikely(e == SM_SOCK_DEAD) || !sm_cache_try_charge(&sm_tc, n))
			return SM_FAST_NO;
		do {
			if (sm_unlikely(e == SM_SOCK_DEAD)) { /* closed meanwhile */
				SM_SAVE_ERRNO(sm_cache_uncharge(&sm_tc, n));
				return SM_FAST_DONE;
			}
		} while (!atomic_compare_exchange_weak(&st->est, &e, e + n));
		atomic_store_explicit(&st->pending, p, memory_order_relaxed);
		return SM_FAST_DONE;
	}
	/* The order of sm_sock_uncharge: E first, then the counter. */
	do {
		d = e <= 0 ? 0 : n < e ? n : e; /* nothing charged (dry), or DEAD */
	} while (d > 0 && !atomic_compare_exchange_weak(&st->est, &e, e - d));
	if (d > 0 && !sm_cache_try_uncharge(&sm_tc, d))
		SM_SAVE_ERRNO(sm_cache_uncharge_slow(&sm_tc, d));
	atomic_store_explicit(&st->pending, p, memory_order_relaxed);
	return sm_unlikely(sm_limit_is_on()) && sm_sock_rx_stale(st, e - d) ? SM_FAST_DRY
									    : SM_FAST_DONE;
}

/* Constructor (lifecycle.c): account the sockets already open when this
 * image loaded (created by an earlier constructor, or inherited over exec). */
void sm_adopt_existing(void);

/* Reconcile st against SO_MEMINFO on fd. Returns false when fd is no longer
 * a socket (a stale entry). Preserves errno. */
bool sm_reconcile(int fd, struct sm_sock *st);
/* Data path: n bytes moved on st; reconcile once enough traffic passed
 * (sm_stride()), or now if `dry` (a receive near a max found
 * the estimate empty). */
void sm_reconcile_traffic(int fd, struct sm_sock *st, int64_t n, bool dry);

/* The helper thread (reconcile.c): start (all signals blocked), stop and
 * join; quiesce around fork. Slow paths only. */
int sm_helper_start(void);
void sm_helper_stop(void);
void sm_helper_fork_prepare(void);
void sm_helper_fork_parent(void);
void sm_helper_fork_child(void);

#endif /* SOCKMEM_SHIM_ACCOUNT_H */
