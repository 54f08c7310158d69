/* Sizes for humans: parse and format. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "config.h"
#include "internal.h"
#include "sockmem/sockmem.h"

struct pcase {
	const char *in;
	int rc;
	int64_t v;
};

static const struct pcase parse_cases[] = {
	{"0", 0, 0},
	{"123", 0, 123},
	{"64K", 0, 65536},
	{"64k", 0, 65536},
	{"64KB", 0, 65536},
	{"64KiB", 0, 65536},
	{"64kib", 0, 65536},
	{"64M", 0, 64 << 20},
	{"1G", 0, 1 << 30},
	{"2T", 0, INT64_C(2) << 40},
	{"512B", 0, 512},
	{"max", 0, SOCKMEM_UNLIMITED},
	{"9223372036854775807", 0, INT64_MAX},
	{"9223372036854775808", -ERANGE, 0},
	{"99999999999999999999", -ERANGE, 0},
	{"8388608T", -ERANGE, 0},
	{"8388607T", 0, INT64_C(8388607) << 40},
	{"", -EINVAL, 0},
	{"-1", -EINVAL, 0},
	{"+1", -EINVAL, 0},
	{" 1", -EINVAL, 0},
	{"1 ", -EINVAL, 0},
	{"1.5M", -EINVAL, 0},
	{"1X", -EINVAL, 0},
	{"1Ki", -EINVAL, 0},
	{"1iB", -EINVAL, 0},
	{"1KBB", -EINVAL, 0},
	{"K", -EINVAL, 0},
	{"MAX", -EINVAL, 0},
	{"maxx", -EINVAL, 0},
};

Test(util, parse_size_table)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct pcase *c = &parse_cases[i];
		int64_t v = -42;
		int rc = sockmem_parse_size(c->in, &v);

		cr_expect_eq(rc, c->rc, "parse(\"%s\") = %d, want %d", c->in, rc, c->rc);
		if (c->rc == 0)
			cr_expect_eq(v, c->v, "parse(\"%s\") = %lld, want %lld", c->in,
				     (long long)v, (long long)c->v);
		else
			cr_expect_eq(v, -42, "parse(\"%s\") wrote its output on error", c->in);
	}
	cr_expect_eq(sockmem_parse_size(NULL, &(int64_t){0}), -EINVAL);
}

struct fcase {
	int64_t v;
	const char *out;
};

static const struct fcase format_cases[] = {
	{0, "0"},
	{512, "512"},
	{1023, "1023"},
	{1024, "1K"},
	{65536, "64K"},
	{65536 + 6554, "70.4K"},
	{64 << 20, "64M"},
	{(64 << 20) + (1 << 19), "64.5M"},
	{INT64_C(3) << 30, "3G"},
	{INT64_C(5) << 40, "5T"},
	{SOCKMEM_UNLIMITED, "max"},
	{-2048, "-2K"},
};

Test(util, format_size_table)
{
	char buf[32];

	for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct fcase *c = &format_cases[i];

		cr_expect_str_eq(sockmem_format_size(c->v, buf, sizeof(buf)), c->out,
				 "format(%lld)", (long long)c->v);
	}
	/* Truncates safely. */
	cr_expect_str_eq(sockmem_format_size(65536, buf, 2), "6");
}

Test(util, format_parse_roundtrip)
{
	char buf[32];
	int64_t v;

	for (int64_t x = 1; x < (INT64_C(1) << 42); x = x * 3 + 1024) {
		int64_t exact = x & ~INT64_C(1023);

		sockmem_format_size(exact, buf, sizeof(buf));
		if (strchr(buf, '.'))
			continue;
		cr_assert_eq(sockmem_parse_size(buf, &v), 0, "%s", buf);
		cr_expect_eq(v, exact, "%s", buf);
	}
}

Test(util, now_is_monotonic)
{
	uint64_t a = sockmem_now_ns(), b = sockmem_now_ns();

	cr_expect(a > 0);
	cr_expect(b >= a);
}

