/*
 * Reconciliation against the kernel's own per-socket figures, and the
 * helper thread that does it periodically.
 *
 * Ground truth for a socket is SO_MEMINFO: wmem_queued (send queue,
 * unsent + unacknowledged, skb truesize; wmem_alloc for datagram sockets,
 * which have no write queue) + rmem_alloc (receive queue). The
 * data path only estimates from the bytes each call moved; this corrects the
 * estimate every SOCKMEM_RECONCILE_BYTES of traffic per socket (a multiple of
 * it far from every limit: sm_stride), and on every tick of the helper for
 * all sockets, which also picks up data that arrived on sockets the program
 * is not touching.
 */
#include <linux/futex.h>
#include <linux/sock_diag.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "reclaim.h"
#include "state.h"

#define REAP_EVERY  10 /* ticks between reaps of dead processes */
#define CHECK_EVERY 10 /* ticks between st_ino checks of each entry */
/* Idle-socket backoff: a socket that held nothing and moved nothing for
 * IDLE_AFTER ticks is reconciled only every IDLE_EVERY ticks (while the
 * group is below high and not under pressure). Data that arrives on such
 * a socket without the program touching it is seen up to IDLE_EVERY ticks
 * late; in a group with a finite max the budget share bounds what it can
 * hold meanwhile (clamp.c). */
#define IDLE_AFTER 3
#define IDLE_EVERY 8

bool sm_reconcile(int fd, struct sm_sock *st)
{
	uint32_t mi[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mi);
	int saved = errno, rc, err;
	uint32_t tx;

	rc = libc_getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len);
	err = errno;
	errno = saved;
	if (rc != 0)
		return !(err == ENOTSOCK || err == EBADF);
	atomic_store_explicit(&st->pending, 0, memory_order_relaxed);
	/* fd may have been closed (and even reused) between the lookup and the
	 * getsockopt: closes clear the entry first, so if it still holds st,
	 * the figures are st's. */
	if (sm_fd_peek(fd) != st || len < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
		return true;
	/* TCP holds sent data in the write queue until acknowledged
	 * (wmem_queued); datagrams hold it only while in flight below the
	 * socket (wmem_alloc, no write queue); a UNIX socket's data sits in
	 * the peer's receive queue, charged to the sender's wmem_alloc (the
	 * peer's rmem_alloc stays 0). */
	tx = st->type == SOCK_STREAM && st->family != AF_UNIX ? mi[SK_MEMINFO_WMEM_QUEUED]
							      : mi[SK_MEMINFO_WMEM_ALLOC];
	atomic_store_explicit(&st->k_wmem, (int32_t)tx, memory_order_relaxed);
	atomic_store_explicit(&st->k_rmem, (int32_t)mi[SK_MEMINFO_RMEM_ALLOC],
			      memory_order_relaxed);
	sm_sock_set(st, (int64_t)tx + (int64_t)mi[SK_MEMINFO_RMEM_ALLOC]);
	return true;
}

void sm_reconcile_traffic(int fd, struct sm_sock *st, int64_t n, bool dry)
{
	int64_t p = atomic_load_explicit(&st->pending, memory_order_relaxed) + n;

	/* dry: a receive near a max found the estimate empty; the kernel holds
	 * data we have not counted (it arrives unseen): reconcile now. */
	if (dry || p >= sm_stride()) {
		/* Reset first: if SO_MEMINFO fails, do not retry on every call. */
		atomic_store_explicit(&st->pending, 0, memory_order_relaxed);
		sm_reconcile(fd, st);
	} else {
		atomic_store_explicit(&st->pending, p, memory_order_relaxed);
	}
}

/* ---- the helper thread ------------------------------------------------ */

/*
 * Handshake: the helper holds `lock` while it works and releases it only
 * while sleeping on a futex (sleep_until). sm_helper_stop sets `stop` and
 * wakes the futex the helper sleeps on; a fork prepare handler takes
 * `lock`, so no tick or reclaim pass is in progress (no urcu or segment
 * state half-updated) when the process forks.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool stop;    /* W/R: under lock */
