/*
 * Buffer control (issue 4): what each socket's kernel buffers may grow to.
 *
 * Why: data arrives in receive queues without any call we intercept, and on
 * loopback eight autotuned receivers fill tens of megabytes within
 * milliseconds, long before a tick sees it. So in a group (or under an
 * ancestor) with a finite max, the sum of what the sockets' buffers may
 * hold is bounded before the burst: every accounted INET socket gets a fair
 * share of the tightest budget, share = max / sockets in that level's
 * subtree, split evenly between its receive buffer (SO_RCVBUF, which locks
 * it against autotuning, plus TCP_WINDOW_CLAMP at the cap so the window
 * scale leaves room up to it) and its send buffer (SO_SNDBUF). The kernel
 * then holds the limit itself: Σ (rcvbuf + sndbuf) <= max, up to one skb
 * per queue of slack. Autotuning is left alone while a half share exceeds
 * the kernel's own tcp_rmem[2] / tcp_wmem[2].
 *
 * A share only ever caps: a receive buffer is locked at the smaller of the
 * half share and what the kernel would give it (its size when first
 * locked, then grown per tick like autotuning for a reader that keeps up:
 * natural_rcv), so a slow reader keeps the kernel's 128 KiB default rather
 * than a share of a generous max (the demo at max=128M: 91.5 MiB in the
 * kernel with the share imposed, against 66.3 MiB without sockmem). A send
 * buffer is capped at the half share (see want_snd). Listeners get the
 * same treatment on every tick, so accepted sockets inherit a bounded
 * receive buffer for the data that arrives before accept().
 *
 * Under pressure (hierarchical), and for the sockets the reclaimer picks,
 * receive buffers close to SM_BUF_FLOOR (the window shrinks to a few
 * segments, like the kernel's tcp_adjust_rcv_ssthresh under memory
 * pressure) and send buffers are held at what they hold (never below the
 * floor): they stop growing. At max the send path moderates SO_SNDBUF to half the
 * queue, like sk_stream_moderate_sndbuf. When all of that ends, what the
 * program itself had set is put back, or autotuning is given back
 * (SO_BUF_LOCK without the bit). getsockopt reports what the program asked
 * for, not what we imposed.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "reclaim.h"
#include "state.h"

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#define LOCK_SND  1 /* SOCK_SNDBUF_LOCK */
#define LOCK_RCV  2 /* SOCK_RCVBUF_LOCK */
#define FORCE_SND 1u
#define FORCE_RCV 2u
#define SET_SND	  4u /* the program set SO_SNDBUF(FORCE) (any value, even < 0) */
#define SET_RCV	  8u
#define DIRTY	  16u /* a request the kernel took while bl was busy: merge it */

_Atomic int64_t sm_buf_share = INT64_MAX;
_Atomic bool sm_buf_pressure;

/* Kernel sysctls, read once: autotuning maxima and the SO_*BUF cap. */
static int64_t tcp_rmem_max = 6 << 20, tcp_wmem_max = 4 << 20;
static int64_t core_rmem_max = 212992, core_wmem_max = 212992;

static int64_t read_field(const char *path, int field, int64_t def)
{
	char buf[128];
	long long v[3] = {0};
	FILE *f = fopen(path, "re");
	int n;

	if (!f)
		return def;
	n = fgets(buf, sizeof(buf), f) ? sscanf(buf, "%lld %lld %lld", &v[0], &v[1], &v[2]) : 0;
	fclose(f);
	return n > field && v[field] > 0 ? v[field] : def;
}

void sm_buf_sysctl_init(void)
{
	tcp_rmem_max = read_field("/proc/sys/net/ipv4/tcp_rmem", 2, tcp_rmem_max);
	tcp_wmem_max = read_field("/proc/sys/net/ipv4/tcp_wmem", 2, tcp_wmem_max);
	core_rmem_max = read_field("/proc/sys/net/core/rmem_max", 0, core_rmem_max);
	core_wmem_max = read_field("/proc/sys/net/core/wmem_max", 0, core_wmem_max);
}

