/*
 * Helpers of the segment fuzz targets (see segfuzz.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "fuzz.h"
#include "segfuzz.h"

void *fz_aligned_copy(const void *data, size_t size)
{
	size_t cap = (size + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, cap ? cap : 64);

	FZ_CHECK(p != NULL);
	memset(p, 0, cap ? cap : 64);
	memcpy(p, data, size);
	return p;
}

void fz_seg_wrap(sockmem_seg_t *seg, void *base, size_t len)
{
	struct sockmem_header h;

	memcpy(&h, base, sizeof(h));
	memset(seg, 0, sizeof(*seg));
	seg->hdr = base;
	seg->size = len;
	seg->groups = (void *)((char *)base + h.group_offset);
	seg->procs = (void *)((char *)base + h.proc_offset);
	seg->slots = (void *)((char *)base + h.slot_offset);
	seg->traces = (void *)((char *)base + h.trace_offset);
	seg->ngroups = h.group_capacity;
	seg->nprocs = h.proc_capacity;
	seg->nslots = h.slot_capacity;
	seg->ntraces = h.trace_capacity;
	seg->readonly = false;
	snprintf(seg->name, sizeof(seg->name), "/sockmem-fuzz");
}

int fz_validate(const void *base, size_t len, uint32_t uid)
{
	char err[SOCKMEM_ERRLEN];
	int rc;

	memset(err, 'X', sizeof(err));
	rc = sockmem_validate(base, len, uid, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == -EPROTO);
	if (rc < 0) {
		FZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		FZ_CHECK(strpbrk(err, "\n\r") == NULL);
	}
	return rc;
}

/* A live group's statistics agree with the tree they describe. */
static void check_group(sockmem_seg_t *seg, uint32_t i)
{
	struct sockmem_group_stat st, ps;
	uint32_t j = SOCKMEM_NONE;

	FZ_CHECK(sockmem_group_stat(seg, i, &st) == 0);
	FZ_CHECK(st.idx == i && sockmem_path_valid(st.path, NULL) == 0);
	FZ_CHECK(st.depth <= SM_DEPTH_MAX);
	if (st.parent == SOCKMEM_NONE) {
		FZ_CHECK(st.depth == 0 && strchr(st.path, '/') == NULL);
	} else {
		FZ_CHECK(sockmem_group_stat(seg, st.parent, &ps) == 0);
		FZ_CHECK(st.depth == ps.depth + 1);
		FZ_CHECK(strncmp(st.path, ps.path, strlen(ps.path)) == 0);
		FZ_CHECK(sm_group_within(seg, i, st.parent));
	}
	/* Duplicate names are not refused by validation: lookup finds the first. */
	FZ_CHECK(sockmem_group_lookup(seg, st.path, &j) == 0 && j <= i);
	FZ_CHECK(strcmp(sockmem_group_at(seg, j)->path, st.path) == 0);
	FZ_CHECK(st.max >= 0 && st.high >= 0 && st.low >= 0);
	FZ_CHECK(st.current >= 0 && st.peak >= 0 && st.cached >= 0 && st.sock >= 0);
}

void fz_check_accepted(sockmem_seg_t *seg, uint32_t uid)
{
	uint32_t n = 0;

	if (fz_known("counter-overflow"))
		fz_mask_counters(seg);
	/* The owner and the size are part of what was accepted. */
	FZ_CHECK(sockmem_validate(seg->hdr, seg->size, uid + 1, NULL, 0) == -EPROTO);
	FZ_CHECK(sockmem_validate(seg->hdr, seg->size - 1, uid, NULL, 0) == -EPROTO);
	FZ_CHECK(seg->ngroups > 0 && seg->nprocs > 0 && seg->nslots > 0);
	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1)) {
		FZ_CHECK(i < seg->ngroups && n++ < seg->ngroups);
		check_group(seg, i);
	}
	for (uint32_t i = 0; i < seg->nslots; i++) {
		struct sockmem_slot *s = sockmem_slot_at(seg, i);

		if (s->state == SOCKMEM_LIVE)
			FZ_CHECK(s->group < seg->ngroups && s->proc < seg->nprocs && s->stock >= 0);
	}
}

/* The counter on one index: charge, fail, uncharge, pressure. */
static void exercise_counter(sockmem_seg_t *seg, uint32_t i)
{
	uint32_t fail = 0;

	if (sockmem_try_charge(seg, i, 4096, &fail))
		sockmem_uncharge(seg, i, 4096);
	else
		FZ_CHECK(fail == SOCKMEM_NONE || fail < seg->ngroups);
	sockmem_charge(seg, i, 1);
	sockmem_uncharge(seg, i, 1);
	(void)sockmem_under_pressure(seg, i);
	sockmem_enter_pressure(seg, i, 1);
}

static void clamp(_Atomic int64_t *v, int64_t lo, int64_t hi, int64_t to)
{
	if (*v < lo || *v > hi)
		*v = to;
}

void fz_mask_counters(sockmem_seg_t *seg)
{
	const int64_t big = INT64_C(1) << 60, small = INT64_C(1) << 40;

	for (uint32_t i = 0; i < seg->ngroups; i++) {
		struct sockmem_group *g = &seg->groups[i];

		clamp(&g->usage, 0, big, 0);
		clamp(&g->peak, 0, big, 0);
		clamp(&g->max, 0, SOCKMEM_UNLIMITED, SOCKMEM_UNLIMITED);
		clamp(&g->high, 0, SOCKMEM_UNLIMITED, SOCKMEM_UNLIMITED);
		clamp(&g->low, 0, SOCKMEM_UNLIMITED, 0);
		clamp(&g->sockets, -small, small, 0);
		clamp(&g->processes, -small, small, 0);
	}
	for (uint32_t i = 0; i < seg->nprocs; i++) {
		clamp(&seg->procs[i].sock, -small, small, 0);
		clamp(&seg->procs[i].sockets, -small, small, 0);
	}
	for (uint32_t i = 0; i < seg->nslots; i++) {
		clamp(&seg->slots[i].stock, 0, small, 0);
		clamp(&seg->slots[i].sock, -small, small, 0);
	}
}

