/*
 * sockmem-lim-helper: the programs tests/limits runs (preloaded, or not for
 * the "without the shim" baselines). Plain C: no core, no Criterion.
 *
 *   recv PORT K RATE MS  listen on 127.0.0.1:PORT, print "ready", accept K
 *                        connections, read each at most RATE bytes/s for the
 *                        first MS ms (then as fast as possible; RATE 0: fast
 *                        throughout) until every one is at EOF; print
 *                        "rx N" (bytes received) and exit.
 *   send PORT K BYTES    connect K times, one blocking sender thread per
 *                        connection sending BYTES each; print "tx N".
 *   block PORT MS        connect, set SO_SNDTIMEO to MS, send 64K blocks
 *                        until a send fails; print "fail ERRNO ELAPSED_MS
 *                        SENT" (elapsed = the failing call only).
 *   epoll PORT SEC       connect non-blocking, write 64K blocks whenever
 *                        epoll says writable, for SEC seconds; print
 *                        "epoll WAKEUPS EAGAINS SENT".
 *   sig PORT RESTART TIMEO_MS ALARM_MS
 *                        connect, set SO_SNDTIMEO to TIMEO_MS (0: none),
 *                        install a SIGALRM handler (SA_RESTART if RESTART
 *                        is 1), print "blocking", arm it ALARM_MS ahead and
 *                        send 64K blocks (blocking) until the send during
 *                        which the handler ran returns; print "sig RC ERRNO
 *                        MS HANDLED" (MS: from arming to that return).
 *   mmsg PORT MS         connect non-blocking and, for MS ms, send batches
 *                        of 16 x 64K with sendmmsg (and 16-piece writev)
 *                        whenever poll says writable; print "mmsg MSGS
 *                        BYTES".
 *   big PORT BYTES       connect, print "blocking", write BYTES in one
 *                        blocking call; print "big RC".
 *   idle PORT K          connect K times, print "ready", then wait for EOF
 *                        on stdin (sockets untouched).
 *   accept PORT K        listen, print "ready", accept K connections and
 *                        wait for EOF on stdin (never reads).
 * Loops are bounded by time or counts; failures exit 2 with a line on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 1024
#define BLOCK	65536

static char payload[BLOCK];

static void die(const char *what)
{
	fprintf(stderr, "sockmem-lim-helper: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static struct sockaddr_in addr_of(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int dial(int port)
{
	struct sockaddr_in a = addr_of(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	for (int i = 0; connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0; i++) {
		if (i > 200)
			die("connect");
		sleep_ms(10);
	}
	return fd;
}

static int listen_on(int port)
{
	struct sockaddr_in a = addr_of(port);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 128) != 0)
		die("bind/listen");
	return fd;
}

static void ready(void)
{
	printf("ready\n");
	fflush(stdout);
}

static void wait_stdin(void)
{
	char b[64];

	while (read(0, b, sizeof(b)) > 0)
		;
}

/* ---- recv ---- */

