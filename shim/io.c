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
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "reclaim.h"
#include "state.h"

ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *addrlen);

#define RX_SKIP	  (MSG_PEEK | MSG_ERRQUEUE) /* nothing leaves the queue */
#define SM_MAXIOV 1024			    /* the kernel's UIO_MAXIOV */

/* An inherited socket in use: try to adopt it (sm_sock_adopt) on the first
 * use after fork and then every SOCKMEM_RECONCILE_BYTES of traffic. */
static bool adopt_on_use(int fd, struct sm_sock *st, int64_t n)
{
	int64_t every = sm_cfg.reconcile_bytes > 0 ? sm_cfg.reconcile_bytes : 1024 * 1024;
	int64_t old = atomic_load_explicit(&st->pending, memory_order_relaxed);

	if (old != 0 && old + n < every) {
		atomic_store_explicit(&st->pending, old + n, memory_order_relaxed);
		return false;
	}
	atomic_store_explicit(&st->pending, 1, memory_order_relaxed);
	return sm_sock_adopt(fd, st);
}

/* Headroom under SM_NEAR_MAX at some level: estimates are kept tight. */
static bool near_max(void)
{
	return sm_headroom(sm_seg, sm_group) < SM_NEAR_MAX;
}

/* Everything the fast path declines (no cache yet, the stock runs out, a
 * reconcile is due, an inherited socket). Out of line and out of the hot
 * pages; keeps errno. */
static __attribute__((noinline, cold)) void account_slow(int fd, struct sm_sock *st, int64_t n,
							 bool tx)
{
	int saved = errno;

	if (sm_sock_owned(st)) {
		bool dry = false;

		/* Near a max, a read that leaves the estimate stale means the
		 * kernel holds data we have not counted yet (it arrives
		 * unseen): reconcile now. */
		if (tx) {
			sm_sock_charge(st, n);
		} else {
			sm_sock_uncharge(st, n);
			dry = sm_limit_is_on() &&
			      sm_sock_rx_stale(
				      st, atomic_load_explicit(&st->est, memory_order_relaxed)) &&
			      near_max();
		}
		sm_reconcile_traffic(fd, st, n, dry);
	} else if (adopt_on_use(fd, st, n)) {
		sm_reconcile(fd, st); /* charge what it holds now */
	}
	errno = saved;
}

/* The fast path's SM_FAST_DRY: a receive left the estimate stale under a
 * limit; near the max, reconcile now (as account_slow would have). */
static __attribute__((noinline, cold)) void account_dry(int fd, struct sm_sock *st)
{
	if (near_max())
		SM_SAVE_ERRNO(sm_reconcile_traffic(fd, st, 0, true));
}

/* n bytes moved on fd (an accounted socket, seen by tx/rx). The first
 * function of .text.hot, page-aligned, so that it and the interposers after
 * it (send, recv, write, read, ...: see the end of this file) take as few
 * code pages as they can (see struct sm_hot in real.h for why pages count). */
static __attribute__((noinline, hot, aligned(4096))) void account(int fd, int64_t n, bool tx)
{
	struct sm_sock *st;

	sm_nest++;
	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (st && sm_likely(sm_active_acquire())) { /* re-check: see sm_fini */
		enum sm_fast r =
			sm_likely(sm_sock_owned(st)) ? sm_sock_fast(st, n, tx) : SM_FAST_NO;

		if (sm_unlikely(r == SM_FAST_NO))
			account_slow(fd, st, n, tx);
		else if (sm_unlikely(r == SM_FAST_DRY))
			account_dry(fd, st);
	}
	sm_rcu_unlock();
	sm_nest--;
}

static inline void tx(int fd, ssize_t n)
{
	if (n > 0 && sm_fd_peek(fd) && sm_likely(!sm_nest))
		account(fd, n, true);
}

static inline void rx(int fd, ssize_t n, int flags)
{
	if (n > 0 && !(flags & RX_SKIP) && sm_fd_peek(fd) && sm_likely(!sm_nest))
		account(fd, n, false);
}

