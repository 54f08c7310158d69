/*
 * Per-thread charge cache: the inline fast paths (private header).
 *
 * A thread's cache is a slot in the shared segment (struct sockmem_slot):
 * `stock` is bytes already charged to the group's counter and not yet used.
 * A charge that fits in the stock, and an uncharge that keeps the stock under
 * its bound (2 x batch), touch only the thread's own cache line with plain
 * loads and stores: no atomic read-modify-write, no fence.
 *
 * Remote draining ("take back idle cache bytes, in every process") must not
 * race with the owner's plain read-modify-write of `stock`. The owner
 * brackets each update with `busy` and checks `steal` after raising `busy`;
 * a drainer raises `steal`, then forces a full memory barrier on every CPU
 * running a registered process (membarrier GLOBAL_EXPEDITED), then waits for
 * `busy` to drop. Either the owner's load of `steal` comes after that barrier
 * and sees it (the owner backs off to the slow path), or its store to `busy`
 * came before and the drainer sees it and waits. Where membarrier is missing,
 * sm_cache_fence is set and the owner pays a real fence instead.
 *
 * Async-signal-safety: a signal handler that charges while its thread is
 * inside a fast path finds `busy` already raised by its own thread and takes
 * the uncached slow path (atomics on the counter), so the interrupted update
 * is never torn.
 */
#ifndef SOCKMEM_CACHE_H
#define SOCKMEM_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sockmem/sockmem.h"

#define sm_likely(x)   __builtin_expect(!!(x), 1)
#define sm_unlikely(x) __builtin_expect(!!(x), 0)

/* True when membarrier(GLOBAL_EXPEDITED) is unavailable (set once, early). */
extern bool sm_cache_fence;

bool sm_cache_charge_slow(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail);
void sm_cache_uncharge_slow(struct sockmem_cache *c, int64_t nr);

/* Raise `busy`; false if the slot is being drained or already busy (nested).
 * fence: the cache's copy of sm_cache_fence. */
static inline bool sm_slot_enter(struct sockmem_slot *s, bool fence)
{
	if (atomic_load_explicit(&s->busy, memory_order_relaxed))
		return false; /* our own interrupted fast path: don't touch */
	atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
	if (sm_unlikely(fence))
		atomic_thread_fence(memory_order_seq_cst);
	else
		atomic_signal_fence(memory_order_seq_cst);
	/* acquire: pairs with the drainer's release of `steal`, so the stock
	 * it zeroed is what we read next (a plain load on x86-64). */
	if (sm_likely(!atomic_load_explicit(&s->steal, memory_order_acquire)))
		return true;
	atomic_store_explicit(&s->busy, 0, memory_order_release);
	return false;
}

static inline void sm_slot_exit(struct sockmem_slot *s)
{
	atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/*
 * The cached fast paths alone: true when the slot's stock covered the charge
 * (or took the uncharge back within its bound); false, with nothing done,
 * when the slow path must run. For callers that keep the slow path out of
 * line (the preload shim's per-call path: it saves errno only there).
 */
static inline bool sm_cache_try_charge(struct sockmem_cache *c, int64_t nr)
{
	struct sockmem_slot *s = c->slot;

	if (sm_likely(s != NULL) && sm_likely(sm_slot_enter(s, c->fence))) {
		int64_t stock = atomic_load_explicit(&s->stock, memory_order_relaxed);
		int64_t sock = atomic_load_explicit(&s->sock, memory_order_relaxed);

		/* A slot value near the int64 edge (only another member can put
		 * one there) takes the slow path, which saturates. */
		if (sm_likely(stock >= nr) && sm_likely(!__builtin_add_overflow(sock, nr, &sock))) {
			atomic_store_explicit(&s->stock, stock - nr, memory_order_relaxed);
			atomic_store_explicit(&s->sock, sock, memory_order_relaxed);
			sm_slot_exit(s);
			return true;
		}
		sm_slot_exit(s);
	}
	return false;
}

static inline bool sm_cache_try_uncharge(struct sockmem_cache *c, int64_t nr)
{
	struct sockmem_slot *s = c->slot;

	if (sm_likely(s != NULL) && sm_likely(sm_slot_enter(s, c->fence))) {
		int64_t stock = atomic_load_explicit(&s->stock, memory_order_relaxed);
		int64_t sock = atomic_load_explicit(&s->sock, memory_order_relaxed);

		if (sm_likely(!__builtin_add_overflow(stock, nr, &stock)) &&
		    sm_likely(stock <= 2 * c->batch) &&
		    sm_likely(!__builtin_sub_overflow(sock, nr, &sock))) {
			atomic_store_explicit(&s->stock, stock, memory_order_relaxed);
			atomic_store_explicit(&s->sock, sock, memory_order_relaxed);
			sm_slot_exit(s);
			return true;
		}
		sm_slot_exit(s);
	}
	return false;
}

/*
 * Charge `nr` socket bytes to the cache's group. `force`: memory the kernel
 * already holds; never fails. Otherwise false means some level would exceed
 * its max even after draining every cache of the group once; `*fail` names it.
 */
static inline bool sm_cache_charge(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail)
{
	return sm_cache_try_charge(c, nr) || sm_cache_charge_slow(c, nr, force, fail);
}

/* Uncharge `nr` socket bytes; the cache keeps up to 2 x batch. */
static inline void sm_cache_uncharge(struct sockmem_cache *c, int64_t nr)
{
	if (!sm_cache_try_uncharge(c, nr))
		sm_cache_uncharge_slow(c, nr);
}

#endif /* SOCKMEM_CACHE_H */
