/*
 * Per-socket accounting: the estimate E of each socket state, kept equal to
 * what the socket has charged through the per-thread caches.
 *
 * Ordering rule (so a charge racing the final close is undone, never
 * leaked): a charge goes to the counter first and is then added to E by CAS;
 * if E is already DEAD the charge is given back. An uncharge is taken from E
 * by CAS first and only then returned to the counter. The final release
 * swaps E to DEAD and returns what it held. Hence, at any instant, the
 * counter holds at least the sum of the live E values, and at rest exactly.
 */
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "state.h"

SM_TLS struct sockmem_cache sm_tc;
SM_TLS bool sm_tc_attached;
static pthread_key_t tc_key;
static bool tc_key_ok;

/*
 * A thread exits: give its cache back. Unless the shim is finishing
 * (sm_fini): it unregisters the process, which frees every slot of it, so
 * a thread that exits after that (a library destructor joining its
 * threads) must not touch its slot, by then free or another member's. The
 * read-side section pairs with sm_fini's grace period: a destructor that
 * still saw the shim active has finished detaching before the slots are
 * freed.
 */
static void tc_destructor(void *unused)
{
	sm_nest++;
	sm_rcu_lock();
	if (sm_active_acquire()) {
		sm_tcache_detach();
		/* A key destructor that runs after ours (glibc runs them for
		 * a few rounds) may still send or close: its charges go
		 * straight to the counter rather than to a new slot that no
		 * destructor would give back. */
		sm_tcache_uncached();
	} else {
		sm_tcache_forget();
	}
	sm_rcu_unlock();
	sm_nest--;
}

/* Constructor: the thread-exit hook that gives a cache back. */
void sm_account_init(void)
{
	tc_key_ok = pthread_key_create(&tc_key, tc_destructor) == 0;
}

static struct sockmem_cache *tcache_attach(void)
{
	uint32_t proc = atomic_load(&sm_proc);
	int rc;

	if (proc == SOCKMEM_NONE)
		return NULL;
	/* SOCKMEM_BATCH=0: every charge goes to the counter (the core reads
	 * batch 0 as its default); so without a thread-exit hook, which would
	 * leave every exited thread's slot and stock behind. */
	if (sm_cfg.batch == 0 || !tc_key_ok) {
		sm_tcache_uncached();
		return sm_tc_attached ? &sm_tc : NULL;
	}
	sm_nest++;
	SM_SAVE_ERRNO(rc = sockmem_cache_attach(sm_seg, proc, sm_cfg.batch, &sm_tc));
	if (rc == 0 || rc == -ENOSPC) { /* -ENOSPC: works uncached */
		sm_tc_attached = true;
		pthread_setspecific(tc_key, &sm_tc);
	} else {
		/* -EINVAL, the one other answer: our record is no longer live.
		 * No strerror here: it may translate (and allocate), and this
		 * can run in a signal handler. */
		sm_log_once(SM_LOG_WARN,
			    "cannot attach a charge cache: this process is no longer a live "
			    "member of its group (error %d); its sockets go unaccounted",
			    rc);
	}
	sm_nest--;
	return sm_tc_attached ? &sm_tc : NULL;
}

struct sockmem_cache *sm_tcache(void)
{
	if (sm_likely(sm_tc_attached))
		return &sm_tc;
	return tcache_attach();
}

void sm_tcache_uncached(void)
{
	uint32_t proc = atomic_load(&sm_proc);

	sm_tc = (struct sockmem_cache){
		.seg = sm_seg, .slot = NULL, .group = sm_group, .proc = proc, .batch = 0};
	sm_tc_attached = proc != SOCKMEM_NONE;
}

void sm_tcache_forget(void)
{
	sm_tc_attached = false;
	memset(&sm_tc, 0, sizeof(sm_tc));
}

void sm_tcache_detach(void)
{
	if (!sm_tc_attached)
		return;
	SM_SAVE_ERRNO(sockmem_cache_detach(&sm_tc));
	sm_tcache_forget();
}

/* Charge n (> 0) bytes the kernel already holds for st. */
void sm_sock_charge(struct sm_sock *st, int64_t n)
{
	struct sockmem_cache *c = sm_tcache();
	int64_t e;

	if (!c)
		return;
	sm_cache_charge(c, n, true, NULL);
	e = atomic_load_explicit(&st->est, memory_order_relaxed);
	do {
		if (e == SM_SOCK_DEAD) { /* lost the race with the final close */
			sm_cache_uncharge(c, n);
			return;
		}
	} while (!atomic_compare_exchange_weak(&st->est, &e, e + n));
}

/* Add n bytes already charged to the counter (an admission's reservation)
 * to E; false if st is DEAD (the caller gives the bytes back). */
bool sm_sock_publish(struct sm_sock *st, int64_t n)
{
	int64_t e = atomic_load_explicit(&st->est, memory_order_relaxed);

	if (n <= 0)
		return e != SM_SOCK_DEAD;
	do {
		if (e == SM_SOCK_DEAD)
			return false;
	} while (!atomic_compare_exchange_weak(&st->est, &e, e + n));
	return true;
}

/* Uncharge up to n bytes (never more than E). */
void sm_sock_uncharge(struct sm_sock *st, int64_t n)
{
	struct sockmem_cache *c = sm_tcache();
	int64_t e, d;

	if (!c)
		return;
	e = atomic_load_explicit(&st->est, memory_order_relaxed);
	do {
		if (e <= 0) /* nothing charged, or DEAD */
			return;
		d = n < e ? n : e;
	} while (!atomic_compare_exchange_weak(&st->est, &e, e - d));
	sm_cache_uncharge(c, d);
}