void sm_buf_init(struct sm_sock *st)
{
	atomic_store_explicit(&st->user_snd, -1, memory_order_relaxed);
	atomic_store_explicit(&st->user_rcv, -1, memory_order_relaxed);
	atomic_store_explicit(&st->user_locks, -1, memory_order_relaxed);
	atomic_store_explicit(&st->user_wclamp, -1, memory_order_relaxed);
	atomic_store_explicit(&st->user_force, 0, memory_order_relaxed);
	atomic_store_explicit(&st->bl, 0, memory_order_relaxed);
	atomic_store_explicit(&st->k_wmem, 0, memory_order_relaxed);
	atomic_store_explicit(&st->k_rmem, 0, memory_order_relaxed);
	st->set_snd = st->set_rcv = st->wclamp0 = 0;
	st->rcv0 = st->snd0 = 0;
	st->moderated = false;
	atomic_store_explicit(&st->rclamped, false, memory_order_relaxed);
	st->idle = 0;
	st->rx_seen = 0;
}

static bool inet(const struct sm_sock *st)
{
	return st->family == AF_INET || st->family == AF_INET6;
}

static bool user_has(const struct sm_sock *st, uint32_t bit)
{
	return atomic_load_explicit(&st->user_force, memory_order_relaxed) & bit;
}

/* The lock bits the program gave the socket: SO_BUF_LOCK as it set it (with
 * the bits of sizes it set after), or those of the sizes it set. */
static int prog_locks(const struct sm_sock *st)
{
	int32_t l = atomic_load_explicit(&st->user_locks, memory_order_relaxed);

	if (l >= 0)
		return l;
	return (user_has(st, SET_SND) ? LOCK_SND : 0) | (user_has(st, SET_RCV) ? LOCK_RCV : 0);
}

void sm_buf_inherit(struct sm_sock *st, const struct sm_sock *from)
{
	atomic_store_explicit(&st->user_snd, atomic_load(&from->user_snd), memory_order_relaxed);
	atomic_store_explicit(&st->user_rcv, atomic_load(&from->user_rcv), memory_order_relaxed);
	atomic_store_explicit(&st->user_locks, atomic_load(&from->user_locks),
			      memory_order_relaxed);
	atomic_store_explicit(&st->user_wclamp, atomic_load(&from->user_wclamp),
			      memory_order_relaxed);
	atomic_store_explicit(&st->user_force, atomic_load(&from->user_force) & ~DIRTY,
			      memory_order_relaxed);
}

/* Bounded: a holder only runs a few setsockopt calls. */
static bool bl_take(struct sm_sock *st, int spins)
{
	for (int i = 0; i < spins; i++) {
		uint32_t z = 0;

		if (atomic_compare_exchange_weak_explicit(&st->bl, &z, 1, memory_order_acquire,
							  memory_order_relaxed))
			return true;
		sched_yield();
	}
	return false;
}

static void bl_drop(struct sm_sock *st)
{
	atomic_store_explicit(&st->bl, 0, memory_order_release);
}

/* The kernel's smallest buffers (SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF). */
#define MIN_SNDBUF 4608
#define MIN_RCVBUF 2304

/* What the kernel makes of SO_*BUF v (sock_setsockopt): the plain option
 * takes v as unsigned and caps it at net.core.*mem_max, the forced one
 * takes a negative v as 0; then at most INT_MAX / 2, doubled, at least the
 * direction's minimum. */
static int64_t kernel_size(int64_t v, int64_t cap, bool force, bool rcv)
{
	int64_t min;

	if (force)
		v = v < 0 ? 0 : v;
	else if ((uint32_t)v > (uint64_t)cap)
		v = cap;
	else
		v = (uint32_t)v;
	if (v > INT32_MAX / 2)
		v = INT32_MAX / 2;
	v *= 2;
	min = rcv ? MIN_RCVBUF : MIN_SNDBUF;
	return v < min ? min : v;
}

