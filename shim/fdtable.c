/*
 * The fd table and the pool of socket states (see fdtable.h).
 *
 * States live in a pool addressed by a 32-bit index (mmap'd chunks, never
 * unmapped), which lets the free and retired lists be lock-free stacks
 * whose head packs {tag, index} in one 64-bit word: the tag defeats ABA on
 * concurrent pops. Nothing here allocates with malloc or takes a lock, so
 * socket()/accept()/close() stay async-signal-safe.
 */
#include "fdtable.h"

#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "limit.h"

#define POOL_CHUNK 1024u
#define POOL_L1	   1024u
#define POOL_MAX   (POOL_CHUNK * POOL_L1)
#define LIST_EMPTY UINT32_MAX

static struct sm_sock *_Atomic pool_l1[POOL_L1];
static _Atomic uint32_t pool_next;		   /* next never-used index */
static _Atomic uint64_t free_head = LIST_EMPTY;	   /* {tag << 32 | idx} */
static _Atomic uint64_t retired_head = LIST_EMPTY; /* pushed by puts, taken by helper */

/* mmap a zeroed region and publish it in *slot unless someone beat us. */
static void *install_chunk(void *_Atomic *slot, size_t size)
{
	void *expect = NULL;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return atomic_load(slot);
	if (!atomic_compare_exchange_strong(slot, &expect, p)) {
		munmap(p, size);
		return expect;
	}
	return p;
}

static struct sm_sock *pool_at(uint32_t idx)
{
	struct sm_sock *c = atomic_load_explicit(&pool_l1[idx / POOL_CHUNK], memory_order_acquire);

	return c ? &c[idx % POOL_CHUNK] : NULL;
}

static struct sm_sock *pool_fresh(void)
{
	uint32_t idx = atomic_fetch_add(&pool_next, 1);
	struct sm_sock *c;

	if (idx >= POOL_MAX) {
		atomic_store(&pool_next, POOL_MAX);
		return NULL;
	}
	c = atomic_load_explicit(&pool_l1[idx / POOL_CHUNK], memory_order_acquire);
	if (!c)
		c = install_chunk((void *_Atomic *)&pool_l1[idx / POOL_CHUNK],
				  POOL_CHUNK * sizeof(struct sm_sock));
	if (!c)
		return NULL;
	c[idx % POOL_CHUNK].idx = idx;
	return &c[idx % POOL_CHUNK];
}

static void stack_push(_Atomic uint64_t *head, struct sm_sock *st)
{
	uint64_t old = atomic_load(head), new;

	do {
		atomic_store_explicit(&st->next, (uint32_t)old, memory_order_relaxed);
		new = ((old >> 32) + 1) << 32 | st->idx;
	} while (!atomic_compare_exchange_weak(head, &old, new));
}

static struct sm_sock *stack_pop(_Atomic uint64_t *head)
{
	uint64_t old = atomic_load(head), new;
	struct sm_sock *st;

	do {
		if ((uint32_t)old == LIST_EMPTY)
			return NULL;
		st = pool_at((uint32_t)old);
		/* st may be popped and reused concurrently: the tag makes our
		 * CAS fail then, and the pool memory itself is never unmapped. */
		new = ((old >> 32) + 1) << 32 |
		      atomic_load_explicit(&st->next, memory_order_relaxed);
	} while (!atomic_compare_exchange_weak(head, &old, new));
	return st;
}

struct sm_sock *sm_sock_new(int family, int type, uint64_t ino)
{
	struct sm_sock *st = stack_pop(&free_head);

	if (!st)
		st = pool_fresh();
	if (!st) {
		sm_log_once(SM_LOG_WARN, "socket state pool exhausted; new sockets unaccounted");
		return NULL;
	}
	atomic_store_explicit(&st->est, 0, memory_order_relaxed);
	atomic_store_explicit(&st->pending, 0, memory_order_relaxed);
	atomic_store_explicit(&st->tick, 0, memory_order_relaxed);
	atomic_store_explicit(&st->refs, 1, memory_order_relaxed);
	atomic_store_explicit(&st->epoch, sm_hot.epoch, memory_order_relaxed);
	st->owner_pid = sm_pid;
	st->family = (uint16_t)family;
	st->type = (uint16_t)type;
	st->ino = ino;
	sm_buf_init(st);
	return st;
}

void sm_sock_put(struct sm_sock *st)
{
	if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
		return;
	sm_sock_release(st);
	stack_push(&retired_head, st);
}

