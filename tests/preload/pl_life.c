/*
 * Preloaded helper: sockets coming and going.
 *
 *   pl-life dup|dup2|dup3|dupfd|dupfd_cloexec   dups share one state
 *   pl-life close_range                          close_range (and CLOEXEC)
 *   pl-life reuse                                fd reuse after a raw close
 *   pl-life stale                                raw close, fd reused by a file
 *   pl-life threads                              exiting threads give caches back
 *   pl-life fork                                 a forked child
 *   pl-life exec                                 an exec'd child joins the group
 *   pl-life untouched                            bytes the shim never saw (raw
 *                                                syscalls) are found by the tick
 *   pl-life vfork                                a vfork child closes a socket
 *                                                before exec: the parent keeps it
 *   pl-life signals                              send/recv from a signal handler
 *                                                interrupting send/recv
 *   pl-life stress                               threads share sockets, dup and
 *                                                close while the helper reconciles
 *   pl-life handoff                              accept-then-fork: the parent closes
 *                                                its copies, the child's use is charged
 *   pl-life self_exec                            exec without fork: the old image's
 *                                                record is returned
 *   pl-life self_exec_refused                    the same, into an image whose limits
 *                                                the shim refuses (it runs unaccounted)
 *   pl-life fork_exit <us>                       a thread forks in a loop while main
 *                                                returns after <us> microseconds
 *   pl-life cancel                               a thread cancelled in close(): the
 *                                                socket stays open and accounted
 *   pl-life errno                                24 threads' first calls keep errno
 *   pl-life keyd                                 key destructors that run after the
 *                                                shim's still send: no slot left behind
 *   pl-life orphan                               the parent exits right after fork; the
 *                                                child opens its first sockets later
 *   pl-life dup_nomem                            dup2 onto an fd whose table chunk cannot
 *                                                be mapped: the original stays accounted
 *
 * Phases as in pl_io.c: print "<phase> <number>", wait for a byte on stdin.
 * Exit status 0 on success, 2 on a failed call.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define N	 32768
#define NTHREADS 4

static char buf[N];

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void phase(const char *name, long n)
{
	char c;

	printf("%s %ld\n", name, n);
	fflush(stdout);
	if (read(0, &c, 1) != 1)
		exit(3);
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (bind(lfd, (void *)&sa, l) || listen(lfd, 1) || getsockname(lfd, (void *)&sa, &l))
		die("listen");
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (void *)&sa, l))
		die("connect");
	*b = accept(lfd, NULL, NULL);
	if (*b < 0)
		die("accept");
	close(lfd);
}

static void send_all(int fd, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = send(fd, buf, n - done, 0);

		if (r <= 0)
			die("send");
		done += (size_t)r;
	}
}

/* Occupy the listener's old fd number, so that the next fd is the one we
 * close by hand. */
static void fill_hole(void)
{
	if (open("/dev/null", O_RDONLY) < 0)
		die("open");
}

static int dup_by(const char *how, int fd)
{
	int t;

	if (!strcmp(how, "dup"))
		return dup(fd);
	if (!strcmp(how, "dupfd"))
		return fcntl(fd, F_DUPFD, 100);
	if (!strcmp(how, "dupfd_cloexec"))
		return fcntl(fd, F_DUPFD_CLOEXEC, 100);
	/* dup2/dup3 onto an accounted socket: its own state must be dropped. */
	t = socket(AF_INET, SOCK_STREAM, 0);
	phase("target", t);
	if (!strcmp(how, "dup2"))
		return dup2(fd, t);
	return dup3(fd, t, O_CLOEXEC);
}

static int do_dup(const char *how)
{
	int a, b, d;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	d = dup_by(how, a);
	if (d < 0)
		die(how);
	phase("duped", d);
	close(a);
	phase("closed_orig", N);
	send_all(d, N);
	phase("sent_dup", 2 * N);
	close(d);
	phase("closed_dup", 0);
	close(b);
	phase("closed", 0);
	return 0;
}

