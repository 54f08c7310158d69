/*
 * sockmemctl: messages, segment opening, snapshots and option helpers.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* ---- messages ---------------------------------------------------------- */

static void vline(const char *prefix, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line, always: a core message never carries a newline, but a
	 * corrupt segment name could, and a user's argument might. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "sockmemctl: %s%s\n", prefix, msg);
}

int ctl_fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline("", fmt, ap);
	va_end(ap);
	return status;
}

int ctl_usage(const struct ctl *ctx, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ctx->cmd)
		return ctl_fail(CTL_USAGE, "%s: %s; see 'sockmemctl %s --help'", ctx->cmd, msg,
				ctx->cmd);
	return ctl_fail(CTL_USAGE, "%s; see 'sockmemctl --help'", msg);
}

void ctl_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline("warning: ", fmt, ap);
	va_end(ap);
}

int ctl_help(const char *text)
{
	fputs(text, stdout);
	return CTL_OK;
}

const char *ctl_size(int64_t v, char *buf, size_t len)
{
	return sockmem_format_size(v, buf, len);
}

/* ---- segment and groups ------------------------------------------------ */

const char *ctl_ns_name(const struct ctl *ctx, char *buf, size_t len)
{
	if (ctx->ns)
		return ctx->ns;
	/* The core's own default ("u<euid>"), so both name the same segment. */
	return sockmem_default_ns(buf, len);
}

/* Would --allow-foreign get this command past the refusal `err`? Only for
 * the commands that accept it (they read), and not for a file that is not
 * a regular one (refused either way). */
static bool foreign_helps(const struct ctl *ctx, enum ctl_open_mode mode, const char *err)
{
	static const char *const readers[] = {"list", "stat", "watch", "record", "traces"};
	bool reader = false;

	for (size_t i = 0; ctx->cmd && i < sizeof(readers) / sizeof(readers[0]); i++)
		reader |= strcmp(ctx->cmd, readers[i]) == 0;
	return reader && mode == CTL_READ && !ctx->allow_foreign &&
	       strstr(err, "not a regular file") == NULL;
}

int ctl_open(const struct ctl *ctx, enum ctl_open_mode mode, sockmem_seg_t **seg)
{
	struct sockmem_open_opts o = {
		.ns = ctx->ns,
		.create = mode == CTL_CREATE,
		.readonly = mode == CTL_READ,
		.allow_foreign = ctx->allow_foreign,
	};
	char err[SOCKMEM_ERRLEN] = "", nsbuf[32], shm[SOCKMEM_NS_MAX + 16];
	const char *ns = ctl_ns_name(ctx, nsbuf, sizeof(nsbuf));
	int rc;

	/* Another user's segment may be looked at, never changed (the reaper
	 * and `set` would write into it). */
	if (ctx->allow_foreign && mode != CTL_READ)
		return ctl_fail(CTL_USAGE,
				"--allow-foreign is only for commands that read (list, stat, "
				"watch, record, traces); '%s' changes the segment; see "
				"'sockmemctl --help'",
				ctx->cmd ? ctx->cmd : "this command");
	rc = sockmem_open(&o, seg, err, sizeof(err));
	if (rc == 0)
		return CTL_OK;
	if (rc == -ENOENT) {
		if (sockmem_shm_name(ns, shm, sizeof(shm)) < 0)
			snprintf(shm, sizeof(shm), "/sockmem-%s", ns);
		return ctl_fail(CTL_ERR,
				"no segment for namespace '%s' (/dev/shm%s); start a program "
				"with SOCKMEM_GROUP set or use 'sockmemctl set' to create one",
				ns, shm);
	}
	/* Invalid, foreign or unreadable: the core says what is wrong; we add
	 * which namespace and what to do. */
	if (!err[0])
		snprintf(err, sizeof(err), "%s", strerror(-rc));
	if (sockmem_shm_name(ns, shm, sizeof(shm)) < 0)
		snprintf(shm, sizeof(shm), "/sockmem-%s", ns);
	if (rc == -EACCES || rc == -EPERM)
		return ctl_fail(CTL_ERR,
				"namespace '%s': %s; use a namespace of your own "
				"(--namespace), or fix /dev/shm%s (owner, mode 0600)%s",
				ns, err, shm,
				foreign_helps(ctx, mode, err)
					? ", or read it anyway with --allow-foreign"
					: "");
	if (rc == -EPROTO)
		return ctl_fail(CTL_ERR,
				"namespace '%s': invalid segment: %s; if no program uses "
				"it, delete /dev/shm%s",
				ns, err, shm);
	return ctl_fail(CTL_ERR, "namespace '%s': cannot open the segment: %s", ns, err);
}

