/*
 * sockmemctl set, reset-peak, reap and rm: the commands that change the
 * segment (traces, which can also reset its records, is in ctl_traces.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char set_help[] =
	"Usage: sockmemctl set GROUP [max=SIZE] [high=SIZE] [low=SIZE]\n"
	"\n"
	"Set limits of GROUP live (any subset; the others stay). SIZE is bytes with an\n"
	"optional K/M/G/T suffix (base 1024) or 'max' (unlimited). The group (and its\n"
	"parents, and the namespace's segment) is created if missing, so that limits\n"
	"can be set before the first program joins; 'sockmemctl rm' removes it.\n"
	"\n"
	"Refused unless low <= high <= max, where a high of 'max' means no high\n"
	"watermark (as cgroup's memory.high), so 'set G max=64M' alone works. A max\n"
	"below the current usage is accepted and puts the group under pressure.\n"
	"\n"
	"Exit status: 0; 1 when refused (inconsistent limits); 2 for a usage error\n"
	"(malformed size, unknown key, bad group name).\n";

static const char reset_peak_help[] =
	"Usage: sockmemctl reset-peak GROUP\n"
	"\n"
	"Reset GROUP's peak to its current usage. Exit status: 0; 1 for a missing\n"
	"segment or group; 2 for a usage error.\n";

static const char reap_help[] =
	"Usage: sockmemctl reap\n"
	"\n"
	"Return the charges of dead member processes (even ones killed by SIGKILL)\n"
	"to their groups now, and print how many records and bytes were returned.\n"
	"Exit status: 0; 1 for a missing or invalid segment.\n";

static const char rm_help[] =
	"Usage: sockmemctl rm GROUP\n"
	"\n"
	"Remove GROUP. Only an unused group can go: no children, no member\n"
	"processes, nothing charged. Exit status: 0; 1 when the group is missing or\n"
	"in use; 2 for a usage error.\n";

/* Parse the command's options when the only one is --help. Returns -1 to go
 * on, else the exit status. */
static int only_help(struct ctl *ctx, int argc, char **argv, const char *help)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = ctl_getopt(ctx, argc, argv, "h", opts, false)) != -1)
		return c == 'h' ? ctl_help(help) : CTL_USAGE;
	return -1;
}

/* Exactly one positional GROUP argument, validated. */
static int one_group(struct ctl *ctx, int argc, char **argv, const char **path)
{
	if (optind >= argc)
		return ctl_usage(ctx, "missing GROUP");
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	*path = argv[optind];
	return ctl_check_path(ctx, *path);
}

/* ---- set ------------------------------------------------------------------- */

struct limits {
	int64_t max, high, low; /* SOCKMEM_KEEP when not given */
};

static int parse_assignment(struct ctl *ctx, const char *arg, struct limits *l)
{
	static const char *const keys[] = {"max", "high", "low"};
	int64_t *slots[] = {&l->max, &l->high, &l->low};
	const char *eq = strchr(arg, '=');

	for (int i = 0; eq && i < 3; i++) {
		if ((size_t)(eq - arg) != strlen(keys[i]) || strncmp(arg, keys[i], eq - arg))
			continue;
		if (*slots[i] != SOCKMEM_KEEP)
			return ctl_usage(ctx, "'%s' given twice", keys[i]);
		return ctl_parse_size(ctx, keys[i], eq + 1, slots[i]);
	}
	return ctl_usage(ctx, "bad assignment '%s': use max=SIZE, high=SIZE or low=SIZE", arg);
}

/* Reclaim runs from high down to low: a tiny gap makes it run constantly
 * (the open question of the 2008 background-reclaim RFC). */
static void warn_small_gap(const struct sockmem_group_stat *st)
{
	char a[32], b[32], c[32];
	int64_t gap = st->high - st->low, want = st->high / 8;

	if (want < 2 * SOCKMEM_DEFAULT_BATCH)
		want = 2 * SOCKMEM_DEFAULT_BATCH;
	if (st->high == SOCKMEM_UNLIMITED || st->low == 0 || gap >= want)
		return;
	ctl_warn("low %s is close to high %s: reclaim will wake often; leave at least %s "
		 "between them",
		 ctl_size(st->low, a, sizeof(a)), ctl_size(st->high, b, sizeof(b)),
		 ctl_size(want, c, sizeof(c)));
}

static int apply_limits(sockmem_seg_t *seg, const char *path, const struct limits *l)
{
	struct sockmem_group_stat st;
	char a[32], b[32], c[32];
	uint32_t idx;
	int rc;

	rc = ctl_ensure_group(seg, path, l->max, l->high, l->low, &idx);
	if (rc != CTL_OK)
		return rc;
	if (sockmem_group_stat(seg, idx, &st) == 0) {
		printf("%s: max=%s high=%s low=%s\n", path, ctl_size(st.max, a, sizeof(a)),
		       ctl_size(st.high, b, sizeof(b)), ctl_size(st.low, c, sizeof(c)));
		warn_small_gap(&st);
	}
	return CTL_OK;
}