/* dup2 onto a high fd while mmap fails (RLIMIT_AS 0): the fd table has no
 * chunk for it, so the dup goes unaccounted; the original socket's state,
 * shared, must not be released with it. */
static int do_dup_nomem(void)
{
	struct rlimit as, nf;
	int a, b, d;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	if (getrlimit(RLIMIT_NOFILE, &nf) || nf.rlim_max < 9000)
		die("RLIMIT_NOFILE");
	nf.rlim_cur = nf.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &nf) || getrlimit(RLIMIT_AS, &as))
		die("setrlimit");
	as.rlim_cur = 0;
	if (setrlimit(RLIMIT_AS, &as))
		die("RLIMIT_AS");
	d = dup2(a, 8200);
	as.rlim_cur = as.rlim_max;
	if (setrlimit(RLIMIT_AS, &as))
		die("RLIMIT_AS");
	if (d != 8200)
		die("dup2");
	phase("duped", d);
	send_all(a, N);
	phase("sent_more", 2 * N);
	close(d);
	close(a);
	phase("closed_orig", 0);
	close(b);
	phase("closed", 0);
	return 0;
}

static int do_close_range(void)
{
	int a, b, u = socket(AF_INET, SOCK_DGRAM, 0);

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	if (close_range((unsigned)u, ~0u, CLOSE_RANGE_CLOEXEC))
		die("close_range cloexec");
	phase("cloexec", N);
	/* Refused by the kernel: the states stay. */
	if (close_range(~0u, (unsigned)u, 0) != -1 || errno != EINVAL ||
	    close_range((unsigned)u, ~0u, 1u << 30) != -1 || errno != EINVAL)
		die("close_range accepted bad arguments");
	phase("refused", N);
	if (close_range((unsigned)u, ~0u, 0))
		die("close_range");
	phase("closed", 0);
	return 0;
}

static int do_reuse(void)
{
	int a, b, c;

	tcp_pair(&a, &b);
	fill_hole();
	send_all(a, N);
	phase("sent", N);
	syscall(SYS_close, a); /* a close the shim does not see */
	phase("rawclosed", N);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c != a) {
		fprintf(stderr, "fd %d not reused (got %d)\n", a, c);
		return 2;
	}
	phase("reused", 0);
	close(c);
	close(b);
	phase("closed", 0);
	return 0;
}

static int do_stale(void)
{
	int a, b, f;

	tcp_pair(&a, &b);
	fill_hole();
	phase("pair", 0);
	syscall(SYS_close, b);
	f = open("/dev/null", O_RDONLY);
	if (f != b) {
		fprintf(stderr, "fd %d not reused (got %d)\n", b, f);
		return 2;
	}
	if (read(f, buf, sizeof(buf)) != 0)
		die("read /dev/null");
	phase("file", 0); /* the tick must find the stale entry and drop it */
	close(f);
	close(a);
	phase("closed", 0);
	return 0;
}

static int go_pipe[2];

static void *thread_main(void *arg)
{
	int a, b;
	char c;

	tcp_pair(&a, &b);
	send_all(a, N);
	if (read(go_pipe[0], &c, 1) != 1)
		die("read go");
	close(a);
	close(b);
	return NULL;
}

static int do_threads(void)
{
	pthread_t t[NTHREADS];
	char go[NTHREADS];

	if (pipe(go_pipe))
		die("pipe");
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, thread_main, NULL))
			die("pthread_create");
	usleep(200000); /* all have sent: sock == NTHREADS * N */
	phase("running", NTHREADS * N);
	memset(go, 'g', sizeof(go));
	if (write(go_pipe[1], go, sizeof(go)) != (ssize_t)sizeof(go))
		die("write go");
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	phase("joined", 0);
	return 0;
}

