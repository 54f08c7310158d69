/*
 * Call-site trace records (issue 5): the storage half of the tracer.
 *
 * The table is open-addressed by the site's hash. Writers are the traced
 * processes (find-or-claim, then relaxed atomic adds), sockmemctl reads and,
 * with --reset, frees. Nothing here locks or allocates: the shim calls it
 * from its slow paths, possibly inside a signal handler.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core.h"

/* A claimer fills a record in well under a microsecond; a finder that meets
 * a CLAIMED record waits this many polls for it (it may be its own site)
 * before probing on, so that two racing first hits rarely make two records. */
#define CLAIM_SPIN 2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= UINT64_C(0x100000001b3); /* FNV-1a prime, over 64-bit words */
	return h ^ (h >> 29);
}

static uint64_t mix_str(uint64_t h, const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i]; i++)
		h = mix(h, (unsigned char)s[i]);
	return h;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Concurrency: pure. */
uint64_t sockmem_trace_hash(const struct sockmem_trace *site)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	uint32_t depth = site->depth < SOCKMEM_TRACE_DEPTH ? site->depth : SOCKMEM_TRACE_DEPTH;

	h = mix(h, ((uint64_t)site->group << 32) | site->group_gen);
	for (uint32_t i = 0; i < depth; i++) {
		uint8_t o = site->obj[i];

		h = mix(h, site->pcs[i]);
		if (o < SOCKMEM_TRACE_OBJS && o < site->nobjs)
			h = mix_str(h, site->objs[o], SOCKMEM_TRACE_OBJ_PATH);
	}
	return mix(h, depth);
}

struct sockmem_trace *sockmem_trace_at(sockmem_seg_t *seg, uint32_t idx)
{
	return idx < seg->ntraces ? &seg->traces[idx] : NULL;
}

static void hit(struct sockmem_trace *t, int64_t bytes, uint32_t kind)
{
	atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->bytes, (uint64_t)(bytes > 0 ? bytes : 0),
				  memory_order_relaxed);
	atomic_fetch_or_explicit(&t->kinds, kind, memory_order_relaxed);
	atomic_store_explicit(&t->last_ns, realtime_ns(), memory_order_relaxed);
}

/* We own t (CLAIMED): copy the site in, count the first hit, publish. */
static void fill(struct sockmem_trace *t, const struct sockmem_trace *site, uint64_t h,
		 int64_t bytes, uint32_t kind)
{
	t->group = site->group;
	t->group_gen = site->group_gen;
	t->depth = site->depth;
	t->pid = site->pid;
	t->nobjs = site->nobjs;
	memcpy(t->pcs, site->pcs, sizeof(t->pcs));
	memcpy(t->obj, site->obj, sizeof(t->obj));
	memcpy(t->exe, site->exe, sizeof(t->exe));
	memcpy(t->objs, site->objs, sizeof(t->objs));
	t->exe[sizeof(t->exe) - 1] = '\0';
	for (uint32_t i = 0; i < SOCKMEM_TRACE_OBJS; i++)
		t->objs[i][SOCKMEM_TRACE_OBJ_PATH - 1] = '\0';
	atomic_store_explicit(&t->hash, h, memory_order_relaxed);
	atomic_store_explicit(&t->count, 0, memory_order_relaxed);
	atomic_store_explicit(&t->bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&t->kinds, 0, memory_order_relaxed);
	t->first_ns = realtime_ns();
	hit(t, bytes, kind);
	atomic_store_explicit(&t->state, SOCKMEM_LIVE, memory_order_release);
}

static bool same_site(struct sockmem_trace *t, const struct sockmem_trace *site, uint64_t h)
{
	return atomic_load_explicit(&t->hash, memory_order_relaxed) == h &&
	       t->group == site->group && t->group_gen == site->group_gen;
}

/* Wait (bounded) for a CLAIMED record to be published; its final state. */
static uint32_t settle(struct sockmem_trace *t)
{
	uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);

	for (int i = 0; st == SOCKMEM_CLAIMED && i < CLAIM_SPIN; i++) {
		cpu_relax();
		st = atomic_load_explicit(&t->state, memory_order_acquire);
	}
	return st;
}

