/*
 * sockmem-bench: command line and dispatch.
 *
 *   sockmem-bench percall  [-s SIZE] [-i N] [-b N]          same-thread send+recv
 *   sockmem-bench pingpong [-s SIZE] [-i N] [-d SEC]        cross-process latency
 *   sockmem-bench stream   [-c N] [-t N] [-s SIZE] [-d SEC] [--slow-reader RATE]
 *
 * Loopback only. Built with jemalloc as the process allocator, so that its
 * per-thread counters cover everything the measured loops call, including
 * a preloaded libsockmem.so.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

static const char usage_text[] =
	"usage: sockmem-bench MODE [options]\n"
	"\n"
	"Loopback TCP load generator (127.0.0.1, or ::1 with --ipv6).\n"
	"\n"
	"modes:\n"
	"  percall    same-thread send+recv pairs on one connection: ns per pair\n"
	"             (median of the batches); exposes the per-call cost of a shim\n"
	"  pingpong   cross-process ping-pong (a forked echo process): round trips\n"
	"             per second, p50/p99 latency in us\n"
	"  stream     bulk streams over -c connections pumped by -t threads: Gbit/s\n"
	"             received, and the peak kernel memory of the sockets' queues\n"
	"\n"
	"options:\n"
	"  -s, --size BYTES        message size, K/M suffixes (percall/pingpong 64,\n"
	"                          stream 64K; percall at most 1M)\n"
	"  -i, --iterations N      percall: pairs per batch (20000); pingpong: round\n"
	"                          trips (100000)\n"
	"  -b, --batches N         percall: measured batches (9); pingpong and stream:\n"
	"                          batches with --turns (9)\n"
	"  -d, --duration SEC      stream: measured seconds (2); pingpong: upper bound\n"
	"                          (10). At most 3600.\n"
	"  -c, --connections N     stream: connections (1), at most 1024\n"
	"  -t, --threads N         stream: worker threads (1), at most 256\n"
	"      --slow-reader RATE  stream: each receiver reads at most RATE bytes/s\n"
	"                          (K/M/G suffixes), so data piles up in kernel queues\n"
	"      --sample-ms MS      stream: sample SO_MEMINFO of every socket each MS\n"
	"                          milliseconds for the kernel memory peak (50; 0: off)\n"
	"      --timeout SEC       percall/pingpong: fail if the peer stalls (10)\n"
	"      --turns IN:OUT      lockstep with other instances: once set up, write a\n"
	"                          byte to fd OUT; before each batch (stream: each of\n"
	"                          -b slices) read a byte from fd IN, after it write\n"
	"                          one to fd OUT (driver: bench/benchlib.py)\n"
	"      --samples           JSON: add every batch's value as \"samples\"\n"
	"      --clock wall|cpu    percall: time batches by the wall clock (default) or\n"
	"                          the thread's CPU clock (leaves out preemption);\n"
	"                          stream: samples in Gbit/s or Gbit per CPU-second\n"
	"      --ipv6              use ::1 instead of 127.0.0.1\n"
	"      --json              print one JSON object instead of a summary\n"
	"  -h, --help              this text\n"
	"\n"
	"The JSON object has mode, params, results, alloc (bytes jemalloc counted\n"
	"for the measured loops' threads) and env (LD_PRELOAD, SOCKMEM_*).\n";

enum {
	OPT_SLOW = 256,
	OPT_SAMPLE,
	OPT_TIMEOUT,
	OPT_IPV6,
	OPT_JSON,
	OPT_TURNS,
	OPT_SAMPLES,
	OPT_CLOCK
};

static const struct option long_opts[] = {
	{"size", required_argument, NULL, 's'},
	{"iterations", required_argument, NULL, 'i'},
	{"batches", required_argument, NULL, 'b'},
	{"duration", required_argument, NULL, 'd'},
	{"connections", required_argument, NULL, 'c'},
	{"threads", required_argument, NULL, 't'},
	{"slow-reader", required_argument, NULL, OPT_SLOW},
	{"sample-ms", required_argument, NULL, OPT_SAMPLE},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"ipv6", no_argument, NULL, OPT_IPV6},
	{"json", no_argument, NULL, OPT_JSON},
	{"turns", required_argument, NULL, OPT_TURNS},
	{"samples", no_argument, NULL, OPT_SAMPLES},
	{"clock", required_argument, NULL, OPT_CLOCK},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Strict: digits, optional K/M/G/T (base 1024), optional B. */