static int64_t mmsg_bytes(const struct mmsghdr *v, int n)
{
	int64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += v[i].msg_len;
	return sum;
}

/* ---- send admission (issue 4, limit.c) ------------------------------- */

/* Admission applies: a limited group, an accounted socket, not re-entered. */
static inline bool adm_on(int fd)
{
	return sm_unlikely(sm_limit_is_on()) && sm_fd_peek(fd) && sm_likely(!sm_nest);
}

/* After the call: settle an admission, or charge as without limits. */
static void adm_done(int fd, struct sm_adm *a, ssize_t rc)
{
	if (a->on)
		sm_admit_done(fd, a, rc);
	else
		tx(fd, rc);
}

/* A byte count the caller passed, as admission takes it: a size_t above
 * INT64_MAX would turn negative (the kernel caps a send far below). */
static int64_t adm_bytes(size_t n)
{
	return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

static size_t adm_len(const struct sm_adm *a, size_t n)
{
	return a->on && (size_t)a->got < n ? (size_t)a->got : n;
}

enum buf_call { BC_SEND, BC_SENDTO, BC_WRITE };

static ssize_t buf_call(enum buf_call k, int fd, const void *b, size_t n, int fl,
			const struct sockaddr *a, socklen_t al)
{
	if (k == BC_SEND)
		return libc_send(fd, b, n, fl);
	if (k == BC_SENDTO)
		return libc_sendto(fd, b, n, fl, a, al);
	return libc_write(fd, b, n);
}

/* Is a short admitted send to be continued (a blocking socket: the kernel
 * would have sent everything, waiting as needed)? */
static bool continue_send(int fd, int fl, size_t asked, ssize_t rc)
{
	int f;

	if (rc <= 0 || (size_t)rc < asked || (fl & MSG_DONTWAIT))
		return false;
	f = libc_fcntl(fd, F_GETFL, NULL);
	return f >= 0 && !(f & O_NONBLOCK);
}

/* A later round failed: what the earlier rounds sent, with the caller's
 * errno (a successful call leaves it alone), or the failure itself. */
static ssize_t sent_so_far(size_t done, int saved, ssize_t rc)
{
	if (!done)
		return rc;
	errno = saved;
	return (ssize_t)done;
}

/* send/sendto/write under a limit: admitted chunk by chunk. */
static ssize_t lim_buf(enum buf_call k, int fd, const void *b, size_t n, int fl,
		       const struct sockaddr *a, socklen_t al)
{
	size_t done = 0;
	int saved = errno;

	for (int i = 0; i < 1 << 20; i++) {
		size_t len, left = n - done;
		struct sm_adm ad;
		ssize_t rc;

		if (sm_admit(fd, adm_bytes(left), fl, &ad) < 0)
			return sent_so_far(done, saved, -1);
		len = adm_len(&ad, left);
		rc = buf_call(k, fd, (const char *)b + done, len, fl, a, al);
		adm_done(fd, &ad, rc);
		if (rc < 0)
			return sent_so_far(done, saved, rc);
		done += (size_t)rc;
		/* Not cut by us (the kernel's own answer), or cut on a
		 * non-blocking socket: return what was sent. */
		if (len == left || !continue_send(fd, fl, len, rc))
			break;
	}
	return (ssize_t)done;
}

/*
 * Reading the caller's vectors before the call. Admission needs a vector
 * send's byte count before the kernel has checked its pointers: a bad
 * msghdr, iovec or mmsghdr pointer must get the kernel's EFAULT, not crash
 * the program. So they are copied with process_vm_readv on ourselves, which
 * fails instead of faulting (one system call, on the limited path only).
 * process_vm_readv is a debugging call that sandboxes often forbid, some by
 * killing the caller: a process already under a seccomp filter when the
 * shim loads (systemd's SystemCallFilter, a container's profile) never
 * makes it, and one that gets ENOSYS or EPERM stops; both read the pointers
 * directly, as before. Left as is: a filter the program installs later that
 * kills on process_vm_readv (see ARCHITECTURE, "Not covered"). Another
 * thread unmapping the vector between this copy and the kernel's is the
 * program's own race.
 */
static _Atomic bool no_vm_read;

void sm_io_init(void)
{
	char line[128];
	FILE *f = fopen("/proc/self/status", "re");
	bool filtered = f == NULL; /* cannot tell: assume the worst */

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "Seccomp:", 8) == 0)
			filtered = atoi(line + 8) != 0;
	if (f)
		fclose(f);
	atomic_store_explicit(&no_vm_read, filtered, memory_order_relaxed);
}