/*
 * Find the site's record (probing from its hash) or claim a free one, and
 * count one hit of `bytes`. Returns 0, -EINVAL (bad site), -EROFS (read-only
 * mapping) or -ENOSPC (table full: the hit is not recorded).
 * Concurrency: lock-free; any thread of any process, signal handlers
 * included. Two first hits of one site racing may claim two records (the
 * reader merges records by hash).
 */
int sockmem_trace_add(sockmem_seg_t *seg, const struct sockmem_trace *site, int64_t bytes,
		      uint32_t kind)
{
	uint64_t h;

	if (!seg || !site || site->depth > SOCKMEM_TRACE_DEPTH || site->nobjs > SOCKMEM_TRACE_OBJS)
		return -EINVAL;
	if (seg->readonly)
		return -EROFS;
	if (seg->ntraces == 0)
		return -ENOSPC;
	h = sockmem_trace_hash(site);
	for (uint32_t n = 0; n < seg->ntraces; n++) {
		struct sockmem_trace *t = &seg->traces[(h + n) % seg->ntraces];
		uint32_t st = settle(t), free_ = SOCKMEM_FREE;

		if (st == SOCKMEM_FREE) {
			if (atomic_compare_exchange_strong(&t->state, &free_, SOCKMEM_CLAIMED)) {
				fill(t, site, h, bytes, kind);
				return 0;
			}
			st = settle(t); /* lost the claim: the winner may be our site */
		}
		if (st == SOCKMEM_LIVE && same_site(t, site, h)) {
			hit(t, bytes, kind);
			return 0;
		}
	}
	return -ENOSPC;
}

/*
 * Copy record `idx` out if it is LIVE, made safe to use: strings terminated,
 * depth, object count and object indices clamped (a corrupt or foreign
 * segment cannot make the reader index out of bounds). -ENOENT if not LIVE.
 * Concurrency: reads only; racy snapshot (counters keep moving).
 */
int sockmem_trace_read(sockmem_seg_t *seg, uint32_t idx, struct sockmem_trace *out)
{
	struct sockmem_trace *t = sockmem_trace_at(seg, idx);

	if (!t || atomic_load_explicit(&t->state, memory_order_acquire) != SOCKMEM_LIVE)
		return -ENOENT;
	memcpy(out, t, sizeof(*out));
	if (out->depth > SOCKMEM_TRACE_DEPTH)
		out->depth = SOCKMEM_TRACE_DEPTH;
	if (out->nobjs > SOCKMEM_TRACE_OBJS)
		out->nobjs = SOCKMEM_TRACE_OBJS;
	for (uint32_t i = 0; i < SOCKMEM_TRACE_DEPTH; i++)
		if (out->obj[i] >= out->nobjs)
			out->obj[i] = SOCKMEM_TRACE_NO_OBJ;
	out->exe[sizeof(out->exe) - 1] = '\0';
	for (uint32_t i = 0; i < SOCKMEM_TRACE_OBJS; i++)
		out->objs[i][SOCKMEM_TRACE_OBJ_PATH - 1] = '\0';
	return 0;
}

/*
 * Free every LIVE record of `group` and its descendants (SOCKMEM_NONE: all).
 * Returns the number freed, or -EROFS. Concurrency: lock-free against
 * writers; a hit landing on a record while it is freed may be lost or
 * counted to the next site that claims it (one hit: counts are a sample).
 */
int sockmem_trace_reset(sockmem_seg_t *seg, uint32_t group)
{
	int freed = 0;

	if (seg->readonly)
		return -EROFS;
	for (uint32_t i = 0; i < seg->ntraces; i++) {
		struct sockmem_trace *t = &seg->traces[i];
		uint32_t live = SOCKMEM_LIVE;

		if (atomic_load_explicit(&t->state, memory_order_acquire) != SOCKMEM_LIVE)
			continue;
		if (group != SOCKMEM_NONE && !sm_group_within(seg, t->group, group))
			continue;
		if (!atomic_compare_exchange_strong(&t->state, &live, SOCKMEM_DEAD))
			continue;
		atomic_store_explicit(&t->count, 0, memory_order_relaxed);
		atomic_store_explicit(&t->bytes, 0, memory_order_relaxed);
		atomic_store_explicit(&t->hash, 0, memory_order_relaxed);
		atomic_store_explicit(&t->state, SOCKMEM_FREE, memory_order_release);
		freed++;
	}
	return freed;
}
