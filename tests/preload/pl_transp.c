/*
 * Preloaded helper: transparency. Makes a list of bad (and a few good)
 * calls and prints "name rc errno" for each; the test runs it with and
 * without the shim and compares the outputs. File descriptors returned by
 * successful calls are printed as "fd" (their numbers may differ).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *addrlen);

#define SENTINEL 4242

/* Laundered so the compiler does not see (and refuse) the bad arguments. */
static void *volatile badp = (void *)1;
static volatile int neg = -1, huge = 1 << 28;

static void show(const char *name, long rc, int err, int is_fd)
{
	if (is_fd && rc >= 0)
		printf("%-28s fd %s\n", name, err == SENTINEL ? "errno-kept" : "errno-changed");
	else
		printf("%-28s %ld %d\n", name, rc, rc < 0 ? err : (err == SENTINEL ? 0 : -err));
}

/* errno is set to a sentinel first: a successful call must leave it alone. */
#define CALL(name, expr)                                                                           \
	do {                                                                                       \
		errno = SENTINEL;                                                                  \
		long rc_ = (long)(expr);                                                           \
		show(name, rc_, errno, 0);                                                         \
	} while (0)
#define CALLFD(name, expr)                                                                         \
	do {                                                                                       \
		errno = SENTINEL;                                                                  \
		long rc_ = (long)(expr);                                                           \
		show(name, rc_, errno, 1);                                                         \
	} while (0)

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (bind(lfd, (void *)&sa, l) || listen(lfd, 1) || getsockname(lfd, (void *)&sa, &l))
		exit(2);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (void *)&sa, l))
		exit(2);
	*b = accept(lfd, NULL, NULL);
	close(lfd);
}

