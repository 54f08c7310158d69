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

/* Constructor-time setup of the thread-exit hook. */
void sm_account_init(void);

/* Charge n (> 0) bytes the kernel holds for st (forced; see account.c). */
void sm_sock_charge(struct sm_sock *st, int64_t n);
/* Move n bytes already charged (an admission's reservation) into st's
 * estimate; false if st was released meanwhile (give them back). */
bool sm_sock_publish(struct sm_sock *st, int64_t n);
/* Uncharge up to n bytes (never more than st's estimate). True when the
 * estimate was empty or is now (the read took what we knew of): "dry". */
bool sm_sock_uncharge(struct sm_sock *st, int64_t n);
/* Set st's estimate to the kernel's figure t, charging or uncharging the
 * difference. */
void sm_sock_set(struct sm_sock *st, int64_t t);
/* Count a newly created own socket in the group and process records. */
void sm_sock_opened(void);

/* Constructor (lifecycle.c): account the sockets already open when this
 * image loaded (created by an earlier constructor, or inherited over exec). */
void sm_adopt_existing(void);

/* Reconcile st against SO_MEMINFO on fd. Returns false when fd is no longer
 * a socket (a stale entry). Preserves errno. */
bool sm_reconcile(int fd, struct sm_sock *st);
/* Data path: n bytes moved on st; reconcile once enough traffic passed
 * (SOCKMEM_RECONCILE_BYTES), or now if `dry` (a receive near a max found
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
