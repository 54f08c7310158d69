/*
 * libsockmem.so exports exactly the interposers, unversioned (an anonymous
 * version node), so that references to glibc's versioned symbols bind to
 * them. Read from the dynamic symbol table with nm -D.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pl_harness.h"

static const char *const expected[] = {
	"__read_chk",  "__recv_chk", "__recvfrom_chk", "accept",     "accept4",	 "close",
	"close_range", "dup",	     "dup2",	       "dup3",	     "fcntl",	 "fcntl64",
	"getsockopt",  "read",	     "readv",	       "recv",	     "recvfrom", "recvmmsg",
	"recvmsg",     "send",	     "sendfile",       "sendfile64", "sendmmsg", "sendmsg",
	"sendto",      "setsockopt", "socket",	       "socketpair", "splice",	 "write",
	"writev",
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

Test(exports, exactly_the_interposers_unversioned)
{
	char cmd[1200], line[512];
	bool seen[NEXPECTED] = {false};
	int extra = 0, total = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s'", pl_lib());
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p)) {
		char addr[64], type[8], name[256];
		size_t i;

		if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
			continue;
		total++;
		cr_expect(strchr(name, '@') == NULL, "versioned export: %s", name);
		for (i = 0; i < NEXPECTED; i++)
			if (!strcmp(name, expected[i]))
				break;
		if (i < NEXPECTED) {
			seen[i] = true;
			cr_expect(!strcmp(type, "T"), "%s is not a text symbol (%s)", name, type);
		} else {
			extra++;
			cr_expect(0, "unexpected export: %s", name);
		}
	}
	cr_assert_eq(pclose(p), 0, "nm failed");
	for (size_t i = 0; i < NEXPECTED; i++)
		cr_expect(seen[i], "missing export: %s", expected[i]);
	cr_expect_eq(extra, 0);
	cr_expect_eq(total, (int)NEXPECTED);
}

/* Interposers called from another library's constructor, before the
 * shim's constructor ran, reach libc (lazy binding trampolines). */
Test(exports, calls_before_the_shim_constructor_work)
{
	struct pl_opts o = {.group = "early", .preload = true};
	struct pl_child c;
	char ns[64], line[64];
	int status;

	pl_ns(ns, sizeof(ns), "early");
	o.ns = ns;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-early", NULL, &o), 0);
	cr_expect_eq(pl_line(&c, line, sizeof(line), 10000), 0);
	cr_expect_str_eq(line, "early 1");
	status = pl_wait(&c, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	sockmem_unlink(ns);
}
