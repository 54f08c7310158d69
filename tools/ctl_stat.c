/*
 * sockmemctl stat: every statistic of a group, as a table, JSON or the
 * Prometheus text exposition format (node_exporter's textfile collector).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char stat_help[] =
	"Usage: sockmemctl stat [GROUP] [--json | --prometheus]\n"
	"\n"
	"Every statistic of GROUP; without GROUP, of every group (tables one after\n"
	"the other, a JSON array, or one Prometheus scrape covering all groups).\n"
	"\n"
	"  -j, --json        one JSON object (an array of them without GROUP) with the\n"
	"                    keys: group, current, sock, cached, max, high, low, peak,\n"
	"                    failcnt, sockets, processes, pids, under_pressure,\n"
	"                    events {low, high, max, pressure, throttled}, underflows,\n"
	"                    throttle_ns, reclaim {passes, drained, reconciled, clamped}.\n"
	"                    Bytes are integers; an unlimited max/high is \"max\".\n"
	"  -p, --prometheus  Prometheus text format: metrics named sockmem_*, one\n"
	"                    'group' label; counters end in _total; unlimited is +Inf\n"
	"  -h, --help        this help\n"
	"\n"
	"pids are the live processes registered in the group itself (not its\n"
	"children). Reads the segment without changing it. Exit status: 0; 1 for a\n"
	"missing segment or group; 2 for a usage error.\n";

enum stat_format { FMT_TABLE, FMT_JSON, FMT_PROM };

struct stat_ctx {
	sockmem_seg_t *seg;
	int32_t *pids; /* scratch: room for every process record */
	int maxpids;
};

/* ---- table -------------------------------------------------------------- */

static void row_bytes(const char *key, int64_t v)
{
	char b[32];

	if (v == SOCKMEM_UNLIMITED)
		printf("%-22s max\n", key);
	else
		printf("%-22s %-8s (%lld bytes)\n", key, ctl_size(v, b, sizeof(b)), (long long)v);
}

static void row_count(const char *key, uint64_t v)
{
	printf("%-22s %llu\n", key, (unsigned long long)v);
}

static void print_table(const struct sockmem_group_stat *st, const int32_t *pids, int npids)
{
	printf("%-22s %s\n", "group", st->path);
	row_bytes("current", st->current);
	row_bytes("sock", st->sock);
	row_bytes("cached", st->cached);
	row_bytes("max", st->max);
	row_bytes("high", st->high);
	row_bytes("low", st->low);
	row_bytes("peak", st->peak);
	printf("%-22s %s\n", "under_pressure", st->under_pressure ? "yes" : "no");
	row_count("failcnt", st->failcnt);
	row_count("events.low", st->ev_low);
	row_count("events.high", st->ev_high);
	row_count("events.max", st->ev_max);
	row_count("events.pressure", st->ev_pressure);
	row_count("events.throttled", st->ev_throttled);
	printf("%-22s %.3f s\n", "throttle_time", (double)st->throttle_ns / 1e9);
	row_count("underflows", st->underflows);
	row_count("reclaim.passes", st->reclaim_passes);
	row_bytes("reclaim.drained", (int64_t)st->reclaim_drained);
	row_bytes("reclaim.reconciled", (int64_t)st->reclaim_reconciled);
	row_count("reclaim.clamped", st->reclaim_clamped);
	row_count("sockets", (uint64_t)st->sockets);
	row_count("processes", (uint64_t)st->processes);
	printf("%-22s", "pids");
	for (int i = 0; i < npids; i++)
		printf(" %d", (int)pids[i]);
	printf("%s\n", npids ? "" : " -");
}

/* ---- JSON --------------------------------------------------------------- */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_bytes(const char *key, int64_t v, const char *sep)
{
	if (v == SOCKMEM_UNLIMITED)
		printf("\"%s\":\"max\"%s", key, sep);
	else
		printf("\"%s\":%lld%s", key, (long long)v, sep);
}

static void json_u64(const char *key, uint64_t v, const char *sep)
{
	printf("\"%s\":%llu%s", key, (unsigned long long)v, sep);
}

static void print_json(const struct sockmem_group_stat *st, const int32_t *pids, int npids)
{
	printf("{\"group\":");
	json_string(st->path);
	printf(",");
	json_bytes("current", st->current, ",");
	json_bytes("sock", st->sock, ",");
	json_bytes("cached", st->cached, ",");
	json_bytes("max", st->max, ",");
	json_bytes("high", st->high, ",");
	json_bytes("low", st->low, ",");
	json_bytes("peak", st->peak, ",");
	json_u64("failcnt", st->failcnt, ",");
	printf("\"sockets\":%lld,\"processes\":%lld,\"pids\":[", (long long)st->sockets,
	       (long long)st->processes);
	for (int i = 0; i < npids; i++)
		printf("%s%d", i ? "," : "", (int)pids[i]);
	printf("],\"under_pressure\":%s,\"events\":{", st->under_pressure ? "true" : "false");
	json_u64("low", st->ev_low, ",");
	json_u64("high", st->ev_high, ",");
	json_u64("max", st->ev_max, ",");
	json_u64("pressure", st->ev_pressure, ",");
	json_u64("throttled", st->ev_throttled, "},");
	json_u64("underflows", st->underflows, ",");
	json_u64("throttle_ns", st->throttle_ns, ",");
	printf("\"reclaim\":{");
	json_u64("passes", st->reclaim_passes, ",");
	json_u64("drained", st->reclaim_drained, ",");
	json_u64("reconciled", st->reclaim_reconciled, ",");
	json_u64("clamped", st->reclaim_clamped, "}}");
}

