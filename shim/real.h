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

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/*
 * struct sm_hot: the table, with everything else every interposed call
 * reads, in one page.
 *
 * A call that moves bytes pays for each page of the shim's data it touches:
 * on a kernel with page-table isolation and no PCID (common in VMs, and the
 * machine this project is measured on) every system call flushes the TLB,
 * so each page is a TLB miss on every call, 5-6 ns each there (measured by
 * sockmem-page-probe, bench/); a cache line within a page already walked
 * costs a fraction of that. So the pass-through switch, the limit flag, the
 * fork epoch, the reconcile threshold, the real-symbol table and the fd
 * table's first level are fields of one page-aligned object rather than
 * globals scattered over the image's data and bss pages
 * (docs/ARCHITECTURE.md, "Cost of a call").
 *
 * Each field's concurrency contract is documented where it is used
 * (state.h, limit.h, fdtable.h).
 */
#define SM_FD_CHUNK_SHIFT 12
#define SM_FD_CHUNK	  (1u << SM_FD_CHUNK_SHIFT)
#define SM_FD_L1	  1024u
#define SM_FD_MAX	  (SM_FD_L1 * SM_FD_CHUNK) /* fds >= this are not accounted */

struct sm_fdchunk;

struct sm_hot {
	/* The first cache line: what the interposers test. */
	_Atomic bool active;	 /* the pass-through switch: see state.h */
	bool limit_on;		 /* send admission on: see limit.h (__atomic) */
	uint32_t epoch;		 /* fork epoch: see state.h */
	int64_t reconcile_bytes; /* traffic reconcile stride: see sm_stride() */
	/* The real functions. W: sm_real_bind (once). R: every libc_<fn>(). */
	struct sm_real real;
	/* fd >> SM_FD_CHUNK_SHIFT -> chunk of entries (fdtable.h). Entry 0,
	 * the chunk of fds below 4096, shares the page with the fields above. */
	struct sm_fdchunk *_Atomic fd_l1[SM_FD_L1];
} __attribute__((aligned(4096)));

extern struct sm_hot sm_hot;

/* Bind the table (idempotent, thread-safe; the constructor calls it). */
void sm_real_bind(void);

#define SM_REAL_WRAPPER(ret, name, params, args)                                                   \
	static inline ret libc_##name params                                                       \
	{                                                                                          \
		return sm_hot.real.name args;                                                      \
	}
SM_REAL_LIST(SM_REAL_WRAPPER)
#undef SM_REAL_WRAPPER

/* fcntl's third argument is read as a pointer-sized word, as glibc does. */
static inline int libc_fcntl(int fd, int cmd, void *arg)
{
	return sm_hot.real.fcntl(fd, cmd, arg);
}

static inline int libc_fcntl64(int fd, int cmd, void *arg)
{
	return sm_hot.real.fcntl64(fd, cmd, arg);
}

#endif /* SOCKMEM_SHIM_REAL_H */
