/*
 * Load, fork and exit.
 *
 * The constructor parses the environment once; without SOCKMEM_GROUP (or
 * with a bad value) it returns leaving sm_hot.active false: no segment touched,
 * no thread started, every interposer a pass-through. Otherwise it attaches
 * to the namespace's segment, finds or creates the group, applies the limits
 * given in the environment, registers the process, loads the unwinder when
 * SOCKMEM_TRACE=1 and starts the helper.
 *
 * Fork: the child keeps the parent's sockets but not their charges (the
 * parent still owns them, as the kernel keeps sk_memcg of the creator); it
 * bumps sm_hot.epoch so inherited states pass through, forgets the forking
 * thread's cache handle (the slot is the parent's), and registers its own
 * process record and helper lazily, when it first creates a socket.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "account.h"
#include "fdtable.h"
#include "internal.h"
#include "limit.h"
#include "real.h"
#include "state.h"
#include "trace.h"

struct sm_config sm_cfg;
sockmem_seg_t *sm_seg;
uint32_t sm_group = SOCKMEM_NONE;
_Atomic uint32_t sm_proc = SOCKMEM_NONE;
int sm_pid;
SM_TLS unsigned sm_nest;

extern char **environ;

static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Register by the index the constructor found (a fork child registers with
 * its first socket, maybe long after its parent left). The group may have
 * been removed since, nobody being registered in it: created again at the
 * same index it is still ours; at another one sm_group cannot follow (the
 * hot paths read it unlocked), and whatever holds the index now is another
 * group, never to be joined (-ESTALE).
 */
static int register_late(uint32_t *p)
{
	uint32_t again;
	int rc = sm_proc_register_as(sm_seg, sm_group, sm_cfg.group, p);

	if (rc != -ESTALE && rc != -ENOENT)
		return rc;
	if (sockmem_group_create(sm_seg, sm_cfg.group, &again) == 0 && again == sm_group)
		return sm_proc_register_as(sm_seg, sm_group, sm_cfg.group, p);
	return -ESTALE;
}

bool sm_proc_ensure(void)
{
	uint32_t p;
	int rc;

	if (sm_likely(atomic_load_explicit(&sm_proc, memory_order_acquire) != SOCKMEM_NONE))
		return true;
	pthread_mutex_lock(&proc_lock);
	if (atomic_load(&sm_proc) == SOCKMEM_NONE) {
		rc = register_late(&p);
		if (rc == 0) {
			atomic_store(&sm_proc, p);
			sm_helper_start();
		} else if (rc == -ESTALE) {
			sm_log_once(SM_LOG_WARN,
				    "group '%s' was removed while this process ran, and its "
				    "entry %u holds another group now; sockets unaccounted",
				    sm_cfg.group, sm_group);
		} else {
			sm_log_once(SM_LOG_WARN,
				    "cannot register process (%d); sockets unaccounted", rc);
		}
	}
	pthread_mutex_unlock(&proc_lock);
	return atomic_load(&sm_proc) != SOCKMEM_NONE;
}

/* A record with our pid other than ours (self; SOCKMEM_NONE when we could
 * not register) belongs to the image we replaced by exec (same pid, same
 * start time: the reaper cannot tell it is dead while we live). Its threads
 * are all gone: return its charges now. */
static void reap_previous_image(uint32_t self)
{
	struct sockmem_proc *p;

	for (uint32_t i = 0; (p = sockmem_proc_at(sm_seg, i)) != NULL; i++) {
		if (i == self || atomic_load(&p->state) != SOCKMEM_LIVE || p->pid != sm_pid)
			continue;
		sm_log(SM_LOG_DEBUG, "returning the charges of our pre-exec image (record %u)", i);
		sockmem_proc_unregister(sm_seg, i);
	}
}

/* Group, limits, process record. */
static int join(char *err, size_t errlen)
{
	uint32_t proc;
	int rc;

	/* Register before setting limits: a group nobody is registered in can
	 * be removed (and its entry reused) between two calls; once we are
	 * registered, sm_group is ours for good. */
	for (int i = 0; i < 3; i++) {
		rc = sockmem_group_create(sm_seg, sm_cfg.group, &sm_group);
		if (rc != 0)
			return sm_fail(err, errlen, rc, "cannot create group '%s': %s",
				       sm_cfg.group, strerror(-rc));
		rc = sm_proc_register_as(sm_seg, sm_group, sm_cfg.group, &proc);
		if (rc != -ESTALE && rc != -ENOENT)
			break;
	}
	if (rc != 0)
		return sm_fail(err, errlen, rc, "cannot register process: %s", strerror(-rc));
	if (sm_cfg.max != SOCKMEM_KEEP || sm_cfg.high != SOCKMEM_KEEP ||
	    sm_cfg.low != SOCKMEM_KEEP) {
		char why[SOCKMEM_ERRLEN];

		rc = sockmem_group_set_limits(sm_seg, sm_group, sm_cfg.max, sm_cfg.high, sm_cfg.low,
					      why, sizeof(why));
		if (rc != 0) {
			sockmem_proc_unregister(sm_seg, proc);
			return sm_fail(err, errlen, rc, "SOCKMEM_MAX/SOCKMEM_HIGH/SOCKMEM_LOW: %s",
				       why);
		}
	}
	atomic_store(&sm_proc, proc);
	return 0;
}

