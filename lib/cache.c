/*
 * Per-thread charge caches: registration, attach/detach, the slow paths
 * behind lib/cache.h, and the remote drain.
 *
 * Protocol (see lib/cache.h and struct sockmem_slot): the owner raises
 * `busy`, then checks `steal`; a drainer raises `steal`, forces a barrier on
 * every CPU running a registered process (membarrier GLOBAL_EXPEDITED), then
 * waits for `busy` to drop before touching `stock`. The owner's fast path
 * pays only a compiler barrier; the slow paths here use a real fence.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cache.h"
#include "core.h"

#define RLX(p)	  atomic_load_explicit((p), memory_order_relaxed)
#define ACQ(p)	  atomic_load_explicit((p), memory_order_acquire)
#define SET(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

/* Bounded waits: a drainer holds `steal` for at most about WAIT_NS. */
#define WAIT_NS	      2000000u
#define OWNER_WAIT_NS 50000000u

bool sm_cache_fence;
static _Atomic int registered_pid;
static _Atomic int mb_supported = -1; /* -1 unknown, 0 no, 1 yes */

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

static bool mb_global_supported(void)
{
	int s = atomic_load(&mb_supported);

	if (s < 0) {
		long q = membarrier(MEMBARRIER_CMD_QUERY);

		s = q >= 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ? 1 : 0;
		atomic_store(&mb_supported, s);
	}
	return s == 1;
}

/*
 * Register the calling process for GLOBAL_EXPEDITED barriers, once per pid
 * (a forked child is a new mm and registers again). Without it, owners pay a
 * real fence on every fast path: sm_cache_fence is set before this process's
 * first slot goes live. Concurrency: any thread; idempotent.
 */
void sm_cache_register_process(void)
{
	int me = getpid();

	if (atomic_load(&registered_pid) == me)
		return;
	if (!mb_global_supported() || membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) < 0) {
		if (!__atomic_load_n(&sm_cache_fence, __ATOMIC_RELAXED))
			sm_log(SM_LOG_INFO, "membarrier unavailable; caches use real fences");
		__atomic_store_n(&sm_cache_fence, true, __ATOMIC_RELAXED);
	}
	atomic_thread_fence(memory_order_seq_cst);
	atomic_store(&registered_pid, me);
}

/* Concurrency: any thread. See core.h. */
bool sm_slot_unsteal(struct sockmem_slot *s)
{
	uint32_t holder = ACQ(&s->steal);

	if (holder == 0)
		return true;
	if (holder == (uint32_t)getpid() || !sm_pid_gone(holder))
		return false; /* a drain in progress here or elsewhere */
	if (atomic_compare_exchange_strong(&s->steal, &holder, 0))
		sm_log(SM_LOG_WARN,
		       "cache slot released: its drainer (pid %u) died in the middle of a "
		       "drain",
		       holder);
	return ACQ(&s->steal) == 0;
}

static bool waited_too_long(uint64_t start, uint64_t limit)
{
	sched_yield();
	return sockmem_now_ns() - start > limit;
}

enum enter { ENTER_OK, ENTER_NESTED, ENTER_TIMEOUT };

/* The owner's slow-path entry: raise busy with a real fence; back off (with
 * busy down, so the drainer can finish) while a drain is in progress. */
static enum enter owner_enter(struct sockmem_slot *s, uint64_t limit)
{
	uint64_t start = 0;