/* Copy the caller's ranges r[0..nr) to l (their total size): 0, or -1 if
 * some byte of them is unreadable. Keeps errno. */
static int peek_user(void *l, size_t len, const struct iovec *r, unsigned long nr)
{
	struct iovec lv = {l, len};
	int saved = errno;
	ssize_t rc;

	if (len == 0)
		return 0;
	if (!atomic_load_explicit(&no_vm_read, memory_order_relaxed)) {
		rc = process_vm_readv(sm_pid, &lv, 1, r, nr, 0);
		if (rc >= 0 || (errno != ENOSYS && errno != EPERM)) {
			errno = saved;
			return rc == (ssize_t)len ? 0 : -1; /* short: a range ends unreadable */
		}
		atomic_store_explicit(&no_vm_read, true, memory_order_relaxed);
	}
	errno = saved;
	for (unsigned long i = 0; i < nr; i++) {
		memcpy(l, r[i].iov_base, r[i].iov_len);
		l = (char *)l + r[i].iov_len;
	}
	return 0;
}

static int peek_one(void *l, const void *src, size_t len)
{
	struct iovec r = {(void *)src, len};

	return peek_user(l, len, &r, 1);
}

#define PEEK_IOVS 64 /* iovecs copied per system call (1 KiB of stack) */

static int64_t iov_len_sat(const struct iovec *v)
{
	return v->iov_len > INT64_MAX ? INT64_MAX : (int64_t)v->iov_len;
}

/* Bytes in v[0..n) (n in 0..SM_MAXIOV), read safely into *total
 * (saturated: the kernel refuses a vector over SSIZE_MAX): 0, or -1 if v
 * is unreadable. */
static int iov_total(const struct iovec *v, int n, int64_t *total)
{
	struct iovec c[PEEK_IOVS];
	int64_t sum = 0;

	for (int i = 0; i < n; i += PEEK_IOVS) {
		int k = n - i < PEEK_IOVS ? n - i : PEEK_IOVS;

		if (peek_one(c, v + i, (size_t)k * sizeof(*v)) != 0)
			return -1;
		for (int j = 0; j < k; j++)
			sum = sm_add_sat(sum, iov_len_sat(&c[j]));
	}
	*total = sum;
	return 0;
}

/* Bytes in v[0..n) of a vector already read once (see iov_total). */
static int64_t iov_bytes(const struct iovec *v, int n)
{
	int64_t sum = 0;

	for (int i = 0; v && i < n; i++)
		sum = sm_add_sat(sum, iov_len_sat(&v[i]));
	return sum;
}

/* At most `lim` (> 0) bytes from the start of v, without copying the
 * vector: its whole pieces that fit, or else the first piece cut (in
 * *one). */
static void iov_prefix(const struct iovec *v, int n, int64_t lim, struct iovec *one,
		       const struct iovec **out, int *outn)
{
	int64_t sum = 0;
	int k = 0;

	while (k < n && sum + (int64_t)v[k].iov_len <= lim)
		sum += (int64_t)v[k++].iov_len;
	if (k > 0 || n == 0) {
		*out = v;
		*outn = k;
		return;
	}
	*one = v[0];
	one->iov_len = (size_t)lim;
	*out = one;
	*outn = 1;
}