int ctl_cmd_set(struct ctl *ctx, int argc, char **argv)
{
	struct limits l = {SOCKMEM_KEEP, SOCKMEM_KEEP, SOCKMEM_KEEP};
	sockmem_seg_t *seg;
	const char *path;
	int rc;

	rc = only_help(ctx, argc, argv, set_help);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return ctl_usage(ctx, "missing GROUP");
	path = argv[optind++];
	rc = ctl_check_path(ctx, path);
	if (rc != CTL_OK)
		return rc;
	if (optind >= argc)
		return ctl_usage(ctx, "nothing to set: give max=SIZE, high=SIZE and/or low=SIZE");
	for (; optind < argc; optind++) {
		rc = parse_assignment(ctx, argv[optind], &l);
		if (rc != CTL_OK)
			return rc;
	}
	rc = ctl_precheck_limits(l.max, l.high, l.low);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_open(ctx, CTL_CREATE, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = apply_limits(seg, path, &l);
	sockmem_close(seg);
	return rc;
}

/* ---- reset-peak, reap, rm ----------------------------------------------- */

int ctl_cmd_reset_peak(struct ctl *ctx, int argc, char **argv)
{
	sockmem_seg_t *seg;
	const char *path;
	uint32_t idx;
	int rc;

	rc = only_help(ctx, argc, argv, reset_peak_help);
	if (rc >= 0)
		return rc;
	rc = one_group(ctx, argc, argv, &path);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_open(ctx, CTL_WRITE, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_lookup(ctx, seg, path, &idx);
	if (rc == CTL_OK && sockmem_group_reset_peak(seg, idx) < 0)
		rc = ctl_fail(CTL_ERR, "group '%s' was removed meanwhile", path);
	sockmem_close(seg);
	return rc;
}

/*
 * Attaching read-write already reaps (the core does it on every attach), so
 * the figures come from a read-only scan before: the records whose process
 * is gone and the bytes their record and slots hold. The explicit reap then
 * catches what died in between.
 */
/* a + b, saturating: the figures come from the segment, which any member
 * can fill with values whose sum overflows. */
static int64_t add_sat(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int scan_dead(const struct ctl *ctx, int64_t *bytes)
{
	struct sockmem_capacities caps;
	sockmem_seg_t *seg;
	uint32_t nprocs, nslots;
	int n = 0;

	*bytes = 0;
	if (ctl_open(ctx, CTL_READ, &seg) != CTL_OK)
		return -1;
	sockmem_capacities(seg, &caps);
	nprocs = caps.procs;
	nslots = caps.slots;
	for (uint32_t i = 0; i < nprocs; i++) {
		struct sockmem_proc *p = sockmem_proc_at(seg, i);

		if (!p || atomic_load(&p->state) != SOCKMEM_LIVE || ctl_proc_alive(p))
			continue;
		n++;
		*bytes = add_sat(*bytes, atomic_load(&p->sock));
		for (uint32_t s = 0; s < nslots; s++) {
			struct sockmem_slot *sl = sockmem_slot_at(seg, s);

			if (sl && sl->proc == i && atomic_load(&sl->state) == SOCKMEM_LIVE)
				*bytes = add_sat(add_sat(*bytes, atomic_load(&sl->stock)),
						 atomic_load(&sl->sock));
		}
	}
	sockmem_close(seg);
	return n;
}

int ctl_cmd_reap(struct ctl *ctx, int argc, char **argv)
{
	sockmem_seg_t *seg;
	int64_t bytes = 0, more = 0;
	char b[32];
	int rc, n;

	rc = only_help(ctx, argc, argv, reap_help);
	if (rc >= 0)
		return rc;
	if (optind < argc)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind]);
	n = scan_dead(ctx, &bytes);
	if (n < 0)
		return CTL_ERR;
	rc = ctl_open(ctx, CTL_WRITE, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = sockmem_reap(seg, &more);
	sockmem_close(seg);
	if (rc < 0)
		return ctl_fail(CTL_ERR, "reap failed: %s", strerror(-rc));
	n += rc;
	bytes += more;
	if (bytes < 0)
		bytes = 0;
	printf("reaped %d dead process record%s, returned %s (%lld bytes)\n", n, n == 1 ? "" : "s",
	       ctl_size(bytes, b, sizeof(b)), (long long)bytes);
	return CTL_OK;
}

/* Why a group cannot be removed, for the refusal line. */
static void busy_reason(sockmem_seg_t *seg, uint32_t idx, const char *path, char *buf, size_t len)
{
	struct sockmem_group_stat st, *all;
	bool children = false;
	char b[32];
	int n = ctl_snapshot(seg, &all);

	for (int i = 0; i < n; i++)
		if (strcmp(all[i].path, path) != 0 && ctl_in_subtree(all[i].path, path))
			children = true;
	if (n >= 0)
		free(all);
	if (sockmem_group_stat(seg, idx, &st) < 0) {
		snprintf(buf, len, "it is in use");
		return;
	}
	snprintf(buf, len, "it has %s%lld process%s and %s charged", children ? "children, " : "",
		 (long long)st.processes, st.processes == 1 ? "" : "es",
		 ctl_size(st.current, b, sizeof(b)));
}

int ctl_cmd_rm(struct ctl *ctx, int argc, char **argv)
{
	sockmem_seg_t *seg;
	const char *path;
	char why[160];
	uint32_t idx;
	int rc;

	rc = only_help(ctx, argc, argv, rm_help);
	if (rc >= 0)
		return rc;
	rc = one_group(ctx, argc, argv, &path);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_open(ctx, CTL_WRITE, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = ctl_lookup(ctx, seg, path, &idx);
	if (rc == CTL_OK) {
		int err = sockmem_group_remove(seg, path);

		if (err == -EBUSY) {
			busy_reason(seg, idx, path, why, sizeof(why));
			rc = ctl_fail(CTL_ERR,
				      "refused to remove group '%s': %s; stop its programs and "
				      "remove its children first",
				      path, why);
		} else if (err < 0) {
			rc = ctl_fail(CTL_ERR, "cannot remove group '%s': %s", path,
				      strerror(-err));
		}
	}
	sockmem_close(seg);
	return rc;
}
