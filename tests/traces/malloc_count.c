/*
 * Preload library for tests/traces: counts malloc/calloc/realloc calls and
 * prints "mallocs N" on stderr at exit. Used to show that a capture allocates
 * nothing: a run with thousands of captures makes no more allocations than a
 * run with one. sm_test_mallocs() lets a helper count what one stretch of
 * its own code allocated (the first capture, in a signal handler).
 */
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);

static unsigned long calls;

void *malloc(size_t n)
{
	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	return __libc_realloc(p, n);
}

unsigned long sm_test_mallocs(void);
unsigned long sm_test_mallocs(void)
{
	return __atomic_load_n(&calls, __ATOMIC_RELAXED);
}

__attribute__((destructor)) static void report(void)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "mallocs %lu\n",
			 __atomic_load_n(&calls, __ATOMIC_RELAXED));

	if (write(2, buf, (size_t)n) < 0)
		return;
}