/*
 * writev/sendmsg under a limit, consistent with send/write (lim_buf): each
 * round admits what is left (a stream in part), sends the admitted prefix
 * of the vector, and a blocking socket continues until everything is sent
 * or the kernel itself returns short; a wait interrupted by a signal
 * returns what was sent. Ancillary data goes with the first round only.
 */
static ssize_t lim_vec(int fd, const struct msghdr *m, const struct iovec *v, int n, int fl)
{
	int64_t total = 0;
	size_t done = 0, off = 0; /* off: bytes of v[0] already sent */
	int saved = errno;

	/* The kernel's error (a bad count or pointer, a vector over
	 * SSIZE_MAX), or nothing to admit: the call as it is. */
	if (n < 0 || n > SM_MAXIOV || iov_total(v, n, &total) != 0 || total <= 0 ||
	    total == INT64_MAX) {
		ssize_t rc = m ? libc_sendmsg(fd, m, fl) : libc_writev(fd, v, n);

		tx(fd, rc);
		return rc;
	}
	for (int round = 0; round < 1 << 20; round++) {
		int64_t left = total - (int64_t)done, lim;
		const struct iovec *cv;
		struct iovec one;
		struct sm_adm ad;
		struct msghdr mc;
		int cn;
		ssize_t rc;

		if (sm_admit(fd, left, fl, &ad) < 0)
			return sent_so_far(done, saved, -1);
		lim = ad.on && ad.got < left ? ad.got : left;
		if (off > 0) { /* the rest of a piece sent in part */
			one.iov_base = (char *)v[0].iov_base + off;
			one.iov_len = v[0].iov_len - off;
			if ((int64_t)one.iov_len > lim)
				one.iov_len = (size_t)lim;
			cv = &one;
			cn = 1;
		} else {
			iov_prefix(v, n, lim, &one, &cv, &cn);
		}
		if (m) {
			mc = *m;
			mc.msg_iov = (struct iovec *)cv;
			mc.msg_iovlen = (size_t)cn;
			if (done) {
				mc.msg_control = NULL;
				mc.msg_controllen = 0;
			}
			rc = libc_sendmsg(fd, &mc, fl);
		} else {
			rc = libc_writev(fd, cv, cn);
		}
		adm_done(fd, &ad, rc);
		if (rc < 0)
			return sent_so_far(done, saved, rc);
		done += (size_t)rc;
		if ((int64_t)done >= total || !continue_send(fd, fl, (size_t)iov_bytes(cv, cn), rc))
			break;
		off += (size_t)rc;
		while (n > 0 && off >= v[0].iov_len) {
			off -= v[0].iov_len;
			v++;
			n--;
		}
	}
	return (ssize_t)done;
}

/* Bytes of message i of a batch already read once (see mmsg_lens). */
static int64_t mmsg_bytes_at(const struct mmsghdr *v, unsigned int i)
{
	const struct msghdr *h = &v[i].msg_hdr;

	return iov_bytes(h->msg_iov, (int)h->msg_iovlen);
}

#define PEEK_MSGS 16 /* mmsghdrs copied per system call (1 KiB of stack) */

/* Bytes of each of the c messages in h (headers already copied) into b[]:
 * INT64_MAX for a vector the kernel refuses. Their iovecs are copied
 * together, PEEK_IOVS at a time. 0, or -1 if some vector is unreadable. */
static int mmsg_lens(const struct mmsghdr *h, int c, int64_t *b)
{
	struct iovec loc[PEEK_IOVS], rem[PEEK_MSGS];
	int i = 0;

	while (i < c) {
		size_t l = h[i].msg_hdr.msg_iovlen, used = 0;
		int first = i, nr = 0;

		if (l > PEEK_IOVS) { /* a long vector alone */
			if (l > SM_MAXIOV)
				b[i] = INT64_MAX;
			else if (iov_total(h[i].msg_hdr.msg_iov, (int)l, &b[i]) != 0)
				return -1;
			i++;
			continue;
		}
		/* This one and the short ones after it that fit in loc. */
		while (i < c && (l = h[i].msg_hdr.msg_iovlen) <= PEEK_IOVS - used) {
			rem[nr].iov_base = h[i].msg_hdr.msg_iov;
			rem[nr++].iov_len = l * sizeof(struct iovec);
			used += l;
			i++;
		}
		if (peek_user(loc, used * sizeof(struct iovec), rem, (unsigned long)nr) != 0)
			return -1;
		used = 0;
		for (int k = first; k < i; k++) {
			l = h[k].msg_hdr.msg_iovlen;
			b[k] = iov_bytes(loc + used, (int)l);
			used += l;
		}
	}
	return 0;
}

