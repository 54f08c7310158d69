/*
 * Helper program for tests/traces (run preloaded with SOCKMEM_TRACE=1, never
 * the Criterion runner itself): makes its group hit max from a known,
 * non-inlined, exported function so that `sockmemctl traces` must name it.
 *
 *   trace_helper blast CHUNK COUNT
 *   trace_helper threads CHUNK COUNT NTHREADS   (each thread its own connection)
 *   trace_helper fork CHUNK COUNT   (blast, then a fork child blasts again
 *                                    from sm_test_child_sender)
 *   trace_helper signal CHUNK COUNT (blast from a signal handler, so the
 *                                    process's first capture is made there;
 *                                    with tests/traces' malloc counter
 *                                    preloaded, prints "handler mallocs N")
 *   trace_helper thread_signal CHUNK COUNT  (the same in a new thread: its
 *                                    own first capture, in the handler)
 *
 * Connects to a listener of its own on 127.0.0.1 and, reading almost nothing
 * the accepted end but for 4 KiB after each refused send, makes COUNT sends
 * of CHUNK bytes (MSG_DONTWAIT). Data piles up in the kernel, so with a
 * small max the sends keep meeting it: refused where max is enforced, or
 * forced over it where every send is a forced charge.
 * Prints "sent N" and exits 0; 1 on a setup error.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
	static __thread char sink[4096];
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

struct job {
	long n, count, sent;
};

/* One connection, blasted from the sender; the result in j->sent. */
static void *run_job(void *arg)
{
	struct job *j = arg;
	int c, s;

	if (pair(&c, &s) < 0) {
		j->sent = -1;
		return NULL;
	}
	j->sent = sm_test_blast_sender(c, s, (size_t)j->n, j->count);
	close(c);
	close(s);
	return NULL;
}

/* The fork child's own call site (the parent loaded the unwinder). */
long sm_test_child_sender(struct job *j);
__attribute__((noinline, visibility("default"))) long sm_test_child_sender(struct job *j)
{
	run_job(j);
	__asm__ volatile("" ::: "memory");
	return j->sent;
}

static int threads(struct job *j, int nthreads)
{
	pthread_t th[16];
	struct job jobs[16];
	long sent = 0;

	for (int i = 0; i < nthreads; i++) {
		jobs[i] = *j;
		if (pthread_create(&th[i], NULL, run_job, &jobs[i]) != 0)
			return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].sent < 0)
			return 1;
		sent += jobs[i].sent;
	}
	printf("sent %ld\n", sent);
	return 0;
}

static int fork_child(struct job *j)
{
	int st;
	pid_t pid;

	run_job(j);
	if (j->sent < 0)
		return 1;
	pid = fork();
	if (pid == 0)
		_exit(sm_test_child_sender(j) < 0);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return 1;
	printf("sent %ld (and the child)\n", j->sent);
	return 0;
}

/* A signal handler sends (send is async-signal-safe): everything its first
 * capture does must be too. A handler that interrupted malloc and then
 * allocated would deadlock on the allocator's lock, so it must allocate
 * nothing (counted by the preloaded malloc counter). */
static struct job sig_job;
static int sig_c, sig_s;
static unsigned long (*mallocs)(void);
static unsigned long sig_mallocs;

static void on_signal(int sig)
{
	unsigned long before = mallocs();

	(void)sig;
	sig_job.sent = sm_test_blast_sender(sig_c, sig_s, (size_t)sig_job.n, sig_job.count);
	sig_mallocs = mallocs() - before;
}

static void *raise_in_thread(void *arg)
{
	(void)arg;
	pthread_kill(pthread_self(), SIGUSR1);
	return NULL;
}

static int in_signal_handler(struct job *j, bool new_thread)
{
	pthread_t t;

	mallocs = (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "sm_test_mallocs");
	if (!mallocs || pair(&sig_c, &sig_s) < 0) {
		fprintf(stderr, "trace_helper: no malloc counter preloaded, or no pair\n");
		return 1;
	}
	sig_job = *j;
	signal(SIGUSR1, on_signal);
	if (!new_thread)
		raise(SIGUSR1);
	else if (pthread_create(&t, NULL, raise_in_thread, NULL) || pthread_join(t, NULL))
		return 1;
	if (sig_job.sent < 0)
		return 1;
	printf("sent %ld\n", sig_job.sent);
	fprintf(stderr, "handler mallocs %lu\n", sig_mallocs);
	return 0;
}

int main(int argc, char **argv)
{
	struct job j = {0};
	int nthreads = argc == 5 ? atoi(argv[4]) : 0;

	if (argc < 4 || argc > 5 ||
	    (strcmp(argv[1], "blast") && strcmp(argv[1], "threads") && strcmp(argv[1], "fork") &&
	     strcmp(argv[1], "signal") && strcmp(argv[1], "thread_signal"))) {
		fprintf(stderr, "usage: trace_helper blast|fork|signal|thread_signal CHUNK COUNT\n"
				"       trace_helper threads CHUNK COUNT NTHREADS\n");
		return 1;
	}
	j.n = atol(argv[2]);
	j.count = atol(argv[3]);
	if (j.n <= 0 || j.n > (long)sizeof(chunk) || j.count <= 0 ||
	    (!strcmp(argv[1], "threads") && (nthreads < 1 || nthreads > 16))) {
		fprintf(stderr, "trace_helper: bad arguments\n");
		return 1;
	}
	if (!strcmp(argv[1], "threads"))
		return threads(&j, nthreads);
	if (!strcmp(argv[1], "fork"))
		return fork_child(&j);
	if (!strcmp(argv[1], "signal") || !strcmp(argv[1], "thread_signal"))
		return in_signal_handler(&j, argv[1][0] == 't');
	run_job(&j);
	printf("sent %ld\n", j.sent);
	return j.sent < 0;
}
