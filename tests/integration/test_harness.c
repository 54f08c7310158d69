/*
 * The harness's own ground truth: the ss parser, and ss seeing a socket of
 * this (never preloaded) process with a known amount of unread data.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static const char sample[] =
	"tcp ESTAB 10000  3797504 127.0.0.1:54738 127.0.0.1:46213 "
	"users:((\"a\",pid=100,fd=4),(\"b\",pid=200,fd=9))\n"
	"\t skmem:(r10832,rb131072,t0,tb4194304,f4016,w3864064,o0,bl0,d0) bbr\n"
	"tcp ESTAB 0 0 127.0.0.1:46213 127.0.0.1:54738 users:((\"c\",pid=300,fd=5))\n"
	"\t skmem:(r131840,rb131072,t0,tb3939840,f3328,w0,o0,bl0,d0)\n"
	"udp UNCONN 0 0 [::1]:37429 [::]:* users:((\"a\",pid=100,fd=7))\n"
	"\t skmem:(r2304,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)\n"
	"tcp TIME-WAIT 0 0 127.0.0.1:1 127.0.0.1:2\n"
	"\t skmem:(r999,rb1,t0,tb1,f0,w999,o0,bl0,d0)\n";

Test(harness, parse_ss)
{
	pid_t a_b[] = {200, 100}, c[] = {300}, none[] = {4242};
	struct h_kmem k;

	h_parse_ss(sample, a_b, 2, &k);
	cr_assert_eq(k.nsock, 2); /* the shared socket once, plus the udp one */
	cr_assert_eq(k.rmem, 10832 + 2304);
	cr_assert_eq(k.wqueued, 3864064);
	cr_assert_eq(k.total, 10832 + 2304 + 3864064);
	cr_assert_eq(k.rcvbuf, 131072 + 212992);
	cr_assert_eq(k.rcvbuf_max, 212992);
	cr_assert_eq(k.sndbuf_max, 4194304);
	h_parse_ss(sample, c, 1, &k);
	cr_assert_eq(k.nsock, 1);
	cr_assert_eq(k.total, 131840);
	h_parse_ss(sample, none, 1, &k);
	cr_assert_eq(k.nsock, 0);
	cr_assert_eq(k.total, 0);
}

Test(harness, ss_sees_own_unread_data, .fini = h_cleanup, .timeout = 20)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	char buf[50000];
	struct h_kmem k, m;
	pid_t me = getpid();
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 1) == 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	s = accept(l, NULL, NULL);
	cr_assert_geq(s, 0);
	memset(buf, 'z', sizeof(buf));
	cr_assert_eq(send(c, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	h_sleep_ms(50);
	cr_assert_eq(h_kernel_sockmem(&me, 1, &k), 0);
	cr_assert_geq(k.nsock, 3, "listener + 2 ends, saw %d", k.nsock);
	/* truesize >= payload: 50000 unread bytes are at least 50000 charged */
	cr_assert_geq(k.rmem, (int64_t)sizeof(buf), "rmem %lld", (long long)k.rmem);
	/* The second, independent reader agrees (nothing moves: no traffic). */
	cr_assert_eq(h_kernel_meminfo(&me, 1, &m), 0);
	cr_assert_eq(m.nsock, k.nsock, "SO_MEMINFO saw %d sockets, ss %d", m.nsock, k.nsock);
	cr_assert_eq(m.rmem, k.rmem);
	cr_assert_eq(m.wqueued, k.wqueued);
	cr_assert_eq(m.rcvbuf, k.rcvbuf);
	cr_assert_eq(m.sndbuf, k.sndbuf);
	close(s);
	close(c);
	close(l);
}

static int64_t own_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* /proc's figure agrees with the process's own CPU clock (load-independent:
 * spin until 200 ms of CPU were used, however long that takes). */
Test(harness, cpu_ms_counts_a_busy_loop, .timeout = 10)
{
	int64_t before = h_cpu_ms(getpid()), own0 = own_cpu_ms(), t0 = h_now_ms();
	int64_t after, own;

	cr_assert_geq(before, 0);
	while (own_cpu_ms() - own0 < 200 && h_now_ms() - t0 < 5000)
		;
	after = h_cpu_ms(getpid());
	own = own_cpu_ms() - own0;
	cr_assert_geq(own, 200, "no CPU in 5 s?");
	/* clock ticks: 10 ms granularity on each of utime and stime */
	cr_assert(llabs((after - before) - own) <= 40, "/proc says %lld ms, clock %lld ms",
		  (long long)(after - before), (long long)own);
}
