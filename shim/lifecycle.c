/*
 * Sockets coming and going: socket, socketpair, accept, accept4, dup, dup2,
 * dup3, fcntl(F_DUPFD*), close, close_range; and the buffer-size socket
 * options (one choke point for issue 4's clamping). Load, fork and exit are
 * in init.c.
 *
 * These are slow paths, but they allocate nothing with malloc (the fd table
 * grows with mmap) and take no lock, except a fork child's first socket
 * (process registration), so socket/accept/close stay async-signal-safe
 * like libc's.
 */
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "state.h"

static int raw_getpid(void)
{
	return (int)syscall(SYS_getpid);
}

/*
 * A vfork child (or a raw clone) shares our memory: it must not touch the
 * table or the charges, or a close() before its exec would release the
 * parent's sockets. Checked on the slow paths that mutate the table.
 */
static bool in_own_process(void)
{
	return raw_getpid() == sm_pid;
}

/* ---- sockets coming and going ----------------------------------------- */

static bool accounted(int family, int type)
{
	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	switch (family) {
	case AF_INET:
		if (!(sm_cfg.families & SM_FAM_INET))
			return false;
		break;
	case AF_INET6:
		if (!(sm_cfg.families & SM_FAM_INET6))
			return false;
		break;
	case AF_UNIX:
		if (!(sm_cfg.families & SM_FAM_UNIX))
			return false;
		return type == SOCK_STREAM || type == SOCK_DGRAM || type == SOCK_SEQPACKET;
	default:
		return false;
	}
	return type == SOCK_STREAM || type == SOCK_DGRAM;
}

/* A new fd appeared (socket, accept): give it fresh state, or none. Either
 * way any stale state left at that fd number is dropped. `from`: the
 * listening socket's state (accept), whose buffer requests it inherits. */
static void track_from(int fd, int family, int type, const struct sm_sock *from)
{
	struct sm_sock *st = NULL, *old;
	struct stat sb;

	if (accounted(family, type) && sm_proc_ensure()) {
		st = sm_sock_new(family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC),
				 fstat(fd, &sb) == 0 ? (uint64_t)sb.st_ino : 0);
		if (st && from)
			sm_buf_inherit(st, from);
		if (st && sm_fd_install(fd, st)) {
			sm_sock_opened();
			/* st stays valid: our table entry holds a reference, and
			 * this runs inside the read-side section (SLOW_PATH). */
			sm_buf_new_socket(fd, st);
		}
		return;
	}
	old = sm_fd_take(fd);
	if (old)
		sm_sock_put(old);
}

static void track_new(int fd, int family, int type)
{
	track_from(fd, family, type, NULL);
}

/* ---- sockets already open at load (F7) ---------------------------------- */

/*
 * A socket created before our constructor ran (by an earlier constructor,
 * or inherited over exec) never went through socket()/accept() here. The
 * constructor lists /proc/self/fd once and gives each accounted socket a
 * state, as track_new would have. If another live member holds the same
 * open file at the same fd number (fork then exec: the parent still has
 * its copy, and charges it), the state is inherited, not owned: it is
 * adopted like a fork child's (sm_sock_adopt), on use or on a tick, once
 * that member lets go; a socket is never charged by two members at once.
 * Cost: one open and getdents at load, an fstat per fd, two getsockopt and
 * one kcmp per live member for each socket found; nothing on the data path.
 * Not seen: a holder that has the file at another fd number (then both
 * charge it until one closes), members of another namespace.
 */
