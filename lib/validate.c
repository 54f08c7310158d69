/*
 * Validation of a mapped segment image. Never trusts, never repairs.
 *
 * Safe on arbitrary bytes (fuzzed): every read is preceded by a bounds check
 * against `len`, and records are copied out with memcpy before their fields
 * are examined, so a concurrently changing or hostile image cannot make the
 * checks read outside [base, base + len).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define CAP_MAX (1u << 20)

struct table {
	const char *name;
	uint32_t cap, size, want;
	uint64_t off;
};

static int check_header(const struct sockmem_header *h, size_t len, uint32_t uid, char *err,
			size_t errlen)
{
	if (h->magic != SOCKMEM_SHM_MAGIC)
		return sm_fail(err, errlen, -EPROTO, "bad magic 0x%016llx (not a sockmem segment)",
			       (unsigned long long)h->magic);
	if (h->abi_version != SOCKMEM_ABI_VERSION)
		return sm_fail(err, errlen, -EPROTO, "ABI version %u, this library speaks %u",
			       h->abi_version, SOCKMEM_ABI_VERSION);
	if (h->header_size != sizeof(*h))
		return sm_fail(err, errlen, -EPROTO, "header size %u, expected %zu", h->header_size,
			       sizeof(*h));
	if (h->total_size != len)
		return sm_fail(err, errlen, -EPROTO,
			       "size %llu in the header but the file has %zu bytes (truncated?)",
			       (unsigned long long)h->total_size, len);
	if (h->owner_uid != uid)
		return sm_fail(err, errlen, -EPROTO, "header says owner uid %u, file owner is %u",
			       h->owner_uid, uid);
	if (memchr(h->ns, '\0', sizeof(h->ns)) == NULL)
		return sm_fail(err, errlen, -EPROTO, "namespace name without terminator");
	return 0;
}

static int check_table(const struct table *t, const struct table *all, int n, size_t len, char *err,
		       size_t errlen)
{
	uint64_t end;

	if (t->size != t->want)
		return sm_fail(err, errlen, -EPROTO, "%s record size %u, expected %u", t->name,
			       t->size, t->want);
	if (t->cap == 0 || t->cap > CAP_MAX)
		return sm_fail(err, errlen, -EPROTO, "%s capacity %u out of range (1..%u)", t->name,
			       t->cap, CAP_MAX);
	if (t->off % SOCKMEM_CACHELINE || t->off < sizeof(struct sockmem_header) || t->off > len)
		return sm_fail(err, errlen, -EPROTO, "%s table offset %llu invalid", t->name,
			       (unsigned long long)t->off);
	end = t->off + (uint64_t)t->cap * t->size; /* cap, size < 2^32: no overflow */
	if (end > len)
		return sm_fail(err, errlen, -EPROTO,
			       "%s table [%llu, %llu) extends past the end (%zu bytes)", t->name,
			       (unsigned long long)t->off, (unsigned long long)end, len);
	for (int i = 0; i < n; i++) {
		uint64_t oend = all[i].off + (uint64_t)all[i].cap * all[i].size;

		if (&all[i] != t && t->off < oend && all[i].off < end)
			return sm_fail(err, errlen, -EPROTO, "%s table overlaps the %s table",
				       t->name, all[i].name);
	}
	return 0;
}