static int cmd_recv(int port, int k, int64_t rate, int slow_ms)
{
	static int fds[MAXCONN];
	static char buf[BLOCK];
	static double tokens[MAXCONN];
	int lfd = listen_on(port), open_ = k;
	int64_t total = 0, last = now_ms(), deadline = now_ms() + 100000;

	ready();
	for (int i = 0; i < k; i++)
		if ((fds[i] = accept(lfd, NULL, NULL)) < 0)
			die("accept");
	int64_t fast_at = now_ms() + slow_ms;

	while (open_ > 0 && now_ms() < deadline) {
		int64_t t = now_ms();

		if (rate && t >= fast_at)
			rate = 0;
		for (int i = 0; i < k; i++) {
			size_t want = sizeof(buf);
			ssize_t n;

			if (fds[i] < 0)
				continue;
			if (rate) {
				tokens[i] += (double)rate * (double)(t - last) / 1000.0;
				if (tokens[i] > (double)rate / 10)
					tokens[i] = (double)rate / 10;
				if (tokens[i] < 1)
					continue;
				if (want > (size_t)tokens[i])
					want = (size_t)tokens[i];
			}
			n = recv(fds[i], buf, want, MSG_DONTWAIT);
			/* Fast: drain what is queued (bounded). */
			for (int j = 0; !rate && n > 0 && j < 256; j++) {
				ssize_t m = recv(fds[i], buf, want, MSG_DONTWAIT);

				if (m <= 0)
					break;
				total += m;
			}
			if (n == 0) {
				close(fds[i]);
				fds[i] = -1;
				open_--;
			} else if (n > 0) {
				total += n;
				if (rate)
					tokens[i] -= (double)n;
			} else if (errno != EAGAIN) {
				die("recv");
			}
		}
		last = t;
		if (rate) {
			sleep_ms(5);
		} else {
			struct pollfd p[MAXCONN];
			int np = 0;

			for (int i = 0; i < k; i++)
				if (fds[i] >= 0)
					p[np++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
			poll(p, (nfds_t)np, 100);
		}
	}
	printf("rx %lld\n", (long long)total);
	return open_ == 0 ? 0 : 3;
}

/* ---- send ---- */

struct sender {
	int fd;
	int64_t bytes, sent;
	pthread_t t;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;

	while (s->sent < s->bytes) {
		size_t n = (size_t)(s->bytes - s->sent) < sizeof(payload)
				   ? (size_t)(s->bytes - s->sent)
				   : sizeof(payload);
		ssize_t r = send(s->fd, payload, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("send");
		s->sent += r;
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

static int cmd_send(int port, int k, int64_t bytes)
{
	static struct sender s[MAXCONN];
	int64_t total = 0;

	for (int i = 0; i < k; i++)
		s[i] = (struct sender){.fd = dial(port), .bytes = bytes};
	for (int i = 0; i < k; i++)
		if (pthread_create(&s[i].t, NULL, send_main, &s[i]) != 0)
			die("pthread_create");
	for (int i = 0; i < k; i++) {
		pthread_join(s[i].t, NULL);
		total += s[i].sent;
	}
	printf("tx %lld\n", (long long)total);
	fflush(stdout);
	for (int i = 0; i < k; i++)
		close(s[i].fd);
	return 0;
}

/* ---- block / epoll ---- */

static int cmd_block(int port, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	int fd = dial(port);
	int64_t sent = 0, t0 = 0;
	ssize_t r = 0;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 100000; i++) {
		t0 = now_ms();
		r = send(fd, payload, sizeof(payload), 0);
		if (r < 0)
			break;
		sent += r;
	}
	printf("fail %d %lld %lld\n", r < 0 ? errno : 0, (long long)(now_ms() - t0),
	       (long long)sent);
	return 0;
}

static int cmd_epoll(int port, int sec)
{
	int fd = dial(port), ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLOUT}, out;
	int64_t end = now_ms() + sec * 1000, wakeups = 0, eagain = 0, sent = 0;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll");
	while (now_ms() < end) {
		int n = epoll_wait(ep, &out, 1, 100);

		if (n <= 0)
			continue;
		wakeups++;
		for (int i = 0; i < 1000; i++) {
			ssize_t r = send(fd, payload, sizeof(payload), 0);

			if (r < 0) {
				if (errno != EAGAIN)
					die("send");
				eagain++;
				break;
			}
			sent += r;
		}
	}
	printf("epoll %lld %lld %lld\n", (long long)wakeups, (long long)eagain, (long long)sent);
	return 0;
}

static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
	(void)sig;
	handled++;
}

static int cmd_sig(int port, int restart, int timeo_ms, int alarm_ms)
{
	struct timeval tv = {.tv_sec = timeo_ms / 1000, .tv_usec = (timeo_ms % 1000) * 1000};
	struct itimerval it = {.it_value = {alarm_ms / 1000, (alarm_ms % 1000) * 1000}};
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0};
	int fd = dial(port);
	int64_t t0;
	ssize_t r = 0;
	int err = 0;

	if (timeo_ms > 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) != 0)
		die("sigaction");
	printf("blocking\n");
	t0 = now_ms();
	if (setitimer(ITIMER_REAL, &it, NULL) != 0)
		die("setitimer");
	/* Blocking sends until the one during which the handler ran. */
	for (int i = 0; i < 100000 && !handled; i++) {
		r = send(fd, payload, sizeof(payload), 0);
		err = r < 0 ? errno : 0;
		if (r < 0 && errno != EINTR)
			break;
	}
	printf("sig %lld %d %lld %d\n", (long long)r, err, (long long)(now_ms() - t0),
	       (int)handled);
	return 0;
}

