/*
 * Helper program for tests/traces (run preloaded with SOCKMEM_TRACE=1, never
 * the Criterion runner itself): makes its group hit max from a known,
 * non-inlined, exported function so that `sockmemctl traces` must name it.
 *
 *   trace_helper blast CHUNK COUNT
 *
 * Connects to a listener of its own on 127.0.0.1 and, without ever reading
 * the accepted end, sends COUNT chunks of CHUNK bytes (MSG_DONTWAIT; stops
 * early when the kernel's queues are full). Data piles up in the kernel, so
 * with a small max every send after the first few takes the group over max.
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
long sm_test_blast_sender(int fd, size_t n, long count);
__attribute__((noinline, visibility("default"))) long sm_test_blast_sender(int fd, size_t n,
									   long count)
{
	long sent = 0;

	for (long i = 0; i < count; i++) {
		ssize_t r = send(fd, chunk, n, MSG_DONTWAIT);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r < 0)
			return -1;
		sent += r;
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
	sent = sm_test_blast_sender(c, (size_t)n, count);
	printf("sent %ld\n", sent);
	close(c);
	close(s);
	return sent < 0;
}