static int64_t min_nz(int64_t a, int64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

static int get_int(int fd, int lv, int nm, int def)
{
	int v = def;
	socklen_t l = sizeof(v);

	return libc_getsockopt(fd, lv, nm, &v, &l) == 0 ? v : def;
}

static void set_int(int fd, int lv, int nm, int v)
{
	libc_setsockopt(fd, lv, nm, &v, sizeof(v));
}

/* struct tcp_info (linux/tcp.h, stable ABI) up to tcpi_bytes_received;
 * glibc's copy stops before it. */
#define TI_BYTES_RECEIVED 128
#define TI_LEN		  136

/*
 * What the kernel would give the socket's receive buffer without us.
 * Before we impose anything it is what the socket has now (autotuning's
 * size, or the program's). Once we hold it locked, autotuning is off and
 * the size it would reach must be estimated. Autotuning
 * (tcp_rcv_space_adjust) grows a buffer for a reader that keeps up with
 * the data, never for one that leaves it queued: a reader that moved at
 * least RX_GROW buffers' worth since the last look may double its buffer
 * (per tick, like autotuning doubling per round trip but slower); a slow
 * reader (the demo's 1 MiB/s reads under one 128 KiB buffer per 100 ms
 * tick) keeps the kernel's default, as without us. (tcpi_rcv_space, the
 * kernel's own measure, cannot tell them apart under a lock: 88715 for a
 * 128 KiB buffer read at 1 MiB/s, 327680 for a 512 KiB one read as fast as
 * the machine goes: both about one window per round trip.) Not under hold
 * (pressure, the reclaimer): the buffer must not grow then.
 */
#define RX_GROW 4

static int64_t natural_rcv(int fd, struct sm_sock *st, bool hold)
{
	int64_t base = st->set_rcv;
	unsigned char ti[TI_LEN];
	socklen_t l = sizeof(ti);
	uint64_t rx, prev;

	if (base <= 0)
		return get_int(fd, SOL_SOCKET, SO_RCVBUF, 0);
	if (hold || st->type != SOCK_STREAM)
		return base;
	if (libc_getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &l) != 0 || l < TI_LEN)
		return base;
	memcpy(&rx, ti + TI_BYTES_RECEIVED, sizeof(rx));
	prev = st->rx_seen;
	st->rx_seen = rx ? rx : 1;
	if (prev && rx > prev && rx - prev >= (uint64_t)(RX_GROW * base))
		return 2 * base;
	return base;
}

/*
 * The receive buffer to impose (kernel bytes); 0: none (the program's or
 * autotuning's). The budget share and pressure only ever cap: the size is
 * the smaller of the cap and what the kernel would give the socket (a slow
 * reader keeps the kernel's small default rather than a share that may be
 * far larger). A receive buffer is locked at that size whenever a cap
 * applies, because data arrives without a call we see: an unlocked buffer
 * could autotune past the cap and fill before the next tick.
 * *wclamp: the window clamp to set with it: the cap, not the size (it
 * bounds the window scale negotiated at connect, so the buffer can still
 * grow to the cap; the locked buffer itself bounds the window); under hold
 * the size, to close the window.
 */
static int64_t want_rcv(int fd, struct sm_sock *st, int64_t half, bool hold, int64_t *wclamp)
{
	int64_t cap = half < tcp_rmem_max ? (half > SM_BUF_FLOOR ? half : SM_BUF_FLOOR) : 0;
	int64_t eff;

	/* Under pressure the window closes to the floor, as the kernel's
	 * tcp_adjust_rcv_ssthresh does (a few segments): what is queued stays
	 * until read, nothing more is accepted beyond the floor. */
	if (hold)
		cap = min_nz(cap, SM_BUF_FLOOR);
	*wclamp = cap;
	if (!cap)
		return 0;
	eff = min_nz(cap, natural_rcv(fd, st, hold));
	if (hold)
		*wclamp = eff;
	return eff;
}

/*
 * The send buffer to impose (kernel bytes); 0: none. The share caps what
 * autotuning would reach: a send buffer only holds what the program
 * queued, and autotuning grows it to tcp_wmem[2] exactly when data piles
 * up (the demo's senders: 4 MiB without sockmem), so the cap is imposed
 * from the start (an unlocked buffer would grow past it between ticks and
 * queue more than the share). Under hold (pressure, the reclaimer) it is
 * held at what the queue holds, at least the floor, and under the send
 * path's moderation at that; without a share, neither raises it above
 * the size the kernel gave it.
 */
