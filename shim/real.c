/*
 * Binding of the real libc functions (see real.h).
 */
#include "real.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "state.h"

/*
 * Raw system calls: used while this thread is inside dlsym (re-entry) and
 * for symbols the running libc does not have. Same return/errno contract.
 */
#define RAW(ret, name, params, expr)                                                               \
	static ret raw_##name params                                                               \
	{                                                                                          \
		return (ret)(expr);                                                                \
	}
RAW(ssize_t, send, (int fd, const void *b, size_t n, int fl),
    syscall(SYS_sendto, fd, b, n, fl, NULL, 0))
RAW(ssize_t, sendto,
    (int fd, const void *b, size_t n, int fl, const struct sockaddr *a, socklen_t al),
    syscall(SYS_sendto, fd, b, n, fl, a, al))
RAW(ssize_t, sendmsg, (int fd, const struct msghdr *m, int fl), syscall(SYS_sendmsg, fd, m, fl))
RAW(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int fl),
    syscall(SYS_sendmmsg, fd, v, n, fl))
RAW(ssize_t, write, (int fd, const void *b, size_t n), syscall(SYS_write, fd, b, n))
RAW(ssize_t, writev, (int fd, const struct iovec *v, int n), syscall(SYS_writev, fd, v, n))
RAW(ssize_t, sendfile, (int o, int i, off_t *off, size_t n), syscall(SYS_sendfile, o, i, off, n))
RAW(ssize_t, sendfile64, (int o, int i, off64_t *off, size_t n),
    syscall(SYS_sendfile, o, i, off, n))
RAW(ssize_t, splice, (int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl),
    syscall(SYS_splice, fi, oi, fo, oo, n, fl))
RAW(ssize_t, recv, (int fd, void *b, size_t n, int fl),
    syscall(SYS_recvfrom, fd, b, n, fl, NULL, NULL))
RAW(ssize_t, recvfrom, (int fd, void *b, size_t n, int fl, struct sockaddr *a, socklen_t *al),
    syscall(SYS_recvfrom, fd, b, n, fl, a, al))
RAW(ssize_t, recvmsg, (int fd, struct msghdr *m, int fl), syscall(SYS_recvmsg, fd, m, fl))
RAW(int, recvmmsg, (int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t),
    syscall(SYS_recvmmsg, fd, v, n, fl, t))
RAW(ssize_t, read, (int fd, void *b, size_t n), syscall(SYS_read, fd, b, n))
RAW(ssize_t, readv, (int fd, const struct iovec *v, int n), syscall(SYS_readv, fd, v, n))
RAW(ssize_t, __read_chk, (int fd, void *b, size_t n, size_t bl), syscall(SYS_read, fd, b, n))
RAW(ssize_t, __recv_chk, (int fd, void *b, size_t n, size_t bl, int fl),
    syscall(SYS_recvfrom, fd, b, n, fl, NULL, NULL))
RAW(ssize_t, __recvfrom_chk,
    (int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *a, socklen_t *al),
    syscall(SYS_recvfrom, fd, b, n, fl, a, al))
RAW(int, setsockopt, (int fd, int lv, int nm, const void *v, socklen_t l),
    syscall(SYS_setsockopt, fd, lv, nm, v, l))
RAW(int, getsockopt, (int fd, int lv, int nm, void *v, socklen_t *l),
    syscall(SYS_getsockopt, fd, lv, nm, v, l))
RAW(int, socket, (int d, int t, int p), syscall(SYS_socket, d, t, p))
RAW(int, socketpair, (int d, int t, int p, int *sv), syscall(SYS_socketpair, d, t, p, sv))
RAW(int, accept, (int fd, struct sockaddr *a, socklen_t *al), syscall(SYS_accept4, fd, a, al, 0))
RAW(int, accept4, (int fd, struct sockaddr *a, socklen_t *al, int fl),
    syscall(SYS_accept4, fd, a, al, fl))
RAW(int, close, (int fd), syscall(SYS_close, fd))
RAW(int, close_range, (unsigned int lo, unsigned int hi, int fl),
    syscall(SYS_close_range, lo, hi, fl))
RAW(int, dup, (int fd), syscall(SYS_dup, fd))
RAW(int, dup2, (int fd, int nfd), syscall(SYS_dup2, fd, nfd))
RAW(int, dup3, (int fd, int nfd, int fl), syscall(SYS_dup3, fd, nfd, fl))
#undef RAW

static int raw_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

static pthread_once_t bind_once = PTHREAD_ONCE_INIT;
static SM_TLS int binding; /* this thread is inside bind_all (dlsym) */

static void *lookup(const char *name)
{
	/* dlsym may allocate (dlerror state) when the name is missing; that
	 * happens once, here, never on a data path. */
	return dlsym(RTLD_NEXT, name);
}

static void bind_all(void)
{
	void *p;

	binding = 1;
#define BIND(ret, name, params, args)                                                              \
	p = lookup(#name);                                                                         \
	sm_hot.real.name = p ? (ret(*) params)p : raw_##name;
	SM_REAL_LIST(BIND)
#undef BIND
	p = lookup("fcntl");
	sm_hot.real.fcntl = p ? (int (*)(int, int, ...))p : raw_fcntl;
	p = lookup("fcntl64");
	sm_hot.real.fcntl64 = p ? (int (*)(int, int, ...))p : sm_hot.real.fcntl;
	binding = 0;
}

void sm_real_bind(void)
{
	pthread_once(&bind_once, bind_all);
}

/* Trampolines: the table's initial values. */
#define TRAMPOLINE(ret, name, params, args)                                                        \
	static ret first_##name params                                                             \
	{                                                                                          \
		if (binding)                                                                       \
			return raw_##name args;                                                    \
		sm_real_bind();                                                                    \
		return sm_hot.real.name args;                                                      \
	}
SM_REAL_LIST(TRAMPOLINE)
#undef TRAMPOLINE

static int first_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (binding)
		return raw_fcntl(fd, cmd, arg);
	sm_real_bind();
	return sm_hot.real.fcntl(fd, cmd, arg);
}

static int first_fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (binding)
		return raw_fcntl(fd, cmd, arg);
	sm_real_bind();
	return sm_hot.real.fcntl64(fd, cmd, arg);
}

/* Defined here: the table's initial values are the trampolines above. */
#define INIT(ret, name, params, args) .name = first_##name,
struct sm_hot sm_hot = {
	.epoch = 1,
	.real = {SM_REAL_LIST(INIT).fcntl = first_fcntl, .fcntl64 = first_fcntl64},
};
#undef INIT