	if (RLX(&s->busy))
		return ENTER_NESTED; /* a signal handler inside our own update */
	for (;;) {
		SET(&s->busy, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if (!ACQ(&s->steal))
			return ENTER_OK;
		atomic_store_explicit(&s->busy, 0, memory_order_release);
		if (!start)
			start = sockmem_now_ns();
		while (ACQ(&s->steal))
			if (waited_too_long(start, limit)) {
				/* Longer than any drain takes: was its drainer
				 * killed? If so, take the slot back and retry. */
				if (!sm_slot_unsteal(s))
					return ENTER_TIMEOUT;
				start = sockmem_now_ns();
			}
	}
}

/* ---- attach / detach -------------------------------------------------- */

static void init_slot(struct sockmem_slot *s, uint32_t proc, uint32_t group)
{
	/* `steal` is left alone unless its holder died: a live drainer that
	 * raced with the previous owner's detach still owns it and releases it
	 * (the fast path backs off until then). */
	sm_slot_unsteal(s);
	SET(&s->busy, 0);
	SET(&s->stock, 0);
	SET(&s->sock, 0);
	SET(&s->proc, proc);
	SET(&s->group, group);
	s->tid = (int32_t)gettid();
	atomic_store_explicit(&s->state, SOCKMEM_LIVE, memory_order_release);
}

/* Concurrency: the calling thread only; lock-free claim (CAS FREE->CLAIMED). */
int sockmem_cache_attach(sockmem_seg_t *seg, uint32_t proc, int64_t batch, struct sockmem_cache *c)
{
	struct sockmem_proc *p = sockmem_proc_at(seg, proc);
	uint32_t start;

	c->seg = seg;
	c->slot = NULL;
	c->proc = proc;
	c->batch = batch > 0 ? batch : SOCKMEM_DEFAULT_BATCH;
	if (c->batch > SOCKMEM_BATCH_MAX) /* 2 x batch must not overflow */
		c->batch = SOCKMEM_BATCH_MAX;
	if (!p || ACQ(&p->state) != SOCKMEM_LIVE || p->group >= seg->ngroups) {
		c->group = SOCKMEM_NONE;
		return -EINVAL;
	}
	c->group = p->group;
	sm_cache_register_process();
	c->fence = __atomic_load_n(&sm_cache_fence, __ATOMIC_RELAXED);
	start = (uint32_t)gettid() % seg->nslots; /* spread claimers out */
	for (uint32_t n = 0; n < seg->nslots; n++) {
		struct sockmem_slot *s = &seg->slots[(start + n) % seg->nslots];
		uint32_t free_state = SOCKMEM_FREE;

		if (RLX(&s->state) == SOCKMEM_FREE &&
		    atomic_compare_exchange_strong(&s->state, &free_state, SOCKMEM_CLAIMED)) {
			init_slot(s, proc, c->group);
			c->slot = s;
			return 0;
		}
	}
	return -ENOSPC;
}

/* Concurrency: the owning thread, at thread exit (or before unregister). */
void sockmem_cache_detach(struct sockmem_cache *c)
{
	struct sockmem_slot *s = c->slot;
	struct sockmem_proc *p;
	int64_t stock, sock;

	if (!s)
		return;
	if (owner_enter(s, OWNER_WAIT_NS) == ENTER_TIMEOUT)
		sm_log(SM_LOG_WARN, "cache detach: a drainer did not finish; detaching anyway");
	stock = atomic_exchange(&s->stock, 0);
	sock = atomic_exchange(&s->sock, 0);
	p = sockmem_proc_at(c->seg, c->proc);
	if (p)
		ADD(&p->sock, sock);
	SET(&s->proc, SOCKMEM_NONE);
	/* busy before state: once FREE, a new owner may raise busy itself. */
	atomic_store_explicit(&s->busy, 0, memory_order_release);
	atomic_store_explicit(&s->state, SOCKMEM_FREE, memory_order_release);
	c->slot = NULL;
	sockmem_uncharge(c->seg, c->group, stock);
}

/* ---- slow paths ------------------------------------------------------- */

/* A charge that bypasses the slot: the process record carries the socket
 * bytes. A failed charge is forced if asked to. */
static bool direct_done(struct sockmem_cache *c, int64_t nr, bool force, bool ok)
{
	struct sockmem_proc *p = sockmem_proc_at(c->seg, c->proc);

	if (!ok && force) {
		sockmem_charge(c->seg, c->group, nr);
		ok = true;
	}
	if (ok && p)
		ADD(&p->sock, nr);
	return ok;
}

/* Drain the failing level's caches once, then retry. Must not run with our
 * own slot's busy raised (the drain would wait for it). */
static bool drain_retry(struct sockmem_cache *c, int64_t nr, uint32_t lvl, uint32_t *fail,
			bool count)
{
	if (lvl != SOCKMEM_NONE)
		sockmem_drain_caches(c->seg, lvl);
	return sm_try_charge(c->seg, c->group, nr, fail, count);
}

/* No slot, or our own fast path was interrupted (`nested`: then no drain,
 * which would wait for the interrupted owner, i.e. for ourselves). */
static bool charge_uncached(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail,
			    bool nested)
{
	uint32_t lvl = SOCKMEM_NONE;
	/* Counted only if it is the final answer (nested: no drain follows);
	 * a forced charge counts its own event instead. */
	bool ok = sm_try_charge(c->seg, c->group, nr, &lvl, nested && !force);

	if (!ok && !nested)
		ok = drain_retry(c, nr, lvl, &lvl, !force);
	if (fail)
		*fail = lvl;
	return direct_done(c, nr, force, ok);
}

/* With busy raised: cover the deficit, refilling a whole batch if possible.
 * On failure *lvl names the level that refused. */
static bool refill(struct sockmem_cache *c, struct sockmem_slot *s, int64_t nr, uint32_t *lvl)
{
	/* A negative stock is never valid (another member wrote it): none. */
	int64_t stock = RLX(&s->stock) > 0 ? RLX(&s->stock) : 0, deficit = nr - stock;

	if (deficit <= 0) {
		SET(&s->stock, stock - nr);
	} else if (deficit <= INT64_MAX - c->batch &&
		   sm_try_charge(c->seg, c->group, deficit + c->batch, lvl, false)) {
		SET(&s->stock, c->batch);
	} else if (sm_try_charge(c->seg, c->group, deficit, lvl, false)) {
		SET(&s->stock, 0);
	} else {
		return false;
	}
	SET(&s->sock, sm_add_sat(RLX(&s->sock), nr)); /* sock: any value a member wrote */
	return true;
}

/* Concurrency: the owning thread (or a signal handler on it). */
bool sm_cache_charge_slow(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail)
{
	struct sockmem_slot *s = c->slot;
	uint32_t lvl = SOCKMEM_NONE;
	enum enter e;
	bool ok;

	if (nr <= 0)
		return true;
	if (c->group == SOCKMEM_NONE) {
		if (fail)
			*fail = SOCKMEM_NONE;
		return force;
	}
	e = s ? owner_enter(s, WAIT_NS) : ENTER_TIMEOUT;
	if (e != ENTER_OK)
		return charge_uncached(c, nr, force, fail, e == ENTER_NESTED);
	ok = refill(c, s, nr, &lvl);
	atomic_store_explicit(&s->busy, 0, memory_order_release);
	if (ok)
		return true;
	/* At a limit: take every cache of that level back (ours included, which
	 * is why busy is down now), then retry the whole amount uncached. */
	ok = drain_retry(c, nr, lvl, &lvl, !force);
	if (fail)
		*fail = lvl;
	return direct_done(c, nr, force, ok);
}

/* Concurrency: the owning thread (or a signal handler on it). */
void sm_cache_uncharge_slow(struct sockmem_cache *c, int64_t nr)
{
	struct sockmem_slot *s = c->slot;
	struct sockmem_proc *p;
	int64_t stock, back = 0;

	if (nr <= 0 || c->group == SOCKMEM_NONE)
		return;
	if (!s || owner_enter(s, WAIT_NS) != ENTER_OK) {
		p = sockmem_proc_at(c->seg, c->proc);
		if (p)
			ADD(&p->sock, -nr);
		sockmem_uncharge(c->seg, c->group, nr);
		return;
	}
	stock = sm_add_sat(RLX(&s->stock), nr);
	if (stock > 2 * c->batch) {
		back = stock - c->batch;
		stock = c->batch;
	}
	SET(&s->stock, stock);
	SET(&s->sock, sm_add_sat(RLX(&s->sock), -nr));
	atomic_store_explicit(&s->busy, 0, memory_order_release);
	sockmem_uncharge(c->seg, c->group, back);
}

bool sockmem_cache_charge(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail)
{
	return sm_cache_charge(c, nr, force, fail);
}

void sockmem_cache_uncharge(struct sockmem_cache *c, int64_t nr)
{
	sm_cache_uncharge(c, nr);
}

/* ---- remote drain ----------------------------------------------------- */

#define CHUNK 256

/* Phase 2 for one stolen slot: wait for the owner to leave, take the stock. */
static int64_t take_stock(sockmem_seg_t *seg, struct sockmem_slot *s)
{
	uint64_t start = sockmem_now_ns();
	int64_t stock = 0;

	while (ACQ(&s->busy))
		if (waited_too_long(start, WAIT_NS))
			goto out; /* owner preempted inside an update, or dead */
	if (ACQ(&s->state) == SOCKMEM_LIVE) {
		stock = atomic_exchange(&s->stock, 0);
		sockmem_uncharge(seg, RLX(&s->group), stock);
	}
out:
	atomic_store_explicit(&s->steal, 0, memory_order_release);
	return stock > 0 ? stock : 0; /* a negative stock (never valid) returned nothing */
}

/* Drain slots [from, to) charging `group` or below. */
static int64_t drain_chunk(sockmem_seg_t *seg, uint32_t group, uint32_t me, uint32_t from,
			   uint32_t to)
{
	uint64_t mine[CHUNK / 64] = {0};
	int64_t taken = 0;
	bool any = false, barrier;

	for (uint32_t i = from; i < to; i++) {
		struct sockmem_slot *s = &seg->slots[i];
		uint32_t zero = 0;

		if (ACQ(&s->state) != SOCKMEM_LIVE || RLX(&s->stock) == 0 ||
		    !sm_group_within(seg, RLX(&s->group), group))
			continue;
		/* steal names us: if we are killed before lowering it, the
		 * owner, a reaper or the next claimer can tell and lower it. */
		if (!atomic_compare_exchange_strong(&s->steal, &zero, me))
			continue; /* another drainer (or a reaper) has it */
		mine[(i - from) / 64] |= UINT64_C(1) << ((i - from) % 64);
		any = true;
	}
	if (!any)
		return 0;
	/* Every owner either sees `steal` or has its `busy` visible to us.
	 * Without the barrier (a sandbox denying it), an owner on the
	 * fence-free fast path could be inside an update we cannot see: give
	 * the slots back untouched rather than race its plain stores. */
	barrier = !mb_global_supported() || membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
	if (!barrier)
		sm_log_once(SM_LOG_WARN,
			    "membarrier(GLOBAL_EXPEDITED) failed: %m; caches are not drained");
	atomic_thread_fence(memory_order_seq_cst);
	for (uint32_t i = from; i < to; i++) {
		struct sockmem_slot *s = &seg->slots[i];

		if (!(mine[(i - from) / 64] & (UINT64_C(1) << ((i - from) % 64))))
			continue;
		if (barrier)
			taken = sm_add_sat(taken, take_stock(seg, s));
		else
			atomic_store_explicit(&s->steal, 0, memory_order_release);
	}
	return taken;
}

/* Concurrency: any thread of any process, not holding its own slot busy.
 * One membarrier per chunk of slots that had something to take. */
int64_t sockmem_drain_caches(sockmem_seg_t *seg, uint32_t group)
{
	uint32_t me = (uint32_t)getpid();
	int64_t taken = 0;

	if (seg->readonly || group >= seg->ngroups)
		return 0;
	for (uint32_t i = 0; i < seg->nslots; i += CHUNK) {
		uint32_t end = seg->nslots - i < CHUNK ? seg->nslots : i + CHUNK;

		taken = sm_add_sat(taken, drain_chunk(seg, group, me, i, end));
	}
	return taken;
}