/* ---- Prometheus ---------------------------------------------------------- */

enum prom_kind { P_I64, P_LIMIT, P_U64, P_SECONDS, P_BOOL };

struct prom_metric {
	const char *name, *type, *help;
	enum prom_kind kind;
	size_t off; /* of the field in struct sockmem_group_stat */
};

#define F(field) offsetof(struct sockmem_group_stat, field)
static const struct prom_metric prom_metrics[] = {
	{"sockmem_current_bytes", "gauge",
	 "Socket memory charged to the group, including per-thread caches.", P_I64, F(current)},
	{"sockmem_sock_bytes", "gauge", "Socket memory charged to the group's sockets.", P_I64,
	 F(sock)},
	{"sockmem_cached_bytes", "gauge", "Bytes held in per-thread charge caches.", P_I64,
	 F(cached)},
	{"sockmem_max_bytes", "gauge", "Hard limit (+Inf when unlimited).", P_LIMIT, F(max)},
	{"sockmem_high_bytes", "gauge", "High watermark (+Inf when unlimited).", P_LIMIT, F(high)},
	{"sockmem_low_bytes", "gauge", "Low watermark.", P_LIMIT, F(low)},
	{"sockmem_peak_bytes", "gauge", "Highest usage since creation or the last reset.", P_I64,
	 F(peak)},
	{"sockmem_sockets", "gauge", "Accounted sockets open in member processes.", P_I64,
	 F(sockets)},
	{"sockmem_processes", "gauge", "Live member processes.", P_I64, F(processes)},
	{"sockmem_under_pressure", "gauge",
	 "1 when the group or an ancestor is under socket pressure.", P_BOOL, F(under_pressure)},
	{"sockmem_failcnt_total", "counter", "Charges refused at this level.", P_U64, F(failcnt)},
	{"sockmem_underflows_total", "counter", "Uncharges below zero (clamped; a bug).", P_U64,
	 F(underflows)},
	{"sockmem_throttle_seconds_total", "counter", "Time charging threads slept throttled.",
	 P_SECONDS, F(throttle_ns)},
	{"sockmem_reclaim_passes_total", "counter", "Reclaim passes.", P_U64, F(reclaim_passes)},
	{"sockmem_reclaim_drained_bytes_total", "counter",
	 "Bytes reclaim took back from idle per-thread caches.", P_U64, F(reclaim_drained)},
	{"sockmem_reclaim_reconciled_bytes_total", "counter",
	 "Bytes reclaim released by reconciling sockets against the kernel.", P_U64,
	 F(reclaim_reconciled)},
	{"sockmem_reclaim_clamped_sockets_total", "counter", "Sockets clamped by reclaim.", P_U64,
	 F(reclaim_clamped)},
};

/* The event counters: one family with an `event` label. */
static const struct {
	const char *label;
	size_t off;
} prom_events[] = {
	{"low", F(ev_low)},	      {"high", F(ev_high)},	      {"max", F(ev_max)},
	{"pressure", F(ev_pressure)}, {"throttled", F(ev_throttled)},
};
#undef F

/* A label value: backslash, double quote and newline are escaped. */
static void prom_label(const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
}

static void prom_value(const struct prom_metric *m, const struct sockmem_group_stat *st)
{
	const char *base = (const char *)st;
	int64_t i64;
	uint64_t u64;

	switch (m->kind) {
	case P_I64:
	case P_LIMIT:
		memcpy(&i64, base + m->off, sizeof(i64));
		if (m->kind == P_LIMIT && i64 == SOCKMEM_UNLIMITED)
			printf("+Inf\n");
		else
			printf("%lld\n", (long long)i64);
		break;
	case P_U64:
	case P_SECONDS:
		memcpy(&u64, base + m->off, sizeof(u64));
		if (m->kind == P_SECONDS)
			printf("%llu.%09llu\n", (unsigned long long)(u64 / 1000000000u),
			       (unsigned long long)(u64 % 1000000000u));
		else
			printf("%llu\n", (unsigned long long)u64);
		break;
	case P_BOOL:
		printf("%d\n", *(const bool *)(base + m->off) ? 1 : 0);
		break;
	}
}

