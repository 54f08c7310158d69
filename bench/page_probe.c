/*
 * sockmem-page-probe: what a page costs the data path on this machine.
 *
 * The shim runs a few dozen instructions around each send and recv, but on
 * a kernel with page-table isolation and no PCID every system call flushes
 * the TLB, so what those instructions cost depends mostly on how many
 * distinct pages they touch (docs/ARCHITECTURE.md, "Cost of a call"). This
 * probe measures it directly: a same-thread send+recv pair of 64 bytes on a
 * loopback TCP connection, and after each of the two calls it reads K bytes
 * spread over K distinct pages, or over K cache lines of one page. Timed
 * with the thread's CPU clock; for each K, the best of --repeat rounds (the
 * least disturbed), with the configurations interleaved round by round.
 *
 *   sockmem-page-probe [--iterations N] [--repeat R] [--json]
 *
 * Prints ns per pair for K = 0, 4, 8, 16, 32 and the slope: ns per extra
 * page (or line) per call.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE	 4096
#define NPAGES	 64
#define NK	 5
#define LINE	 64
#define MSG_SIZE 64

static const int ks[NK] = {0, 4, 8, 16, 32};

static void die(const char *what)
{
	fprintf(stderr, "sockmem-page-probe: %s\n", what);
	exit(1);
}

static double cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void connect_pair(int *c, int *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, al) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		die("cannot listen on 127.0.0.1");
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&a, al) < 0)
		die("cannot connect on 127.0.0.1");
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		die("accept failed");
	setsockopt(*c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

/* Read k bytes `stride` apart; volatile so that none is optimised away. */
static long touch(const volatile char *p, int k, size_t stride)
{
	long sum = 0;

	for (int j = 0; j < k; j++)
		sum += p[(size_t)j * stride];
	return sum;
}

/* ns per pair: iterations pairs touching k places `stride` apart. */
static double round_ns(int c, int s, const char *mem, int k, size_t stride, int iterations)
{
	char msg[MSG_SIZE] = {0};
	long sink = 0;
	double t0 = cpu_ns();

	for (int i = 0; i < iterations; i++) {
		if (send(c, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
			die("send failed");
		sink += touch(mem, k, stride);
		if (recv(s, msg, sizeof(msg), MSG_WAITALL) != (ssize_t)sizeof(msg))
			die("recv failed");
		sink += touch(mem + LINE / 2, k, stride);
	}
	if (sink == 42) /* keep the reads */
		fputc('\0', stderr);
	return (cpu_ns() - t0) / iterations;
}

static double slope(const double *ns)
{
	/* ns per pair grows by 2 x (pages per call): least squares over k. */
	double sk = 0, sn = 0, skk = 0, skn = 0;

	for (int i = 0; i < NK; i++) {
		sk += ks[i];
		sn += ns[i];
		skk += (double)ks[i] * ks[i];
		skn += ks[i] * ns[i];
	}
	return (NK * skn - sk * sn) / (NK * skk - sk * sk) / 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"iterations", required_argument, NULL, 'i'},
					     {"repeat", required_argument, NULL, 'r'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	int iterations = 20000, repeat = 9, json = 0, o, c, s;
	double best[2][NK];
	char *mem;

	while ((o = getopt_long(argc, argv, "i:r:jh", opts, NULL)) != -1) {
		if (o == 'i')
			iterations = atoi(optarg);
		else if (o == 'r')
			repeat = atoi(optarg);
		else if (o == 'j')
			json = 1;
		else {
			fprintf(o == 'h' ? stdout : stderr,
				"usage: sockmem-page-probe [--iterations N] [--repeat R] "
				"[--json]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (iterations < 1 || repeat < 1)
		die("--iterations and --repeat must be at least 1");
	mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap failed");
	memset(mem, 1, NPAGES * PAGE);
	connect_pair(&c, &s);
	for (int r = 0; r < repeat; r++)
		for (int v = 0; v < 2; v++) /* 0: lines of one page, 1: pages */
			for (int i = 0; i < NK; i++) {
				size_t stride = v ? PAGE + LINE : LINE;
				double ns = round_ns(c, s, mem, ks[i], stride, iterations);

				if (r == 0 || ns < best[v][i])
					best[v][i] = ns;
			}
	if (json) {
		printf("{\"iterations\": %d, \"repeat\": %d", iterations, repeat);
		for (int v = 0; v < 2; v++) {
			printf(", \"%s\": {", v ? "pages" : "lines");
			for (int i = 0; i < NK; i++)
				printf("%s\"%d\": %.1f", i ? ", " : "", ks[i], best[v][i]);
			printf("}, \"ns_per_%s\": %.2f", v ? "page" : "line", slope(best[v]));
		}
		printf("}\n");
		return 0;
	}
	printf("send+recv pair of %d B, then K reads after each call (thread CPU ns per pair, "
	       "best of %d rounds of %d pairs)\n",
	       MSG_SIZE, repeat, iterations);
	printf("%4s %14s %14s\n", "K", "K lines", "K pages");
	for (int i = 0; i < NK; i++)
		printf("%4d %14.1f %14.1f\n", ks[i], best[0][i], best[1][i]);
	printf("per call: %.2f ns per extra cache line, %.2f ns per extra page\n", slope(best[0]),
	       slope(best[1]));
	return 0;
}