static int64_t want_snd(int fd, struct sm_sock *st, int64_t half, bool hold, bool moderated)
{
	int64_t cap = half < tcp_wmem_max ? (half > SM_BUF_FLOOR ? half : SM_BUF_FLOOR) : 0;
	int64_t held = 0, nat;

	if (hold) {
		int64_t h = atomic_load_explicit(&st->k_wmem, memory_order_relaxed);

		held = h > SM_BUF_FLOOR ? h : SM_BUF_FLOOR;
	}
	if (moderated && st->set_snd > 0) /* keep the send path's moderation */
		held = min_nz(held, st->set_snd);
	if (!held)
		return cap;
	if (cap) /* imposed from the start: the cap bounds it */
		return min_nz(cap, held);
	/* No share: never above what the kernel gave it (before we imposed
	 * anything, or before the moderation did). */
	nat = st->set_snd > 0 ? st->snd0 : get_int(fd, SOL_SOCKET, SO_SNDBUF, 0);
	return min_nz(held, nat);
}

/* Impose a buffer size (kernel bytes): FORCE only where the plain option
 * would be capped by net.core.*mem_max (and only works with CAP_NET_ADMIN). */
static void set_buf(int fd, int plain, int force, int64_t kbytes, int64_t core_max)
{
	int v = (int)(kbytes / 2);

	if (v <= core_max || libc_setsockopt(fd, SOL_SOCKET, force, &v, sizeof(v)) != 0)
		set_int(fd, SOL_SOCKET, plain, v);
}

/* Give autotuning back for one direction (the other keeps its lock). */
static void unlock_dir(int fd, int bit)
{
	int cur = get_int(fd, SOL_SOCKET, SO_BUF_LOCK, -1);

	if (cur >= 0)
		set_int(fd, SOL_SOCKET, SO_BUF_LOCK, cur & ~bit);
}

static void apply_rcv(int fd, struct sm_sock *st, int64_t want, int64_t wclamp)
{
	int32_t u = atomic_load_explicit(&st->user_rcv, memory_order_relaxed);
	bool set = user_has(st, SET_RCV);
	int64_t user = set ? kernel_size(u, core_rmem_max, user_has(st, FORCE_RCV), true) : 0;
	int64_t eff = min_nz(want, user);
	bool tcp = st->type == SOCK_STREAM;

	if (eff == (st->set_rcv ? st->set_rcv : user))
		return; /* nothing changes */
	if (want && tcp && !st->wclamp0)
		st->wclamp0 = get_int(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, 0);
	/* The size to put back: read once, before anything is imposed (a
	 * forced re-apply after the program's own call must not take ours). */
	if (want && st->rcv0 == 0 && !set)
		st->rcv0 = get_int(fd, SOL_SOCKET, SO_RCVBUF, 0);
	if (eff) {
		set_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE, eff, core_rmem_max);
		if (tcp && want) { /* advertise no more than the cap */
			int32_t uw = atomic_load_explicit(&st->user_wclamp, memory_order_relaxed);
			int64_t w = wclamp > eff ? wclamp : eff;

			if (uw > 0 && uw < w / 2)
				w = 2 * (int64_t)uw;
			set_int(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, (int)(w / 2));
		}
	}
	if (!want) { /* restore: the program's window clamp, then its buffer */
		int32_t uw = atomic_load_explicit(&st->user_wclamp, memory_order_relaxed);
		int64_t w = uw > 0 ? uw : (st->wclamp0 > 0 ? st->wclamp0 : tcp_rmem_max);

		if (tcp && st->wclamp0)
			set_int(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, (int)w);
		/* Autotuning only grows a buffer once a round trip moves more
		 * than its best so far: unlocking alone would leave it at the
		 * clamp. Put back the size it had, then unlock. */
		if (!set && st->rcv0 > 0)
			set_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE, st->rcv0, core_rmem_max);
		if (!(prog_locks(st) & LOCK_RCV))
			unlock_dir(fd, LOCK_RCV);
		st->wclamp0 = 0;
		st->rcv0 = 0;
	}
	st->set_rcv = want ? (int32_t)eff : 0;
}

static void apply_snd(int fd, struct sm_sock *st, int64_t want)
{
	int32_t u = atomic_load_explicit(&st->user_snd, memory_order_relaxed);
	bool set = user_has(st, SET_SND);
	int64_t user = set ? kernel_size(u, core_wmem_max, user_has(st, FORCE_SND), false) : 0;
	int64_t eff = min_nz(want, user);

	if (eff == (st->set_snd ? st->set_snd : user))
		return;
	if (want && st->snd0 == 0 && !set)
		st->snd0 = get_int(fd, SOL_SOCKET, SO_SNDBUF, 0);
	if (eff)
		set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, eff, core_wmem_max);
	if (!want && !set && st->snd0 > 0)
		set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, st->snd0, core_wmem_max);
	if (!want && !(prog_locks(st) & LOCK_SND))
		unlock_dir(fd, LOCK_SND);
	st->set_snd = want ? (int32_t)eff : 0;
	if (!want) {
		st->moderated = false;
		st->snd0 = 0;
	}
}