static uint64_t parse_size(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (*s < '0' || *s > '9')
		sm_lg_die("%s: invalid value '%s'", opt, s);
	v = strtoull(s, &end, 10);
	if (*end && strchr("KMGT", toupper((unsigned char)*end))) {
		shift = 10u * (unsigned)(strchr("KMGT", toupper((unsigned char)*end)) - "KMGT" + 1);
		end++;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (errno || *end || (shift && v > (UINT64_MAX >> shift)))
		sm_lg_die("%s: invalid value '%s'", opt, s);
	v <<= shift;
	if (v < lo || v > hi)
		sm_lg_die("%s: '%s' out of range [%llu, %llu]", opt, s, (unsigned long long)lo,
			  (unsigned long long)hi);
	return v;
}

static double parse_seconds(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0.0) || v > 3600.0)
		sm_lg_die("%s: invalid duration '%s' (seconds, > 0, at most 3600)", opt, s);
	return v;
}

static void parse_turns(struct sm_lg_opts *o, const char *s)
{
	char *end;
	long in, out;

	errno = 0;
	in = strtol(s, &end, 10);
	if (errno || end == s || *end != ':' || in < 0 || in > 1023)
		sm_lg_die("--turns: expected IN:OUT file descriptors, got '%s'", s);
	s = end + 1;
	out = strtol(s, &end, 10);
	if (errno || end == s || *end || out < 0 || out > 1023)
		sm_lg_die("--turns: expected IN:OUT file descriptors, got '%s'", s);
	if (fcntl((int)in, F_GETFD) < 0 || fcntl((int)out, F_GETFD) < 0)
		sm_lg_die("--turns: fd %ld or %ld is not open", in, out);
	o->turn_in = (int)in;
	o->turn_out = (int)out;
}

static void set_mode(struct sm_lg_opts *o, const char *m)
{
	static const char *const names[] = {"percall", "pingpong", "stream"};

	for (int i = 0; i < 3; i++) {
		if (strcmp(m, names[i]) == 0) {
			o->mode = (enum sm_lg_mode)i;
			o->mode_name = names[i];
			return;
		}
	}
	sm_lg_die("unknown mode '%s' (percall, pingpong or stream; see --help)", m);
}

static void parse_one(struct sm_lg_opts *o, int c, const char *arg, bool *size_set)
{
	switch (c) {
	case 's':
		o->size = parse_size("--size", arg, 1, 64u << 20);
		*size_set = true;
		break;
	case 'i':
		o->iterations = (long)parse_size("--iterations", arg, 1, 1000000000);
		break;
	case 'b':
		o->batches = (int)parse_size("--batches", arg, 1, 1000);
		break;
	case 'd':
		o->duration = parse_seconds("--duration", arg);
		break;
	case 'c':
		o->connections = (int)parse_size("--connections", arg, 1, 1024);
		break;
	case 't':
		o->threads = (int)parse_size("--threads", arg, 1, 256);
		break;
	case OPT_SLOW:
		o->slow_rate = parse_size("--slow-reader", arg, 1, 1ull << 40);
		break;
	case OPT_SAMPLE:
		o->sample_ms = (int)parse_size("--sample-ms", arg, 0, 60000);
		break;
	case OPT_TIMEOUT:
		o->timeout_s = (int)parse_size("--timeout", arg, 1, 3600);
		break;
	case OPT_IPV6:
		o->ipv6 = true;
		break;
	case OPT_JSON:
		o->json = true;
		break;
	case OPT_TURNS:
		parse_turns(o, arg);
		break;
	case OPT_SAMPLES:
		o->samples = true;
		break;
	case OPT_CLOCK:
		if (strcmp(arg, "cpu") != 0 && strcmp(arg, "wall") != 0)
			sm_lg_die("--clock: expected wall or cpu, got '%s'", arg);
		o->cpu_clock = strcmp(arg, "cpu") == 0;
		break;
	case 'h':
		fputs(usage_text, stdout);
		exit(0);
	default:
		sm_lg_die("invalid option (see --help)");
	}
}

