/*
 * sockmemctl watch: a live view of usage against low/high/max, refreshed in
 * place on a terminal (like top), one plain line per group otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

static const char watch_help[] =
	"Usage: sockmemctl watch [GROUP] [--interval MS] [--count N]\n"
	"\n"
	"Live view of GROUP and its children (default: every group), refreshed in\n"
	"place on a terminal: a usage bar per group ('#' usage, 'L' low, 'H' high,\n"
	"'|' max), peak, and flags: PRESSURE while the group or an ancestor is under\n"
	"socket pressure, thr+N and max+N for throttling and max hits since the last\n"
	"refresh. When standard output is not a terminal, each refresh prints one\n"
	"plain line per group (bytes as integers, 'max' for unlimited).\n"
	"\n"
	"  -i, --interval MS  time between refreshes (default 1000)\n"
	"  -c, --count N      exit after N refreshes (default: until interrupted)\n"
	"  -h, --help         this help\n"
	"\n"
	"Reads the segment without changing it. Exit status: 0; 1 for a missing\n"
	"segment or group (also when GROUP is removed while watching); 2 for a usage\n"
	"error.\n";

/* Set by SIGINT/SIGTERM: leave the loop after the current refresh. */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct watch {
	const char *root; /* GROUP or NULL */
	uint64_t interval_ms, count;
	bool tty;
	int width; /* bar cells */
	struct sockmem_group_stat *prev;
	int nprev;
};

static const struct sockmem_group_stat *find_prev(const struct watch *w, const char *path)
{
	for (int i = 0; i < w->nprev; i++)
		if (strcmp(w->prev[i].path, path) == 0)
			return &w->prev[i];
	return NULL;
}

/* The value the full bar stands for: max if set, else a little above
 * high, else a little above what was seen. */
static int64_t bar_scale(const struct sockmem_group_stat *st)
{
	int64_t s;

	if (st->max != SOCKMEM_UNLIMITED && st->max > 0)
		return st->max;
	if (st->high != SOCKMEM_UNLIMITED && st->high > 0)
		return st->high + st->high / 4;
	s = st->peak > st->current ? st->peak : st->current;
	return s + s / 4 > 0 ? s + s / 4 : 1;
}

static int cell(int64_t v, int64_t scale, int width)
{
	double c = (double)v * width / (double)scale;

	return c >= width ? width - 1 : (int)c;
}

/* "[###..L..H...|]" in `buf` (width + 3 bytes). */
static void render_bar(const struct sockmem_group_stat *st, int width, char *buf)
{
	int64_t scale = bar_scale(st);
	double filled = (double)st->current * width / (double)scale;

	buf[0] = '[';
	for (int i = 0; i < width; i++)
		buf[1 + i] = i < filled - 0.5 ? '#' : '.';
	if (st->low > 0 && st->low != SOCKMEM_UNLIMITED && st->low < scale)
		buf[1 + cell(st->low, scale, width)] = 'L';
	if (st->high != SOCKMEM_UNLIMITED && st->high < scale)
		buf[1 + cell(st->high, scale, width)] = 'H';
	if (st->max != SOCKMEM_UNLIMITED)
		buf[width] = '|';
	buf[width + 1] = ']';
	buf[width + 2] = '\0';
}

/* Red at max or under pressure, yellow above high, green otherwise. */
static const char *bar_color(const struct sockmem_group_stat *st)
{
	if (st->under_pressure || (st->max != SOCKMEM_UNLIMITED && st->current >= st->max))
		return "\033[31m";
	if (st->high != SOCKMEM_UNLIMITED && st->current > st->high)
		return "\033[33m";
	return "\033[32m";
}

/* Events since the last refresh. A counter below its last value belongs to
 * a group removed and created again under the same path: its counters
 * started again from 0, so all of them are new. */
static uint64_t since(uint64_t now, uint64_t before)
{
	return now >= before ? now - before : now;
}

static void tty_row(const struct watch *w, const struct sockmem_group_stat *st)
{
	const struct sockmem_group_stat *p = find_prev(w, st->path);
	char name[SOCKMEM_PATH_MAX + 40], bar[128], b[3][32];
	uint64_t thr = p ? since(st->ev_throttled, p->ev_throttled) : 0;
	uint64_t hits = p ? since(st->ev_max, p->ev_max) : 0;
	unsigned depth = st->depth < 16 ? st->depth : 16;
	const char *leaf = strrchr(st->path, '/');
	const char *color = bar_color(st);

	snprintf(name, sizeof(name), "%*s%s", (int)(2 * depth), "", leaf ? leaf + 1 : st->path);
	render_bar(st, w->width, bar);
	printf("%-20s %8s %8s %s%s\033[0m %8s", name, ctl_size(st->current, b[0], sizeof(b[0])),
	       ctl_size(st->max, b[1], sizeof(b[1])), color, bar,
	       ctl_size(st->peak, b[2], sizeof(b[2])));
	if (st->under_pressure)
		printf(" \033[7mPRESSURE\033[0m");
	if (thr)
		printf(" thr+%llu", (unsigned long long)thr);
	if (hits)
		printf(" max+%llu", (unsigned long long)hits);
	printf("\033[K\n");
}

