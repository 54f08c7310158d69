/*
 * sockmem-bench: loopback TCP helpers.
 *
 * Only 127.0.0.1 and ::1 are ever used; the listener takes an ephemeral port
 * so concurrent runs never collide.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

/*
 * Sockets are made with a plain SOCK_STREAM and accept(), and marked
 * close-on-exec afterwards: trickle 1.07, the interposer bench/compare runs
 * as a peer, only shapes sockets whose type is exactly SOCK_STREAM and does
 * not wrap accept4(), so with SOCK_CLOEXEC it would silently pass every call
 * through. The sockets are the same either way.
 */
static int set_cloexec(int fd)
{
	if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		sm_lg_die("fcntl FD_CLOEXEC: %s", strerror(errno));
	return fd;
}

int sm_lg_listen(bool ipv6, int backlog)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	int fd = set_cloexec(socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0));
	int rc;

	if (fd < 0)
		sm_lg_die("socket: %s", strerror(errno));
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ipv6)
		rc = bind(fd, (struct sockaddr *)&a6, sizeof(a6));
	else
		rc = bind(fd, (struct sockaddr *)&a4, sizeof(a4));
	if (rc < 0)
		sm_lg_die("bind %s: %s", ipv6 ? "[::1]:0" : "127.0.0.1:0", strerror(errno));
	if (listen(fd, backlog) < 0)
		sm_lg_die("listen: %s", strerror(errno));
	return fd;
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* Same-thread ping-pong of small messages would otherwise meet Nagle
	 * plus delayed ACKs and measure the 40 ms ACK timer. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		sm_lg_die("setsockopt TCP_NODELAY: %s", strerror(errno));
}

void sm_lg_tcp_pair(int lfd, int *tx, int *rx)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd;

	if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0)
		sm_lg_die("getsockname: %s", strerror(errno));
	fd = set_cloexec(socket(ss.ss_family, SOCK_STREAM, 0));
	if (fd < 0)
		sm_lg_die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		sm_lg_die("connect to loopback: %s", strerror(errno));
	*rx = set_cloexec(accept(lfd, NULL, NULL));
	if (*rx < 0)
		sm_lg_die("accept: %s", strerror(errno));
	*tx = fd;
	set_nodelay(*tx);
	set_nodelay(*rx);
}

void sm_lg_set_timeout(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		sm_lg_die("setsockopt SO_RCVTIMEO/SO_SNDTIMEO: %s", strerror(errno));
}

void sm_lg_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		sm_lg_die("fcntl O_NONBLOCK: %s", strerror(errno));
}

static void io_fail(const char *what, int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		sm_lg_die("%s: timed out (peer stalled)", what);
	sm_lg_die("%s: %s", what, strerror(err));
}

void sm_lg_send_all(int fd, const char *buf, size_t len, uint64_t *calls)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		(*calls)++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			io_fail("send", errno);
		}
		buf += n;
		len -= (size_t)n;
	}
}

bool sm_lg_recv_all(int fd, char *buf, size_t len, bool eof_ok, uint64_t *calls)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, buf + got, len - got, 0);

		(*calls)++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			io_fail("recv", errno);
		}
		if (n == 0) {
			if (eof_ok && got == 0)
				return false;
			sm_lg_die("recv: connection closed by peer after %zu of %zu bytes", got,
				  len);
		}
		got += (size_t)n;
	}
	return true;
}