Test(util, ns_and_shm_name)
{
	char buf[128];

	cr_expect_eq(sockmem_ns_valid("u1000"), 0);
	cr_expect_eq(sockmem_ns_valid("a.b_c-9"), 0);
	cr_expect_eq(sockmem_ns_valid(""), -EINVAL);
	cr_expect_eq(sockmem_ns_valid("a/b"), -EINVAL);
	cr_expect_eq(sockmem_ns_valid(".."), -EINVAL);
	cr_expect_eq(sockmem_ns_valid("a b"), -EINVAL);
	memset(buf, 'x', 64);
	buf[64] = '\0';
	cr_expect_eq(sockmem_ns_valid(buf), -EINVAL, "64 characters do not fit with the NUL");
	buf[63] = '\0';
	cr_expect_eq(sockmem_ns_valid(buf), 0, "63 characters are the most");
	cr_expect_eq(sockmem_shm_name("t1", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "/sockmem-t1");
	cr_expect_eq(sockmem_shm_name("t/1", buf, sizeof(buf)), -EINVAL);
}

/* One line, one write, the documented prefix, errno untouched. */
Test(util, log_line_format)
{
	int fds[2], saved = dup(2), len;
	char buf[600], want[64];

	cr_assert_eq(pipe(fds), 0);
	dup2(fds[1], 2);
	errno = ENOTSOCK;
	sm_log(SM_LOG_WARN, "hello %d", 42);
	cr_expect_eq(errno, ENOTSOCK, "errno preserved");
	sm_log(SM_LOG_DEBUG, "not shown at the default level");
	dup2(saved, 2);
	close(fds[1]);
	len = (int)read(fds[0], buf, sizeof(buf) - 1);
	cr_assert_gt(len, 0);
	buf[len] = '\0';
	snprintf(want, sizeof(want), ":%d]: warning: hello 42\n", (int)getpid());
	cr_expect(strncmp(buf, "sockmem[", 8) == 0, "%s", buf);
	cr_expect(strstr(buf, want) != NULL, "\"%s\" should contain \"%s\"", buf, want);
	cr_expect_eq(strchr(buf, '\n'), buf + len - 1, "exactly one line: %s", buf);
}

Test(util, log_truncates_long_messages)
{
	int fds[2], saved = dup(2), len;
	char big[2000], buf[4096];

	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(pipe(fds), 0);
	dup2(fds[1], 2);
	sm_log(SM_LOG_ERROR, "%s", big);
	dup2(saved, 2);
	close(fds[1]);
	len = (int)read(fds[0], buf, sizeof(buf));
	cr_expect_leq(len, 512);
	cr_expect_eq(buf[len - 1], '\n', "still ends the line");
}

Test(util, fail_fills_message)
{
	char err[16];

	errno = EBADF;
	cr_expect_eq(sm_fail(err, sizeof(err), -EINVAL, "value %s is bad", "xyzxyzxyz"), -EINVAL);
	cr_expect_str_eq(err, "value xyzxyzxyz");
	cr_expect_eq(errno, EBADF);
	cr_expect_eq(sm_fail(NULL, 0, -EIO, "ignored"), -EIO);
}

/* Untrusted text in one-line messages (issue 7, finding F1). */
Test(util, escape_control_bytes)
{
	char out[64];

	cr_expect_str_eq(sm_escape(out, sizeof(out), "tena\n", 64), "tena\\n");
	cr_expect_str_eq(sm_escape(out, sizeof(out), "a\r\tb\\c", 64), "a\\r\\tb\\\\c");
	cr_expect_str_eq(sm_escape(out, sizeof(out), "\x1b[2J\x7f\xff", 64), "\\x1b[2J\\x7f\\xff");
	cr_expect_str_eq(sm_escape(out, sizeof(out), "abcdef", 3), "abc", "at most max bytes");
	cr_expect_str_eq(sm_escape(out, 6, "ab\ncd", 64), "ab\\nc", "truncated to fit");
	cr_expect_str_eq(sm_escape(out, 5, "abc\x01", 64), "abc", "never half an escape");
	cr_expect_str_eq(sm_escape(out, sizeof(out), NULL, 64), "");
}

Test(util, config_error_is_one_line)
{
	const char *env[] = {"SOCKMEM_GROUP=tena\n\x1b[31mfake: line", NULL};
	struct sm_config cfg;
	char err[SOCKMEM_ERRLEN] = "";

	cr_assert_eq(sm_config_parse(env, &cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strpbrk(err, "\n\r\x1b") == NULL, "one line: \"%s\"", err);
	cr_expect(strstr(err, "tena\\n\\x1b[31mfake") != NULL, "value escaped: \"%s\"", err);
}

Test(util, fail_message_has_no_control_bytes)
{
	char err[64];

	cr_expect_eq(sm_fail(err, sizeof(err), -EINVAL, "name \"%s\"", "a\nb\x1b"), -EINVAL);
	cr_expect_str_eq(err, "name \"a?b?\"");
}

/* SO_SNDTIMEO as a deadline: none, ordinary, and one too long to hold (the
 * kernel keeps finite timeouts up to LONG_MAX jiffies: 2^64 ns and 50 ms
 * once wrapped to now + 50 ms, and the wait gave up at once). */
Test(util, timeout_deadline)
{
	const uint64_t now = 5000000000ull;

	cr_expect_eq(sm_timeout_deadline(now, 0, 0), 0, "no timeout");
	cr_expect_eq(sm_timeout_deadline(now, 0, 1), now + 1000);
	cr_expect_eq(sm_timeout_deadline(now, 5, 250000), now + 5250000000ull);
	cr_expect_eq(sm_timeout_deadline(now, (long)SM_TIMEO_FOREVER_S, 0),
		     now + SM_TIMEO_FOREVER_S * 1000000000ull, "a century still fits");
	cr_expect_eq(sm_timeout_deadline(now, 18446744073l, 760000), UINT64_MAX);
	cr_expect_eq(sm_timeout_deadline(now, 9223372036854775l, 0), UINT64_MAX);
	cr_expect_eq(sm_timeout_deadline(UINT64_MAX - 10, 1, 0), UINT64_MAX, "clock near the end");
	cr_expect_eq(sm_timeout_deadline(now, -1, 0), UINT64_MAX);
	cr_expect_eq(sm_timeout_deadline(now, 1, -1), UINT64_MAX);
}