static bool running; /* W: start/stop (slow paths, serialised by callers) */
static pthread_t thread;
static uint32_t tick_no;		 /* W/R: helper only */
static uint32_t wait_lvl = SOCKMEM_NONE; /* W: helper under lock. R: stop */
static _Atomic uint32_t local_seq;	 /* futex word when no level has high */
static _Atomic uint32_t started;	 /* W: helper_main, at its start. R: start */
static bool backoff;			 /* W/R: helper: idle backoff this tick */

/* Remove a stale entry: its fd was closed (and maybe reused) unseen. */
static void drop_stale(int fd, struct sm_sock *st)
{
	if (sm_fd_remove_if(fd, st))
		sm_sock_put(st);
}

/* Skip an idle socket on most ticks (see IDLE_EVERY). */
static bool idle_skip(struct sm_sock *st)
{
	bool idle = atomic_load_explicit(&st->est, memory_order_relaxed) == 0 &&
		    atomic_load_explicit(&st->pending, memory_order_relaxed) == 0;

	if (!idle) {
		st->idle = 0;
		return false;
	}
	if (st->idle < IDLE_AFTER) {
		st->idle++;
		return false;
	}
	return backoff && (tick_no + st->idx) % IDLE_EVERY != 0;
}

static void tick_one(int fd, struct sm_sock *st, void *arg)
{
	struct stat sb;
	int64_t e0, e1;

	if (atomic_load(&st->tick) == tick_no)
		return; /* a dup already done this tick */
	if (!sm_sock_owned(st) && !sm_sock_adopt(fd, st))
		return; /* inherited, and its owner still holds it */
	atomic_store(&st->tick, tick_no);
	if (tick_no % CHECK_EVERY == 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_ino != st->ino) {
		drop_stale(fd, st);
		return;
	}
	if (!idle_skip(st)) {
		e0 = atomic_load(&st->est);
		if (!sm_reconcile(fd, st)) {
			drop_stale(fd, st);
			return;
		}
		e1 = atomic_load(&st->est);
		if (e0 > e1 && e1 >= 0)
			sm_tick_released += e0 - e1;
	}
	sm_buf_apply(fd, st);
}

static void tick(void)
{
	uint32_t proc = atomic_load(&sm_proc);
	struct sockmem_proc *p = proc == SOCKMEM_NONE ? NULL : sockmem_proc_at(sm_seg, proc);
	int64_t reaped = 0, u, h;

	if (++tick_no == 0)
		tick_no = 1; /* 0 marks "never" in fresh states */
	sm_limits_tick_begin();
	backoff = !atomic_load(&sm_buf_pressure) &&
		  sm_over_high(sm_seg, sm_group, &u, &h) == SOCKMEM_NONE;
	sm_tick_released = 0;
	sm_fd_for_each(tick_one, NULL);
	sm_limits_tick_end();
	sm_sock_recycle();
	if (p)
		atomic_store_explicit(&p->heartbeat_ns, sockmem_now_ns(), memory_order_relaxed);
	if (tick_no % REAP_EVERY == 1 && sockmem_reap(sm_seg, &reaped) > 0)
		sm_log(SM_LOG_INFO, "reaped dead processes: %lld bytes returned",
		       (long long)reaped);
}

/* The level's wake-up count read before a pass looked at its usage: a
 * crossing during the pass then ends the next sleep at once (read after
 * the pass, it was lost until the next tick). */
static uint32_t pass_lvl = SOCKMEM_NONE, pass_seq;

static void before_pass(void)
{
	pass_lvl = sm_reclaim_level();
	if (pass_lvl != SOCKMEM_NONE)
		pass_seq = sm_reclaim_seq(sm_seg, pass_lvl);
}

/*
 * Sleep until the next tick or a wake-up: on the futex of the nearest level
 * with a high watermark (woken from any process when a charge crosses it),
 * else on a local word (woken only by stop). Called and returns with `lock`
 * held; drops it while sleeping. True if woken by a crossing.
 */
