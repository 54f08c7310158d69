/*
 * Each data-path entry point's accounting, exactly: reconciliation is off
 * (a 60 s tick, no per-traffic reconcile), so the group's `sock` is the sum
 * of what the fast path charged and uncharged. See pl_io.c for the phases.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "pl_harness.h"

static void check_phase(struct pl_child *c, const char *ns, const char *phase, int64_t sock,
			int64_t sockets)
{
	struct sockmem_group_stat st;
	char rest[64];

	cr_assert_eq(pl_expect(c, phase, rest, sizeof(rest)), 0, "phase %s", phase);
	cr_assert_eq(pl_stat(ns, "io", &st), 0);
	cr_expect_eq(st.sock, sock, "after %s: sock %lld, expected %lld", phase, (long long)st.sock,
		     (long long)sock);
	if (sockets >= 0)
		cr_expect_eq(st.sockets, sockets, "after %s: sockets %lld", phase,
			     (long long)st.sockets);
	pl_go(c);
}

static void run_opts(const char *proto, const char *tx, const char *rx, const char *families,
		     bool accounted)
{
	char ns[64], name[64];
	int64_t n = strstr(proto, "udp") ? 1000 : 32768, k = accounted ? 1 : 0;
	struct pl_opts o = {
		.group = "io",
		.preload = true,
		.extra = {"SOCKMEM_RECONCILE_MS=60000", "SOCKMEM_RECONCILE_BYTES=0", families}};
	const char *args[] = {proto, tx, rx, NULL};
	struct sockmem_group_stat st;
	struct pl_child c;
	int status;

	snprintf(name, sizeof(name), "io-%s-%s-%s", proto, tx, rx);
	pl_ns(ns, sizeof(ns), name);
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-io", args, &o), 0);
	check_phase(&c, ns, "tx", k * n, k * 2);
	check_phase(&c, ns, "back", k * 2 * n, k * 2);
	check_phase(&c, ns, "rx", k * n, k * 2);
	check_phase(&c, ns, "drain", 0, k * 2);
	check_phase(&c, ns, "closed", 0, 0);
	status = pl_wait(&c, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
	cr_assert_eq(pl_stat(ns, "io", &st), 0);
	cr_expect_eq(st.current, 0, "current %lld after exit", (long long)st.current);
	cr_expect_eq(st.processes, 0);
	cr_expect_eq(st.underflows, 0);
	sockmem_unlink(ns);
}

static void run(const char *proto, const char *tx, const char *rx)
{
	run_opts(proto, tx, rx, NULL, true);
}

#define TX(proto, e)                                                                               \
	Test(io_tx_##proto, e)                                                                     \
	{                                                                                          \
		run(#proto, #e, "recv");                                                           \
	}
#define RX(proto, e)                                                                               \
	Test(io_rx_##proto, e)                                                                     \
	{                                                                                          \
		run(#proto, "send", #e);                                                           \
	}

TX(tcp, send)
TX(tcp, sendto)
TX(tcp, sendmsg)
TX(tcp, sendmmsg)
TX(tcp, write)
TX(tcp, writev)
TX(tcp, sendfile)
TX(tcp, sendfile64)
TX(tcp, splice)
RX(tcp, recv)
RX(tcp, recvfrom)
RX(tcp, recvmsg)
RX(tcp, recvmmsg)
RX(tcp, read)
RX(tcp, readv)
RX(tcp, __read_chk)
RX(tcp, __recv_chk)
RX(tcp, __recvfrom_chk)
RX(tcp, splice)
TX(udp, send)
TX(udp, sendto)
TX(udp, sendmsg)
TX(udp, sendmmsg)
TX(udp, write)
TX(udp, writev)
RX(udp, recv)
RX(udp, recvfrom)
RX(udp, recvmsg)
RX(udp, recvmmsg)
RX(udp, read)
RX(udp, readv)
RX(udp, __read_chk)
RX(udp, __recv_chk)
RX(udp, __recvfrom_chk)

TX(tcp6, send)
RX(tcp6, recv)
TX(udp6, sendto)
RX(udp6, recvfrom)

/* UNIX domain sockets: accounted only when SOCKMEM_FAMILIES names them. */
Test(io_unix, accounted_when_enabled)
{
	run_opts("unix", "write", "read", "SOCKMEM_FAMILIES=inet,inet6,unix", true);
}

Test(io_unix, untouched_by_default)
{
	run_opts("unix", "write", "read", NULL, false);
}
