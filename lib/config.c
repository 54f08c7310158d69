/*
 * The option table and its strict, allocation-free parser.
 *
 * The preload shim parses the environment from its constructor, when libc
 * may not be fully initialised and getenv() could be interposed by another
 * preloaded library; so the parser walks the envp array itself and only
 * uses functions that do not allocate.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sockmem/sockmem.h"

#define OPT(field) offsetof(struct sm_config, field)
#define KiB	   (INT64_C(1) << 10)
#define MiB	   (INT64_C(1) << 20)
#define GiB	   (INT64_C(1) << 30)

const struct sm_option sm_options[] = {
	{"SOCKMEM_GROUP", SM_OPT_STRING, OPT(group), SOCKMEM_PATH_MAX, "", 0, 0, "path", NULL,
	 "Group to charge (\"a/b/c\"); unset: the shim is a pass-through"},
	{"SOCKMEM_NAMESPACE", SM_OPT_STRING, OPT(ns), SOCKMEM_NS_MAX, "", 0, 0, "name", NULL,
	 "Shared-memory segment (`/dev/shm/sockmem-<name>`); unset: per user (`u<uid>`)"},
	{"SOCKMEM_MAX", SM_OPT_SIZE, OPT(max), 0, "", 0, SOCKMEM_UNLIMITED, "bytes", NULL,
	 "Hard limit applied to the group when set (K/M/G/T, 'max')"},
	{"SOCKMEM_HIGH", SM_OPT_SIZE, OPT(high), 0, "", 0, SOCKMEM_UNLIMITED, "bytes", NULL,
	 "High watermark applied to the group when set"},
	{"SOCKMEM_LOW", SM_OPT_SIZE, OPT(low), 0, "", 0, SOCKMEM_UNLIMITED, "bytes", NULL,
	 "Low watermark applied to the group when set"},
	{"SOCKMEM_BATCH", SM_OPT_SIZE, OPT(batch), 0, "64K", 0, SOCKMEM_BATCH_MAX, "bytes", NULL,
	 "Per-thread charge cache batch; 0 disables caching"},
	{"SOCKMEM_RECONCILE_MS", SM_OPT_INT, OPT(reconcile_ms), 0, "100", 1, 60000, "ms", NULL,
	 "Helper tick: reconcile every socket against SO_MEMINFO"},
	{"SOCKMEM_RECONCILE_BYTES", SM_OPT_SIZE, OPT(reconcile_bytes), 0, "1M", 0, 1 * GiB, "bytes",
	 NULL,
	 "Reconcile a socket after this much traffic (4x while far from every max and high); "
	 "0: only on the tick"},
	{"SOCKMEM_PRESSURE_MS", SM_OPT_INT, OPT(pressure_ms), 0, "1000", 1, 600000, "ms", NULL,
	 "Socket pressure period after a max hit or failed reclaim"},
	{"SOCKMEM_LOG", SM_OPT_ENUM, OPT(log_level), 0, "warn", 0, 3, "level",
	 "error|warn|info|debug", "Log level (stderr)"},
	{"SOCKMEM_FAMILIES", SM_OPT_FAMILIES, OPT(families), 0, "inet,inet6", 0, 0, "list",
	 "inet|inet6|unix", "Socket families accounted (TCP/UDP over these)"},
	{"SOCKMEM_TRACE", SM_OPT_INT, OPT(trace), 0, "0", 0, 1, "bool", NULL,
	 "Record call sites that hit max or were throttled"},
	{"SOCKMEM_TRACE_RATE", SM_OPT_INT, OPT(trace_rate), 0, "100", 1, 100000, "per second", NULL,
	 "Call-site captures per second per process (a burst of as many)"},
	{"SOCKMEM_TRACE_LIB", SM_OPT_STRING, OPT(trace_lib), SM_TRACE_LIB_MAX, "", 0, 0, "path",
	 NULL,
	 "Unwinder dlopen'd (RTLD_LOCAL) at load with SOCKMEM_TRACE=1; "
	 "unset: " SM_TRACE_LIB_DEFAULT},
	{"SOCKMEM_THROTTLE", SM_OPT_INT, OPT(throttle), 0, "0", 0, 1, "bool", NULL,
	 "Throttle threads charging over high (the kernel's overage curve, up to 2 s)"},
	{"SOCKMEM_GROUPS", SM_OPT_INT, OPT(groups), 0, "256", 1, 65536, "count", NULL,
	 "Group capacity when this process creates the segment"},
	{"SOCKMEM_PROCS", SM_OPT_INT, OPT(procs), 0, "1024", 1, 1 << 20, "count", NULL,
	 "Process capacity when this process creates the segment"},
	{"SOCKMEM_SLOTS", SM_OPT_INT, OPT(slots), 0, "4096", 1, 1 << 20, "count", NULL,
	 "Thread-cache slot capacity when this process creates the segment"},
};
const size_t sm_noptions = sizeof(sm_options) / sizeof(sm_options[0]);

/* Strict unsigned decimal: digits only, no sign, no overflow. */
static int parse_int(const char *s, int64_t *out)
{
	int64_t v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

/* Index of `word` (length n) in "a|b|c", or -1. */
static int word_index(const char *words, const char *word, size_t n)
{
	int i = 0;

	while (*words) {
		size_t len = strcspn(words, "|");

		if (len == n && strncmp(words, word, n) == 0)
			return i;
		words += len + (words[len] == '|');
		i++;
	}
	return -1;
}

/* "inet,inet6,unix" -> mask. */
static int parse_families(const char *s, int64_t *out)
{
	int64_t mask = 0;

	while (*s) {
		size_t n = strcspn(s, ",");
		int i = word_index("inet|inet6|unix", s, n);

		if (i < 0)
			return -EINVAL;
		mask |= INT64_C(1) << i;
		s += n + (s[n] == ',');
	}
	if (mask == 0)
		return -EINVAL;
	*out = mask;
	return 0;
}

static const char *check_string(const struct sm_option *o, const char *v)
{
	const char *why = NULL;

	if (strlen(v) >= o->len)
		return "too long";
	if (o->offset == OPT(group) && sockmem_path_valid(v, &why) != 0)
		return why ? why : "not a group path";
	if (o->offset == OPT(ns) && sockmem_ns_valid(v) != 0)
		return "not a namespace name (use A-Z a-z 0-9 . _ -, at most 63 characters)";
	return NULL;
}

/* Parse one value into the field; NULL on success, else why it is bad. */
static const char *parse_value(const struct sm_option *o, const char *v, struct sm_config *cfg)
{
	char *field = (char *)cfg + o->offset;
	int64_t n = 0;
	int i;

	switch (o->kind) {
	case SM_OPT_STRING:
		if (check_string(o, v))
			return check_string(o, v);
		memcpy(field, v, strlen(v) + 1);
		return NULL;
	case SM_OPT_SIZE:
		if (sockmem_parse_size(v, &n) != 0)
			return "not a size (use a number with K/M/G/T or 'max')";
		break;
	case SM_OPT_INT:
		if (parse_int(v, &n) != 0)
			return "not a non-negative integer";
		break;
	case SM_OPT_ENUM:
		i = word_index(o->values, v, strlen(v));
		if (i < 0)
			return "not one of the accepted words";
		n = i;
		break;
	case SM_OPT_FAMILIES:
		if (parse_families(v, &n) != 0)
			return "not a comma-separated list of inet, inet6, unix";
		break;
	}
	if (o->kind != SM_OPT_ENUM && o->kind != SM_OPT_FAMILIES && (n < o->min || n > o->max))
		return "out of range";
	memcpy(field, &n, sizeof(n));
	return NULL;
}

static void bad_value(const struct sm_option *o, const char *raw, const char *why, char *err,
		      size_t errlen)
{
	char v[4 * 64 + 1]; /* the value's first 64 bytes, control bytes escaped */

	if (!err || errlen == 0)
		return;
	sm_escape(v, sizeof(v), raw, 64);
	if (o->kind == SM_OPT_ENUM)
		snprintf(err, errlen, "%s='%s': %s (%s)", o->name, v, why, o->values);
	else if (strcmp(why, "out of range") == 0 && o->kind == SM_OPT_SIZE)
		snprintf(err, errlen, "%s='%s': out of range (at most %lld bytes)", o->name, v,
			 (long long)o->max);
	else if (strcmp(why, "out of range") == 0)
		snprintf(err, errlen, "%s='%s': out of range (%lld..%lld %s)", o->name, v,
			 (long long)o->min, (long long)o->max, o->unit);
	else
		snprintf(err, errlen, "%s='%s': %s", o->name, v, why);
}

void sm_config_defaults(struct sm_config *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sm_noptions; i++) {
		const struct sm_option *o = &sm_options[i];

		if (o->def[0] != '\0')
			(void)parse_value(o, o->def, out);
	}
	out->max = out->high = out->low = SOCKMEM_KEEP;
}