/*
 * sendmmsg under a limit: admitted before the call, like every other send.
 * The batch is cut to the messages that fit the group's headroom (at least
 * one) and admitted as one; if the admission is partial (a stream), the
 * messages that fit whole go, or else the first one cut. A short count is
 * what sendmmsg(2) documents for a batch the socket cannot take at once.
 */
static int lim_mmsg(int fd, struct mmsghdr *v, unsigned int n, int fl)
{
	int64_t room = sm_headroom(sm_seg, sm_group), total = 0, fit = 0;
	unsigned int asked = n;
	struct sm_adm ad;
	unsigned int k;
	int rc;

	if (n > SM_MAXIOV) /* the kernel sends at most that many */
		n = SM_MAXIOV;
	for (k = 0; k < n;) {
		struct mmsghdr h[PEEK_MSGS];
		int64_t b[PEEK_MSGS];
		unsigned int c = n - k < PEEK_MSGS ? n - k : PEEK_MSGS, j;

		/* A bad pointer, or a vector the kernel refuses: its answer,
		 * without admission. */
		if (peek_one(h, v + k, c * sizeof(*v)) != 0 || mmsg_lens(h, (int)c, b) != 0)
			goto as_is;
		for (j = 0; j < c; j++) {
			if (b[j] == INT64_MAX)
				goto as_is;
			if (k + j > 0 && sm_add_sat(total, b[j]) > room)
				break;
			total = sm_add_sat(total, b[j]);
		}
		k += j;
		if (j < c)
			break;
	}
	n = k;
	if (sm_admit(fd, total, fl, &ad) < 0)
		return -1;
	if (ad.on && ad.got < total) {
		for (k = 0; k < n && fit + mmsg_bytes_at(v, k) <= ad.got; k++)
			fit += mmsg_bytes_at(v, k);
		if (k == 0) { /* a stream's first message, cut */
			struct msghdr mc = v[0].msg_hdr;
			const struct iovec *cv;
			struct iovec one;
			int cn;
			ssize_t r;

			iov_prefix(mc.msg_iov, (int)mc.msg_iovlen, ad.got, &one, &cv, &cn);
			mc.msg_iov = (struct iovec *)cv;
			mc.msg_iovlen = (size_t)cn;
			r = libc_sendmsg(fd, &mc, fl);
			adm_done(fd, &ad, r);
			if (r < 0)
				return -1;
			v[0].msg_len = (unsigned int)r;
			return 1;
		}
		n = k;
	}
	rc = libc_sendmmsg(fd, v, n, fl);
	adm_done(fd, &ad, rc > 0 ? (ssize_t)mmsg_bytes(v, rc) : rc);
	return rc;
as_is:
	rc = libc_sendmmsg(fd, v, asked, fl);
	if (rc > 0)
		tx(fd, mmsg_bytes(v, rc));
	return rc;
}

/* ---- send side -------------------------------------------------------- */

