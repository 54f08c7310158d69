/*
 * Limits that hold (issue 4), shim side: send admission (limit.c), the
 * sockets' buffer control (clamp.c) and the reclaimer (reclaimer.c).
 */
#ifndef SOCKMEM_SHIM_LIMIT_H
#define SOCKMEM_SHIM_LIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "fdtable.h"

/*
 * Forward progress at max: a socket with nothing queued may always send
 * this much, force-charged (the kernel lets such a socket allocate its first
 * skb). Overshoot bound: (sockets with an empty send queue that send at
 * once) x SM_QUANTUM, on top of max.
 */
#define SM_QUANTUM (64 * 1024)
/* The budget is shared as if the group had at least this many sockets. */
#define SM_SHARE_MIN_SOCKETS 16
/* Smallest buffer the budget or a pressure clamp imposes (kernel bytes,
 * what SO_MEMINFO calls RCVBUF/SNDBUF). A receive window below about two
 * segments stalls TCP (the sender waits for a usable window: loopback's MSS
 * is 64 KiB), so this is 4 loopback segments. In a group whose max is
 * smaller than sockets x 2 x SM_BUF_FLOOR the floor, not the share, bounds
 * what the buffers may hold. */
#define SM_BUF_FLOOR (256 * 1024)

/*
 * Send admission is on (W: constructor and helper tick, R: every send):
 * the group or an ancestor has a finite max, or throttling is on and a
 * high watermark is set. Off: sends are charged after the call (forced),
 * as without limits.
 * A plain bool accessed only through the __atomic builtins (relaxed), as
 * lib/ does for flags clang must also compile: read it with sm_limit_is_on().
 */
static inline bool sm_limit_is_on(void)
{
	return __atomic_load_n(&sm_hot.limit_on, __ATOMIC_RELAXED);
}
/* Traffic per socket between reconciles (INT64_MAX: only on the tick).
 * SOCKMEM_RECONCILE_BYTES near a max or high, a multiple of it far from
 * every limit: see limit.c. W: constructor and helper tick (relaxed). */
static inline int64_t sm_stride(void)
{
	return __atomic_load_n(&sm_hot.reconcile_bytes, __ATOMIC_RELAXED);
}
/* Budget share per socket (sm_budget_share), INT64_MAX when no level has a
 * finite max; whether the group is under pressure. W: helper tick. */
extern _Atomic int64_t sm_buf_share;
extern _Atomic bool sm_buf_pressure;

/* ---- limit.c ---- */

/* One send's admission: bytes charged before the call (held as a
 * reservation in the thread's cache until the call returns). */
struct sm_adm {
	bool on; /* admission charged `got` bytes: the call moves at most that */
	int64_t got;
	uint64_t ino;	/* the socket's identity, to settle on the same state */
	const void *st; /* compared only, never dereferenced outside RCU */
};

/*
 * Before a send of n bytes on fd (flags: MSG_DONTWAIT honoured): 0 to go
 * ahead (with at most a->got bytes if a->on), or -1 with errno EAGAIN (a
 * non-blocking socket at max, or SO_SNDTIMEO expired) or EINTR (a signal
 * interrupted the wait). May block (blocking sockets at max), never holding
 * a lock or an RCU read-side section while it waits; may throttle.
 * Any application thread; not re-entrant from the shim itself.
 */
int sm_admit(int fd, int64_t n, int flags, struct sm_adm *a);
/* After the call that moved rc bytes (or failed): move what was sent from
 * the reservation into the socket's estimate, give back the rest. */
void sm_admit_done(int fd, struct sm_adm *a, ssize_t rc);

/* Recompute sm_hot.limit_on and the reconcile stride from the segment
 * (constructor, tick). */
void sm_limit_refresh(void);

/* ---- clamp.c ---- */

/* Fresh state: nothing asked, nothing imposed. */
void sm_buf_init(struct sm_sock *st);
/* Read the kernel's TCP buffer maxima (constructor). */
void sm_buf_sysctl_init(void);
/*
 * Bring fd's buffers to what the budget share, pressure, the reclaimer and
 * the program's own requests call for (setsockopt only when something
 * changes). Inside an RCU read-side section, sm_nest raised. Skips the
 * socket if another thread is changing it (next tick).
 */
void sm_buf_apply(int fd, struct sm_sock *st);
/* A new socket (socket/accept) of a limited group: apply the budget share
 * at once, before connect/any data (window scale) and before autotuning
 * grows it. */
void sm_buf_new_socket(int fd, struct sm_sock *st);
/* An accepted socket: the kernel copied the listener's buffer sizes and
 * lock bits to it, so it carries the program's requests made on the
 * listener. Before the state is published. */
void sm_buf_inherit(struct sm_sock *st, const struct sm_sock *from);
/* The send path hit max on a non-empty queue: lower SO_SNDBUF toward what
 * the queue holds (sk_stream_moderate_sndbuf) so poll/epoll report the
 * socket not writable until it drains. */
/* Headroom under a max below which the data path reconciles at once: a
 * send its socket, a receive that found its estimate dry (io.c). */
#define SM_NEAR_MAX (4 * 1024 * 1024)

void sm_buf_moderate(int fd, struct sm_sock *st);
/* setsockopt/getsockopt of SO_SNDBUF, SO_RCVBUF, *FORCE, SO_BUF_LOCK and
 * TCP_WINDOW_CLAMP on an owned socket: remember / report what the program
 * asked for. Return true if handled (*rc set, errno set on failure). */
bool sm_buf_setsockopt(int fd, struct sm_sock *st, int lv, int nm, const void *v, socklen_t l,
		       int *rc);
bool sm_buf_getsockopt(int fd, struct sm_sock *st, int lv, int nm, void *v, socklen_t *l, int *rc);

/* ---- reclaimer.c ---- */

/* One tick's limit work (helper thread): refresh share/pressure/limits,
 * then, after every socket was reconciled and its buffers applied, reclaim
 * if a level is above high. */
void sm_limits_tick_begin(void);
void sm_limits_tick_end(void);
/* The helper was woken by a crossing of high: reclaim now. */
void sm_reclaim_woken(void);
/* Bytes the current tick's reconciliation released (helper only). */
extern int64_t sm_tick_released;
/* The level the helper waits on (nearest with high set) or SOCKMEM_NONE. */
uint32_t sm_reclaim_level(void);

#endif /* SOCKMEM_SHIM_LIMIT_H */
