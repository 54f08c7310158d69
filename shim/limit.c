/*
 * Send admission (issue 4): a send that would take any level over max does
 * not overshoot.
 *
 * Before the real call, the bytes are charged through the thread's cache
 * without force (a reservation held in the cache slot's socket count, so a
 * SIGKILL mid-send still returns it); after the call, what was sent moves
 * into the socket's estimate and the rest is given back. A stream send may
 * be admitted in part (what fits under the tightest max, at least 4 KiB):
 * the call then moves only that much; datagrams are admitted whole or not.
 *
 * Refused: the cache slow path has already drained every cache of the
 * refusing level once; reconcile this socket (release what the kernel
 * already freed) and retry with what fits. Still refused:
 *  - forward progress: a socket with nothing queued may always send
 *    SM_QUANTUM, force-charged (counted in events.max), as the kernel lets a
 *    socket with an empty queue allocate. Overshoot bound: the sockets that
 *    do so at once x SM_QUANTUM.
 *  - non-blocking (O_NONBLOCK or MSG_DONTWAIT): SO_SNDBUF is moderated to
 *    half the queue (sk_stream_moderate_sndbuf), so poll/epoll report the
 *    socket not writable until its own queue drains, then -1/EAGAIN.
 *  - blocking: moderate likewise and wait for the queue to drain (poll
 *    POLLOUT, in slices of at most SLICE_MS so memory freed elsewhere in
 *    the group is noticed too), honouring SO_SNDTIMEO (then EAGAIN) and
 *    a signal ends the wait as in the kernel (sigw below). The wait depends on
 *    this socket's peer, not on the group: a proxy that must read elsewhere
 *    before memory frees is saved by the forward-progress rule.
 * No lock and no RCU read-side section is held while waiting or throttled.
 */
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "reclaim.h"
#include "state.h"
#include "trace.h"

#define SLICE_MS    20	       /* longest wait before re-trying admission */
#define MIN_PART    (4 * 1024) /* smallest partial admission */
#define SM_BIG_SEND (4 << 20)  /* tcp_wmem's default maximum */

/*
 * The traffic reconcile stride (sm_hot.reconcile_bytes): each reconcile is
 * a system call (SO_MEMINFO), about 2% of a loopback bulk stream's time at
 * one per MiB per socket. Between reconciles a sending socket's estimate
 * may run up to the stride above what the kernel holds, so a group's usage
 * may overstate by up to a stride per busy socket. That matters only where
 * a decision reads it: near a max (admission) or a high watermark (the
 * reclaimer). So the stride is SM_STRIDE_FAR times SOCKMEM_RECONCILE_BYTES
 * only while every level with a max or high has room for SM_FAR_PER_SOCK
 * base strides per socket open under it (four far strides each), and at
 * least SM_FAR_STRIDES base strides in all; otherwise (and while the tick
 * has not yet seen the change) the base stride. The tick also reconciles
 * every busy socket, so the figures shown are never more than one tick
 * behind either way; admission and the reclaimer correct any overstatement
 * before they act on it (they reconcile before they refuse or shrink).
 */
#define SM_STRIDE_FAR	4
#define SM_FAR_PER_SOCK 16
#define SM_FAR_STRIDES	256

static void stride_refresh(void)
{
	int64_t b = sm_cfg.reconcile_bytes, stride = INT64_MAX;

	if (b > 0) {
		int64_t per =
			sm_room_per_socket(sm_seg, sm_group, SM_FAR_STRIDES / SM_FAR_PER_SOCK);
		bool far = per / SM_FAR_PER_SOCK >= b; /* no overflow for any room */

		stride = far && b <= INT64_MAX / SM_STRIDE_FAR ? b * SM_STRIDE_FAR : b;
	}
	__atomic_store_n(&sm_hot.reconcile_bytes, stride, __ATOMIC_RELAXED);
}

void sm_limit_refresh(void)
{
	bool on = sm_limited(sm_seg, sm_group) ||
		  (sm_cfg.throttle && sm_high_level(sm_seg, sm_group) != SOCKMEM_NONE);

	__atomic_store_n(&sm_hot.limit_on, on, __ATOMIC_RELAXED);
	stride_refresh();
}

/*
 * A stream send is admitted no further than its socket's free send space
 * (SO_SNDBUF - wmem_queued, at least MIN_PART) near a max: the
 * rest would only wait inside the kernel's send while its reservation
 * counted against max as memory nobody holds (16 senders blocked in the
 * kernel with 64 KiB each made the group's counter read ~1 MiB over the
 * kernel's figure). The continuation loop (io.c) admits the rest as the
 * queue drains.
 */
