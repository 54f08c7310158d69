/*
 * Small helpers: sizes for humans, the clock, escaping untrusted text.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static int suffix_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K':
		return 10;
	case 'm':
	case 'M':
		return 20;
	case 'g':
	case 'G':
		return 30;
	case 't':
	case 'T':
		return 40;
	default:
		return -1;
	}
}

/* After a K/M/G/T suffix: "", "B", "iB" (case-insensitive B). */
static bool unit_tail_ok(const char *s)
{
	if (*s == 'i' || *s == 'I')
		s++;
	else if (*s == '\0')
		return true;
	return (*s == 'b' || *s == 'B') && s[1] == '\0';
}

/* Concurrency: pure function. */
int sockmem_parse_size(const char *s, int64_t *out)
{
	uint64_t v = 0;
	int shift = 0;

	if (!s || !*s)
		return -EINVAL;
	if (strcmp(s, "max") == 0) {
		*out = SOCKMEM_UNLIMITED;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (uint64_t)(INT64_MAX - (*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s) {
		if ((*s == 'b' || *s == 'B') && s[1] == '\0')
			shift = 0;
		else if ((shift = suffix_shift(*s)) < 0 || !unit_tail_ok(s + 1))
			return -EINVAL;
	}
	if (v > ((uint64_t)INT64_MAX >> shift))
		return -ERANGE;
	*out = (int64_t)(v << shift);
	return 0;
}

/* Concurrency: pure function (writes only buf). */
char *sockmem_format_size(int64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int i;

	if (!buf || !len)
		return buf;
	if (v == SOCKMEM_UNLIMITED) {
		snprintf(buf, len, "max");
		return buf;
	}
	if ((v < 1024 && v > -1024) || v == INT64_MIN) {
		snprintf(buf, len, "%lld", (long long)v);
		return buf;
	}
	for (i = 3; i >= 0; i--) {
		int64_t unit = INT64_C(1) << (10 * (i + 1));
		int64_t a = v < 0 ? -v : v;

		if (a < unit)
			continue;
		if (a % unit == 0)
			snprintf(buf, len, "%lld%c", (long long)(v / unit), units[i]);
		else
			snprintf(buf, len, "%.1f%c", (double)v / (double)unit, units[i]);
		break;
	}
	return buf;
}

/* Concurrency: any thread, async-signal-safe (vDSO clock). */
uint64_t sockmem_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sm_timeout_deadline(uint64_t now, long sec, long usec)
{
	uint64_t rel;

	if (sec == 0 && usec == 0)
		return 0;
	if (sec < 0 || usec < 0 || usec >= 1000000 || (uint64_t)sec > SM_TIMEO_FOREVER_S)
		return UINT64_MAX;
	rel = (uint64_t)sec * 1000000000u + (uint64_t)usec * 1000u;
	return now > UINT64_MAX - rel ? UINT64_MAX : now + rel;
}

/* One byte of sm_escape's output form into e[]; returns its length. */
static size_t escape_byte(unsigned char c, char e[4])
{
	static const char hex[] = "0123456789abcdef";
	static const char from[] = "\n\r\t\\", to[] = "nrt\\";
	const char *p = c ? strchr(from, c) : NULL;

	if (p) {
		e[0] = '\\';
		e[1] = to[p - from];
		return 2;
	}
	if (c >= 0x20 && c < 0x7f) {
		e[0] = (char)c;
		return 1;
	}
	e[0] = '\\';
	e[1] = 'x';
	e[2] = hex[c >> 4];
	e[3] = hex[c & 15];
	return 4;
}

/* Concurrency: pure function (writes only dst). */
char *sm_escape(char *dst, size_t dstlen, const char *src, size_t max)
{
	size_t n = 0;
	char e[4];

	if (!dst || !dstlen)
		return dst;
	for (size_t i = 0; src && i < max && src[i]; i++) {
		size_t k = escape_byte((unsigned char)src[i], e);

		if (n + k >= dstlen)
			break; /* truncate, but never in the middle of an escape */
		memcpy(dst + n, e, k);
		n += k;
	}
	dst[n] = '\0';
	return dst;
}
