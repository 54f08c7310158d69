/*
 * Fuzz target: names and sizes users type (group paths, namespaces, sizes).
 *
 * Input: one string (up to the first NUL). It goes through
 * sockmem_path_valid, sockmem_ns_valid, sockmem_shm_name and
 * sockmem_parse_size, and each verdict is compared with a small reference
 * implementation of the documented rule (include/sockmem/sockmem.h):
 *
 *   path: components of [A-Za-z0-9_.-] separated by '/', none empty, none
 *         "." or "..", total length < SOCKMEM_PATH_MAX;
 *   namespace: 1..SOCKMEM_NS_MAX-1 of [A-Za-z0-9._-], not starting with '.'
 *         (the leading-dot rule is lib/segment.c's, not yet in sockmem.h);
 *   size: digits, optional K/M/G/T (base 1024, any case) then optional
 *         "B"/"iB" (any case), or exactly "max"; no sign, no space, no
 *         overflow of int64.
 *
 * Also: an accepted namespace's shm name is "/sockmem-<ns>" with no other
 * '/' (it cannot escape /dev/shm), and a parsed size printed by
 * sockmem_format_size without a fraction parses back to the same value.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "sockmem/sockmem.h"

#define MAX_STR 512

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static bool ref_path(const char *s)
{
	size_t len = strlen(s), start = 0;

	if (len == 0 || len >= SOCKMEM_PATH_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '/') {
			if (!name_char(s[i]))
				return false;
			continue;
		}
		size_t cl = i - start;

		if (cl == 0 || (cl == 1 && s[start] == '.') ||
		    (cl == 2 && s[start] == '.' && s[start + 1] == '.'))
			return false;
		start = i + 1;
	}
	return true;
}

static bool ref_ns(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > SOCKMEM_NS_MAX - 1 || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

/* Shift for a K/M/G/T unit letter (any case), or -1. */
static int unit_shift(char c)
{
	static const char units[] = "kmgt";
	const char *u = c ? strchr(units, tolower((unsigned char)c)) : NULL;

	return u ? 10 * (int)(u - units + 1) : -1;
}

/* The documented size grammar; *out valid when true. */
static bool ref_size(const char *s, int64_t *out)
{
	unsigned __int128 v = 0;
	const char *p = s;
	int shift = 0;

	if (strcmp(s, "max") == 0) {
		*out = SOCKMEM_UNLIMITED;
		return true;
	}
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (unsigned)(*p - '0')) > INT64_MAX)
			return false; /* overflow */
	if (p == s)
		return false;
	if (*p && strcasecmp(p, "b") != 0) {
		shift = unit_shift(*p);
		if (shift < 0 ||
		    (p[1] && strcasecmp(p + 1, "b") != 0 && strcasecmp(p + 1, "ib") != 0))
			return false;
	}
	v <<= shift;
	if (v > INT64_MAX)
		return false;
	*out = (int64_t)v;
	return true;
}

static void check_size(const char *s)
{
	int64_t got = -1, want = -1, back = -1;
	char buf[32];
	int rc = sockmem_parse_size(s, &got);

	FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	FZ_CHECK((rc == 0) == ref_size(s, &want));
	if (rc != 0)
		return;
	FZ_CHECK(got == want && got >= 0);
	sockmem_format_size(got, buf, sizeof(buf));
	FZ_CHECK(memchr(buf, '\0', sizeof(buf)) != NULL && buf[0] != '\0');
	if (!strchr(buf, '.'))
		FZ_CHECK(sockmem_parse_size(buf, &back) == 0 && back == got);
}

static void check_ns(const char *s)
{
	char name[SOCKMEM_NS_MAX + 16], tiny[4];
	int ok = sockmem_ns_valid(s);

	FZ_CHECK(ok == 0 || ok == -EINVAL);
	FZ_CHECK((ok == 0) == ref_ns(s));
	if (ok != 0) {
		FZ_CHECK(sockmem_shm_name(s, name, sizeof(name)) == -EINVAL);
		return;
	}
	FZ_CHECK(sockmem_shm_name(s, name, sizeof(name)) == 0);
	FZ_CHECK(strncmp(name, "/sockmem-", 9) == 0 && strcmp(name + 9, s) == 0);
	FZ_CHECK(strchr(name + 1, '/') == NULL);
	FZ_CHECK(sockmem_shm_name(s, tiny, sizeof(tiny)) == -ENAMETOOLONG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[MAX_STR];
	const char *why = "unset";
	int rc;

	fz_cstr(data, size, s, sizeof(s));
	rc = sockmem_path_valid(s, &why);
	FZ_CHECK(rc == 0 || rc == -EINVAL);
	FZ_CHECK((rc == 0) == ref_path(s));
	FZ_CHECK(rc == 0 ? why == NULL : why != NULL && why[0] != '\0');
	FZ_CHECK(sockmem_path_valid(s, NULL) == rc);
	check_ns(s);
	check_size(s);
	return 0;
}
