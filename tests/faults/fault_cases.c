/*
 * Fault cases, one per subcommand, run under LD_PRELOAD=libsockmem.so by
 * test_cases.c (plain C: the program knows nothing about sockmem).
 *
 *   fork_mt N       fork N times while 3 threads send and receive
 *   vfork_exec N    vfork+exec and posix_spawn N times while threads send
 *   child_traffic   (spawned by vfork_exec) a short exchange, then exit
 *   signal_send S   for S seconds: SIGALRM at 20 kHz and pthread_kill
 *                   storms whose handler sends, while the main thread sends
 *   threads N       N short-lived threads (50 at a time) each sending, under
 *                   background traffic
 *   highfd          a socket at fd 70000 (raised RLIMIT_NOFILE) and a dup
 *                   above it: send, recv, close
 *   closeall        close every fd up to getdtablesize(), then use sockets
 *   traffic         threads exchange data; some is left queued
 *   ctor            report what libsockmem-fault-ctor's constructor did
 *   exit_busy MS    4 threads send and receive; main calls exit(0) after MS
 *                   ms without stopping them (the destructor runs while they
 *                   are still inside interposed calls)
 *
 * Phases: "<PHASE> <number>" on stdout, then wait for one byte on stdin
 * (EOF goes on too). Exit status 0 on success; 2 a call failed, 3 a
 * child or thread misbehaved, 4 something hung.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault_ctor.h"

extern char **environ;

static char self[4096];
static _Atomic int stop;

static void die(const char *what)
{
	fprintf(stderr, "fault-cases: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void phase(const char *name, long n)
{
	char c;

	printf("%s %ld\n", name, n);
	fflush(stdout);
	(void)!read(0, &c, 1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (lfd < 0 || bind(lfd, (void *)&sa, l) || listen(lfd, 1) ||
	    getsockname(lfd, (void *)&sa, &l))
		die("listen");
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*a < 0 || connect(*a, (void *)&sa, l))
		die("connect");
	*b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (*b < 0)
		die("accept");
	close(lfd);
}

static void send_all(int fd, const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = send(fd, buf + done, n - done, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("send");
		done += (size_t)r;
	}
}

static void recv_all(int fd, size_t n)
{
	static _Thread_local char buf[65536];
	size_t done = 0;

	while (done < n) {
		ssize_t r = recv(fd, buf, n - done < sizeof(buf) ? n - done : sizeof(buf), 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("recv");
		done += (size_t)r;
	}
}

/* One short exchange on a fresh connection: the caller's process joins. */
static void exchange(size_t n)
{
	static char buf[32768];
	int a, b;

	tcp_pair(&a, &b);
	send_all(a, buf, n < sizeof(buf) ? n : sizeof(buf));
	recv_all(b, n < sizeof(buf) ? n : sizeof(buf));
	close(a);
	close(b);
}

/* ---- background traffic ---------------------------------------------- */

struct bg {
	pthread_t t;
	int a, b;
	_Atomic long rounds;
};

static void *bg_main(void *p)
{
	struct bg *g = p;
	char buf[8192];

	memset(buf, 'b', sizeof(buf));
	while (!atomic_load(&stop)) {
		send_all(g->a, buf, sizeof(buf));
		recv_all(g->b, sizeof(buf));
		atomic_fetch_add(&g->rounds, 1);
	}
	return NULL;
}

/* Start n threads exchanging data and return once each has done a round:
 * the forks that follow must find them inside their send/recv loop, not
 * still starting up (a thread's start allocates, and under ASan a fork
 * that catches another thread inside GCC 12's allocator leaves the child
 * with that lock held: its first new thread then hangs in ASan's own
 * thread setup, whatever the shim does). */
static void bg_start(struct bg *g, int n)
{
	uint64_t end = now_ms() + 10000;

	atomic_store(&stop, 0);
	for (int i = 0; i < n; i++) {
		tcp_pair(&g[i].a, &g[i].b);
		atomic_store(&g[i].rounds, 0);
		if (pthread_create(&g[i].t, NULL, bg_main, &g[i]) != 0)
			die("pthread_create");
	}
	for (int i = 0; i < n; i++)
		while (atomic_load(&g[i].rounds) == 0) {
			if (now_ms() > end) {
				fprintf(stderr, "fault-cases: background thread %d never ran\n", i);
				exit(4);
			}
			usleep(1000);
		}
}

static long bg_stop(struct bg *g, int n)
{
	long rounds = 0;

	atomic_store(&stop, 1);
	for (int i = 0; i < n; i++) {
		pthread_join(g[i].t, NULL);
		close(g[i].a);
		close(g[i].b);
		rounds += g[i].rounds;
	}
	return rounds;
}

/* waitpid with a deadline: the status, or exit(4) after killing it. */
static int wait_bounded(pid_t pid, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int st;

	while (now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			die("waitpid");
		usleep(1000);
	}
	fprintf(stderr, "fault-cases: child %d hung\n", (int)pid);
	kill(pid, SIGKILL);
	exit(4);
}