int ctl_lookup(const struct ctl *ctx, sockmem_seg_t *seg, const char *path, uint32_t *idx)
{
	char nsbuf[32];
	int rc;

	rc = ctl_check_path(ctx, path);
	if (rc != CTL_OK)
		return rc;
	if (sockmem_group_lookup(seg, path, idx) == 0)
		return CTL_OK;
	return ctl_fail(CTL_ERR, "no group '%s' in namespace '%s'; see 'sockmemctl list'", path,
			ctl_ns_name(ctx, nsbuf, sizeof(nsbuf)));
}

int ctl_check_path(const struct ctl *ctx, const char *path)
{
	const char *why = NULL;

	if (sockmem_path_valid(path, &why) == 0)
		return CTL_OK;
	return ctl_usage(ctx, "invalid group name '%s' (%s)", path,
			 why ? why : "use components of [A-Za-z0-9_.-] joined by '/'");
}

/* Path order with '/' first, so "a/b" sorts right after "a" (and before
 * "a-c"): the sorted list is a depth-first walk of the tree. */
static int path_cmp(const void *a, const void *b)
{
	const unsigned char *p =
		(const unsigned char *)((const struct sockmem_group_stat *)a)->path;
	const unsigned char *q =
		(const unsigned char *)((const struct sockmem_group_stat *)b)->path;

	for (; *p && *p == *q; p++, q++)
		;
	if (*p == *q)
		return 0;
	if (*p == '/' || *q == '/')
		return *p == '/' ? (*q ? -1 : 1) : (*p ? 1 : -1);
	return *p < *q ? -1 : 1;
}

int ctl_snapshot(sockmem_seg_t *seg, struct sockmem_group_stat **out)
{
	struct sockmem_capacities caps;
	struct sockmem_group_stat *st;
	uint32_t cap, idx;
	int n = 0;

	/* The validated capacity: the header in the segment is writable by
	 * every member and could say anything by now. */
	sockmem_capacities(seg, &caps);
	cap = caps.groups;
	st = calloc(cap ? cap : 1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	for (idx = sockmem_group_next(seg, 0);
	     idx != SOCKMEM_NONE && idx < cap && (uint32_t)n < cap;
	     idx = sockmem_group_next(seg, idx + 1)) {
		/* A group removed between next() and stat() is simply skipped. */
		if (sockmem_group_stat(seg, idx, &st[n]) == 0)
			n++;
	}
	qsort(st, (size_t)n, sizeof(*st), path_cmp);
	*out = st;
	return n;
}

bool ctl_in_subtree(const char *path, const char *root)
{
	size_t n = strlen(root);

	return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 if unknown. */
static uint64_t proc_start_time(int32_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and ')': skip to the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
			 "%*d %*d %*d %*d %llu",
			 &t) != 1)
		return 0;
	return t;
}

bool ctl_proc_alive(const struct sockmem_proc *p)
{
	int32_t pid = p->pid;
	uint64_t start;

	if (pid <= 0)
		return false;
	start = proc_start_time(pid);
	if (start == 0)
		return kill(pid, 0) == 0 || errno == EPERM;
	/* A record whose start time differs names a recycled pid. */
	return p->start_time == 0 || p->start_time == start;
}

