/*
 * The real libc functions behind the interposers: a typed table bound once
 * (pthread_once, dlsym(RTLD_NEXT)), called through libc_<fn>() wrappers.
 *
 * Before binding, each table entry points to a trampoline that binds the
 * whole table and then calls through it, so a call made before the
 * constructor (from another library's constructor) still works. A call made
 * by dlsym itself while this thread is binding (an allocator that reads a
 * file, say) takes the raw system call instead of recursing. A symbol the
 * running libc lacks (close_range before 2.34, fcntl64 before 2.28) is
 * replaced by its raw system call.
 */
#ifndef SOCKMEM_SHIM_REAL_H
#define SOCKMEM_SHIM_REAL_H

#include <stddef.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* X(ret, name, params, args): every real function the shim calls. */
#define SM_REAL_LIST(X)                                                                            \
	X(ssize_t, send, (int fd, const void *b, size_t n, int fl), (fd, b, n, fl))                \
	X(ssize_t, sendto,                                                                         \
	  (int fd, const void *b, size_t n, int fl, const struct sockaddr *a, socklen_t al),       \
	  (fd, b, n, fl, a, al))                                                                   \
	X(ssize_t, sendmsg, (int fd, const struct msghdr *m, int fl), (fd, m, fl))                 \
	X(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int fl), (fd, v, n, fl))      \
	X(ssize_t, write, (int fd, const void *b, size_t n), (fd, b, n))                           \
	X(ssize_t, writev, (int fd, const struct iovec *v, int n), (fd, v, n))                     \
	X(ssize_t, sendfile, (int o, int i, off_t *off, size_t n), (o, i, off, n))                 \
	X(ssize_t, sendfile64, (int o, int i, off64_t *off, size_t n), (o, i, off, n))             \
	X(ssize_t, splice, (int fi, off64_t *oi, int fo, off64_t *oo, size_t n, unsigned int fl),  \
	  (fi, oi, fo, oo, n, fl))                                                                 \
	X(ssize_t, recv, (int fd, void *b, size_t n, int fl), (fd, b, n, fl))                      \
	X(ssize_t, recvfrom,                                                                       \
	  (int fd, void *b, size_t n, int fl, struct sockaddr *a, socklen_t *al),                  \
	  (fd, b, n, fl, a, al))                                                                   \
	X(ssize_t, recvmsg, (int fd, struct msghdr *m, int fl), (fd, m, fl))                       \
	X(int, recvmmsg, (int fd, struct mmsghdr *v, unsigned int n, int fl, struct timespec *t),  \
	  (fd, v, n, fl, t))                                                                       \
	X(ssize_t, read, (int fd, void *b, size_t n), (fd, b, n))                                  \
	X(ssize_t, readv, (int fd, const struct iovec *v, int n), (fd, v, n))                      \
	X(ssize_t, __read_chk, (int fd, void *b, size_t n, size_t bl), (fd, b, n, bl))             \
	X(ssize_t, __recv_chk, (int fd, void *b, size_t n, size_t bl, int fl), (fd, b, n, bl, fl)) \
	X(ssize_t, __recvfrom_chk,                                                                 \
	  (int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *a, socklen_t *al),       \
	  (fd, b, n, bl, fl, a, al))                                                               \
	X(int, setsockopt, (int fd, int lv, int nm, const void *v, socklen_t l),                   \
	  (fd, lv, nm, v, l))                                                                      \
	X(int, getsockopt, (int fd, int lv, int nm, void *v, socklen_t *l), (fd, lv, nm, v, l))    \
	X(int, socket, (int d, int t, int p), (d, t, p))                                           \
	X(int, socketpair, (int d, int t, int p, int *sv), (d, t, p, sv))                          \
	X(int, accept, (int fd, struct sockaddr *a, socklen_t *al), (fd, a, al))                   \
	X(int, accept4, (int fd, struct sockaddr *a, socklen_t *al, int fl), (fd, a, al, fl))      \
	X(int, close, (int fd), (fd))                                                              \
	X(int, close_range, (unsigned int lo, unsigned int hi, int fl), (lo, hi, fl))              \
	X(int, dup, (int fd), (fd))                                                                \
	X(int, dup2, (int fd, int nfd), (fd, nfd))                                                 \
	X(int, dup3, (int fd, int nfd, int fl), (fd, nfd, fl))

#define SM_REAL_MEMBER(ret, name, params, args) ret(*name) params;
struct sm_real {
	SM_REAL_LIST(SM_REAL_MEMBER)
	int (*fcntl)(int fd, int cmd, ...);
	int (*fcntl64)(int fd, int cmd, ...);
};
#undef SM_REAL_MEMBER

/* W: sm_real_bind (once). R: every libc_<fn>(). Pointer-sized stores. */
extern struct sm_real sm_real;

/* Bind the table (idempotent, thread-safe; the constructor calls it). */
void sm_real_bind(void);

#define SM_REAL_WRAPPER(ret, name, params, args)                                                   \
	static inline ret libc_##name params                                                       \
	{                                                                                          \
		return sm_real.name args;                                                          \
	}
SM_REAL_LIST(SM_REAL_WRAPPER)
#undef SM_REAL_WRAPPER

/* fcntl's third argument is read as a pointer-sized word, as glibc does. */
static inline int libc_fcntl(int fd, int cmd, void *arg)
{
	return sm_real.fcntl(fd, cmd, arg);
}

static inline int libc_fcntl64(int fd, int cmd, void *arg)
{
	return sm_real.fcntl64(fd, cmd, arg);
}

#endif /* SOCKMEM_SHIM_REAL_H */