static const struct sm_option *find_option(const char *name, size_t n)
{
	for (size_t i = 0; i < sm_noptions; i++)
		if (strlen(sm_options[i].name) == n && strncmp(sm_options[i].name, name, n) == 0)
			return &sm_options[i];
	return NULL;
}

int sm_config_parse(const char *const *envp, struct sm_config *out, char *err, size_t errlen)
{
	sm_config_defaults(out);
	if (err && errlen)
		err[0] = '\0';
	for (; envp && *envp; envp++) {
		const char *e = *envp, *eq = strchr(e, '=');
		const struct sm_option *o;
		const char *why;

		if (strncmp(e, "SOCKMEM_", 8) != 0 || !eq)
			continue;
		o = find_option(e, (size_t)(eq - e));
		if (!o || eq[1] == '\0') /* unknown, or empty: treated as unset */
			continue;
		why = parse_value(o, eq + 1, out);
		if (why) {
			bad_value(o, eq + 1, why, err, errlen);
			return -EINVAL;
		}
	}
	return 0;
}

static void range_text(const struct sm_option *o, char *buf, size_t len)
{
	char lo[32], hi[32];

	switch (o->kind) {
	case SM_OPT_SIZE:
		sockmem_format_size(o->min, lo, sizeof(lo));
		sockmem_format_size(o->max, hi, sizeof(hi));
		snprintf(buf, len, "%s .. %s", lo, hi);
		break;
	case SM_OPT_INT:
		snprintf(buf, len, "%lld .. %lld", (long long)o->min, (long long)o->max);
		break;
	case SM_OPT_ENUM:
	case SM_OPT_FAMILIES:
		snprintf(buf, len, "%s", o->values);
		break;
	case SM_OPT_STRING:
		snprintf(buf, len, "< %zu chars", o->len);
		break;
	}
}

int sm_config_print_markdown(int fd)
{
	char range[96];

	dprintf(fd, "| Variable | Default | Range | Unit | Meaning |\n");
	dprintf(fd, "|---|---|---|---|---|\n");
	for (size_t i = 0; i < sm_noptions; i++) {
		const struct sm_option *o = &sm_options[i];

		range_text(o, range, sizeof(range));
		for (char *p = range; *p; p++)
			if (*p == '|')
				*p = ',';
		dprintf(fd, "| `%s` | %s | %s | %s | %s |\n", o->name,
			o->def[0] ? o->def : "(unset)", range, o->unit, o->help);
	}
	return 0;
}