static bool has_pid(const int32_t *pids, int n, int32_t pid)
{
	for (int i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

int ctl_member_pids(sockmem_seg_t *seg, uint32_t idx, int32_t *pids, int max)
{
	struct sockmem_group *g = sockmem_group_at(seg, idx);
	struct sockmem_capacities caps;
	uint32_t gen, cap;
	int n = 0;

	if (!g)
		return 0;
	sockmem_capacities(seg, &caps);
	cap = caps.procs;
	gen = atomic_load_explicit(&g->generation, memory_order_acquire);
	for (uint32_t i = 0; i < cap && n < max; i++) {
		struct sockmem_proc *p = sockmem_proc_at(seg, i);

		if (!p || atomic_load_explicit(&p->state, memory_order_acquire) != SOCKMEM_LIVE)
			continue;
		if (p->group != idx || p->group_gen != gen || !ctl_proc_alive(p))
			continue;
		if (!has_pid(pids, n, p->pid)) /* one process, two records: across exec */
			pids[n++] = p->pid;
	}
	return n;
}

/* Refuse what is inconsistent among the given values (SOCKMEM_KEEP: not
 * given) before creating anything; the core checks again against the group's
 * current limits. */
int ctl_precheck_limits(int64_t max, int64_t high, int64_t low)
{
	static const char *const names[] = {"max", "high", "low"};
	const int64_t v[] = {max, high, low};
	char a[32], b[32];

	/* Pairs (lower, upper): low<=high, high<=max, low<=max. */
	static const int pairs[][2] = {{2, 1}, {1, 0}, {2, 0}};
	for (int i = 0; i < 3; i++) {
		int lo = pairs[i][0], hi = pairs[i][1];

		if (v[lo] == SOCKMEM_KEEP || v[hi] == SOCKMEM_KEEP || v[lo] <= v[hi])
			continue;
		if (lo == 1 && v[lo] == SOCKMEM_UNLIMITED)
			continue; /* high=max: no high watermark (as the core reads it) */
		return ctl_fail(CTL_ERR, "refused: %s %s is above %s %s; keep low <= high <= max",
				names[lo], ctl_size(v[lo], a, sizeof(a)), names[hi],
				ctl_size(v[hi], b, sizeof(b)));
	}
	return CTL_OK;
}

size_t ctl_missing_from(sockmem_seg_t *seg, const char *path)
{
	char prefix[SOCKMEM_PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(prefix))
		return n;
	for (size_t i = 0; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		memcpy(prefix, path, i);
		prefix[i] = '\0';
		if (sockmem_group_lookup(seg, prefix, NULL) != 0)
			return i;
	}
	return 0;
}

void ctl_undo_groups(sockmem_seg_t *seg, const char *path, size_t from)
{
	char prefix[SOCKMEM_PATH_MAX];
	size_t n = strlen(path);

	if (from == 0 || n >= sizeof(prefix))
		return;
	memcpy(prefix, path, n + 1);
	/* Deepest first: a group with children cannot go. */
	for (size_t i = n + 1; i-- > 0;) {
		if (prefix[i] != '/' && prefix[i] != '\0')
			continue;
		if (i < from)
			break;
		prefix[i] = '\0';
		sockmem_group_remove(seg, prefix);
	}
}

int ctl_ensure_group(sockmem_seg_t *seg, const char *path, int64_t max, int64_t high, int64_t low,
		     uint32_t *idx)
{
	char err[SOCKMEM_ERRLEN] = "";
	size_t from = ctl_missing_from(seg, path);
	int rc;

	rc = sockmem_group_create(seg, path, idx);
	if (rc == -ENOSPC)
		return ctl_fail(CTL_ERR,
				"cannot create group '%s': the group table is full; "
				"remove unused groups with 'sockmemctl rm'",
				path);
	if (rc < 0)
		return ctl_fail(CTL_ERR, "cannot create group '%s': %s", path, strerror(-rc));
	if (max == SOCKMEM_KEEP && high == SOCKMEM_KEEP && low == SOCKMEM_KEEP)
		return CTL_OK;
	/* By path: another sockmemctl may have removed the group since it was
	 * created, and a third created another in its entry. */
	rc = sockmem_group_set_limits_path(seg, path, max, high, low, err, sizeof(err));
	if (rc == 0)
		return CTL_OK;
	if (rc == -ENOENT)
		return ctl_fail(CTL_ERR, "group '%s' was removed while its limits were being set",
				path);
	ctl_undo_groups(seg, path, from); /* a refused request leaves nothing behind */
	return ctl_fail(CTL_ERR, "refused: %s", err[0] ? err : strerror(-rc));
}

/* ---- command-line helpers ---------------------------------------------- */

int ctl_parse_size(const struct ctl *ctx, const char *what, const char *s, int64_t *out)
{
	int rc = sockmem_parse_size(s, out);

	if (rc == 0)
		return CTL_OK;
	if (rc == -ERANGE)
		return ctl_usage(ctx, "size '%s' for %s is too large", s, what);
	return ctl_usage(ctx,
			 "bad size '%s' for %s: use bytes with an optional K/M/G/T suffix "
			 "(e.g. 64M), or 'max'",
			 s, what);
}

int ctl_parse_uint(const struct ctl *ctx, const char *what, const char *s, uint64_t min,
		   uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		goto bad;
	*out = v;
	return CTL_OK;
bad:
	return ctl_usage(ctx, "bad %s '%s': use an integer from %llu to %llu", what, s,
			 (unsigned long long)min, (unsigned long long)max);
}

void ctl_getopt_reset(void)
{
	optind = 0; /* glibc: 0 re-initialises getopt completely */
	opterr = 0;
}

int ctl_getopt(const struct ctl *ctx, int argc, char **argv, const char *optstring,
	       const struct option *longopts, bool in_order)
{
	char spec[64];
	int c;

	snprintf(spec, sizeof(spec), "%s:%s", in_order ? "+" : "", optstring);
	opterr = 0;
	c = getopt_long(argc, argv, spec, longopts, NULL);
	if (c == '?') {
		const char *arg = argv[optind - 1];

		/* getopt sets optopt for a known option given a value it does
		 * not take, and leaves it 0 for an unknown long option. */
		if (optopt && strncmp(arg, "--", 2) == 0 && strchr(arg, '='))
			ctl_usage(ctx, "option '%.*s' takes no value", (int)strcspn(arg, "="), arg);
		else if (strncmp(arg, "--", 2) == 0 || !optopt)
			ctl_usage(ctx, "unknown option '%s'", arg);
		else
			ctl_usage(ctx, "unknown option '-%c'", optopt);
		return '?';
	}
	if (c == ':') {
		ctl_usage(ctx, "option '%s' needs a value", argv[optind - 1]);
		return '?';
	}
	return c;
}