static inline ssize_t io_send(int fd, const void *b, size_t n, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_send(fd, b, n, fl);
	if (adm_on(fd))
		return lim_buf(BC_SEND, fd, b, n, fl, NULL, 0);
	rc = libc_send(fd, b, n, fl);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a,
				socklen_t al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_sendto(fd, b, n, fl, a, al);
	if (adm_on(fd))
		return lim_buf(BC_SENDTO, fd, b, n, fl, a, al);
	rc = libc_sendto(fd, b, n, fl, a, al);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendmsg(int fd, const struct msghdr *m, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_sendmsg(fd, m, fl);
	if (adm_on(fd)) {
		struct msghdr h;

		/* A bad header or count: the kernel's answer, unadmitted. */
		if (m && peek_one(&h, m, sizeof(h)) == 0 && h.msg_iovlen <= SM_MAXIOV)
			return lim_vec(fd, &h, h.msg_iov, (int)h.msg_iovlen, fl);
	}
	rc = libc_sendmsg(fd, m, fl);
	tx(fd, rc);
	return rc;
}

static inline int io_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_sendmmsg(fd, v, n, fl);
	if (v && n > 0 && adm_on(fd))
		return lim_mmsg(fd, v, n, fl);
	rc = libc_sendmmsg(fd, v, n, fl);
	if (rc > 0 && sm_fd_peek(fd))
		tx(fd, mmsg_bytes(v, rc));
	return rc;
}

