/*
 * A busy group member for the kill -9 storm and the soak (run under
 * LD_PRELOAD=libsockmem.so; plain C, knows nothing about sockmem).
 *
 *   sockmem-fault-member DIR ID NMEMBERS THREADS CONNS MSG [PACE_US]
 *
 * Listens on 127.0.0.1 (port written to DIR/port.ID), serves every
 * connection from one epoll thread (reads at a limited rate, so data piles
 * up in receive queues, and writes small replies), and runs THREADS worker
 * threads, each keeping CONNS connections to random other members
 * (DIR/port.*) and sending MSG-byte messages without blocking. A connection
 * whose peer died is replaced. Prints "READY <port>" once listening.
 *
 * Signals: SIGTERM stops cleanly (every socket closed, threads joined,
 * exit 0); SIGUSR1 makes every thread quiet (no more sends or reads, sockets
 * kept open with whatever their queues hold); SIGUSR2 resumes.
 * Every loop is paced (sleeps; a worker's round over its connections is
 * followed by PACE_US microseconds, default 2000) so that a 2-core machine
 * is not saturated. With FAULT_MEMBER_BUF=<bytes> in the environment every
 * socket gets that SO_SNDBUF and SO_RCVBUF, which bounds what can pile up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXCONN 256
#define MAXSRV	1024

static const char *dir;
static int my_id, nmembers, conns, msg, pace_us = 2000, bufsize;
static _Atomic int stop, quiet; /* written by signal handlers (lock-free) */

static void on_term(int sig)
{
	stop = 1;
}

static void on_quiet(int sig)
{
	quiet = sig == SIGUSR1;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int read_port(int id)
{
	char path[512], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/port.%d", dir, id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

static void write_port(int port)
{
	char path[512], tmp[520], buf[32];
	int fd, n = snprintf(buf, sizeof(buf), "%d\n", port);

	snprintf(path, sizeof(path), "%s/port.%d", dir, my_id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
		perror("port file");
		exit(2);
	}
}

static void set_bufs(int fd)
{
	if (bufsize > 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
	}
}

/* A connection to a random other member, or -1. Non-blocking after connect. */
static int connect_peer(uint64_t *seed)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int id, port, fd;

	if (nmembers < 2)
		return -1;
	id = (int)(rnd(seed) % (uint64_t)(nmembers - 1));
	if (id >= my_id)
		id++;
	port = read_port(id);
	if (port <= 0)
		return -1;
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_bufs(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* One round on one connection: send a message, read what came back.
 * Returns false when the connection is dead. */
static bool pump(int fd, char *buf)
{
	ssize_t r = send(fd, buf, (size_t)msg, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return false;
	for (int i = 0; i < 4; i++) {
		r = recv(fd, buf, 65536, MSG_DONTWAIT);
		if (r == 0)
			return false;
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	}
	return true;
}

static void *worker(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	char *buf = malloc(65536 > msg ? 65536 : (size_t)msg);
	int fd[MAXCONN];

	if (!buf)
		return NULL;
	memset(buf, 'm', 65536 > msg ? 65536 : (size_t)msg);
	for (int i = 0; i < conns; i++)
		fd[i] = -1;
	while (!stop) {
		for (int i = 0; i < conns && !stop; i++) {
			if (quiet)
				continue;
			if (fd[i] < 0)
				fd[i] = connect_peer(&seed);
			if (fd[i] < 0)
				continue;
			if (!pump(fd[i], buf) || rnd(&seed) % 1000 == 0) {
				close(fd[i]);
				fd[i] = -1;
			}
		}
		usleep((useconds_t)pace_us);
	}
	for (int i = 0; i < conns; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(buf);
	return NULL;
}

/* Serve accepted connections: read slowly (1 KiB or 16 KiB per wakeup,
 * depending on the connection), answer with small replies. */
static void serve(int lfd)
{
	int ep = epoll_create1(EPOLL_CLOEXEC), fds[MAXSRV], n = 0;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[64];
	static char buf[16384];

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) {
		perror("epoll");
		exit(2);
	}
	while (!stop) {
		int k = quiet ? 0 : epoll_wait(ep, evs, 64, 20);

		for (int i = 0; i < k; i++) {
			int fd = evs[i].data.fd;
			ssize_t r;

			if (fd == lfd) {
				int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (c >= 0 && n < MAXSRV) {
					set_bufs(c);
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
					fds[n++] = c;
				} else if (c >= 0) {
					close(c);
				}
				continue;
			}
			r = read(fd, buf, fd % 2 ? 1024 : sizeof(buf));
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				for (int j = 0; j < n; j++)
					if (fds[j] == fd)
						fds[j] = fds[--n];
			} else if (r > 0 && r % 3 == 0) {
				(void)!write(fd, buf, 512);
			}
		}
		usleep(quiet ? 20000 : (useconds_t)pace_us);
	}
	for (int j = 0; j < n; j++)
		close(fds[j]);
	close(ep);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	struct sigaction act = {.sa_handler = on_term};
	pthread_t t[64];
	int threads, lfd;

	if (argc != 7 && argc != 8) {
		fprintf(stderr, "usage: %s DIR ID NMEMBERS THREADS CONNS MSG [PACE_US]\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	my_id = atoi(argv[2]);
	nmembers = atoi(argv[3]);
	threads = atoi(argv[4]);
	conns = atoi(argv[5]);
	msg = atoi(argv[6]);
	if (argc == 8)
		pace_us = atoi(argv[7]);
	if (getenv("FAULT_MEMBER_BUF"))
		bufsize = atoi(getenv("FAULT_MEMBER_BUF"));
	if (threads < 1 || threads > 64 || conns < 1 || conns > MAXCONN || msg < 1 ||
	    msg > (1 << 20))
		return 2;
	sigaction(SIGTERM, &act, NULL);
	act.sa_handler = on_quiet;
	sigaction(SIGUSR1, &act, NULL);
	sigaction(SIGUSR2, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	set_bufs(lfd); /* inherited by accepted sockets */
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, l) || listen(lfd, 512) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &l)) {
		perror("listen");
		return 2;
	}
	write_port(ntohs(sa.sin_port));
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0)
			return 2;
	printf("READY %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	serve(lfd);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	close(lfd);
	printf("BYE\n");
	fflush(stdout);
	return 0;
}
