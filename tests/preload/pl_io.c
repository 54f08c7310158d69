/*
 * Preloaded helper: one entry point's accounting.
 *
 *   pl-io <tcp|udp> <tx-entry> <rx-entry>
 *   pl-io stride <bytes>
 *
 * Socket A sends N bytes to B through <tx-entry> ("tx N"), B sends N back to
 * A with send ("back N"), A reads them through <rx-entry> ("rx N"), B reads
 * A's bytes with recv ("drain N"), everything is closed ("closed"). After
 * each phase the helper prints the phase and waits for a byte on stdin, so
 * the test can read the group in between. `stride`: A sends <bytes> to B in
 * 64 KiB messages, B reading each at once ("moved"), then both close
 * ("closed"). Plain C; exit status 0 on success.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *addrlen);

static char buf[65536];

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void phase(const char *name, long n)
{
	char c;

	printf("%s %ld\n", name, n);
	fflush(stdout);
	if (read(0, &c, 1) != 1)
		exit(3);
}

/* Loopback pair for proto tcp, udp, tcp6, udp6 or unix (socketpair). */
static void pair(const char *proto, int *a, int *b)
{
	bool udp = strstr(proto, "udp") != NULL, v6 = strchr(proto, '6') != NULL;
	struct sockaddr_storage sa = {0}, sb;
	socklen_t l = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int t = udp ? SOCK_DGRAM : SOCK_STREAM, f = v6 ? AF_INET6 : AF_INET, lfd;
	int sv[2];

	if (!strcmp(proto, "unix")) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair");
		*a = sv[0], *b = sv[1];
		return;
	}
	if (v6) {
		((struct sockaddr_in6 *)&sa)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_loopback;
	} else {
		((struct sockaddr_in *)&sa)->sin_family = AF_INET;
		((struct sockaddr_in *)&sa)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	sb = sa;
	if (udp) {
		*a = socket(f, t, 0), *b = socket(f, t, 0);
		if (bind(*a, (void *)&sa, l) || bind(*b, (void *)&sb, l))
			die("bind");
		getsockname(*a, (void *)&sa, &l);
		getsockname(*b, (void *)&sb, &l);
		if (connect(*a, (void *)&sb, l) || connect(*b, (void *)&sa, l))
			die("connect");
		return;
	}
	lfd = socket(f, t, 0);
	if (bind(lfd, (void *)&sa, l) || listen(lfd, 1) || getsockname(lfd, (void *)&sa, &l))
		die("listen");
	*a = socket(f, t, 0);
	if (connect(*a, (void *)&sa, l))
		die("connect");
	*b = accept(lfd, NULL, NULL);
	if (*b < 0)
		die("accept");
	close(lfd);
}

static ssize_t tx_once(const char *m, int fd, size_t n)
{
	struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	struct mmsghdr mm[1] = {{.msg_hdr = mh}};

	if (!strcmp(m, "send"))
		return send(fd, buf, n, 0);
	if (!strcmp(m, "sendto"))
		return sendto(fd, buf, n, 0, NULL, 0);
	if (!strcmp(m, "sendmsg"))
		return sendmsg(fd, &mh, 0);
	if (!strcmp(m, "sendmmsg"))
		return sendmmsg(fd, mm, 1, 0) == 1 ? (ssize_t)mm[0].msg_len : -1;
	if (!strcmp(m, "write"))
		return write(fd, buf, n);
	if (!strcmp(m, "writev"))
		return writev(fd, iov, 2);
	if (!strcmp(m, "sendfile") || !strcmp(m, "sendfile64")) {
		int mf = memfd_create("pl", 0);
		off_t off = 0;
		off64_t off64 = 0;
		ssize_t r;

		if (mf < 0 || write(mf, buf, n) != (ssize_t)n)
			die("memfd");
		r = !strcmp(m, "sendfile") ? sendfile(fd, mf, &off, n)
					   : sendfile64(fd, mf, &off64, n);
		close(mf);
		return r;
	}
	if (!strcmp(m, "splice")) {
		int p[2];
		ssize_t r;

		if (pipe(p) || write(p[1], buf, n) != (ssize_t)n)
			die("pipe");
		r = splice(p[0], NULL, fd, NULL, n, 0);
		close(p[0]), close(p[1]);
		return r;
	}
	fprintf(stderr, "unknown tx entry %s\n", m);
	exit(2);
}