static int64_t send_space(int fd, struct sm_sock *st, int64_t n)
{
	uint32_t mi[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mi);
	int saved = errno;
	int64_t space, room;

	/* Far from max (SM_NEAR_MAX of headroom or more left after this
	 * reservation), for a send no larger than the kernel's default largest
	 * send buffer, it cannot matter yet: no system call on that path. A
	 * larger send is cut to the free space whatever the room: whole, a
	 * blocking 48 MiB write to a peer that did not read reserved 48 MiB
	 * while the kernel held a send buffer's worth. */
	if (st->type != SOCK_STREAM || n <= MIN_PART)
		return n;
	room = sm_headroom(sm_seg, sm_group);
	if (n <= SM_BIG_SEND && room >= SM_NEAR_MAX && n <= room - SM_NEAR_MAX)
		return n;
	if (libc_getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) != 0 ||
	    len < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1)) {
		errno = saved;
		return n;
	}
	space = (int64_t)mi[SK_MEMINFO_SNDBUF] - (int64_t)mi[SK_MEMINFO_WMEM_QUEUED];
	if (space < MIN_PART)
		space = MIN_PART;
	return n < space ? n : space;
}

/* Charge up to n for st: all of it, or (streams) what fits. 0: refused. */
static int64_t try_admit(int fd, struct sm_sock *st, struct sockmem_cache *c, int64_t n)
{
	bool whole = st->type != SOCK_STREAM;
	int64_t room, want;

	n = send_space(fd, st, n);
	if (sm_cache_charge(c, n, false, NULL))
		return n;
	/* Every cache of the refusing level was drained once; now release
	 * what the kernel already freed for this socket. */
	sm_reconcile(fd, st);
	room = sm_headroom(sm_seg, sm_group);
	want = n < room ? n : room;
	if (whole ? want < n : want < (n < MIN_PART ? n : MIN_PART))
		return 0;
	return sm_cache_charge(c, want, false, NULL) ? want : 0;
}

/* Forward progress: nothing queued on this socket (per the reconcile just
 * done): a quantum, forced. */
static int64_t quantum(struct sm_sock *st, struct sockmem_cache *c, int64_t n)
{
	int64_t q = st->type != SOCK_STREAM || n < SM_QUANTUM ? n : SM_QUANTUM;

	if (atomic_load_explicit(&st->k_wmem, memory_order_relaxed) != 0)
		return 0;
	sm_cache_charge(c, q, true, NULL);
	sm_trace_hit(q, SM_TRACE_MAX);
	return q;
}

static bool nonblocking(int fd, int flags)
{
	int fl;

	if (flags & MSG_DONTWAIT)
		return true;
	fl = libc_fcntl(fd, F_GETFL, NULL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* SO_SNDTIMEO as an absolute deadline (0: none), read once per episode. A
 * timeout too long to hold ends at UINT64_MAX: still a timeout, so a signal
 * makes the wait fail with EINTR, as the kernel's own does. */
static uint64_t send_deadline(int fd)
{
	struct timeval tv = {0};
	socklen_t l = sizeof(tv);

	if (libc_getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l) != 0)
		return 0;
	return sm_timeout_deadline(sockmem_now_ns(), (long)tv.tv_sec, (long)tv.tv_usec);
}

static int sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};

	return nanosleep(&ts, NULL);
}

/*
 * Signals during a wait at max. The kernel's blocking send
 * (sk_stream_wait_memory) returns what it already copied if a signal is
 * pending; with nothing copied it fails with -ERESTARTSYS when the socket
 * has no SO_SNDTIMEO, which the kernel turns into a transparent restart if
 * the handler has SA_RESTART (EINTR otherwise), and with -EINTR when the
 * socket has a timeout (signal(7): EINTR regardless of SA_RESTART). A
 * signal that is ignored, or whose default action is to ignore, does not
 * interrupt. poll() alone cannot tell (it never restarts), so during the
 * wait the signals the program has not blocked (synchronous ones aside)
 * are blocked and watched through a signalfd: when one is pending, its
 * disposition is read, it is unblocked for a moment so its handler runs
 * as usual, and the wait restarts or ends with EINTR as the kernel's would.
 * A continuation of a send already partly sent returns its count on EINTR
 * (io.c); after a restarting handler it keeps waiting, as if the signal had
 * come before the call. If no signalfd can be had (EMFILE), any signal
 * ends the wait with EINTR.
 */