static int cmd_big(int port, int64_t bytes)
{
	char *b = calloc(1, (size_t)bytes);
	int fd = dial(port);
	ssize_t r;

	if (!b)
		die("calloc");
	printf("blocking\n");
	fflush(stdout);
	r = write(fd, b, (size_t)bytes);
	printf("big %lld\n", (long long)r);
	free(b);
	return 0;
}

static int cmd_mmsg(int port, int ms)
{
	struct iovec iov[16];
	struct mmsghdr mv[16];
	int fd = dial(port);
	int64_t end = now_ms() + ms, msgs = 0, bytes = 0;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	for (int i = 0; i < 16; i++)
		iov[i] = (struct iovec){.iov_base = payload, .iov_len = sizeof(payload)};
	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int r;
		ssize_t w;

		memset(mv, 0, sizeof(mv));
		for (int i = 0; i < 16; i++) {
			mv[i].msg_hdr.msg_iov = &iov[i];
			mv[i].msg_hdr.msg_iovlen = 1;
		}
		r = sendmmsg(fd, mv, 16, 0);
		if (r < 0 && errno != EAGAIN)
			die("sendmmsg");
		for (int i = 0; i < r; i++)
			bytes += mv[i].msg_len;
		msgs += r > 0 ? r : 0;
		w = writev(fd, iov, 16);
		if (w < 0 && errno != EAGAIN)
			die("writev");
		bytes += w > 0 ? w : 0;
		poll(&p, 1, 50);
	}
	printf("mmsg %lld %lld\n", (long long)msgs, (long long)bytes);
	return 0;
}

static int cmd_idle(int port, int k)
{
	for (int i = 0; i < k; i++)
		dial(port);
	ready();
	wait_stdin();
	return 0;
}

static int cmd_accept(int port, int k)
{
	int lfd = listen_on(port);

	ready();
	for (int i = 0; i < k; i++)
		if (accept(lfd, NULL, NULL) < 0)
			die("accept");
	wait_stdin();
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(payload, 'x', sizeof(payload));
	if (argc == 6 && strcmp(argv[1], "recv") == 0)
		return cmd_recv(atoi(argv[2]), atoi(argv[3]), atoll(argv[4]), atoi(argv[5]));
	if (argc == 5 && strcmp(argv[1], "send") == 0)
		return cmd_send(atoi(argv[2]), atoi(argv[3]), atoll(argv[4]));
	if (argc == 4 && strcmp(argv[1], "block") == 0)
		return cmd_block(atoi(argv[2]), atoi(argv[3]));
	if (argc == 4 && strcmp(argv[1], "epoll") == 0)
		return cmd_epoll(atoi(argv[2]), atoi(argv[3]));
	if (argc == 6 && strcmp(argv[1], "sig") == 0)
		return cmd_sig(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 4 && strcmp(argv[1], "big") == 0)
		return cmd_big(atoi(argv[2]), atoll(argv[3]));
	if (argc == 4 && strcmp(argv[1], "mmsg") == 0)
		return cmd_mmsg(atoi(argv[2]), atoi(argv[3]));
	if (argc == 4 && strcmp(argv[1], "idle") == 0)
		return cmd_idle(atoi(argv[2]), atoi(argv[3]));
	if (argc == 4 && strcmp(argv[1], "accept") == 0)
		return cmd_accept(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: see the file comment\n");
	return 2;
}
