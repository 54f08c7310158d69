/*
 * Each data-path entry point's accounting, exactly: reconciliation is off
 * (a 60 s tick, no per-traffic reconcile), so the group's `sock` is the sum
 * of what the fast path charged and uncharged. See pl_io.c for the phases.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* sandboxed: under a seccomp filter that kills on process_vm_readv, in a
 * group with a (far) max, so that vector sends take the admission path. */
static void run_in(const char *proto, const char *tx, const char *rx, const char *families,
		   bool accounted, bool sandboxed)
{
	char ns[64], name[64], io[1024];
	int64_t n = strstr(proto, "udp") ? 1000 : 32768, k = accounted ? 1 : 0;
	struct pl_opts o = {.group = "io",
			    .preload = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=60000", "SOCKMEM_RECONCILE_BYTES=0",
				      sandboxed ? "SOCKMEM_MAX=1G" : families}};
	const char *args[] = {proto, tx, rx, NULL}, *wrapped[] = {io, proto, tx, rx, NULL};
	struct sockmem_group_stat st;
	struct pl_child c;
	int status;

	snprintf(name, sizeof(name), "io-%s-%s-%s%s", proto, tx, rx, sandboxed ? "-sc" : "");
	pl_ns(ns, sizeof(ns), name);
	o.ns = ns;
	pl_helper_path(io, sizeof(io), "sockmem-pl-io");
	cr_assert_eq(sandboxed ? pl_spawn(&c, "sockmem-pl-seccomp", wrapped, &o)
			       : pl_spawn(&c, "sockmem-pl-io", args, &o),
		     0);
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

static void run_opts(const char *proto, const char *tx, const char *rx, const char *families,
		     bool accounted)
{
	run_in(proto, tx, rx, families, accounted, false);
}

static void run(const char *proto, const char *tx, const char *rx)
{
	run_opts(proto, tx, rx, NULL, true);
}

/* The shim reads a vector send's iovecs with process_vm_readv under a limit
 * (a bad pointer gets EFAULT, not a crash), but not in a process under a
 * seccomp filter: there it must not be killed, and accounts as usual. */
Test(io_seccomp, vector_sends_under_a_filter_that_kills)
{
	run_in("tcp", "writev", "recv", NULL, true, true);
	run_in("tcp", "sendmsg", "recv", NULL, true, true);
	run_in("udp", "sendmmsg", "recv", NULL, true, true);
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
RX(tcp, sendfile)
RX(tcp, sendfile64)
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

static bool sock_at_least(const struct sockmem_group_stat *st, int64_t n)
{
	return st->sock >= n;
}

/* A UNIX stream's queued data is charged by the kernel to the sender's
 * wmem_alloc (wmem_queued and the peer's rmem_alloc stay 0): the tick's
 * reconcile must find it there, not set the estimate to 0. */
Test(io_unix, reconciled_to_the_senders_wmem_alloc)
{
	struct pl_opts o = {.group = "io",
			    .preload = true,
			    .extra = {"SOCKMEM_RECONCILE_MS=20", "SOCKMEM_RECONCILE_BYTES=0",
				      "SOCKMEM_FAMILIES=inet,inet6,unix"}};
	const char *args[] = {"unix", "write", "read", NULL};
	struct sockmem_group_stat st;
	struct pl_child c;
	char ns[64];
	bool held;

	pl_ns(ns, sizeof(ns), "io-unix-tick");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-io", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "tx", NULL, 0), 0);
	usleep(200000); /* ten ticks */
	held = pl_stat_until(ns, "io", &st, sock_at_least, 32768, 1000);
	cr_expect(held, "32 KiB queued to the peer: sock %lld after the ticks", (long long)st.sock);
	for (int i = 0; i < 4; i++)
		pl_go(&c);
	pl_wait(&c, 10000);
	sockmem_unlink(ns);
}

Test(io_unix, untouched_by_default)
{
	run_opts("unix", "write", "read", NULL, false);
}

/*
 * The traffic reconcile stride: SOCKMEM_RECONCILE_BYTES (1 MiB) while some
 * level is near a max or a high watermark (under 16 strides of room per
 * socket open under it, or under 256 in all), four times that while every
 * level is far away. No tick runs (60 s), so the stride is chosen once, at
 * load. A sends `total` bytes to B, who reads each message at once; B's
 * estimate stays empty (the data reached it unseen), so `sock` is A's
 * estimate: everything sent since A's last reconcile, plus what the kernel
 * held then (a message or two). `others`: sockets of other members already
 * counted in the group (written into the segment before the helper loads).
 */
#define MiB (1 << 20)

static int64_t stride_sock(const char *name, const char *limit, long total, int64_t others)
{
	char ns[64], tot[24];
	struct pl_opts o = {
		.group = "io", .preload = true, .extra = {"SOCKMEM_RECONCILE_MS=60000", limit}};
	const char *args[] = {"stride", tot, NULL};
	struct sockmem_group_stat st;
	struct pl_child c;
	char rest[64];
	int status;

	pl_ns(ns, sizeof(ns), name);
	o.ns = ns;
	snprintf(tot, sizeof(tot), "%ld", total);
	if (others) {
		struct sockmem_open_opts so = {.ns = ns, .create = true};
		char err[SOCKMEM_ERRLEN];
		sockmem_seg_t *seg;
		uint32_t g;

		cr_assert_eq(sockmem_open(&so, &seg, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(sockmem_group_create(seg, "io", &g), 0);
		atomic_store(&sockmem_group_at(seg, g)->sockets, others);
		sockmem_close(seg);
	}
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-io", args, &o), 0);
	cr_assert_eq(pl_expect(&c, "moved", rest, sizeof(rest)), 0);
	cr_assert_eq(pl_stat(ns, "io", &st), 0);
	pl_go(&c);
	cr_assert_eq(pl_expect(&c, "closed", rest, sizeof(rest)), 0);
	pl_go(&c);
	status = pl_wait(&c, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
	sockmem_unlink(ns);
	return st.sock;
}

Test(reconcile_stride, four_times_far_from_every_limit)
{
	int64_t past = stride_sock("stride-past4", NULL, 5 * MiB, 0);

	cr_expect_eq(stride_sock("stride-nolimit", NULL, 3 * MiB, 0), 3 * MiB);
	cr_expect_eq(stride_sock("stride-farmax", "SOCKMEM_MAX=1G", 3 * MiB, 0), 3 * MiB);
	/* Past 4 MiB, A reconciled once: 1 MiB sent since, plus what the
	 * kernel held then. */
	cr_expect(past >= MiB && past < MiB + MiB / 2, "5 MiB sent: sock %lld", (long long)past);
}

Test(reconcile_stride, every_mib_near_a_max_or_high)
{
	int64_t near_max = stride_sock("stride-nearmax", "SOCKMEM_MAX=64M", 3 * MiB, 0);
	int64_t near_high = stride_sock("stride-nearhigh", "SOCKMEM_HIGH=64M", 3 * MiB, 0);

	cr_expect_lt(near_max, MiB, "max 64M: sock %lld", (long long)near_max);
	cr_expect_lt(near_high, MiB, "high 64M: sock %lld", (long long)near_high);
}

/* 1 GiB of room is far for one pair but not for 100 sockets more (10 MiB
 * each, under 16 strides): their overstatements add up. */
Test(reconcile_stride, every_mib_when_many_sockets_share_the_room)
{
	int64_t many = stride_sock("stride-many", "SOCKMEM_MAX=1G", 3 * MiB, 100);

	cr_expect_lt(many, MiB, "max 1G, 102 sockets: sock %lld", (long long)many);
}