static bool constrained(const struct sm_sock *st);

static void apply_locked(int fd, struct sm_sock *st)
{
	int64_t share = atomic_load_explicit(&sm_buf_share, memory_order_relaxed);
	bool pressure = atomic_load_explicit(&sm_buf_pressure, memory_order_relaxed);
	bool hold = pressure || atomic_load_explicit(&st->rclamped, memory_order_relaxed);
	int64_t half = share == INT64_MAX ? INT64_MAX : share / 2, wclamp = 0, rcv;

	/* The send path's moderation goes when pressure does, or as soon as
	 * every level with a max is comfortably below it (hysteresis: imposed
	 * at max, lifted at SM_COMFORT_NUM/DEN of it), so a sender that was
	 * held at max gets its send buffer back once the group drained rather
	 * than a pressure period later. The hold itself stays for the period. */
	if (st->moderated && (!pressure || sm_comfortable(sm_seg, sm_group)))
		st->moderated = false;
	if ((atomic_fetch_and(&st->user_force, ~DIRTY) & DIRTY) && constrained(st))
		st->set_rcv = st->set_snd = -1; /* the kernel has the program's value */
	if (half == INT64_MAX && !hold && !st->set_rcv && !st->set_snd)
		return; /* unconstrained and nothing to restore: no system call */
	rcv = want_rcv(fd, st, half, hold, &wclamp);
	apply_rcv(fd, st, rcv, wclamp);
	apply_snd(fd, st, want_snd(fd, st, half, hold, st->moderated));
}

void sm_buf_apply(int fd, struct sm_sock *st)
{
	if (!inet(st) || !bl_take(st, 1))
		return;
	apply_locked(fd, st);
	bl_drop(st);
}

void sm_buf_new_socket(int fd, struct sm_sock *st)
{
	if (!inet(st) || !sm_limit_is_on())
		return;
	/* Counting the new socket in the share right away (it is already in
	 * group->sockets when this runs). */
	atomic_store_explicit(&sm_buf_share,
			      sm_budget_share(sm_seg, sm_group, SM_SHARE_MIN_SOCKETS),
			      memory_order_relaxed);
	if (bl_take(st, 100)) {
		apply_locked(fd, st);
		bl_drop(st);
	}
}

void sm_buf_moderate(int fd, struct sm_sock *st)
{
	int64_t q = atomic_load_explicit(&st->k_wmem, memory_order_relaxed), v = q / 2;

	if (!inet(st) || !bl_take(st, 100))
		return;
	if (v < MIN_SNDBUF)
		v = MIN_SNDBUF;
	if (!st->set_snd || v < st->set_snd) {
		if (st->snd0 == 0 && !user_has(st, SET_SND))
			st->snd0 = get_int(fd, SOL_SOCKET, SO_SNDBUF, 0);
		set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, v, core_wmem_max);
		st->set_snd = (int32_t)v;
		st->moderated = true;
	}
	bl_drop(st);
}

/* ---- the program's own requests -------------------------------------- */

static bool buf_opt(int lv, int nm)
{
	return (lv == SOL_SOCKET && (nm == SO_SNDBUF || nm == SO_RCVBUF || nm == SO_SNDBUFFORCE ||
				     nm == SO_RCVBUFFORCE || nm == SO_BUF_LOCK)) ||
	       (lv == IPPROTO_TCP && nm == TCP_WINDOW_CLAMP);
}

/* Is anything imposed or about to be (then the program's request must be
 * merged with it rather than passed to the kernel as is)? */
static bool constrained(const struct sm_sock *st)
{
	return st->set_snd || st->set_rcv || st->wclamp0 ||
	       atomic_load_explicit(&sm_buf_share, memory_order_relaxed) != INT64_MAX ||
	       atomic_load_explicit(&sm_buf_pressure, memory_order_relaxed) ||
	       atomic_load_explicit(&st->rclamped, memory_order_relaxed);
}