int main(void)
{
	char buf[256] = "hello";
	int a, b, p[2], sv[2], u, v = 4096, f = open("/etc/hostname", O_RDONLY);
	socklen_t vl = sizeof(v), one = 1;
	struct iovec iov = {NULL, 10};
	struct msghdr bad = {.msg_iov = &iov, .msg_iovlen = 1};
	struct mmsghdr mm = {.msg_hdr = bad};
	static struct iovec many[1025];
	struct msghdr badvec = {.msg_iov = badp, .msg_iovlen = 1};
	struct msghdr many_h = {.msg_iov = many, .msg_iovlen = 1025};
	struct msghdr huge_h = {.msg_iov = many, .msg_iovlen = 0};
	struct mmsghdr mm_badvec = {.msg_hdr = badvec}, mm_many = {.msg_hdr = many_h};
	off_t off = 0;

	iov.iov_base = badp;
	huge_h.msg_iovlen = (size_t)huge;
	for (int i = 0; i < 1025; i++)
		many[i] = (struct iovec){buf, 1};
	if (f < 0)
		f = open("/proc/self/stat", O_RDONLY);
	tcp_pair(&a, &b);
	if (pipe(p))
		return 2;
	u = socket(AF_INET, SOCK_STREAM, 0); /* not connected */

	CALL("send badfd", send(-1, buf, 5, 0));
	CALL("send closedfd", send(999, buf, 5, 0));
	CALL("send pipe", send(p[1], buf, 5, 0));
	CALL("send file", send(f, buf, 5, 0));
	CALL("send badbuf", send(a, badp, 10, MSG_DONTWAIT));
	CALL("send notconn", send(u, buf, 5, MSG_NOSIGNAL));
	CALL("sendto badlen", sendto(a, buf, 5, 0, (void *)buf, 1));
	CALL("sendmsg badiov", sendmsg(a, &bad, MSG_DONTWAIT));
	CALL("sendmsg null", sendmsg(a, NULL, MSG_DONTWAIT));
	CALL("sendmmsg badfd", sendmmsg(-1, &mm, 1, 0));
	CALL("sendmmsg badiov", sendmmsg(a, &mm, 1, MSG_DONTWAIT));
	CALL("sendmsg badhdr", sendmsg(a, badp, MSG_DONTWAIT));
	CALL("sendmsg badvec", sendmsg(a, &badvec, MSG_DONTWAIT));
	CALL("sendmsg 1025 pieces", sendmsg(a, &many_h, MSG_DONTWAIT));
	CALL("sendmsg hugecnt", sendmsg(a, &huge_h, MSG_DONTWAIT));
	CALL("sendmmsg badarr", sendmmsg(a, badp, 1, MSG_DONTWAIT));
	CALL("sendmmsg badvec", sendmmsg(a, &mm_badvec, 1, MSG_DONTWAIT));
	CALL("sendmmsg 1025 pieces", sendmmsg(a, &mm_many, 1, MSG_DONTWAIT));
	CALL("writev badvec", writev(a, badp, 1));
	CALL("writev 1025 pieces", writev(a, many, 1025));
	CALL("writev hugecnt", writev(a, many, huge));
	CALL("write badfd", write(-1, buf, 5));
	CALL("write badbuf", write(a, badp, 10));
	CALL("writev badcnt", writev(a, &iov, neg));
	CALL("writev badiov", writev(a, &iov, 1));
	CALL("sendfile badfd", sendfile(-1, f, &off, 5));
	CALL("sendfile badin", sendfile(a, -1, &off, 5));
	CALL("sendfile64 badfd", sendfile64(-1, f, NULL, 5));
	CALL("splice badfd", splice(-1, NULL, a, NULL, 5, 0));
	CALL("splice nopipe", splice(f, NULL, a, NULL, 5, 0));
	CALL("recv badfd", recv(-1, buf, 5, 0));
	CALL("recv pipe", recv(p[0], buf, 5, MSG_DONTWAIT));
	CALL("recv empty", recv(a, buf, 5, MSG_DONTWAIT));
	CALL("recv notconn", recv(u, buf, 5, MSG_DONTWAIT));
	CALL("send good", send(b, buf, 5, 0));
	CALL("recv badbuf", recv(a, badp, 5, MSG_DONTWAIT));
	CALL("recvfrom badlen", recvfrom(a, buf, 5, MSG_DONTWAIT, (void *)buf, badp));
	CALL("recvmsg badiov", recvmsg(a, &bad, MSG_DONTWAIT));
	CALL("recvmsg null", recvmsg(a, NULL, MSG_DONTWAIT));
	CALL("recvmmsg badfd", recvmmsg(-1, &mm, 1, 0, NULL));
	CALL("recv good", recv(a, buf, sizeof(buf), MSG_DONTWAIT));
	CALL("read badfd", read(-1, buf, 5));
	CALL("read badbuf", read(f, badp, 5));
	CALL("readv badcnt", readv(a, &iov, neg));
	CALL("__read_chk badfd", __read_chk(-1, buf, 5, sizeof(buf)));
	CALL("__recv_chk badfd", __recv_chk(-1, buf, 5, sizeof(buf), 0));
	CALL("__recvfrom_chk badfd", __recvfrom_chk(-1, buf, 5, sizeof(buf), 0, NULL, NULL));
	CALL("setsockopt shortlen", setsockopt(a, SOL_SOCKET, SO_SNDBUF, &v, 1));
	CALL("setsockopt badptr", setsockopt(a, SOL_SOCKET, SO_RCVBUF, badp, sizeof(int)));
	CALL("setsockopt pipe", setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)));
	CALL("setsockopt badlevel", setsockopt(a, 12345, SO_SNDBUF, &v, sizeof(v)));
	CALL("setsockopt force", setsockopt(a, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)));
	CALL("getsockopt badfd", getsockopt(-1, SOL_SOCKET, SO_SNDBUF, &v, &vl));
	CALL("getsockopt badlenptr", getsockopt(a, SOL_SOCKET, SO_SNDBUF, &v, badp));
	vl = sizeof(v);
	CALL("getsockopt good", getsockopt(a, SOL_SOCKET, SO_SNDBUF, &v, &vl));
	printf("%-28s %d\n", "sndbuf value", v);
	CALL("getsockopt shortlen", getsockopt(a, SOL_SOCKET, SO_RCVBUF, &v, &one));
	CALLFD("socket badfamily", socket(12345, SOCK_STREAM, 0));
	CALLFD("socket badtype", socket(AF_INET, 999, 0));
	CALLFD("socket badproto", socket(AF_INET, SOCK_STREAM, 99));
	CALL("socketpair inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
	CALLFD("accept pipe", accept(p[0], NULL, NULL));
	CALLFD("accept notlisten", accept(u, NULL, NULL));
	CALLFD("accept4 badflags", accept4(u, NULL, NULL, 0x7fff0000));
	CALL("close badfd", close(-1));
	CALL("close closedfd", close(999));
	CALL("close_range inverted", close_range(10, 5, 0));
	CALL("close_range badflags", close_range(900, 901, 0x7000));
	CALLFD("dup badfd", dup(-1));
	CALLFD("dup2 badfd", dup2(-1, 50));
	CALLFD("dup2 badnew", dup2(a, -1));
	CALLFD("dup2 same", dup2(a, a));
	CALLFD("dup3 same", dup3(a, a, 0));
	CALLFD("dup3 badflags", dup3(a, 50, 12345));
	CALLFD("fcntl dupfd neg", fcntl(a, F_DUPFD, -1));
	CALLFD("fcntl dupfd badfd", fcntl(-1, F_DUPFD_CLOEXEC, 0));
	CALL("fcntl badcmd", fcntl(a, 99999));
	CALL("fcntl getfd", fcntl(a, F_GETFD));
	CALL("fcntl getfl", fcntl(a, F_GETFL));
	CALL("fcntl setfl", fcntl(a, F_SETFL, O_NONBLOCK));
	CALL("fcntl getfl2", fcntl(a, F_GETFL));
	CALL("fcntl64 badfd", fcntl64(-1, F_GETFL));
	CALL("close good", close(u));
	CALL("close again", close(u));
	return 0;
}
