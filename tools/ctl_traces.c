/*
 * sockmemctl traces: the call sites that hit max or were throttled (issue 5).
 *
 * Reads the segment's trace table (filled by the shim with SOCKMEM_TRACE=1),
 * keeps the records of GROUP and its descendants, merges records of one site
 * (equal hash: racing first hits may have claimed two), sorts by count and
 * symbolises each frame from its object's ELF symbol tables (ctl_symbols.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_symbols.h"

static const char traces_help[] =
	"Usage: sockmemctl traces GROUP [--json] [--top N]\n"
	"       sockmemctl traces GROUP --reset\n"
	"\n"
	"The call sites of GROUP's programs (and its descendants') that hit max or\n"
	"were throttled, most frequent first: count and bytes of the captured hits,\n"
	"and each site's call stack as function+offset (object). Programs record\n"
	"them when run with SOCKMEM_TRACE=1; captures are rate-limited per process\n"
	"(SOCKMEM_TRACE_RATE per second, default 100), so counts are a sample: the\n"
	"group's events.max / events.throttled are printed next to them.\n"
	"\n"
	"Options:\n"
	"  -j, --json      one JSON object: {\"group\", \"events\", \"sites\": [...]}\n"
	"  -t, --top N     show the N most frequent sites (default 10; 0: all)\n"
	"  -r, --reset     forget the recorded sites of GROUP and its descendants\n"
	"  -h, --help      this help\n"
	"\n"
	"Exit status: 0 (also when nothing was recorded); 1 for a missing or invalid\n"
	"segment or group; 2 for a usage error.\n";

struct site {
	struct sockmem_trace t; /* sanitised copy (sockmem_trace_read) */
	char group[SOCKMEM_PATH_MAX];
	uint64_t count, bytes, first_ns, last_ns;
	uint32_t kinds, records;
};

struct traces_args {
	const char *path;
	bool json, reset;
	uint64_t top;
};

static int parse_args(struct ctl *ctx, int argc, char **argv, struct traces_args *a)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"top", required_argument, NULL, 't'},
		{"reset", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, rc;

	a->top = 10;
	while ((c = ctl_getopt(ctx, argc, argv, "jt:rh", opts, false)) != -1) {
		switch (c) {
		case 'j':
			a->json = true;
			break;
		case 't':
			rc = ctl_parse_uint(ctx, "--top", optarg, 0, 1000000, &a->top);
			if (rc != CTL_OK)
				return rc;
			break;
		case 'r':
			a->reset = true;
			break;
		case 'h':
			ctl_help(traces_help);
			return -1;
		default:
			return CTL_USAGE;
		}
	}
	if (a->reset && a->json)
		return ctl_usage(ctx, "--reset prints no report; drop --json");
	if (optind >= argc)
		return ctl_usage(ctx, "missing GROUP");
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	a->path = argv[optind];
	return ctl_check_path(ctx, a->path);
}

/* ---- collecting ---------------------------------------------------------- */

/* The record's group path if that group is still the one the record was
 * made for (live, same generation) and inside `root`. */
static bool record_group(sockmem_seg_t *seg, const struct sockmem_trace *t, const char *root,
			 char *path)
{
	struct sockmem_group *g = sockmem_group_at(seg, t->group);

	if (!g || atomic_load(&g->state) != SOCKMEM_LIVE ||
	    atomic_load(&g->generation) != t->group_gen)
		return false;
	memcpy(path, g->path, SOCKMEM_PATH_MAX);
	path[SOCKMEM_PATH_MAX - 1] = '\0';
	return ctl_in_subtree(path, root);
}

/* Copy the matching records out. Returns the count or -ENOMEM. */
static int collect(sockmem_seg_t *seg, const char *root, struct site **out)
{
	struct sockmem_capacities caps;
	uint32_t cap;
	struct site *v;
	int n = 0;

	sockmem_capacities(seg, &caps);
	cap = caps.traces;
	v = calloc(cap ? cap : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < cap; i++) {
		struct site *s = &v[n];

		if (sockmem_trace_read(seg, i, &s->t) < 0 ||
		    !record_group(seg, &s->t, root, s->group))
			continue;
		s->count = atomic_load(&s->t.count);
		s->bytes = atomic_load(&s->t.bytes);
		s->kinds = atomic_load(&s->t.kinds);
		s->last_ns = atomic_load(&s->t.last_ns);
		s->first_ns = s->t.first_ns;
		s->records = 1;
		if (s->count)
			n++;
	}
	*out = v;
	return n;
}

