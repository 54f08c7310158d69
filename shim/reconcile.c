/*
 * Reconciliation against the kernel's own per-socket figures, and the
 * helper thread that does it periodically.
 *
 * Ground truth for a socket is SO_MEMINFO: wmem_queued (send queue,
 * unsent + unacknowledged, skb truesize; wmem_alloc for datagram sockets,
 * which have no write queue) + rmem_alloc (receive queue). The
 * data path only estimates from the bytes each call moved; this corrects the
 * estimate every SOCKMEM_RECONCILE_BYTES of traffic per socket, and on every
 * tick of the helper for all sockets, which also picks up data that arrived
 * on sockets the program is not touching.
 */
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
#include "real.h"
#include "state.h"

#define REAP_EVERY  10 /* ticks between reaps of dead processes */
#define CHECK_EVERY 10 /* ticks between st_ino checks of each entry */

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
	/* Streams hold sent data in the write queue until acknowledged
	 * (wmem_queued); datagrams hold it only while in flight below the
	 * socket (wmem_alloc, no write queue). */
	tx = st->type == SOCK_STREAM ? mi[SK_MEMINFO_WMEM_QUEUED] : mi[SK_MEMINFO_WMEM_ALLOC];
	sm_sock_set(st, (int64_t)tx + (int64_t)mi[SK_MEMINFO_RMEM_ALLOC]);
	return true;
}

void sm_reconcile_traffic(int fd, struct sm_sock *st, int64_t n)
{
	int64_t p = atomic_load_explicit(&st->pending, memory_order_relaxed) + n;

	if (sm_cfg.reconcile_bytes > 0 && p >= sm_cfg.reconcile_bytes) {
		/* Reset first: if SO_MEMINFO fails, do not retry on every call. */
		atomic_store_explicit(&st->pending, 0, memory_order_relaxed);
		sm_reconcile(fd, st);
	} else {
		atomic_store_explicit(&st->pending, p, memory_order_relaxed);
	}
}

/* ---- the helper thread ------------------------------------------------ */

/*
 * Handshake (urcu's call_rcu thread style): the helper holds `lock` while it
 * works and releases it only while sleeping on `cv`. sm_helper_stop sets
 * `stop` and signals; a fork prepare handler takes `lock`, so no tick is in
 * progress (no urcu or segment state half-updated) when the process forks.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static bool stop;    /* W/R: under lock */
static bool running; /* W: start/stop (slow paths, serialised by callers) */
static pthread_t thread;
static uint32_t tick_no; /* W/R: helper only */

/* Remove a stale entry: its fd was closed (and maybe reused) unseen. */
static void drop_stale(int fd, struct sm_sock *st)
{
	if (sm_fd_remove_if(fd, st))
		sm_sock_put(st);
}

static void tick_one(int fd, struct sm_sock *st, void *arg)
{
	struct stat sb;

	if (atomic_load(&st->tick) == tick_no)
		return; /* a dup already done this tick */
	if (!sm_sock_owned(st) && !sm_sock_adopt(fd, st))
		return; /* inherited, and its owner still holds it */
	atomic_store(&st->tick, tick_no);
	if (tick_no % CHECK_EVERY == 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_ino != st->ino) {
		drop_stale(fd, st);
		return;
	}
	if (!sm_reconcile(fd, st))
		drop_stale(fd, st);
}

static void tick(void)
{
	uint32_t proc = atomic_load(&sm_proc);
	struct sockmem_proc *p = proc == SOCKMEM_NONE ? NULL : sockmem_proc_at(sm_seg, proc);
	int64_t reaped = 0;

	if (++tick_no == 0)
		tick_no = 1; /* 0 marks "never" in fresh states */
	sm_fd_for_each(tick_one, NULL);
	sm_sock_recycle();
	if (p)
		atomic_store_explicit(&p->heartbeat_ns, sockmem_now_ns(), memory_order_relaxed);
	if (tick_no % REAP_EVERY == 1 && sockmem_reap(sm_seg, &reaped) > 0)
		sm_log(SM_LOG_INFO, "reaped dead processes: %lld bytes returned",
		       (long long)reaped);
}

static void *helper_main(void *arg)
{
	struct timespec ts;

	sm_nest = 1; /* everything this thread calls passes through */
	sm_tcache_uncached();
	/* Low priority: nice +10 for this thread only (Linux: per-tid). */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	pthread_mutex_lock(&lock);
	while (!stop) {
		/* Sleep first: at start there is nothing to reconcile yet. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += sm_cfg.reconcile_ms / 1000;
		ts.tv_nsec += (sm_cfg.reconcile_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!stop && pthread_cond_timedwait(&cv, &lock, &ts) == 0)
			; /* spurious or stop: re-check */
		if (!stop)
			tick();
	}
	pthread_mutex_unlock(&lock);
	sm_tcache_forget();
	return NULL;
}

int sm_helper_start(void)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	if (running)
		return 0;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	stop = false;
	/* The thread inherits a fully blocked mask: signals are the program's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, helper_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		sm_log(SM_LOG_WARN, "cannot start the helper thread (%d): no periodic reconcile",
		       rc);
		return -rc;
	}
	running = true;
	return 0;
}

void sm_helper_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	stop = true;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&lock);
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
}
