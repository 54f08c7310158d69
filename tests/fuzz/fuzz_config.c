/*
 * Fuzz target: the option parser (sm_config_parse, lib/config.c).
 *
 * Input: an environment. If it contains a NUL byte, entries are split on NUL
 * only (so values may contain newlines and other control bytes, as real
 * environment values can); otherwise on '\n' (readable seeds). At most
 * MAX_ENV entries.
 *
 * Properties: the parser returns 0 or -EINVAL; on 0 the message is empty and
 * every field holds a value its option allows, equal to what the last
 * occurrence of that variable says when parsed on its own; on -EINVAL the
 * message is one line naming a SOCKMEM_ variable and its value. A NULL or
 * tiny message buffer is handled, and parsing is deterministic.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "sockmem/sockmem.h"

#define MAX_ENV 64
#define MAX_IN	4096

static int64_t field_i64(const struct sm_config *c, const struct sm_option *o)
{
	int64_t v;

	memcpy(&v, (const char *)c + o->offset, sizeof(v));
	return v;
}

/* Strict decimal, as documented for integer options (reference). */
static bool ref_int(const char *s, int64_t *out)
{
	__int128 v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (*s - '0');
		if (v > INT64_MAX)
			return false;
	}
	*out = (int64_t)v;
	return true;
}

/* The value the last non-empty occurrence of o->name in env sets, or NULL. */
static const char *last_value(char **env, int n, const struct sm_option *o)
{
	size_t len = strlen(o->name);
	const char *v = NULL;

	for (int i = 0; i < n; i++)
		if (strncmp(env[i], o->name, len) == 0 && env[i][len] == '=' && env[i][len + 1])
			v = env[i] + len + 1;
	return v;
}

/* One field of an accepted configuration. */
static void check_field(const struct sm_config *c, const struct sm_option *o, const char *v)
{
	const char *s = (const char *)c + o->offset;
	int64_t n = o->kind == SM_OPT_STRING ? 0 : field_i64(c, o), want;

	switch (o->kind) {
	case SM_OPT_STRING:
		FZ_CHECK(memchr(s, '\0', o->len) != NULL);
		FZ_CHECK(strcmp(s, v ? v : "") == 0); /* default: "" */
		if (o->offset == offsetof(struct sm_config, group) && *s)
			FZ_CHECK(sockmem_path_valid(s, NULL) == 0);
		if (o->offset == offsetof(struct sm_config, ns) && *s)
			FZ_CHECK(sockmem_ns_valid(s) == 0);
		return;
	case SM_OPT_SIZE:
		if (!v)
			return; /* default (or KEEP for max/high/low) */
		FZ_CHECK(sockmem_parse_size(v, &want) == 0 && want == n);
		break;
	case SM_OPT_INT:
		if (!v)
			return;
		FZ_CHECK(ref_int(v, &want) && want == n);
		break;
	case SM_OPT_ENUM:
		FZ_CHECK(n >= 0 && n <= o->max);
		return;
	case SM_OPT_FAMILIES:
		FZ_CHECK(n > 0 && (n & ~(int64_t)(SM_FAM_INET | SM_FAM_INET6 | SM_FAM_UNIX)) == 0);
		return;
	}
	FZ_CHECK(n >= o->min && n <= o->max);
}

static void check_error(const char *err)
{
	size_t len = strlen(err);

	FZ_CHECK(len > 0);
	FZ_CHECK(strncmp(err, "SOCKMEM_", 8) == 0 && strstr(err, "='") != NULL);
	/* One line: nothing that would start another line on a terminal/log.
	 * Known finding "config-newline": the value is echoed verbatim. */
	if (!fz_known("config-newline"))
		FZ_CHECK(strpbrk(err, "\n\r") == NULL);
}

/* Split in[] (already a private copy) into NUL-terminated entries. */
static int split(char *in, size_t size, char **env)
{
	char sep = memchr(in, '\0', size) ? '\0' : '\n';
	int n = 0;
	size_t start = 0;

	for (size_t i = 0; i <= size && n < MAX_ENV; i++) {
		if (i == size || in[i] == sep) {
			in[i] = '\0';
			env[n++] = in + start;
			start = i + 1;
		}
	}
	env[n] = NULL;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char in[MAX_IN + 1];
	char *env[MAX_ENV + 1], err[SOCKMEM_ERRLEN], small[8];
	struct sm_config c1, c2;
	int n, rc;

	if (size > MAX_IN)
		return 0;
	memcpy(in, data, size);
	n = split(in, size, env);
	memset(err, 'X', sizeof(err));
	rc = sm_config_parse((const char *const *)env, &c1, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == -EINVAL);
	FZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	if (rc == 0) {
		FZ_CHECK(err[0] == '\0');
		for (size_t i = 0; i < sm_noptions; i++)
			check_field(&c1, &sm_options[i], last_value(env, n, &sm_options[i]));
	} else {
		check_error(err);
	}
	FZ_CHECK(sm_config_parse((const char *const *)env, &c2, NULL, 0) == rc);
	FZ_CHECK(memcmp(&c1, &c2, sizeof(c1)) == 0 || rc != 0);
	FZ_CHECK(sm_config_parse((const char *const *)env, &c2, small, sizeof(small)) == rc);
	FZ_CHECK(memchr(small, '\0', sizeof(small)) != NULL);
	return 0;
}