static void adopt_one(int fd)
{
	int family = 0, type = 0, holder;
	socklen_t len = sizeof(int);
	struct sm_sock *st;
	struct stat sb;

	if (sm_fd_peek(fd) || fstat(fd, &sb) != 0 || !S_ISSOCK(sb.st_mode) ||
	    libc_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0 ||
	    libc_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || !accounted(family, type))
		return;
	holder = sm_sock_holder(fd);
	if (holder < 0) {
		sm_log_once(SM_LOG_INFO, "kcmp unavailable: sockets open at load are unaccounted");
		return;
	}
	st = sm_sock_new(family, type, (uint64_t)sb.st_ino);
	if (!st)
		return;
	if (holder > 0) {
		atomic_store_explicit(&st->epoch, SM_EPOCH_FOREIGN, memory_order_relaxed);
		st->owner_pid = holder;
	}
	if (!sm_fd_install(fd, st) || holder > 0)
		return;
	sm_sock_opened();
	sm_reconcile(fd, st); /* charge what it holds already */
	sm_buf_new_socket(fd, st);
}

struct dirent64_raw {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

void sm_adopt_existing(void)
{
	char buf[2048] __attribute__((aligned(8)));
	int dfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd",
			       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	if (dfd < 0) {
		sm_log(SM_LOG_INFO, "no /proc/self/fd: sockets open at load are unaccounted");
		return;
	}
	while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			const struct dirent64_raw *d = (const void *)(buf + off);
			const char *c = d->d_name;
			long fd = 0;

			off += d->d_reclen;
			for (; *c >= '0' && *c <= '9' && fd < SM_FD_MAX; c++)
				fd = fd * 10 + (*c - '0');
			if (*c == '\0' && c != d->d_name && fd < SM_FD_MAX && fd != dfd)
				adopt_one((int)fd);
		}
	}
	syscall(SYS_close, dfd);
}

/* new_fd now refers to old_fd's open file (dup family). */
static void track_dup(int old_fd, int new_fd)
{
	struct sm_sock *st = sm_fd_ref(old_fd);

	if (st) {
		sm_fd_install_ref(new_fd, st);
	} else {
		st = sm_fd_take(new_fd);
		if (st)
			sm_sock_put(st);
	}
}

/*
 * Run a table-changing slow path: not re-entered, not in a vfork child, and
 * inside an RCU read-side section that re-checks sm_hot.active, so the exit
 * path (which clears sm_hot.active and then waits a grace period) knows no
 * thread is still changing charges when it unregisters the process.
 */
#define SLOW_PATH(stmt)                                                                            \
	do {                                                                                       \
		if (sm_likely(!sm_nest) && in_own_process()) {                                     \
			int saved_ = errno;                                                        \
			sm_nest++;                                                                 \
			sm_rcu_lock();                                                             \
			if (sm_likely(sm_active_acquire()))                                        \
				stmt;                                                              \
			sm_rcu_unlock();                                                           \
			sm_nest--;                                                                 \
			errno = saved_;                                                            \
		}                                                                                  \
	} while (0)

static int lc_socket(int d, int t, int p)
{
	int fd;

	if (sm_unlikely(!sm_is_active()))
		return libc_socket(d, t, p);
	fd = libc_socket(d, t, p);
	if (fd >= 0)
		SLOW_PATH(track_new(fd, d, t));
	return fd;
}

static int lc_socketpair(int d, int t, int p, int *sv)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_socketpair(d, t, p, sv);
	rc = libc_socketpair(d, t, p, sv);
	if (rc == 0)
		SLOW_PATH(track_new(sv[0], d, t); track_new(sv[1], d, t));
	return rc;
}

/* The accepted socket's family and type: the listener's state when we
 * have it, else ask the kernel (a listener inherited over exec). */
static void track_accepted(int lfd, int fd)
{
	int family = 0, type = 0;
	socklen_t len = sizeof(int);
	struct sm_sock *st;

	/* Inside SLOW_PATH's read-side section: the listener's state stays
	 * valid while it is copied, even if another thread closes it. */
	st = sm_fd_peek(lfd);
	if (st) {
		family = st->family;
		type = st->type;
	}
	if (!st && (libc_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0 ||
		    libc_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0))
		family = AF_UNSPEC;
	track_from(fd, family, type, st);
}

