/*
 * sockmemctl record: sample one group into a CSV file at a fixed interval
 * (the input of `sockmemctl plot`).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

static const char record_help[] =
	"Usage: sockmemctl record GROUP --out FILE.csv [--interval MS] [--duration S]\n"
	"\n"
	"Sample GROUP every MS milliseconds (default 1000) into FILE.csv until S\n"
	"seconds have passed (decimals allowed) or until interrupted (Ctrl-C,\n"
	"SIGTERM). Each row is flushed as it is written. Columns:\n"
	"  " CTL_CSV_HEADER "\n"
	"time_s is seconds since the first sample; byte values are integers and an\n"
	"unlimited max/high/low is 'max'; under_pressure is 0 or 1; the rest are the\n"
	"counters of 'sockmemctl stat'. Draw it with 'sockmemctl plot'.\n"
	"\n"
	"  -o, --out FILE       the CSV file to write (replaced)\n"
	"  -i, --interval MS    time between samples (default 1000)\n"
	"  -d, --duration S     stop after S seconds (default: until interrupted)\n"
	"  -h, --help           this help\n"
	"\n"
	"Reads the segment without changing it. Exit status: 0; 1 for a missing\n"
	"segment or group, an unwritable file, or a group removed (or removed and\n"
	"created again) while recording; 2 for a usage error.\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct record {
	const char *group, *out;
	uint64_t interval_ms;
	double duration_s; /* < 0: until interrupted */
};

static void csv_bytes(FILE *f, int64_t v)
{
	if (v == SOCKMEM_UNLIMITED)
		fputs(",max", f);
	else
		fprintf(f, ",%lld", (long long)v);
}

static void csv_row(FILE *f, double t, const struct sockmem_group_stat *st)
{
	fprintf(f, "%.3f,%lld,%lld,%lld", t, (long long)st->current, (long long)st->sock,
		(long long)st->cached);
	csv_bytes(f, st->max);
	csv_bytes(f, st->high);
	csv_bytes(f, st->low);
	fprintf(f, ",%lld,%d,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%lld,%lld\n", (long long)st->peak,
		st->under_pressure ? 1 : 0, (unsigned long long)st->failcnt,
		(unsigned long long)st->ev_low, (unsigned long long)st->ev_high,
		(unsigned long long)st->ev_max, (unsigned long long)st->ev_pressure,
		(unsigned long long)st->ev_throttled, (unsigned long long)st->throttle_ns,
		(long long)st->sockets, (long long)st->processes);
	fflush(f);
}

static int parse_seconds(const struct ctl *ctx, const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(*out) || *out <= 0 || *out > 1e7)
		return ctl_usage(ctx, "bad duration '%s': use seconds, e.g. 10 or 2.5", s);
	return CTL_OK;
}

static int parse_record_args(struct ctl *ctx, int argc, char **argv, struct record *r)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"interval", required_argument, NULL, 'i'},
		{"duration", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, rc = CTL_OK;

	while (rc == CTL_OK && (c = ctl_getopt(ctx, argc, argv, "o:i:d:h", opts, false)) != -1) {
		if (c == 'o')
			r->out = optarg;
		else if (c == 'i')
			rc = ctl_parse_uint(ctx, "interval", optarg, 1, 3600000, &r->interval_ms);
		else if (c == 'd')
			rc = parse_seconds(ctx, optarg, &r->duration_s);
		else if (c == 'h')
			return ctl_help(record_help), -1;
		else
			return CTL_USAGE;
	}
	if (rc != CTL_OK)
		return rc;
	if (optind >= argc)
		return ctl_usage(ctx, "missing GROUP");
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	if (!r->out)
		return ctl_usage(ctx, "missing --out FILE.csv");
	r->group = argv[optind];
	return ctl_check_path(ctx, r->group);
}

/* Sleep until `t0 + ns` on the monotonic clock (no drift across samples). */
static void sleep_until(uint64_t t0, uint64_t ns)
{
	uint64_t at = t0 + ns;
	struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};

	while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * Sample the group looked up: the entry at `idx` as long as it keeps the
 * generation it had then. A removed group's entry may be taken by another
 * group, or by a new group of the same name whose counters start again:
 * both end the recording like a plain removal.
 */
static int sample(const struct record *r, sockmem_seg_t *seg, uint32_t idx, uint32_t gen,
		  struct sockmem_group_stat *st)
{
	struct sockmem_group *g = sockmem_group_at(seg, idx);

	if (!g || sockmem_group_stat(seg, idx, st) < 0)
		return -ENOENT;
	/* After the copy: an entry reused while it was read is caught too. */
	if (atomic_load_explicit(&g->generation, memory_order_acquire) != gen ||
	    strcmp(st->path, r->group) != 0)
		return -ENOENT;
	return 0;
}

static int sample_loop(const struct record *r, sockmem_seg_t *seg, uint32_t idx, FILE *f,
		       uint64_t *samples)
{
	uint64_t t0 = sockmem_now_ns(), iv = r->interval_ms * 1000000u;
	uint64_t end = r->duration_s > 0 ? (uint64_t)(r->duration_s * 1e9) : UINT64_MAX;
	struct sockmem_group *g = sockmem_group_at(seg, idx);
	uint32_t gen = g ? atomic_load_explicit(&g->generation, memory_order_acquire) : 0;
	struct sockmem_group_stat st;

	for (uint64_t i = 0; !stop; i++) {
		double t;

		/* The next sample would come after the end: wait for the
		 * end only, not for a whole interval. */
		if (i && i * iv > end) {
			sleep_until(t0, end);
			break;
		}
		if (i)
			sleep_until(t0, i * iv);
		t = (double)(sockmem_now_ns() - t0) / 1e9;
		if (stop || (r->duration_s > 0 && t > r->duration_s + 0.0005))
			break;
		if (sample(r, seg, idx, gen, &st) < 0)
			return ctl_fail(CTL_ERR, "group '%s' was removed; %llu samples are in %s",
					r->group, (unsigned long long)*samples, r->out);
		csv_row(f, t, &st);
		++*samples;
		if (ferror(f))
			return ctl_fail(CTL_ERR, "cannot write %s: %s", r->out, strerror(errno));
	}
	return CTL_OK;
}

int ctl_cmd_record(struct ctl *ctx, int argc, char **argv)
{
	struct record r = {.interval_ms = 1000, .duration_s = -1};
	struct sigaction sa = {.sa_handler = on_signal};
	uint64_t samples = 0;
	sockmem_seg_t *seg;
	uint32_t idx;
	FILE *f;
	int rc;

	rc = parse_record_args(ctx, argc, argv, &r);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	rc = ctl_open(ctx, CTL_READ, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_lookup(ctx, seg, r.group, &idx);
	if (rc != CTL_OK) {
		sockmem_close(seg);
		return rc;
	}
	f = fopen(r.out, "w");
	if (!f) {
		sockmem_close(seg);
		return ctl_fail(CTL_ERR, "cannot write %s: %s", r.out, strerror(errno));
	}
	fprintf(f, "%s\n", CTL_CSV_HEADER);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rc = sample_loop(&r, seg, idx, f, &samples);
	if (fclose(f) != 0 && rc == CTL_OK)
		rc = ctl_fail(CTL_ERR, "cannot write %s: %s", r.out, strerror(errno));
	sockmem_close(seg);
	if (rc == CTL_OK)
		printf("recorded %llu samples of '%s' to %s\n", (unsigned long long)samples,
		       r.group, r.out);
	return rc;
}
