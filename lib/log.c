/*
 * Logging: allocation-free, one write(2) per line, errno preserved.
 *
 * Called from slow paths of the preloaded shim, possibly inside a signal
 * handler or while libc's allocator is not usable, so it formats into a stack
 * buffer and never calls malloc, stdio streams or locale-dependent code
 * beyond vsnprintf (which glibc implements without allocating for the plain
 * conversions used here).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int sm_log_level = SM_LOG_WARN;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* Append with truncation; returns the new length (never beyond cap - 1). */
static size_t put(char *buf, size_t n, size_t cap, const char *s)
{
	while (*s && n + 1 < cap)
		buf[n++] = *s++;
	buf[n] = '\0';
	return n;
}

/* Decimal of a non-negative pid without snprintf (cheap, signal-safe). */
static size_t put_uint(char *buf, size_t n, size_t cap, unsigned long v)
{
	char tmp[24];
	size_t i = sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	return put(buf, n, cap, tmp + i);
}

/* Message text can carry strings from the environment or the shared segment
 * (names another member wrote): a control byte there must not start a new
 * line or drive the terminal, so each becomes '?'. */
static void neutralise(char *s, size_t n)
{
	for (size_t i = 0; i < n && s[i]; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
}

/* Concurrency: callable from any thread and from signal handlers. */
void sm_vlog(int level, const char *fmt, va_list ap)
{
	int saved = errno;
	char buf[512];
	size_t n = 0;
	int len;

	if (level > sm_log_level)
		return;
	if (level < 0)
		level = 0;
	if (level > SM_LOG_DEBUG)
		level = SM_LOG_DEBUG;
	n = put(buf, n, sizeof(buf), "sockmem[");
	n = put(buf, n, sizeof(buf), program_invocation_short_name ?: "?");
	n = put(buf, n, sizeof(buf), ":");
	n = put_uint(buf, n, sizeof(buf), (unsigned long)getpid());
	n = put(buf, n, sizeof(buf), "]: ");
	n = put(buf, n, sizeof(buf), level_names[level]);
	n = put(buf, n, sizeof(buf), ": ");
	len = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	if (len > 0) {
		neutralise(buf + n, sizeof(buf) - n - 1);
		n += (size_t)len < sizeof(buf) - n - 1 ? (size_t)len : sizeof(buf) - n - 2;
	}
	buf[n++] = '\n';
	/* One write so lines from several processes do not interleave. */
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* nothing sensible to do */
	}
	errno = saved;
}

void sm_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sm_vlog(level, fmt, ap);
	va_end(ap);
}

/* Concurrency: none needed (writes only the caller's buffer). */
int sm_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		neutralise(err, errlen); /* callers print it as one line */
	}
	errno = saved;
	return rc;
}