static ssize_t rx_once(const char *m, int fd, size_t n)
{
	struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	struct mmsghdr mm[1] = {{.msg_hdr = mh}};

	if (!strcmp(m, "recv"))
		return recv(fd, buf, n, 0);
	if (!strcmp(m, "recvfrom"))
		return recvfrom(fd, buf, n, 0, NULL, NULL);
	if (!strcmp(m, "recvmsg"))
		return recvmsg(fd, &mh, 0);
	if (!strcmp(m, "recvmmsg"))
		return recvmmsg(fd, mm, 1, 0, NULL) == 1 ? (ssize_t)mm[0].msg_len : -1;
	if (!strcmp(m, "read"))
		return read(fd, buf, n);
	if (!strcmp(m, "readv"))
		return readv(fd, iov, 2);
	if (!strcmp(m, "__read_chk"))
		return __read_chk(fd, buf, n, sizeof(buf));
	if (!strcmp(m, "__recv_chk"))
		return __recv_chk(fd, buf, n, sizeof(buf), 0);
	if (!strcmp(m, "__recvfrom_chk"))
		return __recvfrom_chk(fd, buf, n, sizeof(buf), 0, NULL, NULL);
	if (!strcmp(m, "splice")) {
		int p[2];
		ssize_t r;

		if (pipe(p))
			die("pipe");
		r = splice(fd, NULL, p[1], NULL, n, 0);
		close(p[0]), close(p[1]);
		return r;
	}
	if (!strcmp(m, "sendfile") || !strcmp(m, "sendfile64")) { /* socket -> pipe */
		int p[2];
		ssize_t r;

		if (pipe(p))
			die("pipe");
		r = !strcmp(m, "sendfile") ? sendfile(p[1], fd, NULL, n)
					   : sendfile64(p[1], fd, NULL, n);
		close(p[0]), close(p[1]);
		return r;
	}
	fprintf(stderr, "unknown rx entry %s\n", m);
	exit(2);
}

/* Move exactly n bytes (TCP may split; UDP is one datagram). */
static void move(bool tx, const char *m, int fd, size_t n)
{
	size_t done = 0;

	for (int i = 0; done < n && i < 10000; i++) {
		ssize_t r = tx ? tx_once(m, fd, n - done) : rx_once(m, fd, n - done);

		if (r <= 0)
			die(m);
		done += (size_t)r;
	}
	if (done != n) {
		fprintf(stderr, "%s moved %zu of %zu\n", m, done, n);
		exit(2);
	}
}

/* The traffic reconcile stride: what A's estimate holds after `total`. */
static int stride(const char *total)
{
	long n = strtol(total, NULL, 10);
	int a, b;

	pair("tcp", &a, &b);
	for (long done = 0; done < n; done += (long)sizeof(buf)) {
		move(true, "send", a, sizeof(buf));
		move(false, "recv", b, sizeof(buf));
	}
	phase("moved", n);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n;
	int a, b;

	if (argc == 3 && !strcmp(argv[1], "stride"))
		return stride(argv[2]);
	if (argc != 4)
		return 2;
	n = strstr(argv[1], "udp") ? 1000 : 32768;
	memset(buf, 'x', sizeof(buf));
	pair(argv[1], &a, &b);
	move(true, argv[2], a, n);
	phase("tx", (long)n);
	move(true, "send", b, n);
	phase("back", (long)n);
	move(false, argv[3], a, n);
	phase("rx", (long)n);
	move(false, "recv", b, n);
	phase("drain", (long)n);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}