static void parse_args(struct sm_lg_opts *o, int argc, char **argv)
{
	bool size_set = false, dur_set = false;
	int c;

	opterr = 0; /* our own one-line message */
	/* GNU getopt permutes: options may come before or after the mode. */
	while ((c = getopt_long(argc, argv, ":s:i:b:d:c:t:h", long_opts, NULL)) != -1) {
		if (c == '?')
			sm_lg_die("invalid option '%s' (see --help)", argv[optind - 1]);
		if (c == ':')
			sm_lg_die("option '%s' needs a value", argv[optind - 1]);
		dur_set |= c == 'd';
		parse_one(o, c, optarg, &size_set);
	}
	if (optind >= argc)
		sm_lg_die("missing MODE (percall, pingpong or stream; see --help)");
	set_mode(o, argv[optind++]);
	if (optind < argc)
		sm_lg_die("unexpected argument '%s' (see --help)", argv[optind]);
	/* Both ends of a percall pair are in one thread: a message must fit in
	 * the kernel's queues or the send would wait for a recv that never comes. */
	if (o->mode == LG_PERCALL && o->size > 1024 * 1024)
		sm_lg_die("percall: --size at most 1M (both ends run in one thread)");
	if (o->mode == LG_STREAM && !size_set)
		o->size = 64 * 1024;
	if (o->mode == LG_PINGPONG && !dur_set)
		o->duration = 10.0;
	if (o->mode == LG_PINGPONG && o->iterations == 20000)
		o->iterations = 100000;
}

static void add_params(const struct sm_lg_opts *o, struct sm_lg_report *r)
{
	sm_lg_param_str(r, "family", o->ipv6 ? "tcp6" : "tcp4");
	sm_lg_param_int(r, "lockstep", o->turn_in >= 0);
	sm_lg_param_int(r, "size", (int64_t)o->size);
	if (o->mode == LG_PERCALL) {
		sm_lg_param_int(r, "iterations", o->iterations);
		sm_lg_param_int(r, "batches", o->batches);
		sm_lg_param_str(r, "clock", o->cpu_clock ? "cpu" : "wall");
		return;
	}
	sm_lg_param_int(r, "duration_ms", (int64_t)(o->duration * 1000.0));
	if (o->mode == LG_PINGPONG) {
		sm_lg_param_int(r, "iterations", o->iterations);
		return;
	}
	sm_lg_param_int(r, "connections", o->connections);
	sm_lg_param_int(r, "threads", o->threads);
	sm_lg_param_int(r, "slow_reader", (int64_t)o->slow_rate);
	sm_lg_param_int(r, "sample_ms", o->sample_ms);
	sm_lg_param_str(r, "clock", o->cpu_clock ? "cpu" : "wall");
}

int main(int argc, char **argv)
{
	struct sm_lg_opts o = {
		.size = 64,
		.iterations = 20000,
		.batches = 9,
		.duration = 2.0,
		.connections = 1,
		.threads = 1,
		.sample_ms = 50,
		.timeout_s = 10,
		.turn_in = -1,
		.turn_out = -1,
	};
	struct sm_lg_report r = {0};
	int rc;

	parse_args(&o, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	add_params(&o, &r);
	if (o.mode == LG_PERCALL)
		rc = sm_lg_percall(&o, &r);
	else if (o.mode == LG_PINGPONG)
		rc = sm_lg_pingpong(&o, &r);
	else
		rc = sm_lg_stream(&o, &r);
	sm_lg_print(&o, &r);
	free(r.samples);
	return rc == 0 ? 0 : 1;
}