struct sigw {
	sigset_t old;	/* the thread's mask before the wait */
	sigset_t watch; /* signals that may interrupt the wait */
	int fd;		/* signalfd on watch, or -1 */
};

static void sigw_begin(struct sigw *w)
{
	static const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	int saved = errno;
	sigset_t all;

	w->fd = -1;
	sigfillset(&all); /* glibc leaves out its internal signals */
	for (size_t i = 0; i < sizeof(sync_sigs) / sizeof(sync_sigs[0]); i++)
		sigdelset(&all, sync_sigs[i]);
	if (pthread_sigmask(SIG_BLOCK, &all, &w->old) != 0) {
		errno = saved;
		return;
	}
	w->watch = all;
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&w->old, sig) == 1)
			sigdelset(&w->watch, sig);
	w->fd = signalfd(-1, &w->watch, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->fd < 0)
		pthread_sigmask(SIG_SETMASK, &w->old, NULL);
	errno = saved;
}

/* Restore the mask (signals that came meanwhile are delivered now). */
static void sigw_end(struct sigw *w)
{
	int saved = errno;

	if (w->fd < 0)
		return;
	libc_close(w->fd);
	w->fd = -1;
	pthread_sigmask(SIG_SETMASK, &w->old, NULL);
	errno = saved;
}

/* A watched signal is pending: run its handler (unblock, block again).
 * 0: keep waiting; -1: errno EINTR. `timed`: the socket has SO_SNDTIMEO. */
static int sigw_deliver(struct sigw *w, bool timed)
{
	bool handled = false, restart = true;
	sigset_t pend;

	if (sigpending(&pend) != 0)
		sigemptyset(&pend);
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sigismember(&w->watch, sig) != 1 || sigismember(&pend, sig) != 1 ||
		    sigaction(sig, NULL, &sa) != 0)
			continue;
		/* Ignored, or a default action (ignore, stop, terminate):
		 * the kernel's wait would not return to the program either. */
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		handled = true;
		if (!(sa.sa_flags & SA_RESTART))
			restart = false;
	}
	pthread_sigmask(SIG_SETMASK, &w->old, NULL); /* the handlers run here */
	pthread_sigmask(SIG_BLOCK, &w->watch, NULL);
	if (handled && (timed || !restart)) {
		errno = EINTR;
		return -1;
	}
	return 0;
}

/*
 * One slice of waiting: until the socket is writable again (its queue
 * drained below the moderated send buffer), the slice ends, the deadline,
 * or a signal. 0: try again; 1: the socket has an error or hung up (let
 * the real call report it); -1: errno EAGAIN (deadline) or EINTR.
 */
