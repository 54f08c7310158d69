/*
 * The data path: send/recv and every other call that moves bytes through a
 * socket.
 *
 * Each interposer calls the real function, then accounts the bytes it moved
 * (send: charge; receive: uncharge, but never for MSG_PEEK/MSG_ERRQUEUE).
 * Cost when no group is set: one load and one predictable branch. With a
 * group, on an fd that is not an accounted socket: two more loads. On an
 * accounted socket: an RCU read-side section (no fence with membarrier), a
 * charge from the thread's cache (plain stores), and one CAS on the socket's
 * estimate. No lock, no allocation, no logging; errno is preserved; safe in
 * a signal handler (a nested call finds sm_nest raised and passes through).
 */
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "real.h"
#include "state.h"

ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *addrlen);

#define RX_SKIP (MSG_PEEK | MSG_ERRQUEUE) /* nothing leaves the queue */

/* An inherited socket in use: try to adopt it (sm_sock_adopt) on the first
 * use after fork and then every SOCKMEM_RECONCILE_BYTES of traffic. */
static bool adopt_on_use(int fd, struct sm_sock *st, int64_t n)
{
	int64_t every = sm_cfg.reconcile_bytes > 0 ? sm_cfg.reconcile_bytes : 256 * 1024;
	int64_t old = atomic_load_explicit(&st->pending, memory_order_relaxed);

	if (old != 0 && old + n < every) {
		atomic_store_explicit(&st->pending, old + n, memory_order_relaxed);
		return false;
	}
	atomic_store_explicit(&st->pending, 1, memory_order_relaxed);
	return sm_sock_adopt(fd, st);
}

static __attribute__((noinline)) void account_slow(int fd, int64_t n, bool tx)
{
	int saved = errno;
	struct sm_sock *st;

	sm_nest++;
	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (st && sm_likely(sm_active)) { /* re-check: see sm_fini */
		if (sm_sock_owned(st)) {
			if (tx)
				sm_sock_charge(st, n);
			else
				sm_sock_uncharge(st, n);
			sm_reconcile_traffic(fd, st, n);
		} else if (adopt_on_use(fd, st, n)) {
			sm_reconcile(fd, st); /* charge what it holds now */
		}
	}
	sm_rcu_unlock();
	sm_nest--;
	errno = saved;
}

static inline void tx(int fd, ssize_t n)
{
	if (n > 0 && sm_fd_peek(fd) && sm_likely(!sm_nest))
		account_slow(fd, n, true);
}

static inline void rx(int fd, ssize_t n, int flags)
{
	if (n > 0 && !(flags & RX_SKIP) && sm_fd_peek(fd) && sm_likely(!sm_nest))
		account_slow(fd, n, false);
}

static int64_t mmsg_bytes(const struct mmsghdr *v, int n)
{
	int64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += v[i].msg_len;
	return sum;
}

/* ---- send side -------------------------------------------------------- */

static inline ssize_t io_send(int fd, const void *b, size_t n, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_send(fd, b, n, fl);
	rc = libc_send(fd, b, n, fl);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a,
				socklen_t al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_sendto(fd, b, n, fl, a, al);
	rc = libc_sendto(fd, b, n, fl, a, al);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendmsg(int fd, const struct msghdr *m, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_sendmsg(fd, m, fl);
	rc = libc_sendmsg(fd, m, fl);
	tx(fd, rc);
	return rc;
}

static inline int io_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl)
{
	int rc;

	if (sm_unlikely(!sm_active))
		return libc_sendmmsg(fd, v, n, fl);
	rc = libc_sendmmsg(fd, v, n, fl);
	if (rc > 0 && sm_fd_peek(fd))
		tx(fd, mmsg_bytes(v, rc));
	return rc;
}