/* A record read back is safe to use whatever the segment holds. */
static void check_trace(const struct sockmem_trace *t)
{
	FZ_CHECK(t->depth <= SOCKMEM_TRACE_DEPTH && t->nobjs <= SOCKMEM_TRACE_OBJS);
	for (uint32_t f = 0; f < SOCKMEM_TRACE_DEPTH; f++)
		FZ_CHECK(t->obj[f] < t->nobjs || t->obj[f] == SOCKMEM_TRACE_NO_OBJ);
	FZ_CHECK(memchr(t->exe, '\0', sizeof(t->exe)) != NULL);
	for (uint32_t o = 0; o < SOCKMEM_TRACE_OBJS; o++)
		FZ_CHECK(memchr(t->objs[o], '\0', sizeof(t->objs[o])) != NULL);
}

/* The trace table: read every record, count hits (new and existing sites),
 * reset. */
static void exercise_traces(sockmem_seg_t *seg)
{
	struct sockmem_trace t, site;

	memset(&site, 0, sizeof(site));
	site.depth = 1;
	site.pcs[0] = 0x1234;
	site.obj[0] = 0;
	site.nobjs = 1;
	snprintf(site.objs[0], sizeof(site.objs[0]), "/usr/bin/fuzz");
	snprintf(site.exe, sizeof(site.exe), "fuzz");
	for (uint32_t i = 0; i <= seg->ntraces; i++) {
		if (sockmem_trace_read(seg, i, &t) != 0)
			continue;
		check_trace(&t);
		(void)sockmem_trace_hash(&t);
		(void)sockmem_trace_add(seg, &t, 1, SOCKMEM_TRACE_KIND_MAX);
	}
	(void)sockmem_trace_add(seg, &site, 4096, SOCKMEM_TRACE_KIND_THROTTLE);
	(void)sockmem_trace_add(seg, &site, 4096, SOCKMEM_TRACE_KIND_MAX);
	FZ_CHECK(sockmem_trace_reset(seg, 0) >= 0);
	FZ_CHECK(sockmem_trace_reset(seg, SOCKMEM_NONE) >= 0);
	FZ_CHECK(sockmem_trace_at(seg, seg->ntraces) == NULL);
}

void fz_exercise(sockmem_seg_t *seg)
{
	struct sockmem_group_stat st;
	uint32_t n = 0;

	if (fz_known("counter-overflow"))
		fz_mask_counters(seg);
	for (uint32_t i = 0; i <= seg->ngroups; i++) {
		if (sockmem_group_stat(seg, i, &st) == 0) {
			FZ_CHECK(memchr(st.path, '\0', sizeof(st.path)) != NULL);
			(void)sockmem_group_lookup(seg, st.path, NULL);
		}
		(void)sm_group_within(seg, i, 0);
		(void)sm_group_within(seg, SOCKMEM_NONE, i);
		exercise_counter(seg, i);
	}
	exercise_counter(seg, SOCKMEM_NONE);
	exercise_traces(seg);
	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE && n <= seg->ngroups;
	     i = sockmem_group_next(seg, i + 1))
		n++;
	FZ_CHECK(n <= seg->ngroups);
	FZ_CHECK(sockmem_proc_at(seg, seg->nprocs) == NULL);
	FZ_CHECK(sockmem_slot_at(seg, seg->nslots) == NULL);
	FZ_CHECK(sockmem_group_at(seg, seg->ngroups) == NULL);
}

static void reset_lock(sockmem_seg_t *seg)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&seg->hdr->table_lock, &a);
	pthread_mutexattr_destroy(&a);
}

/* A thread's cache on process record i: attach, charge, uncharge, detach. */
static void exercise_cache(sockmem_seg_t *seg, uint32_t i)
{
	struct sockmem_cache c;
	uint32_t fail = 0;

	if (sockmem_cache_attach(seg, i, 4096, &c) == -EINVAL)
		return;
	(void)sockmem_cache_charge(&c, 100, false, &fail);
	(void)sockmem_cache_charge(&c, 10000, true, &fail);
	sockmem_cache_uncharge(&c, 100);
	sockmem_cache_uncharge(&c, 10000);
	sockmem_cache_detach(&c);
}

void fz_exercise_slow(sockmem_seg_t *seg)
{
	char err[SOCKMEM_ERRLEN];
	int64_t bytes = 0;
	uint32_t idx = 0;

	reset_lock(seg);
	for (uint32_t i = 0; i < seg->nslots; i++) {
		seg->slots[i].busy = 0;
		seg->slots[i].steal = 0;
	}
	if (fz_known("counter-overflow"))
		fz_mask_counters(seg);
	for (uint32_t i = 0; i < seg->nprocs; i++)
		if (seg->procs[i].state == SOCKMEM_LIVE)
			exercise_cache(seg, i);
	(void)sockmem_drain_caches(seg, 0);
	FZ_CHECK(sockmem_reap(seg, &bytes) >= 0 && bytes >= 0);
	if (sockmem_group_create(seg, "fz/new", &idx) == 0) {
		FZ_CHECK(sockmem_group_lookup(seg, "fz/new", NULL) == 0);
		(void)sockmem_group_set_limits(seg, idx, 1 << 20, 1 << 19, 0, err, sizeof(err));
		(void)sockmem_group_remove(seg, "fz/new");
	}
}