static int do_fork(void)
{
	int a, b, c, d, status;
	pid_t pid;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		send_all(a, N / 2); /* inherited: the parent's, not charged again */
		tcp_pair(&c, &d);
		send_all(c, N);
		phase("child", 2 * N);
		close(a);
		close(b);
		close(c);
		close(d);
		phase("child_closed", N);
		exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("child");
	phase("parent", N);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

static int do_exec(const char *self)
{
	int a, b, status;
	pid_t pid;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execl(self, self, "exec_child", (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("exec child");
	phase("parent", N);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

static long meminfo(int fd)
{
	uint32_t mi[SK_MEMINFO_VARS] = {0};
	socklen_t l = sizeof(mi);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &l))
		die("SO_MEMINFO");
	return (long)mi[SK_MEMINFO_WMEM_QUEUED] + (long)mi[SK_MEMINFO_RMEM_ALLOC];
}

static int do_untouched(void)
{
	int a, b;
	long sent = 0;

	tcp_pair(&a, &b);
	while (sent < 8 * N) { /* behind the shim's back */
		long r = syscall(SYS_sendto, a, buf, N, MSG_DONTWAIT, NULL, 0);

		if (r <= 0)
			break;
		sent += r;
	}
	usleep(50000);
	phase("queued", meminfo(a) + meminfo(b));
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

static int do_vfork(void)
{
	int a, b, status;
	pid_t pid;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	pid = vfork();
	if (pid < 0)
		die("vfork");
	if (pid == 0) {
		close(a); /* the child's fd only; shares our memory */
		close(b);
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("vfork child");
	phase("parent", N);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

static int sig_c, sig_d;
static volatile sig_atomic_t sig_hits;

static void on_alarm(int sig)
{
	int saved = errno;
	char x = 'z';

	if (send(sig_c, &x, 1, MSG_DONTWAIT) == 1 && recv(sig_d, &x, 1, MSG_DONTWAIT) == 1)
		sig_hits++;
	errno = saved;
}

static int do_signals(void)
{
	struct itimerval it = {{0, 200}, {0, 200}};
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	int a, b;

	tcp_pair(&a, &b);
	tcp_pair(&sig_c, &sig_d);
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	for (int i = 0; i < 20000; i++) {
		char m[64];
		size_t got = 0;

		if (send(a, buf, sizeof(m), 0) != (ssize_t)sizeof(m))
			die("send");
		while (got < sizeof(m)) {
			ssize_t r = recv(b, m, sizeof(m) - got, 0);

			if (r <= 0)
				die("recv");
			got += (size_t)r;
		}
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	if (sig_hits == 0) {
		fprintf(stderr, "the handler never ran\n");
		return 2;
	}
	close(a), close(b), close(sig_c), close(sig_d);
	phase("closed", sig_hits);
	return 0;
}

static int shared_a, shared_b;

/* Each thread: traffic on the shared pair (a sender and a reader per
 * thread, so bytes cross threads) and dup/close churn of the shared fd. */
static void *stress_main(void *arg)
{
	long id = (long)arg;
	char m[256];

	for (int i = 0; i < 3000; i++) {
		if (id % 2 == 0) {
			if (send(shared_a, m, sizeof(m), MSG_DONTWAIT) < 0 && errno != EAGAIN)
				die("send");
		} else if (recv(shared_b, m, sizeof(m), MSG_DONTWAIT) < 0 && errno != EAGAIN) {
			die("recv");
		}
		if (i % 100 == 0) {
			int d = dup(shared_a);

			if (d < 0 || send(d, m, 1, MSG_DONTWAIT) < -1)
				die("dup");
			close(d);
		}
	}
	return NULL;
}

static int do_stress(void)
{
	pthread_t t[NTHREADS];

	tcp_pair(&shared_a, &shared_b);
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, stress_main, (void *)i))
			die("pthread_create");
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	close(shared_a);
	close(shared_b);
	phase("closed", 0);
	return 0;
}

static int do_handoff(void)
{
	int a, b, status, go[2];
	pid_t pid;
	char c;

	tcp_pair(&a, &b);
	if (pipe(go))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (read(go[0], &c, 1) != 1)
			die("read go");
		send_all(a, N);
		usleep(50000);
		phase("child_sent", meminfo(a) + meminfo(b));
		close(a);
		close(b);
		phase("child_closed", 0);
		exit(0);
	}
	close(a); /* the parent hands the connection over */
	close(b);
	if (write(go[1], "g", 1) != 1)
		die("write go");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("child");
	phase("parent", 0);
	return 0;
}

/* Replace this image (same pid): the new image must return the old one's
 * charges (its record looks alive to the reaper: same pid, same start). */
static int do_self_exec(const char *self)
{
	int a, b;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	execl(self, self, "exec_child", (char *)NULL);
	die("execl");
	return 2;
}

/* As do_self_exec, but the new image's SOCKMEM_LOW is above its
 * SOCKMEM_HIGH: its shim refuses them and runs unaccounted. The old image's
 * record must be returned all the same (nobody else can: it looks alive). */
static int do_self_exec_refused(const char *self)
{
	int a, b;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	if (setenv("SOCKMEM_HIGH", "1M", 1) || setenv("SOCKMEM_LOW", "2M", 1))
		die("setenv");
	execl(self, self, "exec_unaccounted", (char *)NULL);
	die("execl");
	return 2;
}

static int do_exec_unaccounted(void)
{
	phase("unaccounted", 0);
	return 0;
}

static int do_exec_child(void)
{
	int a, b;

	tcp_pair(&a, &b);
	send_all(a, N);
	phase("exec_child", 2 * N);
	close(a);
	close(b);
	return 0;
}

static void *forker_main(void *arg)
{
	(void)arg;
	for (;;) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	return NULL;
}

/* exit() racing with fork() in another thread: the destructor must never
 * leave the forking thread's atfork locks held (that hung the exit). */
static int do_fork_exit(long us)
{
	pthread_t t;
	int a, b;

	tcp_pair(&a, &b);
	send_all(a, N);
	if (pthread_create(&t, NULL, forker_main, NULL))
		die("pthread_create");
	usleep((useconds_t)us);
	return 0;
}

static _Atomic int flag_ready, flag_go;
static int cancel_fd;

static void *cancelled_main(void *arg)
{
	(void)arg;
	send_all(cancel_fd, N);
	atomic_store(&flag_ready, 1);
	while (!atomic_load(&flag_go)) /* no cancellation point */
		;
	close(cancel_fd); /* the pending cancel is acted on here */
	return NULL;
}

/* A cancel acted on in close() before the system call: the fd stays open,
 * so its state must stay in the table, charged ("cancelled N"), and be
 * released by the program's later close ("closed"). */
static int do_cancel(void)
{
	int a, b;
	pthread_t t;
	void *r;

	tcp_pair(&a, &b);
	cancel_fd = a;
	if (pthread_create(&t, NULL, cancelled_main, NULL))
		die("pthread_create");
	while (!atomic_load(&flag_ready))
		usleep(100);
	pthread_cancel(t);
	atomic_store(&flag_go, 1);
	pthread_join(t, &r);
	if (r != PTHREAD_CANCELED || fcntl(a, F_GETFD) < 0)
		die("not cancelled before the close");
	phase("cancelled", N);
	close(a);
	close(b);
	phase("closed", 0);
	return 0;
}

#define ERRNO_THREADS 24

static int errno_fd;
static _Atomic int errno_bad;

static void *errno_main(void *arg)
{
	char c = 'e';

	(void)arg;
	errno = 777;
	if (send(errno_fd, &c, 1, 0) != 1)
		die("send");
	if (errno != 777)
		atomic_fetch_add(&errno_bad, 1);
	return NULL;
}

/* Each thread's first call into the shim registers it with urcu-bp (which
 * may fail an mremap on the way): a successful send keeps errno. */
static int do_errno(void)
{
	pthread_t t[ERRNO_THREADS];
	int a, b;

	tcp_pair(&a, &b);
	errno_fd = a;
	for (int i = 0; i < ERRNO_THREADS; i++)
		if (pthread_create(&t[i], NULL, errno_main, NULL))
			die("pthread_create");
	for (int i = 0; i < ERRNO_THREADS; i++)
		pthread_join(t[i], NULL);
	close(a);
	close(b);
	phase("errno_changed", atomic_load(&errno_bad));
	return 0;
}

static pthread_key_t keyd_key;
static int keyd_a, keyd_b;

/* Runs after the shim's destructor (a key created later): sends and reads
 * in each of glibc's 4 destructor rounds. */
static void keyd_destructor(void *arg)
{
	long round = (long)arg;
	char m[4096] = {0};

	if (send(keyd_a, m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
	    recv(keyd_b, m, sizeof(m), MSG_WAITALL) != (ssize_t)sizeof(m))
		die("keyd send/recv");
	if (round < 4)
		pthread_setspecific(keyd_key, (void *)(round + 1));
}

static void *keyd_main(void *arg)
{
	char m[4096] = {0};

	(void)arg;
	if (send(keyd_a, m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
	    recv(keyd_b, m, sizeof(m), MSG_WAITALL) != (ssize_t)sizeof(m))
		die("keyd send/recv");
	pthread_setspecific(keyd_key, (void *)1L);
	return NULL;
}

/* 16 threads whose last charges come from key destructors after the shim's
 * own: once they are gone and the pair is closed, only the main thread's
 * cache stock may remain ("joined"). */
static int do_keyd(void)
{
	pthread_t t[16];

	tcp_pair(&keyd_a, &keyd_b);
	send_all(keyd_a, 1); /* the main thread's cache */
	if (recv(keyd_b, buf, 1, MSG_WAITALL) != 1 ||
	    pthread_key_create(&keyd_key, keyd_destructor))
		die("keyd setup");
	for (long i = 0; i < 16; i++)
		if (pthread_create(&t[i], NULL, keyd_main, NULL))
			die("pthread_create");
	for (int i = 0; i < 16; i++)
		pthread_join(t[i], NULL);
	close(keyd_a);
	close(keyd_b);
	phase("joined", 0);
	return 0;
}

/* The parent exits at once (its record goes); the child registers only
 * with its first socket, after the test removed the group in between. */
static int do_orphan(void)
{
	pid_t pid = fork();
	int a, b;

	if (pid < 0)
		die("fork");
	if (pid > 0)
		return 0;
	phase("orphaned", 0);
	tcp_pair(&a, &b);
	send_all(a, N);
	phase("sent", N);
	close(a);
	close(b);
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";

	memset(buf, 'y', sizeof(buf));
	if (!strcmp(m, "dup") || !strcmp(m, "dup2") || !strcmp(m, "dup3") || !strcmp(m, "dupfd") ||
	    !strcmp(m, "dupfd_cloexec"))
		return do_dup(m);
	if (!strcmp(m, "close_range"))
		return do_close_range();
	if (!strcmp(m, "dup_nomem"))
		return do_dup_nomem();
	if (!strcmp(m, "reuse"))
		return do_reuse();
	if (!strcmp(m, "stale"))
		return do_stale();
	if (!strcmp(m, "threads"))
		return do_threads();
	if (!strcmp(m, "fork"))
		return do_fork();
	if (!strcmp(m, "exec"))
		return do_exec(argv[0]);
	if (!strcmp(m, "untouched"))
		return do_untouched();
	if (!strcmp(m, "vfork"))
		return do_vfork();
	if (!strcmp(m, "signals"))
		return do_signals();
	if (!strcmp(m, "stress"))
		return do_stress();
	if (!strcmp(m, "handoff"))
		return do_handoff();
	if (!strcmp(m, "self_exec"))
		return do_self_exec(argv[0]);
	if (!strcmp(m, "cancel"))
		return do_cancel();
	if (!strcmp(m, "errno"))
		return do_errno();
	if (!strcmp(m, "keyd"))
		return do_keyd();
	if (!strcmp(m, "orphan"))
		return do_orphan();
	if (!strcmp(m, "fork_exit") && argc > 2)
		return do_fork_exit(atol(argv[2]));
	if (!strcmp(m, "exec_child"))
		return do_exec_child();
	if (!strcmp(m, "self_exec_refused"))
		return do_self_exec_refused(argv[0]);
	if (!strcmp(m, "exec_unaccounted"))
		return do_exec_unaccounted();
	fprintf(stderr, "unknown mode '%s'\n", m);
	return 2;
}
