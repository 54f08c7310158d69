/*
 * Helper program for tests/traces (run preloaded with SOCKMEM_TRACE=1, never
 * the Criterion runner itself): makes its group hit max from a known,
 * non-inlined, exported function so that `sockmemctl traces` must name it.
 *
 *   trace_helper blast CHUNK COUNT
 *
 * Connects to a listener of its own on 127.0.0.1 and, reading almost nothing
 * the accepted end but for 4 KiB after each refused send, makes COUNT sends
 * of CHUNK bytes (MSG_DONTWAIT). Data piles up in the kernel, so with a
 * small max the sends keep meeting it: refused where max is enforced, or
 * forced over it where every send is a forced charge.
 * Prints "sent N" and exits 0; 1 on a setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char chunk[65536];

static int pair(int *client, int *server)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return -1;
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	*server = accept(l, NULL, NULL);
	close(l);
	return *server < 0 ? -1 : 0;
}

/* The call site the test looks for: exported (-rdynamic) and never inlined. */
long sm_test_blast_sender(int fd, int peer, size_t n, long count);
__attribute__((noinline, visibility("default"))) long sm_test_blast_sender(int fd, int peer,
									   size_t n, long count)
{
	static char sink[4096];
	long sent = 0;

	for (long i = 0; i < count; i++) {
		ssize_t r = send(fd, chunk, n, MSG_DONTWAIT);

		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (r > 0)
			sent += r;
		/* Refused (the kernel's queue is full, or the group is at max):
		 * read a little at the other end, so memory comes free and the
		 * next sends meet the limit again rather than a full queue. */
		else if (recv(peer, sink, sizeof(sink), MSG_DONTWAIT) < 0 && errno != EAGAIN)
			return -1;
	}
	__asm__ volatile("" ::: "memory"); /* keep the frame: no tail call */
	return sent;
}

int main(int argc, char **argv)
{
	int c, s;
	long n, count, sent;

	if (argc != 4 || strcmp(argv[1], "blast") != 0) {
		fprintf(stderr, "usage: trace_helper blast CHUNK COUNT\n");
		return 1;
	}
	n = atol(argv[2]);
	count = atol(argv[3]);
	if (n <= 0 || n > (long)sizeof(chunk) || count <= 0 || pair(&c, &s) < 0) {
		perror("trace_helper: setup");
		return 1;
	}
	sent = sm_test_blast_sender(c, s, (size_t)n, count);
	printf("sent %ld\n", sent);
	close(c);
	close(s);
	return sent < 0;
}