static int by_hash(const void *a, const void *b)
{
	uint64_t x = atomic_load(&((const struct site *)a)->t.hash);
	uint64_t y = atomic_load(&((const struct site *)b)->t.hash);

	return x < y ? -1 : x > y;
}

static int by_count(const void *a, const void *b)
{
	const struct site *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return 0;
}

/* Merge records of one site (equal hash), then sort by count. */
static int merge_sort(struct site *v, int n)
{
	int m = 0;

	qsort(v, (size_t)n, sizeof(*v), by_hash);
	for (int i = 0; i < n; i++) {
		struct site *d = &v[m - 1];

		if (m > 0 && atomic_load(&d->t.hash) == atomic_load(&v[i].t.hash)) {
			d->count += v[i].count;
			d->bytes += v[i].bytes;
			d->kinds |= v[i].kinds;
			d->records++;
			if (v[i].last_ns > d->last_ns)
				d->last_ns = v[i].last_ns;
			if (v[i].first_ns < d->first_ns)
				d->first_ns = v[i].first_ns;
		} else {
			if (m != i)
				v[m] = v[i];
			m++;
		}
	}
	qsort(v, (size_t)m, sizeof(*v), by_count);
	return m;
}

/* ---- output -------------------------------------------------------------- */

static const char *kinds_str(uint32_t k)
{
	static const char *const names[] = {"-", "max", "throttled", "max+throttled"};

	return names[k & 3];
}

/* Frame i: its object path (NULL if unknown) and symbol (name NULL if none). */
static const char *frame(const struct site *s, uint32_t i, struct ctl_sym *sym)
{
	uint8_t o = s->t.obj[i];

	sym->name = NULL;
	sym->offset = 0;
	if (o == SOCKMEM_TRACE_NO_OBJ)
		return NULL;
	ctl_symbolize(s->t.objs[o], s->t.pcs[i], 1, sym);
	return s->t.objs[o];
}