static int wait_slice(int fd, uint64_t deadline, struct sigw *w)
{
	uint64_t now = sockmem_now_ns(), slice = SLICE_MS * 1000000ull;
	struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = w->fd, .events = POLLIN}};
	nfds_t np = w->fd >= 0 ? 2 : 1;
	int r;

	if (deadline && now >= deadline) {
		errno = EAGAIN;
		return -1;
	}
	if (deadline && deadline - now < slice)
		slice = deadline - now;
	r = poll(p, np, (int)((slice + 999999) / 1000000));
	if (r < 0) /* with the signalfd, only unwatched (internal) signals */
		return errno == EINTR && np == 1 ? -1 : 0;
	if (np == 2 && (p[1].revents & POLLIN))
		return sigw_deliver(w, deadline != 0);
	if (r > 0 && (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
		return 1;
	/* Writable at once yet refused (a tiny queue the moderation cannot
	 * make unwritable): sleep out the slice rather than spin. */
	if (r > 0 && sockmem_now_ns() - now < slice / 4) {
		if (np == 1)
			return sleep_ns(slice) != 0 ? -1 : 0;
		r = poll(&p[1], 1, (int)((slice + 999999) / 1000000));
		if (r > 0 && (p[1].revents & POLLIN))
			return sigw_deliver(w, deadline != 0);
	}
	return 0;
}

/* Throttle over high (SOCKMEM_THROTTLE=1): the kernel's overage curve,
 * outside any lock or RCU section. */
static void throttle(int64_t nr)
{
	struct sockmem_group *g;
	struct timespec t0, t1;
	int64_t u, h;
	uint32_t lvl;
	uint64_t ns;

	if (!sm_cfg.throttle)
		return;
	lvl = sm_over_high(sm_seg, sm_group, &u, &h);
	if (lvl == SOCKMEM_NONE)
		return;
	ns = sm_throttle_delay_ns(u, h, nr);
	if (ns < SM_THROTTLE_MIN_NS)
		return;
	sm_trace_hit(nr, SM_TRACE_THROTTLE);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sleep_ns(ns); /* a signal cuts it short: fine */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	g = sockmem_group_at(sm_seg, lvl);
	if (g) {
		atomic_fetch_add_explicit(&g->ev_throttled, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&g->throttle_ns,
					  (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000ll +
						     (t1.tv_nsec - t0.tv_nsec)),
					  memory_order_relaxed);
	}
}

/*
 * One admission attempt under RCU. 1: admitted (a->got), 0: refused (the
 * send buffer is moderated), -1: not ours to admit (no state, not owned,
 * shutting down, or the fd now refers to another socket).
 */
static int attempt(int fd, int64_t n, struct sm_adm *a, bool first)
{
	struct sockmem_cache *c;
	struct sm_sock *st;
	int64_t got;
	int res = -1;

	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (!st || !sm_likely(sm_active_acquire()) || !sm_sock_owned(st) ||
	    (!first && ((const void *)st != a->st || st->ino != a->ino)) || !(c = sm_tcache()))
		goto out;
	a->st = st;
	a->ino = st->ino;
	got = try_admit(fd, st, c, n);
	if (!got)
		got = quantum(st, c, n);
	if (got) {
		a->on = true;
		a->got = got;
		res = 1;
	} else {
		sm_buf_moderate(fd, st);
		res = 0;
	}
out:
	sm_rcu_unlock();
	return res;
}

int sm_admit(int fd, int64_t n, int flags, struct sm_adm *a)
{
	int saved = errno, r = 0, err = 0;
	struct sigw w = {.fd = -1};
	uint64_t deadline = 0;

	a->on = false;
	if (n <= 0)
		return 0;
	for (int round = 0;; round++) {
		sm_nest++;
		r = attempt(fd, n, a, round == 0);
		sm_nest--;
		if (r != 0)
			break;
		if (round == 0) {
			sm_trace_hit(n, SM_TRACE_MAX);
			if (nonblocking(fd, flags)) {
				err = EAGAIN;
				break;
			}
			deadline = send_deadline(fd);
			sigw_begin(&w);
		}
		/* sm_nest is down while waiting: a signal handler's own sends
		 * are accounted as usual. */
		r = wait_slice(fd, deadline, &w);
		if (r < 0) {
			err = errno;
			break;
		}
		if (r > 0)
			break; /* the real call reports the socket's error */
	}
	sigw_end(&w);
	if (err) {
		errno = err;
		return -1;
	}
	errno = saved;
	if (a->on)
		throttle(a->got);
	errno = saved;
	return 0;
}

void sm_admit_done(int fd, struct sm_adm *a, ssize_t rc)
{
	int64_t sent = rc > 0 ? (int64_t)rc : 0;
	struct sockmem_cache *c;
	struct sm_sock *st;
	int saved = errno;

	if (!a->on)
		return;
	sm_nest++;
	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (sm_likely(sm_active_acquire()) && (c = sm_tcache()) != NULL) {
		if (sent > a->got) { /* cannot happen (the call was cut to got) */
			sm_cache_charge(c, sent - a->got, true, NULL);
			a->got = sent;
		}
		if ((const void *)st == a->st && st->ino == a->ino && sm_sock_owned(st) &&
		    sm_sock_publish(st, sent)) {
			if (a->got > sent)
				sm_cache_uncharge(c, a->got - sent);
			/* Near max, release at once what the kernel already
			 * passed on (to a peer that charges it at its own
			 * reconcile): an estimate left stale until the next
			 * SOCKMEM_RECONCILE_BYTES counts those bytes twice. */
			if (sent > 0 && sm_headroom(sm_seg, sm_group) < SM_NEAR_MAX)
				sm_reconcile(fd, st);
			else
				sm_reconcile_traffic(fd, st, sent, false);
		} else {
			sm_cache_uncharge(c, a->got); /* closed meanwhile */
		}
	} /* else exiting: the reservation returns with the process record */
	sm_rcu_unlock();
	sm_nest--;
	errno = saved;
}