static int attach(char *err, size_t errlen)
{
	struct sockmem_open_opts o = {
		.ns = sm_cfg.ns[0] ? sm_cfg.ns : NULL,
		.create = true,
		.groups = (uint32_t)sm_cfg.groups,
		.procs = (uint32_t)sm_cfg.procs,
		.slots = (uint32_t)sm_cfg.slots,
	};
	int rc;

	rc = sockmem_open(&o, &sm_seg, err, errlen);
	if (rc != 0)
		return rc;
	rc = join(err, errlen);
	/* Also when we run unaccounted (limits refused, table full): nobody
	 * else would return the old image's charges before we exit. */
	reap_previous_image(atomic_load(&sm_proc));
	return rc;
}

static void reset_pending(int fd, struct sm_sock *st, void *arg)
{
	atomic_store_explicit(&st->pending, 0, memory_order_relaxed);
}

/* Whether this thread's fork_prepare took the locks. The parent and child
 * handlers act on it, never on sm_hot.active again: an exit() in another
 * thread can clear that flag while the fork is under way, and skipping the
 * unlock then hangs that exit in its grace period. Thread-local: prepare,
 * parent and child handlers run in the forking thread. */
static SM_TLS bool fork_locked;

static void fork_prepare(void)
{
	if (!sm_is_active())
		return;
	/* An exit() from a signal handler before urcu_bp_before_fork blocks
	 * signals must not run the destructor's teardown against our lock. */
	sm_nest++;
	sm_real_bind(); /* bound already; never let a child start with dlsym */
	sm_helper_fork_prepare();
	urcu_bp_before_fork();
	fork_locked = true;
}

static void fork_parent(void)
{
	if (!fork_locked)
		return;
	fork_locked = false;
	urcu_bp_after_fork_parent();
	sm_helper_fork_parent();
	sm_nest--;
}

static void fork_child(void)
{
	if (!fork_locked)
		return;
	fork_locked = false;
	urcu_bp_after_fork_child();
	sm_helper_fork_child();
	sm_nest--;
	sm_hot.epoch++;
	sm_pid = (int)syscall(SYS_getpid);
	sm_tcache_forget();
	atomic_store(&sm_proc, SOCKMEM_NONE);
	/* Inherited states: the first use in this process checks adoption. */
	sm_fd_for_each(reset_pending, NULL);
	pthread_mutex_init(&proc_lock, NULL);
}

/* Is SOCKMEM_GROUP set (non-empty)? Decides whether a bad value is worth
 * a complaint: without a group nothing would be accounted anyway. */
static bool group_requested(void)
{
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "SOCKMEM_GROUP=", 14) == 0 && (*e)[14] != '\0')
			return true;
	return false;
}

__attribute__((constructor)) static void sm_init(void)
{
	char err[SOCKMEM_ERRLEN];

	sm_real_bind();
	if (sm_config_parse((const char *const *)environ, &sm_cfg, err, sizeof(err)) != 0) {
		if (group_requested())
			sm_log(SM_LOG_ERROR, "%s; running unaccounted", err);
		return;
	}
	sm_log_level = (int)sm_cfg.log_level;
	if (sm_cfg.group[0] == '\0')
		return; /* pass-through: touch nothing */
	sockmem_set_pressure_period((uint64_t)sm_cfg.pressure_ms * 1000000u);
	sm_nest++;
	sm_pid = (int)syscall(SYS_getpid);
	if (attach(err, sizeof(err)) != 0) {
		sm_log(SM_LOG_ERROR, "%s; running unaccounted", err);
		sm_nest--;
		return;
	}
	sm_account_init();
	sm_io_init();
	sm_buf_sysctl_init();
	sm_limit_refresh();
	sm_trace_init();     /* here, not on a capture that may be in a signal handler */
	sm_adopt_existing(); /* sockets an earlier constructor or exec left open */
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	/* Release: publishes everything above to threads that test it. */
	atomic_store_explicit(&sm_hot.active, true, memory_order_release);
	sm_helper_start();
	sm_nest--;
}

static void drop_entry(int fd, struct sm_sock *st, void *arg)
{
	if (sm_fd_remove_if(fd, st))
		sm_sock_put(st);
}

/* Normal exit: return every charge now (SIGKILL is left to the reaper). */
__attribute__((destructor)) static void sm_fini(void)
{
	uint32_t proc;

	if (!sm_is_active() || (int)syscall(SYS_getpid) != sm_pid)
		return;
	/* From here on, everything passes through. Relaxed: the grace period
	 * below orders it against the readers' sections. */
	atomic_store_explicit(&sm_hot.active, false, memory_order_relaxed);
	if (sm_nest) /* exit() from a handler inside the shim: leave it to the reaper */
		return;
	sm_nest++;
	/* Threads already inside an accounting section, or giving their cache
	 * back at exit (account.c), re-check sm_hot.active under RCU: after a
	 * grace period none is still charging or detaching. */
	urcu_bp_synchronize_rcu();
	sm_helper_stop();
	sm_fd_for_each(drop_entry, NULL);
	sm_tcache_detach();
	proc = atomic_exchange(&sm_proc, SOCKMEM_NONE);
	if (proc != SOCKMEM_NONE)
		sockmem_proc_unregister(sm_seg, proc);
	/* A member killed by SIGKILL is otherwise reaped by a survivor's
	 * tick (every 10 ticks): survivors that exit sooner return it here. */
	sockmem_reap(sm_seg, NULL);
	sm_nest--;
}