/* Families are written whole (every group's sample together), as the
 * format requires: one HELP and TYPE line, then all samples. */
static void print_prometheus(const struct sockmem_group_stat *st, int n)
{
	for (size_t m = 0; m < sizeof(prom_metrics) / sizeof(prom_metrics[0]); m++) {
		const struct prom_metric *pm = &prom_metrics[m];

		printf("# HELP %s %s\n# TYPE %s %s\n", pm->name, pm->help, pm->name, pm->type);
		for (int i = 0; i < n; i++) {
			printf("%s{group=\"", pm->name);
			prom_label(st[i].path);
			printf("\"} ");
			prom_value(pm, &st[i]);
		}
	}
	printf("# HELP sockmem_events_total Memory events by kind (cgroup memory.events).\n"
	       "# TYPE sockmem_events_total counter\n");
	for (int i = 0; i < n; i++) {
		for (size_t e = 0; e < sizeof(prom_events) / sizeof(prom_events[0]); e++) {
			uint64_t v;

			memcpy(&v, (const char *)&st[i] + prom_events[e].off, sizeof(v));
			printf("sockmem_events_total{group=\"");
			prom_label(st[i].path);
			printf("\",event=\"%s\"} %llu\n", prom_events[e].label,
			       (unsigned long long)v);
		}
	}
}

/* ---- the command ---------------------------------------------------------- */

static void print_one(struct stat_ctx *sc, enum stat_format fmt,
		      const struct sockmem_group_stat *st)
{
	int npids = ctl_member_pids(sc->seg, st->idx, sc->pids, sc->maxpids);

	if (fmt == FMT_JSON)
		print_json(st, sc->pids, npids);
	else
		print_table(st, sc->pids, npids);
}

static int stat_all(struct stat_ctx *sc, enum stat_format fmt)
{
	struct sockmem_group_stat *st;
	int n = ctl_snapshot(sc->seg, &st);

	if (n < 0)
		return ctl_fail(CTL_ERR, "out of memory");
	if (fmt == FMT_PROM) {
		print_prometheus(st, n);
	} else {
		if (fmt == FMT_JSON)
			printf("[");
		for (int i = 0; i < n; i++) {
			if (i)
				printf(fmt == FMT_JSON ? "," : "\n");
			print_one(sc, fmt, &st[i]);
		}
		if (fmt == FMT_JSON)
			printf("]\n");
	}
	free(st);
	return CTL_OK;
}

static int stat_group(const struct ctl *ctx, struct stat_ctx *sc, enum stat_format fmt,
		      const char *path)
{
	struct sockmem_group_stat st;
	uint32_t idx;
	int rc;

	rc = ctl_lookup(ctx, sc->seg, path, &idx);
	if (rc != CTL_OK)
		return rc;
	if (sockmem_group_stat(sc->seg, idx, &st) < 0)
		return ctl_fail(CTL_ERR, "group '%s' was removed while reading it", path);
	if (fmt == FMT_PROM)
		print_prometheus(&st, 1);
	else
		print_one(sc, fmt, &st);
	if (fmt == FMT_JSON)
		printf("\n");
	return CTL_OK;
}

static int parse_stat_args(struct ctl *ctx, int argc, char **argv, enum stat_format *fmt)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"prometheus", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*fmt = FMT_TABLE;
	while ((c = ctl_getopt(ctx, argc, argv, "jph", opts, false)) != -1) {
		switch (c) {
		case 'j':
		case 'p':
			if (*fmt != FMT_TABLE)
				return ctl_usage(ctx, "--json and --prometheus exclude each other");
			*fmt = c == 'j' ? FMT_JSON : FMT_PROM;
			break;
		case 'h':
			ctl_help(stat_help);
			return -1;
		default:
			return CTL_USAGE;
		}
	}
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc)
		return ctl_check_path(ctx, argv[optind]);
	return CTL_OK;
}

int ctl_cmd_stat(struct ctl *ctx, int argc, char **argv)
{
	struct sockmem_capacities caps;
	struct stat_ctx sc = {0};
	enum stat_format fmt;
	int rc;

	rc = parse_stat_args(ctx, argc, argv, &fmt);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	rc = ctl_open(ctx, CTL_READ, &sc.seg);
	if (rc != CTL_OK)
		return rc;
	sockmem_capacities(sc.seg, &caps);
	sc.maxpids = (int)caps.procs;
	sc.pids = calloc(sc.maxpids ? (size_t)sc.maxpids : 1, sizeof(*sc.pids));
	if (!sc.pids)
		rc = ctl_fail(CTL_ERR, "out of memory");
	else if (optind < argc)
		rc = stat_group(ctx, &sc, fmt, argv[optind]);
	else
		rc = stat_all(&sc, fmt);
	free(sc.pids);
	sockmem_close(sc.seg);
	return rc;
}
