/*
 * Transparency: the same calls give the same return values and errno with
 * and without the shim (active, and preloaded with no group).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pl_harness.h"

static void capture(const struct pl_opts *o, char *out, size_t len)
{
	struct pl_child c;
	size_t n = 0;
	int status;

	cr_assert_eq(pl_spawn(&c, "sockmem-pl-transp", NULL, o), 0);
	for (int i = 0; i < 200 && n + 1 < len; i++) {
		char line[256];

		if (pl_line(&c, line, sizeof(line), 5000) != 0)
			break;
		n += (size_t)snprintf(out + n, len - n, "%s\n", line);
	}
	status = pl_wait(&c, 10000);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
	cr_assert_gt(n, 1000, "too little output (%zu bytes)", n);
}

static void compare(const char *a, const char *b, const char *what)
{
	const char *pa = a, *pb = b;

	while (*pa && *pb) {
		const char *ea = strchr(pa, '\n'), *eb = strchr(pb, '\n');

		cr_expect(ea - pa == eb - pb && !strncmp(pa, pb, (size_t)(ea - pa)),
			  "%s differs:\n  libc: %.*s\n  shim: %.*s", what, (int)(ea - pa), pa,
			  (int)(eb - pb), pb);
		pa = ea + 1, pb = eb + 1;
	}
	cr_expect(!*pa && !*pb, "%s: output lengths differ", what);
}

Test(transparency, bad_calls_same_rc_and_errno)
{
	static char plain[16384], active[16384], idle[16384], far[16384], near[16384];
	struct pl_opts o = {0};
	char ns[64];

	pl_ns(ns, sizeof(ns), "transp");
	capture(&o, plain, sizeof(plain));
	o = (struct pl_opts){.ns = ns, .group = "t", .preload = true};
	capture(&o, active, sizeof(active));
	o = (struct pl_opts){.ns = ns, .preload = true};
	capture(&o, idle, sizeof(idle));
	/* Under a limit, vector sends are admitted before the call: their
	 * headers and vectors are read before the kernel checks them. */
	o = (struct pl_opts){
		.ns = ns, .group = "far", .preload = true, .extra = {"SOCKMEM_MAX=1G"}};
	capture(&o, far, sizeof(far));
	o = (struct pl_opts){
		.ns = ns, .group = "near", .preload = true, .extra = {"SOCKMEM_MAX=256K"}};
	capture(&o, near, sizeof(near));
	compare(plain, active, "group active");
	compare(plain, idle, "preloaded, no group");
	compare(plain, far, "group far from its max");
	compare(plain, near, "group near its max");
	cr_expect(strstr(plain, "send badbuf") != NULL);
	sockmem_unlink(ns);
}

/* pl-bufs: run to "ready", call lift (may be NULL), let it finish; the
 * output without the "imposed" line (returned in *imposed). */
static void capture_bufs(const struct pl_opts *o, void (*lift)(const char *), char *out, size_t len,
			 int *imposed)
{
	struct pl_child c;
	size_t n = 0;
	int status;

	*imposed = -1;
	cr_assert_eq(pl_spawn(&c, "sockmem-pl-bufs", NULL, o), 0);
	for (int i = 0; i < 100 && n + 1 < len; i++) {
		char line[256];

		if (pl_line(&c, line, sizeof(line), 5000) != 0)
			break;
		if (sscanf(line, "imposed %d", imposed) == 1)
			continue;
		if (strcmp(line, "ready") == 0) {
			if (lift)
				lift(o->ns);
			pl_go(&c);
			continue;
		}
		n += (size_t)snprintf(out + n, len - n, "%s\n", line);
	}
	status = pl_wait(&c, 10000);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
	cr_assert_gt(n, 500, "too little output (%zu bytes)", n);
}

static void lift_max(const char *ns)
{
	struct sockmem_open_opts so = {.ns = ns};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;
	uint32_t g;

	cr_assert_eq(sockmem_open(&so, &seg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_lookup(seg, "b", &g), 0);
	cr_assert_eq(sockmem_group_set_limits(seg, g, SOCKMEM_UNLIMITED, SOCKMEM_KEEP, SOCKMEM_KEEP,
					      err, sizeof(err)),
		     0, "%s", err);
	sockmem_close(seg);
}

/*
 * Under a max the shim imposes buffer sizes (a share of the budget), yet
 * getsockopt reports what the program set, or what the kernel had before
 * (SO_*BUF of negative or huge values, FORCE, SO_BUF_LOCK, an accepted
 * socket that inherited its listener's sizes); once the max is lifted the
 * kernel holds the program's own settings again, locks included.
 */
Test(transparency, buffer_sizes_under_a_limit_and_after)
{
	static char plain[8192], limited[8192];
	struct pl_opts o = {0};
	int imposed_plain, imposed;
	char ns[64];

	pl_ns(ns, sizeof(ns), "transp-bufs");
	capture_bufs(&o, NULL, plain, sizeof(plain), &imposed_plain);
	o = (struct pl_opts){.ns = ns,
			     .group = "b",
			     .preload = true,
			     .extra = {"SOCKMEM_MAX=64M", "SOCKMEM_RECONCILE_MS=20"}};
	capture_bufs(&o, lift_max, limited, sizeof(limited), &imposed);
	cr_expect_eq(imposed_plain, 0);
	cr_expect_gt(imposed, 0, "the shim imposed nothing: the test shows nothing");
	compare(plain, limited, "max 64M, then none");
	sockmem_unlink(ns);
}
