/*
 * Harness of the sockmemctl tests: run the built sockmemctl (and helpers) as
 * child processes with a built environment, capture stdout, stderr and the
 * exit status, with a timeout. Nothing here is preloaded: the Criterion
 * runner never is.
 *
 * Each Test() runs in its own process; call h_setup() first (the fixture in
 * each test file does) to get a namespace unique to the test, which
 * h_teardown() unlinks.
 */
#ifndef CTL_HARNESS_H
#define CTL_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define H_TIMEOUT_MS 30000

struct h_out {
	int status; /* exit code; 128+signal if killed; -1 on timeout */
	char *out, *err;
	size_t outlen, errlen;
};

void h_setup(void);
void h_teardown(void);
const char *h_ns(void);		       /* this test's namespace */
const char *h_build(const char *name); /* path of a build output (static buffer ring) */
const char *h_src(const char *name);   /* path of a file in tests/ctl/ */
const char *h_tmpdir(void);	       /* a directory private to the test */

/* Extra "NAME=value" strings for the next children (NULL-terminated list,
 * kept by pointer); they override the inherited ones. */
void h_env(const char *const *extra);

/* Run argv[0] (a path) with the test environment; `input` (may be NULL) is
 * its stdin. Returns r->status. */
int h_run(struct h_out *r, const char *const argv[], const char *input);
/* Run sockmemctl with `args` (NULL-terminated, without "sockmemctl"). */
int h_ctl(struct h_out *r, const char *const args[]);
void h_free(struct h_out *r);

/* Start a background child whose stdout we read; waits until it prints a
 * line starting with `ready` (NULL: do not wait). Returns the pid (> 0). */
pid_t h_start(const char *const argv[], const char *ready);
/* Wait for a background child (up to the timeout, then SIGKILL). */
int h_wait(pid_t pid, int timeout_ms);

/* Is `s` exactly one non-empty line ending in '\n'? */
bool h_one_line(const char *s);
/* printf into a static buffer ring (32 entries). */
const char *h_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* CTL_HARNESS_H */