static inline ssize_t io_write(int fd, const void *b, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_write(fd, b, n);
	rc = libc_write(fd, b, n);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_writev(int fd, const struct iovec *v, int n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_writev(fd, v, n);
	rc = libc_writev(fd, v, n);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendfile(int o, int i, off_t *off, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_sendfile(o, i, off, n);
	rc = libc_sendfile(o, i, off, n);
	tx(o, rc);
	return rc;
}

static inline ssize_t io_sendfile64(int o, int i, off64_t *off, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_sendfile64(o, i, off, n);
	rc = libc_sendfile64(o, i, off, n);
	tx(o, rc);
	return rc;
}

/* splice moves bytes out of fd_in and into fd_out: either may be a socket. */
static inline ssize_t io_splice(int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_splice(fi, oi, fo, oo, n, fl);
	rc = libc_splice(fi, oi, fo, oo, n, fl);
	rx(fi, rc, 0);
	tx(fo, rc);
	return rc;
}

/* ---- receive side ----------------------------------------------------- */

static inline ssize_t io_recv(int fd, void *b, size_t n, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_recv(fd, b, n, fl);
	rc = libc_recv(fd, b, n, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *a,
				  socklen_t *al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_recvfrom(fd, b, n, fl, a, al);
	rc = libc_recvfrom(fd, b, n, fl, a, al);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvmsg(int fd, struct msghdr *m, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_recvmsg(fd, m, fl);
	rc = libc_recvmsg(fd, m, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline int io_recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t)
{
	int rc;

	if (sm_unlikely(!sm_active))
		return libc_recvmmsg(fd, v, n, fl, t);
	rc = libc_recvmmsg(fd, v, n, fl, t);
	if (rc > 0 && sm_fd_peek(fd))
		rx(fd, mmsg_bytes(v, rc), fl);
	return rc;
}

static inline ssize_t io_read(int fd, void *b, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_read(fd, b, n);
	rc = libc_read(fd, b, n);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_readv(int fd, const struct iovec *v, int n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc_readv(fd, v, n);
	rc = libc_readv(fd, v, n);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_read_chk(int fd, void *b, size_t n, size_t bl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc___read_chk(fd, b, n, bl);
	rc = libc___read_chk(fd, b, n, bl);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_recv_chk(int fd, void *b, size_t n, size_t bl, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc___recv_chk(fd, b, n, bl, fl);
	rc = libc___recv_chk(fd, b, n, bl, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl,
				      struct sockaddr *a, socklen_t *al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_active))
		return libc___recvfrom_chk(fd, b, n, bl, fl, a, al);
	rc = libc___recvfrom_chk(fd, b, n, bl, fl, a, al);
	rx(fd, rc, fl);
	return rc;
}

/* ---- the exported interposers ----------------------------------------- */

SM_EXPORT ssize_t send(int fd, const void *b, size_t n, int fl)
{
	return io_send(fd, b, n, fl);
}

SM_EXPORT ssize_t sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a,
			 socklen_t al)
{
	return io_sendto(fd, b, n, fl, a, al);
}

SM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl)
{
	return io_sendmsg(fd, m, fl);
}

SM_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl)
{
	return io_sendmmsg(fd, v, n, fl);
}

SM_EXPORT ssize_t write(int fd, const void *b, size_t n)
{
	return io_write(fd, b, n);
}

SM_EXPORT ssize_t writev(int fd, const struct iovec *v, int n)
{
	return io_writev(fd, v, n);
}

SM_EXPORT ssize_t sendfile(int o, int i, off_t *off, size_t n)
{
	return io_sendfile(o, i, off, n);
}

SM_EXPORT ssize_t sendfile64(int o, int i, off64_t *off, size_t n)
{
	return io_sendfile64(o, i, off, n);
}

SM_EXPORT ssize_t splice(int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl)
{
	return io_splice(fi, oi, fo, oo, n, fl);
}

SM_EXPORT ssize_t recv(int fd, void *b, size_t n, int fl)
{
	return io_recv(fd, b, n, fl);
}

SM_EXPORT ssize_t recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *a, socklen_t *al)
{
	return io_recvfrom(fd, b, n, fl, a, al);
}

SM_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl)
{
	return io_recvmsg(fd, m, fl);
}

SM_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t)
{
	return io_recvmmsg(fd, v, n, fl, t);
}

SM_EXPORT ssize_t read(int fd, void *b, size_t n)
{
	return io_read(fd, b, n);
}

SM_EXPORT ssize_t readv(int fd, const struct iovec *v, int n)
{
	return io_readv(fd, v, n);
}

SM_EXPORT ssize_t __read_chk(int fd, void *b, size_t n, size_t bl)
{
	return io_read_chk(fd, b, n, bl);
}

SM_EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t bl, int fl)
{
	return io_recv_chk(fd, b, n, bl, fl);
}

SM_EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *a,
				 socklen_t *al)
{
	return io_recvfrom_chk(fd, b, n, bl, fl, a, al);
}
