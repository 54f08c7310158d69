/*
 * sockmem-int-helper: the two ends of the accuracy test.
 *
 *   peer K BYTES   listen on 127.0.0.1 (port chosen by the kernel, printed as
 *                  "port N"), accept K connections, send up to BYTES on each
 *                  without ever reading, print "sent N", then obey stdin
 *                  like fill (below).
 *   fill PORT K    connect K times to 127.0.0.1:PORT, fill every send queue
 *                  (non-blocking sends until the kernel takes no more), print
 *                  "filled N", then never touch the sockets again except to
 *                  obey stdin: "close" closes them all and prints "closed";
 *                  EOF exits. With "nosend", fill connects and sends nothing
 *                  (only the peer's data, unread, sits in its queues).
 *   forkfill PORT K  like fill, but the sockets are opened, then the process
 *                  forks: the parent closes its copies and waits, the child
 *                  (pid printed as "child N") fills and obeys stdin. With
 *                  "keep" the parent keeps its copies until the child exits.
 *
 * Run preloaded (fill) and not preloaded (peer) by tests/integration. Loops
 * are bounded; any failure exits non-zero with a line on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 64

static char payload[65536];

static void die(const char *what)
{
	fprintf(stderr, "sockmem-int-helper: %s: %s\n", what, strerror(errno));
	exit(2);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};

	nanosleep(&ts, NULL);
}

static void say(const char *word, long long v)
{
	printf("%s %lld\n", word, v);
	fflush(stdout);
}

static void set_nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl");
}

/* Send on every socket until none has taken a byte for `quiet_ms` (the send
 * buffers autotune while the peer's window closes), or `limit` bytes per
 * socket, or 5 s. Returns the bytes the kernel accepted. */
static long long fill(const int *fds, int k, long long limit, int quiet_ms)
{
	long long total = 0, sent[MAXCONN] = {0};
	long long deadline = now_ms() + 5000, last = now_ms();

	while (now_ms() < deadline && now_ms() - last < quiet_ms) {
		for (int i = 0; i < k; i++) {
			size_t want = sizeof(payload);
			ssize_t n;

			if (limit && sent[i] >= limit)
				continue;
			if (limit && limit - sent[i] < (long long)want)
				want = (size_t)(limit - sent[i]);
			n = send(fds[i], payload, want, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				die("send");
			if (n > 0) {
				sent[i] += n;
				total += n;
				last = now_ms();
			}
		}
		sleep_ms(1);
	}
	return total;
}

static void wait_eof(void)
{
	char c;

	while (read(0, &c, 1) > 0)
		;
}

/* Wait for "close" (close every fd, say "closed N") and/or EOF (exit with
 * whatever is still open). */
static int obey(const int *fds, int n)
{
	char line[64];

	if (!fgets(line, sizeof(line), stdin))
		return 0;
	if (strncmp(line, "close", 5) != 0)
		return 3;
	for (int i = 0; i < n; i++)
		if (close(fds[i]) < 0)
			die("close");
	say("closed", n);
	wait_eof();
	return 0;
}

static int listen_loopback(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, MAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	say("port", ntohs(a.sin_port));
	return fd;
}

static int peer(int k, long long bytes)
{
	int lfd = listen_loopback(), fds[MAXCONN + 1];
	struct pollfd p = {.fd = lfd, .events = POLLIN};

	for (int i = 0; i < k; i++) {
		if (poll(&p, 1, 10000) != 1)
			die("accept timeout");
		fds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fds[i] < 0)
			die("accept");
	}
	say("sent", bytes > 0 ? fill(fds, k, bytes, 100) : 0);
	fds[k] = lfd;
	return obey(fds, k + 1);
}

static int filler(int port, int k, bool send_too)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fds[MAXCONN];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < k; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		set_nonblock(fds[i]);
	}
	say("filled", send_too ? fill(fds, k, 0, 200) : 0);
	return obey(fds, k);
}

/* The prefork / fork-per-connection pattern: the parent opens the sockets,
 * forks, closes its copies (unless `keep`) and waits; the child uses them. */
static int forkfill(int port, int k, bool keep)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fds[MAXCONN], status;
	pid_t pid;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < k; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		set_nonblock(fds[i]);
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		say("child", getpid());
		say("filled", fill(fds, k, 0, 200));
		return obey(fds, k);
	}
	for (int i = 0; i < k && !keep; i++)
		close(fds[i]);
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	for (int i = 0; i < k && keep; i++)
		close(fds[i]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 4;
}

int main(int argc, char **argv)
{
	memset(payload, 'x', sizeof(payload));
	if (argc == 4 && !strcmp(argv[1], "peer"))
		return peer(atoi(argv[2]) % MAXCONN, atoll(argv[3]));
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "fill"))
		return filler(atoi(argv[2]), atoi(argv[3]) % MAXCONN,
			      argc == 4 || strcmp(argv[4], "nosend") != 0);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "forkfill"))
		return forkfill(atoi(argv[2]), atoi(argv[3]) % MAXCONN,
				argc == 5 && !strcmp(argv[4], "keep"));
	fprintf(stderr, "usage: sockmem-int-helper peer K BYTES | fill PORT K [nosend] | "
			"forkfill PORT K [keep]\n");
	return 64;
}