static inline ssize_t io_write(int fd, const void *b, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_write(fd, b, n);
	if (adm_on(fd))
		return lim_buf(BC_WRITE, fd, b, n, 0, NULL, 0);
	rc = libc_write(fd, b, n);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_writev(int fd, const struct iovec *v, int n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_writev(fd, v, n);
	if (adm_on(fd))
		return lim_vec(fd, NULL, v, n, 0);
	rc = libc_writev(fd, v, n);
	tx(fd, rc);
	return rc;
}

static inline ssize_t io_sendfile(int o, int i, off_t *off, size_t n)
{
	struct sm_adm ad = {.on = false};
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_sendfile(o, i, off, n);
	if (adm_on(o) && sm_admit(o, adm_bytes(n), 0, &ad) < 0)
		return -1;
	rc = libc_sendfile(o, i, off, adm_len(&ad, n));
	rx(i, rc, 0); /* out of a socket (into a pipe, say) */
	adm_done(o, &ad, rc);
	return rc;
}

static inline ssize_t io_sendfile64(int o, int i, off64_t *off, size_t n)
{
	struct sm_adm ad = {.on = false};
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_sendfile64(o, i, off, n);
	if (adm_on(o) && sm_admit(o, adm_bytes(n), 0, &ad) < 0)
		return -1;
	rc = libc_sendfile64(o, i, off, adm_len(&ad, n));
	rx(i, rc, 0); /* out of a socket (into a pipe, say) */
	adm_done(o, &ad, rc);
	return rc;
}

/* splice moves bytes out of fd_in and into fd_out: either may be a socket. */
static inline ssize_t io_splice(int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl)
{
	struct sm_adm ad = {.on = false};
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_splice(fi, oi, fo, oo, n, fl);
	if (adm_on(fo) &&
	    sm_admit(fo, adm_bytes(n), (fl & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0, &ad) < 0)
		return -1;
	rc = libc_splice(fi, oi, fo, oo, adm_len(&ad, n), fl);
	rx(fi, rc, 0);
	adm_done(fo, &ad, rc);
	return rc;
}

/* ---- receive side ----------------------------------------------------- */

static inline ssize_t io_recv(int fd, void *b, size_t n, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_recv(fd, b, n, fl);
	rc = libc_recv(fd, b, n, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *a,
				  socklen_t *al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_recvfrom(fd, b, n, fl, a, al);
	rc = libc_recvfrom(fd, b, n, fl, a, al);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvmsg(int fd, struct msghdr *m, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_recvmsg(fd, m, fl);
	rc = libc_recvmsg(fd, m, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline int io_recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t)
{
	int rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_recvmmsg(fd, v, n, fl, t);
	rc = libc_recvmmsg(fd, v, n, fl, t);
	if (rc > 0 && sm_fd_peek(fd))
		rx(fd, mmsg_bytes(v, rc), fl);
	return rc;
}

static inline ssize_t io_read(int fd, void *b, size_t n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_read(fd, b, n);
	rc = libc_read(fd, b, n);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_readv(int fd, const struct iovec *v, int n)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc_readv(fd, v, n);
	rc = libc_readv(fd, v, n);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_read_chk(int fd, void *b, size_t n, size_t bl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc___read_chk(fd, b, n, bl);
	rc = libc___read_chk(fd, b, n, bl);
	rx(fd, rc, 0);
	return rc;
}

static inline ssize_t io_recv_chk(int fd, void *b, size_t n, size_t bl, int fl)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc___recv_chk(fd, b, n, bl, fl);
	rc = libc___recv_chk(fd, b, n, bl, fl);
	rx(fd, rc, fl);
	return rc;
}

static inline ssize_t io_recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl,
				      struct sockaddr *a, socklen_t *al)
{
	ssize_t rc;

	if (sm_unlikely(!sm_is_active()))
		return libc___recvfrom_chk(fd, b, n, bl, fl, a, al);
	rc = libc___recvfrom_chk(fd, b, n, bl, fl, a, al);
	rx(fd, rc, fl);
	return rc;
}

/* ---- the exported interposers ----------------------------------------- */

/* Most used first: with account() they share the first page of .text.hot. */

SM_EXPORT SM_HOT ssize_t send(int fd, const void *b, size_t n, int fl)
{
	return io_send(fd, b, n, fl);
}

SM_EXPORT SM_HOT ssize_t recv(int fd, void *b, size_t n, int fl)
{
	return io_recv(fd, b, n, fl);
}

SM_EXPORT SM_HOT ssize_t write(int fd, const void *b, size_t n)
{
	return io_write(fd, b, n);
}

SM_EXPORT SM_HOT ssize_t read(int fd, void *b, size_t n)
{
	return io_read(fd, b, n);
}

SM_EXPORT SM_HOT ssize_t sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a,
				socklen_t al)
{
	return io_sendto(fd, b, n, fl, a, al);
}

SM_EXPORT SM_HOT ssize_t recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *a,
				  socklen_t *al)
{
	return io_recvfrom(fd, b, n, fl, a, al);
}

SM_EXPORT SM_HOT ssize_t sendmsg(int fd, const struct msghdr *m, int fl)
{
	return io_sendmsg(fd, m, fl);
}

SM_EXPORT SM_HOT ssize_t recvmsg(int fd, struct msghdr *m, int fl)
{
	return io_recvmsg(fd, m, fl);
}

SM_EXPORT SM_HOT ssize_t writev(int fd, const struct iovec *v, int n)
{
	return io_writev(fd, v, n);
}

SM_EXPORT SM_HOT ssize_t readv(int fd, const struct iovec *v, int n)
{
	return io_readv(fd, v, n);
}

SM_EXPORT SM_HOT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl)
{
	return io_sendmmsg(fd, v, n, fl);
}

SM_EXPORT SM_HOT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t)
{
	return io_recvmmsg(fd, v, n, fl, t);
}

SM_EXPORT SM_HOT ssize_t __read_chk(int fd, void *b, size_t n, size_t bl)
{
	return io_read_chk(fd, b, n, bl);
}

SM_EXPORT SM_HOT ssize_t __recv_chk(int fd, void *b, size_t n, size_t bl, int fl)
{
	return io_recv_chk(fd, b, n, bl, fl);
}

SM_EXPORT SM_HOT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl,
					struct sockaddr *a, socklen_t *al)
{
	return io_recvfrom_chk(fd, b, n, bl, fl, a, al);
}

SM_EXPORT SM_HOT ssize_t sendfile(int o, int i, off_t *off, size_t n)
{
	return io_sendfile(o, i, off, n);
}

SM_EXPORT SM_HOT ssize_t sendfile64(int o, int i, off64_t *off, size_t n)
{
	return io_sendfile64(o, i, off, n);
}

SM_EXPORT SM_HOT ssize_t splice(int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl)
{
	return io_splice(fi, oi, fo, oo, n, fl);
}