static int lc_accept4(int lfd, struct sockaddr *a, socklen_t *al, int fl, bool four)
{
	int fd;

	if (sm_unlikely(!sm_is_active()))
		return four ? libc_accept4(lfd, a, al, fl) : libc_accept(lfd, a, al);
	fd = four ? libc_accept4(lfd, a, al, fl) : libc_accept(lfd, a, al);
	if (fd >= 0)
		SLOW_PATH(track_accepted(lfd, fd));
	return fd;
}

struct closing {
	int fd;
	struct sm_sock *st;
};

/* The thread was cancelled in close(), a cancellation point, holding the
 * state it took out of the table: glibc leaves the fd open if the cancel
 * was acted on before the system call, and Linux frees it if it came
 * during. Put the state back in the first case, release it in the other
 * (else its whole charge stays for the life of the process). */
static void close_cancelled(void *arg)
{
	const struct closing *c = arg;
	struct stat sb;

	if (fstat(c->fd, &sb) == 0 && S_ISSOCK(sb.st_mode) && (uint64_t)sb.st_ino == c->st->ino)
		SLOW_PATH(sm_fd_install_ref(c->fd, c->st));
	else
		SLOW_PATH(sm_sock_put(c->st));
}

static int lc_close(int fd)
{
	struct closing c = {.fd = fd};
	int rc;

	if (sm_unlikely(!sm_is_active()) || !sm_fd_peek(fd))
		return libc_close(fd);
	/* Clear the entry before the fd number can be reused (see
	 * sm_reconcile), then release the state once the fd is gone. The
	 * close itself runs outside the read-side section: it may linger. */
	SLOW_PATH(c.st = sm_fd_take(fd));
	if (!c.st)
		return libc_close(fd);
	pthread_cleanup_push(close_cancelled, &c);
	rc = libc_close(fd);
	pthread_cleanup_pop(0);
	SLOW_PATH(sm_sock_put(c.st));
	return rc;
}

/*
 * As close: the entries go before the fds do. Dropped after the call, an fd
 * the kernel had just freed could be reused by another thread's socket(),
 * accept() or dup() and its new state dropped with the old ones (that socket
 * then went unaccounted for life). Arguments the kernel refuses (EINVAL:
 * lo > hi, unknown flags) change nothing. Left as is: with
 * CLOSE_RANGE_UNSHARE in a multi-threaded program the other threads keep
 * those fds but lose their states (one table for the process; the tick
 * does not bring them back), and if the kernel fails after validation
 * (ENOMEM for the unshared table) the fds stay open, unaccounted.
 */
static int lc_close_range(unsigned lo, unsigned hi, int fl)
{
	/* CLOSE_RANGE_CLOEXEC closes nothing; unknown flags: EINVAL. */
	if (sm_unlikely(!sm_is_active()) || lo > hi || (fl & ~CLOSE_RANGE_UNSHARE))
		return libc_close_range(lo, hi, fl);
	SLOW_PATH(sm_fd_drop_range(lo, hi));
	return libc_close_range(lo, hi, fl);
}

static int lc_dup(int fd)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_dup(fd);
	rc = libc_dup(fd);
	if (rc >= 0 && (sm_fd_peek(fd) || sm_fd_peek(rc)))
		SLOW_PATH(track_dup(fd, rc));
	return rc;
}

static int lc_dup3(int fd, int nfd, int fl, bool three)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return three ? libc_dup3(fd, nfd, fl) : libc_dup2(fd, nfd);
	rc = three ? libc_dup3(fd, nfd, fl) : libc_dup2(fd, nfd);
	if (rc >= 0 && fd != nfd && (sm_fd_peek(fd) || sm_fd_peek(rc)))
		SLOW_PATH(track_dup(fd, rc));
	return rc;
}