/* For the terminal: a copy of s with anything but printable ASCII as '?'
 * (paths and names come from a segment other processes write). */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; s[i] && i + 1 < len; i++)
		buf[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

static void print_site(int rank, const struct site *s)
{
	char b[32], exe[sizeof(s->t.exe)], grp[SOCKMEM_PATH_MAX];

	printf("#%d  count %llu  bytes %s (%llu)  %s  group %s  program %s (pid %d)%s\n", rank,
	       (unsigned long long)s->count, ctl_size((int64_t)s->bytes, b, sizeof(b)),
	       (unsigned long long)s->bytes, kinds_str(s->kinds),
	       printable(s->group, grp, sizeof(grp)),
	       s->t.exe[0] ? printable(s->t.exe, exe, sizeof(exe)) : "?", (int)s->t.pid,
	       s->records > 1 ? "  (merged)" : "");
	for (uint32_t i = 0; i < s->t.depth; i++) {
		char name[256], path[SOCKMEM_TRACE_OBJ_PATH];
		struct ctl_sym sym;
		const char *obj = frame(s, i, &sym);

		if (sym.name)
			printf("    %s+0x%llx", printable(sym.name, name, sizeof(name)),
			       (unsigned long long)sym.offset);
		else
			printf("    0x%llx", (unsigned long long)s->t.pcs[i]);
		if (obj)
			printf("  (%s+0x%llx)\n", printable(obj, path, sizeof(path)),
			       (unsigned long long)s->t.pcs[i]);
		else
			printf("  (?)\n");
	}
}

static void print_table(const char *root, const struct sockmem_group_stat *st, const struct site *v,
			int n, uint64_t top)
{
	uint64_t hits = 0;

	for (int i = 0; i < n; i++)
		hits += v[i].count;
	if (n == 0) {
		printf("no call sites recorded for group '%s' (events: max %llu, throttled "
		       "%llu); run its programs with SOCKMEM_TRACE=1 to record who hits the "
		       "limit\n",
		       root, (unsigned long long)st->ev_max, (unsigned long long)st->ev_throttled);
		return;
	}
	printf("group '%s': %d call site%s, %llu captured hits (a rate-limited sample; events: "
	       "max %llu, throttled %llu)\n",
	       root, n, n == 1 ? "" : "s", (unsigned long long)hits, (unsigned long long)st->ev_max,
	       (unsigned long long)st->ev_throttled);
	for (int i = 0; i < n && (top == 0 || (uint64_t)i < top); i++) {
		putchar('\n');
		print_site(i + 1, &v[i]);
	}
}

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

static void json_frames(const struct site *s)
{
	printf("\"frames\":[");
	for (uint32_t i = 0; i < s->t.depth; i++) {
		struct ctl_sym sym;
		const char *obj = frame(s, i, &sym);

		printf("%s{\"function\":", i ? "," : "");
		if (sym.name)
			json_string(sym.name);
		else
			printf("null");
		printf(",\"offset\":%llu,\"object\":", (unsigned long long)sym.offset);
		if (obj)
			json_string(obj);
		else
			printf("null");
		printf(",\"address\":%llu}", (unsigned long long)s->t.pcs[i]);
	}
	printf("]");
}

static void json_site(int rank, const struct site *s)
{
	printf("{\"rank\":%d,\"group\":", rank);
	json_string(s->group);
	printf(",\"count\":%llu,\"bytes\":%llu,\"kinds\":[", (unsigned long long)s->count,
	       (unsigned long long)s->bytes);
	printf("%s%s%s]", s->kinds & 1 ? "\"max\"" : "", (s->kinds & 3) == 3 ? "," : "",
	       s->kinds & 2 ? "\"throttled\"" : "");
	printf(",\"program\":");
	json_string(s->t.exe);
	printf(",\"pid\":%d,\"records\":%u,\"first_seen_ns\":%llu,\"last_seen_ns\":%llu,",
	       (int)s->t.pid, s->records, (unsigned long long)s->first_ns,
	       (unsigned long long)s->last_ns);
	json_frames(s);
	printf("}");
}

static void print_json(const char *root, const struct sockmem_group_stat *st, const struct site *v,
		       int n, uint64_t top)
{
	printf("{\"group\":");
	json_string(root);
	printf(",\"events\":{\"max\":%llu,\"throttled\":%llu},\"sites\":[",
	       (unsigned long long)st->ev_max, (unsigned long long)st->ev_throttled);
	for (int i = 0; i < n && (top == 0 || (uint64_t)i < top); i++) {
		if (i)
			putchar(',');
		json_site(i + 1, &v[i]);
	}
	printf("]}\n");
}

/* ---- the command ----------------------------------------------------------- */

static int reset(struct ctl *ctx, const char *path)
{
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc = ctl_open(ctx, CTL_WRITE, &seg), n;

	if (rc != CTL_OK)
		return rc;
	rc = ctl_lookup(ctx, seg, path, &idx);
	if (rc == CTL_OK) {
		n = sockmem_trace_reset(seg, idx);
		if (n < 0)
			rc = ctl_fail(CTL_ERR, "cannot reset traces: %s", strerror(-n));
		else
			printf("forgot %d call-site record%s of group '%s'\n", n, n == 1 ? "" : "s",
			       path);
	}
	sockmem_close(seg);
	return rc;
}

static int report(struct ctl *ctx, const struct traces_args *a)
{
	struct sockmem_group_stat st;
	struct site *v = NULL;
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc = ctl_open(ctx, CTL_READ, &seg), n;

	if (rc != CTL_OK)
		return rc;
	rc = ctl_lookup(ctx, seg, a->path, &idx);
	if (rc == CTL_OK && sockmem_group_stat(seg, idx, &st) < 0)
		rc = ctl_fail(CTL_ERR, "group '%s' was removed meanwhile", a->path);
	if (rc == CTL_OK) {
		n = collect(seg, a->path, &v);
		if (n < 0) {
			rc = ctl_fail(CTL_ERR, "out of memory");
		} else {
			n = merge_sort(v, n);
			if (a->json)
				print_json(a->path, &st, v, n, a->top);
			else
				print_table(a->path, &st, v, n, a->top);
		}
	}
	free(v);
	ctl_symbols_release();
	sockmem_close(seg);
	return rc;
}

int ctl_cmd_traces(struct ctl *ctx, int argc, char **argv)
{
	struct traces_args a = {0};
	int rc = parse_args(ctx, argc, argv, &a);

	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	return a.reset ? reset(ctx, a.path) : report(ctx, &a);
}
