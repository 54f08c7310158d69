/*
 * A library whose constructor opens a loopback TCP connection before the
 * shim's constructor runs (ld.so runs a program's dependencies first) and
 * keeps it: pl_adopt_fd[0] the client end, pl_adopt_fd[1] the server end
 * (blocking, not close-on-exec). -1 if anything failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int pl_adopt_fd[2] = {-1, -1};

__attribute__((constructor)) static void open_pair(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), c = -1, s = -1;

	if (lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, l) == 0 && listen(lfd, 1) == 0 &&
	    getsockname(lfd, (struct sockaddr *)&sa, &l) == 0 &&
	    (c = socket(AF_INET, SOCK_STREAM, 0)) >= 0 &&
	    connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    (s = accept(lfd, NULL, NULL)) >= 0) {
		pl_adopt_fd[0] = c;
		pl_adopt_fd[1] = s;
	} else {
		if (c >= 0)
			close(c);
	}
	if (lfd >= 0)
		close(lfd);
}