/* Reconciliation: make E equal to the kernel's figure t (>= 0). Bounded
 * retries; a lost race only leaves the estimate for the next reconcile. */
void sm_sock_set(struct sm_sock *st, int64_t t)
{
	struct sockmem_cache *c = sm_tcache();

	if (!c)
		return;
	for (int tries = 0; tries < 4; tries++) {
		int64_t e = atomic_load(&st->est);

		if (e == SM_SOCK_DEAD || e == t)
			return;
		if (t > e) {
			int64_t d = t - e; /* a failed CAS overwrites e */

			sm_cache_charge(c, d, true, NULL);
			if (atomic_compare_exchange_strong(&st->est, &e, t))
				return;
			sm_cache_uncharge(c, d);
		} else if (atomic_compare_exchange_strong(&st->est, &e, t)) {
			sm_cache_uncharge(c, e - t);
			return;
		}
	}
}

static void count_socket(int64_t d)
{
	struct sockmem_group *g = sockmem_group_at(sm_seg, sm_group);
	uint32_t proc = atomic_load(&sm_proc);
	struct sockmem_proc *p = proc == SOCKMEM_NONE ? NULL : sockmem_proc_at(sm_seg, proc);

	if (g)
		atomic_fetch_add_explicit(&g->sockets, d, memory_order_relaxed);
	if (p)
		atomic_fetch_add_explicit(&p->sockets, d, memory_order_relaxed);
}

/* A new owned state was installed: count the socket. */
void sm_sock_opened(void)
{
	count_socket(1);
}

void sm_sock_release(struct sm_sock *st)
{
	int64_t e = atomic_exchange(&st->est, SM_SOCK_DEAD);

	if (e == SM_SOCK_DEAD)
		return; /* never installed (sm_fd_install failed): never counted */
	if (!sm_sock_owned(st) || !sm_seg)
		return; /* inherited: the ancestor that created it owns the charge */
	if (e > 0) {
		struct sockmem_cache *c = sm_tcache();

		if (c)
			sm_cache_uncharge(c, e);
	}
	count_socket(-1);
}

/* Does the process charging st still hold it at the same fd number?
 * (fork copies fd numbers; kcmp compares open file descriptions.) */
static bool owner_holds(int fd, const struct sm_sock *st)
{
	long rc = syscall(SYS_kcmp, sm_pid, st->owner_pid, KCMP_FILE, fd, fd);

	if (rc == 0)
		return true;
	if (rc > 0 || errno == EBADF || errno == ESRCH)
		return false; /* closed, reused, or the owner is gone */
	/* kcmp unavailable (seccomp, no CONFIG_KCMP): only a dead owner lets go. */
	return !(kill(st->owner_pid, 0) < 0 && errno == ESRCH);
}

int sm_sock_holder(int fd)
{
	struct sockmem_proc *p;

	for (uint32_t i = 0; (p = sockmem_proc_at(sm_seg, i)) != NULL; i++) {
		int pid = p->pid;
		long rc;

		if (atomic_load(&p->state) != SOCKMEM_LIVE || pid == sm_pid || pid <= 0)
			continue;
		rc = syscall(SYS_kcmp, sm_pid, pid, KCMP_FILE, fd, fd);
		if (rc == 0)
			return pid;
		if (rc < 0 && errno != EBADF && errno != ESRCH)
			return -1; /* EPERM (seccomp, ptrace policy), ENOSYS */
	}
	return 0;
}

/*
 * Adoption: a fork child charges an inherited socket once the process that
 * charged it no longer holds it (accept-then-fork servers: the parent
 * closes its copy, the child serves the connection). Until then the child
 * passes it through, so a socket is never charged twice. Called on the
 * child's use of the socket (rate-limited by the caller) and on its ticks;
 * registers the child on first use. Caller preserves errno.
 */
bool sm_sock_adopt(int fd, struct sm_sock *st)
{
	uint32_t old = atomic_load(&st->epoch);
	int64_t e;

	if (old == sm_hot.epoch)
		return true;
	if (old == SM_EPOCH_ADOPTING || !sm_proc_ensure() || owner_holds(fd, st))
		return false;
	if (!atomic_compare_exchange_strong(&st->epoch, &old, SM_EPOCH_ADOPTING))
		return false; /* another thread of ours is adopting it */
	/* The estimate is our copy of the old owner's: we have charged nothing.
	 * Unless a final close made it DEAD meanwhile: never bring a released
	 * state back (a thread still holding it could charge bytes nobody
	 * would uncharge). Left: a close between this CAS and the epoch's
	 * publication below skips its count_socket(-1) (it saw the state
	 * unowned), so `sockets` stays one high for this process's life. */
	e = atomic_load(&st->est);
	while (e != SM_SOCK_DEAD && !atomic_compare_exchange_weak(&st->est, &e, 0))
		;
	if (e == SM_SOCK_DEAD) {
		atomic_store(&st->epoch, old);
		return false;
	}
	atomic_store(&st->pending, 0);
	st->owner_pid = sm_pid;
	atomic_store_explicit(&st->epoch, sm_hot.epoch, memory_order_release);
	sm_sock_opened();
	return true;
}