static int lc_fcntl(int fd, int cmd, void *arg, bool is64)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return is64 ? libc_fcntl64(fd, cmd, arg) : libc_fcntl(fd, cmd, arg);
	rc = is64 ? libc_fcntl64(fd, cmd, arg) : libc_fcntl(fd, cmd, arg);
	if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) &&
	    (sm_fd_peek(fd) || sm_fd_peek(rc)))
		SLOW_PATH(track_dup(fd, rc));
	return rc;
}

/*
 * SO_SNDBUF/SO_RCVBUF (and *FORCE), SO_BUF_LOCK, TCP_WINDOW_CLAMP on an
 * owned socket: the program's request is remembered and, while the shim
 * imposes buffer sizes (budget, pressure), merged with them (clamp.c);
 * getsockopt reports what the program asked for. Everything else, and
 * every socket we do not own, passes through.
 */
static int lc_sockopt(bool set, int fd, int lv, int nm, void *v, socklen_t l, socklen_t *lp)
{
	int rc = 0, saved = errno, err;
	struct sm_sock *st;
	bool done = false;

	if (sm_unlikely(!sm_is_active()) || !sm_fd_peek(fd) || sm_nest ||
	    !(lv == SOL_SOCKET || lv == IPPROTO_TCP))
		return set ? libc_setsockopt(fd, lv, nm, v, l) : libc_getsockopt(fd, lv, nm, v, lp);
	sm_nest++;
	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (st && sm_likely(sm_active_acquire()) && sm_sock_owned(st))
		done = set ? sm_buf_setsockopt(fd, st, lv, nm, v, l, &rc)
			   : sm_buf_getsockopt(fd, st, lv, nm, v, lp, &rc);
	err = errno;
	sm_rcu_unlock();
	sm_nest--;
	if (!done)
		return set ? libc_setsockopt(fd, lv, nm, v, l) : libc_getsockopt(fd, lv, nm, v, lp);
	errno = rc == 0 ? saved : err;
	return rc;
}

static int lc_setsockopt(int fd, int lv, int nm, const void *v, socklen_t l)
{
	return lc_sockopt(true, fd, lv, nm, (void *)v, l, NULL);
}

static int lc_getsockopt(int fd, int lv, int nm, void *v, socklen_t *l)
{
	return lc_sockopt(false, fd, lv, nm, v, 0, l);
}

/* ---- exported interposers ---------------------------------------------- */

SM_EXPORT int socket(int d, int t, int p)
{
	return lc_socket(d, t, p);
}

SM_EXPORT int socketpair(int d, int t, int p, int sv[2])
{
	return lc_socketpair(d, t, p, sv);
}

SM_EXPORT int accept(int fd, struct sockaddr *a, socklen_t *al)
{
	return lc_accept4(fd, a, al, 0, false);
}

SM_EXPORT int accept4(int fd, struct sockaddr *a, socklen_t *al, int fl)
{
	return lc_accept4(fd, a, al, fl, true);
}

SM_EXPORT int close(int fd)
{
	return lc_close(fd);
}

SM_EXPORT int close_range(unsigned int lo, unsigned int hi, int fl)
{
	return lc_close_range(lo, hi, fl);
}

SM_EXPORT int dup(int fd)
{
	return lc_dup(fd);
}

SM_EXPORT int dup2(int fd, int nfd)
{
	return lc_dup3(fd, nfd, 0, false);
}

SM_EXPORT int dup3(int fd, int nfd, int fl)
{
	return lc_dup3(fd, nfd, fl, true);
}

SM_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	/* Every fcntl argument is an int, a pointer or absent; reading one
	 * pointer-sized word and passing it on is what glibc itself does. */
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return lc_fcntl(fd, cmd, arg, false);
}

SM_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return lc_fcntl(fd, cmd, arg, true);
}

SM_EXPORT int setsockopt(int fd, int lv, int nm, const void *v, socklen_t l)
{
	return lc_setsockopt(fd, lv, nm, v, l);
}

SM_EXPORT int getsockopt(int fd, int lv, int nm, void *v, socklen_t *l)
{
	return lc_getsockopt(fd, lv, nm, v, l);
}
