/*
 * Preloaded helper: buffer sizes as the program sees them. Sets SO_SNDBUF,
 * SO_RCVBUF, their FORCE forms and SO_BUF_LOCK on fresh TCP sockets (and
 * on a listener, then accepts from it), prints what getsockopt reports,
 * then "ready" and waits for a byte on stdin (the test lifts the group's
 * max meanwhile), sleeps while the shim's helper restores, and prints what
 * getsockopt and the kernel itself (a raw system call) report. Without the
 * shim, or with it once nothing is imposed any more, every line is the
 * same. One line is not compared: "imposed N", the number of sockets whose
 * kernel figures differed from getsockopt's before "ready".
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#define NS 16

static int fds[NS], n;
static const char *names[NS];

static int api(int fd, int nm)
{
	int v = -1;
	socklen_t l = sizeof(v);

	return getsockopt(fd, SOL_SOCKET, nm, &v, &l) == 0 ? v : -1;
}

static int kernel(int fd, int nm)
{
	int v = -1;
	socklen_t l = sizeof(v);

	return syscall(SYS_getsockopt, fd, SOL_SOCKET, nm, &v, &l) == 0 ? v : -1;
}

static void add(const char *name, int nm, int val)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		exit(2);
	if (nm && setsockopt(fd, SOL_SOCKET, nm, &val, sizeof(val)) != 0)
		printf("%-24s refused\n", name);
	fds[n] = fd, names[n++] = name;
}

static void show(const char *when, bool raw)
{
	for (int i = 0; i < n; i++) {
		printf("%s %-24s snd %d rcv %d lock %d", when, names[i], api(fds[i], SO_SNDBUF),
		       api(fds[i], SO_RCVBUF), api(fds[i], SO_BUF_LOCK));
		if (raw)
			printf(" | kernel snd %d rcv %d lock %d", kernel(fds[i], SO_SNDBUF),
			       kernel(fds[i], SO_RCVBUF), kernel(fds[i], SO_BUF_LOCK));
		printf("\n");
	}
}

int main(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int lfd, c, v = 32768, imposed = 0;
	char go;

	add("fresh", 0, 0);
	add("SO_SNDBUF=1000", SO_SNDBUF, 1000);
	add("SO_RCVBUF=1000", SO_RCVBUF, 1000);
	add("SO_SNDBUF=100000", SO_SNDBUF, 100000);
	add("SO_SNDBUF=-1", SO_SNDBUF, -1);
	add("SO_RCVBUF=-1", SO_RCVBUF, -1);
	add("SO_SNDBUFFORCE=-5", SO_SNDBUFFORCE, -5);
	add("SO_SNDBUFFORCE=INT_MAX", SO_SNDBUFFORCE, INT_MAX);
	add("SO_RCVBUFFORCE=INT_MAX", SO_RCVBUFFORCE, INT_MAX);
	add("SO_BUF_LOCK=2", SO_BUF_LOCK, 2);
	/* A listener with the program's 32 KiB buffers: accepted sockets
	 * inherit them (sizes and lock bits). */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) ||
	    setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) || bind(lfd, (void *)&sa, sl) ||
	    getsockname(lfd, (void *)&sa, &sl) || listen(lfd, 4))
		exit(2);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (void *)&sa, sl))
		exit(2);
	fds[n] = accept(lfd, NULL, NULL), names[n++] = "accepted (listener 32K)";
	if (fds[n - 1] < 0)
		exit(2);
	show("set", false);
	for (int i = 0; i < n; i++)
		imposed += api(fds[i], SO_SNDBUF) != kernel(fds[i], SO_SNDBUF) ||
			   api(fds[i], SO_RCVBUF) != kernel(fds[i], SO_RCVBUF) ||
			   api(fds[i], SO_BUF_LOCK) != kernel(fds[i], SO_BUF_LOCK);
	printf("imposed %d\nready\n", imposed);
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	usleep(500000); /* the helper's ticks put the program's sizes back */
	show("after", true);
	return 0;
}