bool sm_buf_setsockopt(int fd, struct sm_sock *st, int lv, int nm, const void *v, socklen_t l,
		       int *rc)
{
	bool held;
	int val;

	if (!inet(st) || !buf_opt(lv, nm))
		return false;
	/* The kernel first: it validates the arguments (errno as without
	 * us); only a request it accepted is remembered. bl is held across the
	 * call, so the tick cannot restore its own idea of the size between
	 * the kernel taking the program's value and our noting it. */
	held = bl_take(st, 100);
	*rc = libc_setsockopt(fd, lv, nm, v, l);
	if (*rc != 0 || l < sizeof(int)) {
		if (held)
			bl_drop(st);
		return true;
	}
	memcpy(&val, v, sizeof(val));
	if (nm == SO_SNDBUF || nm == SO_SNDBUFFORCE) {
		atomic_store(&st->user_snd, val);
		atomic_fetch_and(&st->user_force, ~FORCE_SND);
		atomic_fetch_or(&st->user_force, SET_SND | (nm == SO_SNDBUFFORCE ? FORCE_SND : 0));
		if (atomic_load(&st->user_locks) >= 0) /* the kernel locks it too */
			atomic_fetch_or(&st->user_locks, LOCK_SND);
	} else if (nm == SO_RCVBUF || nm == SO_RCVBUFFORCE) {
		atomic_store(&st->user_rcv, val);
		atomic_fetch_and(&st->user_force, ~FORCE_RCV);
		atomic_fetch_or(&st->user_force, SET_RCV | (nm == SO_RCVBUFFORCE ? FORCE_RCV : 0));
		if (atomic_load(&st->user_locks) >= 0)
			atomic_fetch_or(&st->user_locks, LOCK_RCV);
	} else if (nm == SO_BUF_LOCK) {
		atomic_store(&st->user_locks, val);
	} else {
		atomic_store(&st->user_wclamp, val);
	}
	if (!held) { /* the holder, or the next tick, merges it */
		atomic_fetch_or(&st->user_force, DIRTY);
		return true;
	}
	if (constrained(st)) {
		/* The kernel now has the program's value: force our limits
		 * to be applied again on top of it. */
		st->set_rcv = st->set_snd = -1;
		apply_locked(fd, st);
	}
	bl_drop(st);
	return true;
}

/* What the kernel would report had we not imposed anything. */
bool sm_buf_getsockopt(int fd, struct sm_sock *st, int lv, int nm, void *v, socklen_t *l, int *rc)
{
	int32_t u;
	int out;

	/* The imposed state is read under bl (the tick may be changing it);
	 * if it stays taken, the kernel's own figure. */
	if (!inet(st) || !buf_opt(lv, nm) || !bl_take(st, 100))
		return false;
	if (!constrained(st)) {
		bl_drop(st);
		return false;
	}
	*rc = libc_getsockopt(fd, lv, nm, v, l); /* validates, fills the rest */
	if (*rc != 0 || *l < sizeof(int)) {
		bl_drop(st);
		return true;
	}
	if (lv == SOL_SOCKET && nm == SO_RCVBUF && st->set_rcv && user_has(st, SET_RCV))
		out = (int)kernel_size(atomic_load(&st->user_rcv), core_rmem_max,
				       user_has(st, FORCE_RCV), true);
	else if (lv == SOL_SOCKET && nm == SO_RCVBUF && st->set_rcv && st->rcv0 > 0)
		out = st->rcv0; /* what it had before we imposed one */
	else if (lv == SOL_SOCKET && nm == SO_SNDBUF && st->set_snd && user_has(st, SET_SND))
		out = (int)kernel_size(atomic_load(&st->user_snd), core_wmem_max,
				       user_has(st, FORCE_SND), false);
	else if (lv == SOL_SOCKET && nm == SO_SNDBUF && st->set_snd && st->snd0 > 0)
		out = st->snd0;
	else if (lv == SOL_SOCKET && nm == SO_BUF_LOCK && (st->set_rcv || st->set_snd))
		out = prog_locks(st);
	else if (lv == IPPROTO_TCP && nm == TCP_WINDOW_CLAMP && st->wclamp0)
		out = (u = atomic_load(&st->user_wclamp)) > 0 ? u : st->wclamp0;
	else
		out = -1;
	bl_drop(st);
	if (out != -1)
		memcpy(v, &out, sizeof(out));
	return true;
}