static bool sleep_until(uint64_t deadline)
{
	uint64_t now = sockmem_now_ns();
	uint32_t lvl = sm_reclaim_level(), seen;
	bool woke;

	if (now >= deadline)
		return false;
	wait_lvl = lvl;
	if (lvl == SOCKMEM_NONE)
		seen = atomic_load(&local_seq);
	else if (lvl == pass_lvl)
		seen = pass_seq;
	else
		seen = sm_reclaim_seq(sm_seg, lvl);
	pass_lvl = SOCKMEM_NONE;
	pthread_mutex_unlock(&lock);
	if (lvl != SOCKMEM_NONE) {
		woke = sm_reclaim_wait(sm_seg, lvl, seen, deadline - now);
	} else {
		struct timespec ts = {.tv_sec = (time_t)((deadline - now) / 1000000000u),
				      .tv_nsec = (long)((deadline - now) % 1000000000u)};

		syscall(SYS_futex, &local_seq, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
		woke = false;
	}
	pthread_mutex_lock(&lock);
	wait_lvl = SOCKMEM_NONE;
	return woke;
}

static void *helper_main(void *arg)
{
	uint64_t interval = (uint64_t)sm_cfg.reconcile_ms * 1000000u, next;

	/* The thread's setup (glibc's, a sanitizer's) is over: let
	 * sm_helper_start return. */
	atomic_store(&started, 1);
	syscall(SYS_futex, &started, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	sm_nest = 1; /* everything this thread calls passes through */
	sm_tcache_uncached();
	/* Low priority: nice +10 for this thread only (Linux: per-tid). */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	pthread_mutex_lock(&lock);
	sm_limits_tick_begin(); /* limits and the level to wait on */
	/* Sleep first: at start there is nothing to reconcile yet. */
	next = sockmem_now_ns() + interval;
	while (!stop) {
		if (sockmem_now_ns() >= next) {
			before_pass();
			tick();
			next = sockmem_now_ns() + interval;
		} else if (sleep_until(next) && !stop) {
			before_pass();
			sm_reclaim_woken();
		}
	}
	pthread_mutex_unlock(&lock);
	sm_tcache_forget();
	return NULL;
}

/*
 * Return only once the helper runs its own code (bounded: 1 s). A new
 * thread's setup may allocate (glibc's pthread_getattr_np under a
 * sanitizer, an allocator's thread cache); a fork right after our
 * constructor, while that setup held an allocator lock with no fork
 * handler of its own (GCC 12's ASan), left the child with the lock held and
 * its first new thread hung.
 */
static void wait_started(void)
{
	uint64_t end = sockmem_now_ns() + 1000000000u;

	while (!atomic_load(&started)) {
		uint64_t now = sockmem_now_ns();
		struct timespec ts;

		if (now >= end)
			return;
		ts.tv_sec = (time_t)((end - now) / 1000000000u);
		ts.tv_nsec = (long)((end - now) % 1000000000u);
		syscall(SYS_futex, &started, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
	}
}

int sm_helper_start(void)
{
	sigset_t all, old;
	int rc;

	if (running)
		return 0;
	stop = false;
	/* The thread inherits a fully blocked mask: signals are the program's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	atomic_store(&started, 0);
	rc = pthread_create(&thread, NULL, helper_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		sm_log(SM_LOG_WARN, "cannot start the helper thread (%d): no periodic reconcile",
		       rc);
		return -rc;
	}
	running = true;
	SM_SAVE_ERRNO(wait_started());
	return 0;
}

void sm_helper_stop(void)
{
	if (!running)
		return;
	uint32_t lvl;

	pthread_mutex_lock(&lock);
	stop = true;
	lvl = wait_lvl;
	pthread_mutex_unlock(&lock);
	/* The helper read the futex word before dropping the lock: a bump
	 * after that makes its wait return at once. */
	atomic_fetch_add(&local_seq, 1);
	syscall(SYS_futex, &local_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	if (lvl != SOCKMEM_NONE)
		sm_reclaim_wake(sm_seg, lvl); /* others' helpers just re-check */
	pthread_join(thread, NULL);
	running = false;
}

void sm_helper_fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

void sm_helper_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

void sm_helper_fork_child(void)
{
	/* The helper does not exist in the child; the forking thread owns the
	 * lock and the condition variable has no waiters. */
	pthread_mutex_unlock(&lock);
	running = false;
	tick_no = 0;
	wait_lvl = SOCKMEM_NONE;
	pass_lvl = SOCKMEM_NONE;
}