static int check_tables(const struct sockmem_header *h, size_t len, char *err, size_t errlen)
{
	const struct table t[4] = {
		{"group", h->group_capacity, h->group_size, sizeof(struct sockmem_group),
		 h->group_offset},
		{"process", h->proc_capacity, h->proc_size, sizeof(struct sockmem_proc),
		 h->proc_offset},
		{"slot", h->slot_capacity, h->slot_size, sizeof(struct sockmem_slot),
		 h->slot_offset},
		{"trace", h->trace_capacity, h->trace_size, sizeof(struct sockmem_trace),
		 h->trace_offset},
	};
	int rc;

	for (int i = 0; i < 4; i++) {
		rc = check_table(&t[i], t, i, len, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Copy record i of a table (bounds already checked by check_tables). */
static void copy_rec(void *dst, const void *base, uint64_t off, uint32_t size, uint32_t i)
{
	memcpy(dst, (const char *)base + off + (uint64_t)i * size, size);
}

static uint32_t state_of(const void *rec)
{
	uint32_t s;

	memcpy(&s, rec, sizeof(s)); /* state is the first word of a trace record */
	return s;
}

static unsigned components(const char *path)
{
	unsigned n = 1;

	for (; *path; path++)
		n += *path == '/';
	return n;
}

static int check_group_parent(const void *base, const struct sockmem_header *h, uint32_t i,
			      const struct sockmem_group *g, char *err, size_t errlen)
{
	struct sockmem_group p;
	size_t plen;

	if (g->parent == SOCKMEM_NONE) {
		if (g->depth != 0 || strchr(g->path, '/'))
			return sm_fail(err, errlen, -EPROTO,
				       "group %u \"%s\" has no parent but depth %u", i, g->path,
				       g->depth);
		return 0;
	}
	if (g->parent >= h->group_capacity)
		return sm_fail(err, errlen, -EPROTO,
			       "group %u parent index %u out of range (capacity %u)", i, g->parent,
			       h->group_capacity);
	copy_rec(&p, base, h->group_offset, h->group_size, g->parent);
	if (p.state != SOCKMEM_LIVE)
		return sm_fail(err, errlen, -EPROTO, "group %u parent %u is not live (state %u)", i,
			       g->parent, p.state);
	if (g->depth != p.depth + 1 || g->depth > SM_DEPTH_MAX)
		return sm_fail(err, errlen, -EPROTO, "group %u depth %u, parent %u has depth %u", i,
			       g->depth, g->parent, p.depth);
	plen = strnlen(p.path, sizeof(p.path));
	if (plen >= sizeof(p.path) || strncmp(g->path, p.path, plen) != 0 || g->path[plen] != '/')
		return sm_fail(err, errlen, -EPROTO,
			       "group %u path is not below its parent %u's path", i, g->parent);
	/* One component more than the parent, not more: with the parent's own
	 * check (by induction from depth 0 with no '/'), depth is the number of
	 * '/' in the path, and a parent's path is strictly shorter than its
	 * child's, so no chain of parents can loop. */
	if (strchr(g->path + plen + 1, '/'))
		return sm_fail(err, errlen, -EPROTO,
			       "group %u \"%s\" has depth %u but %u path components (parent %u)", i,
			       g->path, g->depth, components(g->path), g->parent);
	return 0;
}

static int check_group(const void *base, const struct sockmem_header *h, uint32_t i, char *err,
		       size_t errlen)
{
	struct sockmem_group g;
	const char *why = NULL;

	copy_rec(&g, base, h->group_offset, h->group_size, i);
	if (g.state > SOCKMEM_DEAD)
		return sm_fail(err, errlen, -EPROTO, "group %u has invalid state %u", i, g.state);
	if (g.state != SOCKMEM_LIVE)
		return 0;
	if (memchr(g.path, '\0', sizeof(g.path)) == NULL)
		return sm_fail(err, errlen, -EPROTO, "group %u name without terminator", i);
	if (sockmem_path_valid(g.path, &why) < 0)
		return sm_fail(err, errlen, -EPROTO, "group %u has an invalid name: %s", i, why);
	if (g.max < 0 || g.high < 0 || g.low < 0)
		return sm_fail(err, errlen, -EPROTO, "group %u \"%s\" has a negative limit", i,
			       g.path);
	/* The counter never stores a negative usage (uncharge clamps at 0). */
	if (g.usage < 0 || g.peak < 0)
		return sm_fail(err, errlen, -EPROTO,
			       "group %u \"%s\" has a negative usage (%lld) or peak (%lld)", i,
			       g.path, (long long)g.usage, (long long)g.peak);
	return check_group_parent(base, h, i, &g, err, errlen);
}

/* FNV-1a of a NUL-terminated path (a private copy). */
static uint64_t path_hash(const char *p)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
	return h;
}

/*
 * No two live groups share a path (creation looks the path up and adds it
 * under the table lock, so a healthy segment never has two; lookup would
 * find only the first). An open-addressing table of live indices, sized
 * from a count of live groups, keeps this linear in the capacity (up to
 * 2^20 groups: at most 2^21 entries, 24 MB, only for a table that large).
 * Reading a live image, a group removed and re-created at a higher index
 * while this scan runs could look like a duplicate; attach validates again
 * before refusing (validate_settled, lib/segment.c).
 */
static int check_duplicates(const void *base, const struct sockmem_header *h, char *err,
			    size_t errlen)
{
	struct sockmem_group g, o;
	uint32_t live = 0, size = 16, used = 0, *idx;
	uint64_t *hash;
	int rc = 0;

	for (uint32_t i = 0; i < h->group_capacity; i++) {
		uint32_t st;

		memcpy(&st,
		       (const char *)base + h->group_offset + (uint64_t)i * h->group_size +
			       offsetof(struct sockmem_group, state),
		       sizeof(st));
		live += st == SOCKMEM_LIVE;
	}
	if (live < 2)
		return 0;
	while (size < 2 * (uint64_t)live)
		size <<= 1;
	idx = malloc(size * sizeof(*idx));
	hash = malloc(size * sizeof(*hash));
	if (!idx || !hash) {
		rc = sm_fail(err, errlen, -ENOMEM, "out of memory checking %u group names", live);
		goto out;
	}
	memset(idx, 0xff, size * sizeof(*idx)); /* SOCKMEM_NONE */
	/* `used + 1 < size`: the image may gain live groups after the count;
	 * the table never fills, so every probe ends. */
	for (uint32_t i = 0; rc == 0 && i < h->group_capacity && used + 1 < size; i++) {
		uint64_t hv;
		uint32_t pos;

		copy_rec(&g, base, h->group_offset, h->group_size, i);
		if (g.state != SOCKMEM_LIVE)
			continue;
		g.path[sizeof(g.path) - 1] = '\0'; /* checked by check_group, but copied again */
		hv = path_hash(g.path);
		for (pos = (uint32_t)hv & (size - 1); idx[pos] != SOCKMEM_NONE;
		     pos = (pos + 1) & (size - 1)) {
			if (hash[pos] != hv)
				continue;
			copy_rec(&o, base, h->group_offset, h->group_size, idx[pos]);
			o.path[sizeof(o.path) - 1] = '\0';
			if (strcmp(o.path, g.path) == 0) {
				rc = sm_fail(err, errlen, -EPROTO,
					     "groups %u and %u have the same path \"%s\"", idx[pos],
					     i, g.path);
				break;
			}
		}
		idx[pos] = i;
		hash[pos] = hv;
		used++;
	}
out:
	free(idx);
	free(hash);
	return rc;
}

/* Concurrency: pure function. */
int sockmem_limits_check(int64_t max, int64_t high, int64_t low, char *err, size_t errlen)
{
	int64_t cap;

	if (max < 0 || high < 0 || low < 0)
		return sm_fail(err, errlen, -EINVAL, "%s must not be negative",
			       max < 0	  ? "max"
			       : high < 0 ? "high"
					  : "low");
	/* An unlimited high means "no high watermark", not "above max". */
	if (high != SOCKMEM_UNLIMITED && high > max)
		return sm_fail(err, errlen, -EINVAL, "high (%lld) must not exceed max (%lld)",
			       (long long)high, (long long)max);
	cap = high < max ? high : max;
	if (low > cap)
		return sm_fail(err, errlen, -EINVAL, "low (%lld) must not exceed %s (%lld)",
			       (long long)low, high < max ? "high" : "max", (long long)cap);
	return 0;
}

static int limits_of(const struct sockmem_group *g, uint32_t i, char *err, size_t errlen)
{
	char why[SOCKMEM_ERRLEN], path[SOCKMEM_PATH_MAX];
	int64_t max = atomic_load_explicit(&g->max, memory_order_relaxed);
	int64_t high = atomic_load_explicit(&g->high, memory_order_relaxed);
	int64_t low = atomic_load_explicit(&g->low, memory_order_relaxed);

	if (sockmem_limits_check(max, high, low, why, sizeof(why)) == 0)
		return 0;
	memcpy(path, g->path, sizeof(path));
	path[sizeof(path) - 1] = '\0';
	return sm_fail(err, errlen, -EPROTO, "group %u \"%s\" has inconsistent limits: %s", i, path,
		       why);
}

/* low <= high <= max of every live group, on an image nobody changes
 * (sockmem_validate); attach checks them under the table lock instead. */
static int check_limits(const void *base, const struct sockmem_header *h, char *err, size_t errlen)
{
	struct sockmem_group g;
	int rc;

	for (uint32_t i = 0; i < h->group_capacity; i++) {
		copy_rec(&g, base, h->group_offset, h->group_size, i);
		if (g.state != SOCKMEM_LIVE)
			continue;
		rc = limits_of(&g, i, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_procs(const void *base, const struct sockmem_header *h, char *err, size_t errlen)
{
	struct sockmem_proc p;

	for (uint32_t i = 0; i < h->proc_capacity; i++) {
		copy_rec(&p, base, h->proc_offset, h->proc_size, i);
		if (p.state > SOCKMEM_DEAD)
			return sm_fail(err, errlen, -EPROTO,
				       "process record %u has invalid state %u", i, p.state);
		if (p.state == SOCKMEM_LIVE && p.group >= h->group_capacity)
			return sm_fail(
				err, errlen, -EPROTO,
				"process record %u group index %u out of range (capacity %u)", i,
				p.group, h->group_capacity);
	}
	return 0;
}

static int check_slots(const void *base, const struct sockmem_header *h, char *err, size_t errlen)
{
	struct sockmem_slot s;

	for (uint32_t i = 0; i < h->slot_capacity; i++) {
		copy_rec(&s, base, h->slot_offset, h->slot_size, i);
		if (s.state > SOCKMEM_DEAD)
			return sm_fail(err, errlen, -EPROTO, "slot %u has invalid state %u", i,
				       s.state);
		if (s.state != SOCKMEM_LIVE)
			continue;
		if (s.proc >= h->proc_capacity || s.group >= h->group_capacity)
			return sm_fail(
				err, errlen, -EPROTO,
				"slot %u process %u / group %u out of range (capacities %u/%u)", i,
				s.proc, s.group, h->proc_capacity, h->group_capacity);
		/* Stock is bytes charged and not yet used: never negative. */
		if (s.stock < 0)
			return sm_fail(err, errlen, -EPROTO, "slot %u has a negative stock (%lld)",
				       i, (long long)s.stock);
	}
	return 0;
}

static int check_traces(const void *base, const struct sockmem_header *h, char *err, size_t errlen)
{
	struct sockmem_trace t;

	for (uint32_t i = 0; i < h->trace_capacity; i++) {
		copy_rec(&t, base, h->trace_offset, h->trace_size, i);
		if (state_of(&t) > SOCKMEM_DEAD)
			return sm_fail(err, errlen, -EPROTO, "trace %u has invalid state %u", i,
				       state_of(&t));
		if (state_of(&t) == SOCKMEM_LIVE &&
		    (t.group >= h->group_capacity || t.depth > SOCKMEM_TRACE_DEPTH ||
		     t.nobjs > SOCKMEM_TRACE_OBJS))
			return sm_fail(err, errlen, -EPROTO,
				       "trace %u group %u / depth %u / objects %u out of range", i,
				       t.group, t.depth, t.nobjs);
	}
	return 0;
}

/*
 * Every check below reads the header from the one copy in *h, taken once at
 * the start: the caller builds its view of the segment from that same copy
 * (sm_validate_copy), so a writer changing the shared header during or after
 * validation cannot hand the caller capacities or offsets nobody checked.
 * Concurrency: reads only; safe on any bytes (see top of file).
 */
int sm_validate_copy(const void *base, size_t len, uint32_t file_uid, struct sockmem_header *h,
		     char *err, size_t errlen)
{
	int rc;

	if (!base || len < sizeof(*h))
		return sm_fail(err, errlen, -EPROTO,
			       "truncated: %zu bytes, smaller than the header", len);
	memcpy(h, base, sizeof(*h));
	rc = check_header(h, len, file_uid, err, errlen);
	if (rc == 0)
		rc = check_tables(h, len, err, errlen);
	for (uint32_t i = 0; rc == 0 && i < h->group_capacity; i++)
		rc = check_group(base, h, i, err, errlen);
	if (rc == 0)
		rc = check_duplicates(base, h, err, errlen);
	if (rc == 0)
		rc = check_procs(base, h, err, errlen);
	if (rc == 0)
		rc = check_slots(base, h, err, errlen);
	if (rc == 0)
		rc = check_traces(base, h, err, errlen);
	return rc;
}

/* Concurrency: reads only; safe on any bytes (see top of file). The limits
 * are checked here too: the caller's image is not being changed (attach,
 * which reads a live segment, checks them under the table lock). */
int sockmem_validate(const void *base, size_t len, uint32_t file_uid, char *err, size_t errlen)
{
	struct sockmem_header h;
	int rc;

	rc = sm_validate_copy(base, len, file_uid, &h, err, errlen);
	if (rc == 0)
		rc = check_limits(base, &h, err, errlen);
	return rc;
}