void sm_sock_recycle(void)
{
	uint64_t old = atomic_exchange(&retired_head, LIST_EMPTY);
	uint32_t idx = (uint32_t)old;

	if (idx == LIST_EMPTY)
		return;
	/* Every reader that could have loaded one of these from the table
	 * did so before it was removed; wait for them to finish. */
	urcu_bp_synchronize_rcu();
	while (idx != LIST_EMPTY) {
		struct sm_sock *st = pool_at(idx);

		idx = atomic_load_explicit(&st->next, memory_order_relaxed);
		stack_push(&free_head, st);
	}
}

static struct sm_sock *_Atomic *fd_slot(int fd, bool create)
{
	unsigned i = (unsigned)fd >> SM_FD_CHUNK_SHIFT;
	struct sm_fdchunk *c;

	if ((unsigned)fd >= SM_FD_MAX)
		return NULL;
	c = atomic_load_explicit(&sm_hot.fd_l1[i], memory_order_acquire);
	if (!c && create)
		c = install_chunk((void *_Atomic *)&sm_hot.fd_l1[i], sizeof(struct sm_fdchunk));
	return c ? &c->e[(unsigned)fd & (SM_FD_CHUNK - 1)] : NULL;
}

static bool fd_install(int fd, struct sm_sock *st, bool fresh)
{
	struct sm_sock *_Atomic *slot = fd_slot(fd, true);
	struct sm_sock *prev;

	if (!slot) {
		sm_log_once(SM_LOG_WARN,
			    "fd %d: no fd-table entry (beyond the table, or no memory for its "
			    "chunk); socket unaccounted",
			    fd);
		/* A fresh state was never counted (sm_sock_opened follows a
		 * successful install): released as already dead, it is not
		 * uncounted either. A shared one (a dup) is only unreferenced:
		 * the fds that hold it still charge it. */
		if (fresh)
			atomic_store(&st->est, SM_SOCK_DEAD);
		sm_sock_put(st);
		return false;
	}
	prev = atomic_exchange_explicit(slot, st, memory_order_acq_rel);
	if (prev) /* the old fd was closed behind our back: fresh state wins */
		sm_sock_put(prev);
	return true;
}

bool sm_fd_install(int fd, struct sm_sock *st)
{
	return fd_install(fd, st, true);
}

bool sm_fd_install_ref(int fd, struct sm_sock *st)
{
	return fd_install(fd, st, false);
}

struct sm_sock *sm_fd_take(int fd)
{
	struct sm_sock *_Atomic *slot = fd_slot(fd, false);

	if (!slot || !atomic_load_explicit(slot, memory_order_relaxed))
		return NULL;
	return atomic_exchange_explicit(slot, NULL, memory_order_acq_rel);
}

bool sm_fd_remove_if(int fd, struct sm_sock *st)
{
	struct sm_sock *_Atomic *slot = fd_slot(fd, false);

	return slot && atomic_compare_exchange_strong(slot, &st, NULL);
}

struct sm_sock *sm_fd_ref(int fd)
{
	struct sm_sock *st;

	sm_rcu_lock();
	st = sm_fd_peek(fd);
	if (st) {
		uint32_t r = atomic_load(&st->refs);

		/* Increment unless already zero (a racing final close). */
		do {
			if (r == 0) {
				st = NULL;
				break;
			}
		} while (!atomic_compare_exchange_weak(&st->refs, &r, r + 1));
	}
	sm_rcu_unlock();
	return st;
}

void sm_fd_drop_range(unsigned lo, unsigned hi)
{
	if (hi >= SM_FD_MAX)
		hi = SM_FD_MAX - 1;
	for (unsigned fd = lo; fd <= hi && fd >= lo;) {
		struct sm_fdchunk *c = atomic_load(&sm_hot.fd_l1[fd >> SM_FD_CHUNK_SHIFT]);

		if (!c) { /* skip the whole unmapped chunk */
			fd = ((fd >> SM_FD_CHUNK_SHIFT) + 1) << SM_FD_CHUNK_SHIFT;
			continue;
		}
		struct sm_sock *st = sm_fd_take((int)fd);

		if (st)
			sm_sock_put(st);
		fd++;
	}
}

void sm_fd_for_each(void (*fn)(int fd, struct sm_sock *st, void *arg), void *arg)
{
	for (unsigned i = 0; i < SM_FD_L1; i++) {
		struct sm_fdchunk *c = atomic_load_explicit(&sm_hot.fd_l1[i], memory_order_acquire);

		if (!c)
			continue;
		for (unsigned j = 0; j < SM_FD_CHUNK; j++) {
			struct sm_sock *st;

			if (!atomic_load_explicit(&c->e[j], memory_order_relaxed))
				continue;
			sm_rcu_lock();
			st = atomic_load_explicit(&c->e[j], memory_order_acquire);
			if (st)
				fn((int)(i << SM_FD_CHUNK_SHIFT | j), st, arg);
			sm_rcu_unlock();
		}
	}
}