static void plain_limit(const char *key, int64_t v)
{
	if (v == SOCKMEM_UNLIMITED)
		printf(" %s=max", key);
	else
		printf(" %s=%lld", key, (long long)v);
}

static void plain_row(const char *stamp, const struct sockmem_group_stat *st)
{
	printf("%s %s current=%lld sock=%lld", stamp, st->path, (long long)st->current,
	       (long long)st->sock);
	plain_limit("max", st->max);
	plain_limit("high", st->high);
	plain_limit("low", st->low);
	printf(" peak=%lld pressure=%d throttled=%llu failcnt=%llu events_max=%llu "
	       "processes=%lld sockets=%lld\n",
	       (long long)st->peak, st->under_pressure ? 1 : 0,
	       (unsigned long long)st->ev_throttled, (unsigned long long)st->failcnt,
	       (unsigned long long)st->ev_max, (long long)st->processes, (long long)st->sockets);
}

static void tty_heading(const struct ctl *ctx, const struct watch *w, const char *stamp)
{
	char nsbuf[32];

	/* Home and clear, then draw: the screen is rewritten in place. */
	printf("\033[H\033[2J");
	printf("sockmem watch: namespace %s, every %llu ms%s  %s\n",
	       ctl_ns_name(ctx, nsbuf, sizeof(nsbuf)), (unsigned long long)w->interval_ms,
	       w->count ? "" : " (Ctrl-C to quit)", stamp);
	printf("%-20s %8s %8s %-*s %8s FLAGS\n", "GROUP", "CURRENT", "MAX", w->width + 2,
	       "USAGE (# used, L low, H high, | max)", "PEAK");
}

/* One refresh. Returns CTL_OK, or CTL_ERR when the watched group is gone. */
static int refresh(const struct ctl *ctx, struct watch *w, sockmem_seg_t *seg)
{
	struct sockmem_group_stat *st;
	char stamp[32];
	time_t now = time(NULL);
	int n, shown = 0;

	strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
	n = ctl_snapshot(seg, &st);
	if (n < 0)
		return ctl_fail(CTL_ERR, "out of memory");
	if (w->tty)
		tty_heading(ctx, w, stamp);
	for (int i = 0; i < n; i++) {
		if (w->root && !ctl_in_subtree(st[i].path, w->root))
			continue;
		shown++;
		if (w->tty)
			tty_row(w, &st[i]);
		else
			plain_row(stamp, &st[i]);
	}
	fflush(stdout);
	free(w->prev);
	w->prev = st;
	w->nprev = n;
	if (w->root && !shown)
		return ctl_fail(CTL_ERR, "group '%s' was removed", w->root);
	return CTL_OK;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	/* A signal cuts the sleep short; the caller checks `stop`. */
	while (!stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int bar_width(void)
{
	struct winsize ws;
	int cols = 100;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		cols = ws.ws_col;
	/* name, current, max, peak and flags take about 65 columns. */
	cols -= 70;
	return cols < 10 ? 10 : cols > 100 ? 100 : cols;
}

static int parse_watch_args(struct ctl *ctx, int argc, char **argv, struct watch *w)
{
	static const struct option opts[] = {
		{"interval", required_argument, NULL, 'i'},
		{"count", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, rc = CTL_OK;

	while (rc == CTL_OK && (c = ctl_getopt(ctx, argc, argv, "i:c:h", opts, false)) != -1) {
		if (c == 'i')
			rc = ctl_parse_uint(ctx, "interval", optarg, 1, 3600000, &w->interval_ms);
		else if (c == 'c')
			rc = ctl_parse_uint(ctx, "count", optarg, 1, UINT32_MAX, &w->count);
		else if (c == 'h')
			return ctl_help(watch_help), -1;
		else
			return CTL_USAGE;
	}
	if (rc != CTL_OK)
		return rc;
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc) {
		w->root = argv[optind];
		return ctl_check_path(ctx, w->root);
	}
	return CTL_OK;
}

int ctl_cmd_watch(struct ctl *ctx, int argc, char **argv)
{
	struct watch w = {.interval_ms = 1000};
	struct sigaction sa = {.sa_handler = on_signal};
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc;

	rc = parse_watch_args(ctx, argc, argv, &w);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	rc = ctl_open(ctx, CTL_READ, &seg);
	if (rc != CTL_OK)
		return rc;
	if (w.root && ctl_lookup(ctx, seg, w.root, &idx) != CTL_OK) {
		sockmem_close(seg);
		return CTL_ERR;
	}
	w.tty = isatty(STDOUT_FILENO);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (uint64_t i = 0; !stop && rc == CTL_OK && (!w.count || i < w.count); i++) {
		if (i)
			sleep_ms(w.interval_ms);
		w.width = bar_width(); /* the terminal may have been resized */
		if (!stop)
			rc = refresh(ctx, &w, seg);
	}
	free(w.prev);
	sockmem_close(seg);
	return rc;
}