static void expect_ok(int st, const char *what, int i)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "fault-cases: %s %d: status %#x\n", what, i, st);
		exit(3);
	}
}

/* ---- fork, vfork, spawn ------------------------------------------------- */

static int fork_mt(int n)
{
	struct bg g[3];

	bg_start(g, 3);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			/* The child of a multi-threaded parent: the shim must
			 * have left nothing locked. */
			exchange(4096);
			if (i % 2)
				_exit(0);
			exit(0);
		}
		expect_ok(wait_bounded(pid, 10000), "fork child", i);
	}
	printf("ROUNDS %ld\n", bg_stop(g, 3));
	phase("CLOSED", n);
	return 0;
}

static int vfork_exec(int n)
{
	static char bin_true[] = "/bin/true", child[] = "child_traffic";
	char *const true_argv[] = {bin_true, NULL};
	char *spawn_argv[] = {self, child, NULL};
	struct bg g[2];

	bg_start(g, 2);
	for (int i = 0; i < n; i++) {
		pid_t pid = vfork();

		if (pid < 0)
			die("vfork");
		if (pid == 0) {
			execve(true_argv[0], true_argv, environ);
			_exit(127);
		}
		expect_ok(wait_bounded(pid, 10000), "vfork+exec", i);
		if (posix_spawn(&pid, self, NULL, NULL, spawn_argv, environ) != 0)
			die("posix_spawn");
		expect_ok(wait_bounded(pid, 10000), "posix_spawn", i);
	}
	printf("ROUNDS %ld\n", bg_stop(g, 2));
	phase("CLOSED", n);
	return 0;
}

/* ---- signal handlers that send ------------------------------------------ */

static int sig_tx, sig_rx, main_tx; /* W: before the handler is installed */
static _Atomic long handled;

static void on_signal(int sig)
{
	int saved = errno;
	char buf[256] = {0};
	long n = atomic_fetch_add(&handled, 1);

	/* Mostly on a socket of its own, sometimes on the very socket the
	 * interrupted thread is sending on. */
	(void)!send(n % 4 ? sig_tx : main_tx, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)!recv(sig_rx, buf, sizeof(buf), MSG_DONTWAIT);
	errno = saved;
}

static void *killer(void *p)
{
	pthread_t target = *(pthread_t *)p;

	while (!atomic_load(&stop)) {
		pthread_kill(target, SIGUSR1);
		for (volatile int i = 0; i < 200; i++)
			;
	}
	return NULL;
}

static void drain(int fd)
{
	char buf[65536];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static int signal_send(int seconds)
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
	struct itimerval it = {.it_interval = {0, 50}, .it_value = {0, 50}};
	pthread_t me = pthread_self(), kt;
	int main_rx;
	char buf[16384];
	uint64_t end;
	long sends = 0;

	memset(buf, 's', sizeof(buf));
	tcp_pair(&main_tx, &main_rx);
	tcp_pair(&sig_tx, &sig_rx);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) || sigaction(SIGUSR1, &sa, NULL))
		die("sigaction");
	atomic_store(&stop, 0);
	if (pthread_create(&kt, NULL, killer, &me) != 0)
		die("pthread_create");
	if (setitimer(ITIMER_REAL, &it, NULL))
		die("setitimer");
	end = now_ms() + (uint64_t)seconds * 1000;
	while (now_ms() < end) {
		ssize_t r = send(main_tx, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r > 0)
			sends++;
		else if (r < 0 && errno != EAGAIN && errno != EINTR)
			die("send");
		drain(main_rx);
		drain(sig_rx);
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	atomic_store(&stop, 1);
	pthread_join(kt, NULL);
	signal(SIGALRM, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	printf("HANDLED %ld SENDS %ld\n", atomic_load(&handled), sends);
	close(main_tx);
	close(main_rx);
	close(sig_tx);
	close(sig_rx);
	phase("CLOSED", atomic_load(&handled));
	return 0;
}

/* ---- many short-lived threads ------------------------------------------- */

static int shared_tx;

static void *short_thread(void *p)
{
	char buf[2048];

	memset(buf, 't', sizeof(buf));
	send_all(shared_tx, buf, sizeof(buf));
	return NULL;
}

static void *shared_reader(void *p)
{
	int fd = *(int *)p;
	char buf[65536];

	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r <= 0 && !(r < 0 && errno == EINTR))
			return NULL;
	}
}

static int threads(int n)
{
	pthread_t t[50], rd;
	struct bg g[2];
	int shared_rx, done = 0;

	tcp_pair(&shared_tx, &shared_rx);
	if (pthread_create(&rd, NULL, shared_reader, &shared_rx) != 0)
		die("pthread_create");
	bg_start(g, 2);
	while (done < n) {
		int k = n - done < 50 ? n - done : 50;

		for (int i = 0; i < k; i++)
			if (pthread_create(&t[i], NULL, short_thread, NULL) != 0)
				die("pthread_create");
		for (int i = 0; i < k; i++)
			pthread_join(t[i], NULL);
		done += k;
	}
	phase("DONE", done);
	bg_stop(g, 2);
	shutdown(shared_tx, SHUT_WR);
	pthread_join(rd, NULL);
	close(shared_tx);
	close(shared_rx);
	phase("CLOSED", done);
	return 0;
}

