/* Helpers shared by the unit tests. */
#ifndef SOCKMEM_TUTIL_H
#define SOCKMEM_TUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"
#include "sockmem/sockmem.h"

/* The namespace of the running test; unlinked by t_fini. */
static char t_ns[SOCKMEM_NS_MAX];

static inline sockmem_seg_t *t_open_opts(const char *name, struct sockmem_open_opts *o)
{
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg = NULL;
	int rc;

	snprintf(t_ns, sizeof(t_ns), "t-%s-%d", name, (int)getpid());
	sockmem_unlink(t_ns);
	o->ns = t_ns;
	o->create = true;
	rc = sockmem_open(o, &seg, err, sizeof(err));
	cr_assert_eq(rc, 0, "sockmem_open(%s): %d %s", t_ns, rc, err);
	return seg;
}

static inline sockmem_seg_t *t_open(const char *name)
{
	struct sockmem_open_opts o = {0};

	return t_open_opts(name, &o);
}

static inline void t_fini(void)
{
	if (t_ns[0])
		sockmem_unlink(t_ns);
}

static inline uint32_t t_group(sockmem_seg_t *seg, const char *path)
{
	uint32_t idx = SOCKMEM_NONE;
	int rc = sockmem_group_create(seg, path, &idx);

	cr_assert_eq(rc, 0, "group_create(%s): %d", path, rc);
	return idx;
}

static inline void t_limits(sockmem_seg_t *seg, uint32_t g, int64_t max, int64_t high, int64_t low)
{
	char err[SOCKMEM_ERRLEN];
	int rc = sockmem_group_set_limits(seg, g, max, high, low, err, sizeof(err));

	cr_assert_eq(rc, 0, "set_limits: %d %s", rc, err);
}

static inline int64_t t_usage(sockmem_seg_t *seg, uint32_t g)
{
	return atomic_load(&sockmem_group_at(seg, g)->usage);
}

#endif
