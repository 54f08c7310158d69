/* See fault_ctor.h. Runs only libc calls from its constructor. */
#include "fault_ctor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tx = -1, rx = -1, err;
static long sent;

__attribute__((visibility("default"))) int fault_ctor_result(int *tx_fd, int *rx_fd, long *n)
{
	*tx_fd = tx;
	*rx_fd = rx;
	*n = sent;
	return err;
}

__attribute__((constructor)) static void fault_ctor(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	static char buf[FAULT_CTOR_BYTES];
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(buf, 'c', sizeof(buf));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, l) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &l)) {
		err = errno;
		return;
	}
	tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tx < 0 || connect(tx, (struct sockaddr *)&sa, l)) {
		err = errno;
		return;
	}
	rx = accept(lfd, NULL, NULL);
	close(lfd);
	if (rx < 0) {
		err = errno;
		return;
	}
	while (sent < FAULT_CTOR_BYTES) {
		ssize_t r = send(tx, buf + sent, sizeof(buf) - (size_t)sent, 0);

		if (r <= 0) {
			err = r < 0 ? errno : EIO;
			return;
		}
		sent += r;
	}
}