/* ---- fds above 65536 ---------------------------------------------------- */

#define HIGH_FD 70000

/* fd 70000 when the hard limit can be raised (root with CAP_SYS_RESOURCE,
 * or a high hard limit); otherwise the highest fd the limit allows. */
static int high_fd(void)
{
	struct rlimit rl = {.rlim_cur = HIGH_FD + 4096, .rlim_max = HIGH_FD + 4096};

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max > HIGH_FD + 16) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		return HIGH_FD;
	}
	rl.rlim_cur = rl.rlim_max = HIGH_FD + 4096;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return HIGH_FD;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit");
	return (int)rl.rlim_max - 16;
}

static int highfd(void)
{
	static char buf[65536];
	int a, b, d, hi = high_fd();

	printf("FD %d\n", hi);
	tcp_pair(&a, &b);
	if (dup2(a, hi) != hi)
		die("dup2");
	close(a);
	send_all(hi, buf, sizeof(buf));
	phase("QUEUED", (long)sizeof(buf));
	recv_all(b, sizeof(buf));
	d = fcntl(hi, F_DUPFD_CLOEXEC, hi + 1);
	if (d <= hi)
		die("F_DUPFD_CLOEXEC");
	close(hi); /* the dup keeps the socket */
	send_all(d, buf, 8192);
	phase("DUP", d);
	recv_all(b, 8192);
	close(d);
	close(b);
	phase("CLOSED", d);
	return 0;
}

/* ---- close everything --------------------------------------------------- */

static int closeall(void)
{
	static char buf[32768];
	int a, b, max = getdtablesize();

	tcp_pair(&a, &b);
	send_all(a, buf, sizeof(buf)); /* left queued */
	printf("CLOSING %d\n", max);
	fflush(stdout);
	for (int fd = 0; fd < max; fd++)
		close(fd);
	/* Everything is gone, including stdio and whatever the shim held.
	 * Go on using sockets, and let the shim's helper tick a few times. */
	for (int i = 0; i < 20; i++) {
		exchange(sizeof(buf));
		usleep(60000);
	}
	return 0;
}

/* ---- plain traffic, some left queued ------------------------------------ */

static int traffic(void)
{
	struct bg g[2];
	static char buf[32768];
	int a, b;

	bg_start(g, 2);
	for (int i = 0; i < 200; i++)
		free(malloc((size_t)(i * 97 % 4096 + 1)));
	tcp_pair(&a, &b);
	send_all(a, buf, sizeof(buf));
	usleep(200000);
	printf("ROUNDS %ld\n", bg_stop(g, 2));
	phase("QUEUED", (long)sizeof(buf));
	recv_all(b, sizeof(buf));
	close(a);
	close(b);
	phase("CLOSED", 0);
	return 0;
}

static int ctor(void)
{
	int tx, rx, err;
	long sent;

	err = fault_ctor_result(&tx, &rx, &sent);
	printf("CTOR err=%d tx=%d rx=%d sent=%ld\n", err, tx, rx, sent);
	if (err || sent != FAULT_CTOR_BYTES)
		return 2;
	phase("QUEUED", sent);
	recv_all(rx, (size_t)sent);
	close(tx);
	close(rx);
	phase("CLOSED", 0);
	return 0;
}

static int exit_busy(int ms)
{
	struct bg g[4];

	bg_start(g, 4);
	usleep((useconds_t)ms * 1000);
	exit(0); /* the threads are still sending */
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	int n = argc > 2 ? atoi(argv[2]) : 0;

	snprintf(self, sizeof(self), "%s", argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "ctor") != 0) {
		/* Only "ctor" looks at the sockets the linked library's
		 * constructor opened; the shim accounts them (adopted at load),
		 * so the other cases close them to end at 0 as they expect. */
		int tx, rx;
		long sent;

		fault_ctor_result(&tx, &rx, &sent);
		if (tx >= 0)
			close(tx);
		if (rx >= 0)
			close(rx);
	}
	if (!strcmp(cmd, "fork_mt"))
		return fork_mt(n);
	if (!strcmp(cmd, "vfork_exec"))
		return vfork_exec(n);
	if (!strcmp(cmd, "child_traffic"))
		return exchange(16384), 0;
	if (!strcmp(cmd, "signal_send"))
		return signal_send(n);
	if (!strcmp(cmd, "threads"))
		return threads(n);
	if (!strcmp(cmd, "highfd"))
		return highfd();
	if (!strcmp(cmd, "closeall"))
		return closeall();
	if (!strcmp(cmd, "traffic"))
		return traffic();
	if (!strcmp(cmd, "ctor"))
		return ctor();
	if (!strcmp(cmd, "exit_busy"))
		return exit_busy(n);
	fprintf(stderr,
		"usage: %s fork_mt|vfork_exec|signal_send|threads N | highfd | closeall "
		"| traffic | ctor\n",
		argv[0]);
	return 2;
}
