/*
 * A stand-in for <criterion/criterion.h> used only by the TSan build.
 *
 * Criterion's runner crashes under ThreadSanitizer (SEGV inside
 * libcriterion before the first test), so the TSan build compiles the
 * Criterion test sources it wants (the core's stress and cache tests) against
 * this header instead: each Test() registers itself; main() (tsan_main.c)
 * runs every test in a forked child with the suite's init/fini and a timeout,
 * like Criterion does, and exits non-zero if any failed. Only the subset of
 * the API those sources use is provided.
 */
#ifndef SOCKMEM_TSAN_CRITERION_H
#define SOCKMEM_TSAN_CRITERION_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct crs_suite {
	void (*init)(void);
	void (*fini)(void);
	double timeout;
	const char *description;
	bool disabled;
};

struct crs_test {
	const char *suite, *name;
	void (*fn)(void);
	struct crs_suite *s;
	void (*init)(void);
	void (*fini)(void);
	double timeout;
	const char *description;
	bool disabled;
	struct crs_test *next;
};

void crs_register(struct crs_test *t);
void crs_fail(bool fatal, const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void crs_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void crs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TestSuite(sname, ...) static struct crs_suite crs_suite_##sname = {__VA_ARGS__}

#define Test(sname, tname, ...)                                                                    \
	static void crs_fn_##sname##_##tname(void);                                                \
	static struct crs_test crs_t_##sname##_##tname = {.suite = #sname,                         \
							  .name = #tname,                          \
							  .fn = crs_fn_##sname##_##tname,          \
							  .s = &crs_suite_##sname,                 \
							  __VA_ARGS__};                            \
	__attribute__((constructor)) static void crs_reg_##sname##_##tname(void)                   \
	{                                                                                          \
		crs_register(&crs_t_##sname##_##tname);                                            \
	}                                                                                          \
	static void crs_fn_##sname##_##tname(void)

/* The message is optional, as in Criterion: "" supplies an empty format. */
#define crs_check(fatal, cond, str, ...)                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			crs_fail(fatal, __FILE__, __LINE__, str, " " __VA_ARGS__);                 \
	} while (0)

#define cr_assert(c, ...)	   crs_check(true, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...)	   crs_check(false, (c), #c, __VA_ARGS__)
#define cr_assert_eq(a, b, ...)	   crs_check(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)   crs_check(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)	   crs_check(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)   crs_check(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)	   crs_check(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)   crs_check(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_null(a, ...)	   crs_check(true, (a) == NULL, #a " == NULL", __VA_ARGS__)
#define cr_assert_not_null(a, ...) crs_check(true, (a) != NULL, #a " != NULL", __VA_ARGS__)
#define cr_expect_eq(a, b, ...)	   crs_check(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)   crs_check(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)	   crs_check(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)   crs_check(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)	   crs_check(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)   crs_check(false, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_null(a, ...)	   crs_check(false, (a) == NULL, #a " == NULL", __VA_ARGS__)
#define cr_expect_not_null(a, ...) crs_check(false, (a) != NULL, #a " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                                \
	crs_check(true, strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)                                                                \
	crs_check(false, strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_log_info(...)  crs_log(__VA_ARGS__)
#define cr_log_warn(...)  crs_log(__VA_ARGS__)
#define cr_skip_test(...) crs_skip(" " __VA_ARGS__)

#endif
