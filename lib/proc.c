/*
 * Per-process records: what a member process holds, so that it returns to
 * its group when the process dies, even by SIGKILL.
 *
 * A record is identified by (pid, start_time): a pid that exists but has a
 * different start time is a reused pid and the record is dead. Records are
 * claimed and released under the table lock, so a CLAIMED record seen by a
 * lock holder belongs to a process that died mid-registration.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

#define RLX(p)	  atomic_load_explicit((p), memory_order_relaxed)
#define ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

/* Skip `n` space-separated fields. */
static const char *skip_fields(const char *p, int n)
{
	while (n-- > 0) {
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;
	}
	while (*p == ' ')
		p++;
	return p;
}

static uint64_t parse_u64(const char **pp)
{
	const char *p = *pp;
	uint64_t v = 0;

	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	*pp = p;
	return v;
}

/* Read /proc/<pid>/stat: state (field 3), num_threads (20) and starttime
 * (22). Returns the start time, 0 if the process is gone or unparsable. */
/* What /proc/<pid>/stat says. ST_GONE: no such process (ENOENT, ESRCH, or
 * it ended between open and read); ST_UNKNOWN: it could not be read for
 * another reason (EMFILE or ENFILE in a process at its fd limit, a /proc
 * mounted with hidepid, ENOMEM), which says nothing about the process. */
enum stat_rc { ST_OK, ST_GONE, ST_UNKNOWN };

static enum stat_rc read_stat(int pid, char *state, uint64_t *threads, uint64_t *start)
{
	char path[40], buf[1024];
	const char *p;
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? ST_GONE : ST_UNKNOWN;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	if (n == 0 || (n < 0 && err == ESRCH))
		return ST_GONE;
	if (n < 0)
		return ST_UNKNOWN;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and ')'; the last
	 * ')' ends it. starttime is field 22, i.e. the 20th after the ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return ST_UNKNOWN;
	p = skip_fields(p + 1, 0);
	*state = *p;
	p = skip_fields(p, 17); /* field 20: num_threads */
	*threads = parse_u64(&p);
	p = skip_fields(p, 1); /* field 22: starttime */
	*start = parse_u64(&p);
	return *start ? ST_OK : ST_UNKNOWN;
}

/* Concurrency: any thread; no allocation (open/read, not stdio). */
uint64_t sm_proc_start_time(int pid)
{
	uint64_t threads, start = 0;
	char state;

	return read_stat(pid, &state, &threads, &start) == ST_OK ? start : 0;
}

/* Has process `pid` ended (no such process, or a zombie with no thread
 * left)? A reused pid counts as alive: callers then only keep waiting, they
 * never take over a live process's work. Any thread; errno preserved. */
bool sm_pid_gone(uint32_t pid)
{
	int saved = errno;
	uint64_t threads = 0;
	char state = '?';
	bool gone;

	if (pid == 0 || pid > INT32_MAX)
		return pid != 0; /* never a process (kill(-n) would mean a group) */
	gone = kill((pid_t)pid, 0) < 0 && errno == ESRCH;
	if (!gone) {
		uint64_t start;
		enum stat_rc r = read_stat((int)pid, &state, &threads, &start);

		/* Unreadable for another reason (our own fd limit): alive. */
		gone = r == ST_GONE ||
		       (r == ST_OK && (state == 'Z' || state == 'X') && threads <= 1);
	}
	errno = saved;
	return gone;
}

/* Ours, read once per process (again after fork); 0 while unreadable (at
 * our fd limit, say): then read again next time, never cached as 0. */
static uint64_t self_start_time(void)
{
	static int pid;
	static uint64_t st;

	if (pid != getpid() || st == 0) {
		st = sm_proc_start_time(getpid());
		pid = getpid();
	}
	return st;
}

/* Concurrency: table lock. The path is compared under the lock, which
 * every removal and creation takes: once registered, the group cannot be
 * removed (processes > 0), so the caller's index names its group for good. */
int sm_proc_register_as(sockmem_seg_t *seg, uint32_t group, const char *path, uint32_t *proc)
{
	struct sockmem_group *g;
	int rc = sm_table_lock(seg);

	if (rc < 0)
		return rc;
	g = sm_group_live(seg, group);
	rc = g ? -ENOSPC : -ENOENT;
	if (g && path && strncmp(g->path, path, sizeof(g->path)) != 0) {
		g = NULL;
		rc = -ESTALE;
	}
	for (uint32_t i = 0; g && i < seg->nprocs; i++) {
		struct sockmem_proc *p = &seg->procs[i];

		if (RLX(&p->state) != SOCKMEM_FREE)
			continue;
		atomic_store_explicit(&p->state, SOCKMEM_CLAIMED, memory_order_relaxed);
		p->pid = getpid();
		p->start_time = self_start_time();
		p->group = group;
		p->group_gen = RLX(&g->generation);
		atomic_store_explicit(&p->sock, 0, memory_order_relaxed);
		atomic_store_explicit(&p->sockets, 0, memory_order_relaxed);
		atomic_store_explicit(&p->heartbeat_ns, sockmem_now_ns(), memory_order_relaxed);
		ADD(&g->processes, 1);
		atomic_store_explicit(&p->state, SOCKMEM_LIVE, memory_order_release);
		*proc = i;
		rc = 0;
		break;
	}
	sm_table_unlock(seg);
	return rc;
}

/* Concurrency: table lock. */
int sockmem_proc_register(sockmem_seg_t *seg, uint32_t group, uint32_t *proc)
{
	return sm_proc_register_as(seg, group, NULL, proc);
}

/* *p += v, saturating (the record is shared: any member can write it). */
static void add_sat_atomic(_Atomic int64_t *p, int64_t v)
{
	int64_t old = RLX(p);

	while (!atomic_compare_exchange_weak_explicit(p, &old, sm_add_sat(old, v),
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/*
 * Take a slot of a dead (or unregistering) process away from drainers and
 * move what it held into its record `p`, or, for a slot whose record is
 * already gone, back to the slot's group. The owner no longer runs, so
 * `busy` is ignored. Idempotent: a releaser killed half-way leaves the slot
 * DEAD, and the next lock holder releases it again (what was already moved
 * is zero by then). The one window that loses bytes is between taking a
 * value and adding it to the record: two instructions.
 *
 * A drainer still alive after the bounded wait (stopped, or waiting out busy
 * owners earlier in its chunk) keeps its `steal`: the exchanges below and
 * its own are atomic, and the slot's next owner backs off until it lowers
 * `steal` (init_slot). Lowering it here would let that owner's plain stores
 * race with the drainer's exchange of the stock.
 */
static void release_slot(sockmem_seg_t *seg, struct sockmem_slot *s, struct sockmem_proc *p)
{
	uint32_t me = (uint32_t)getpid(), zero;
	bool stolen = false;
	int64_t held;

	for (int i = 0; i < 20000; i++) { /* a drainer holds steal ~2 ms at most */
		zero = 0;
		if (atomic_compare_exchange_strong(&s->steal, &zero, me)) {
			stolen = true;
			break;
		}
		if (i % 64 == 63)
			sm_slot_unsteal(s); /* its holder may have been killed */
		sched_yield();
	}
	/* Saturating: any member can write any value into a slot. */
	held = sm_add_sat(atomic_exchange(&s->stock, 0), atomic_exchange(&s->sock, 0));
	if (p)
		add_sat_atomic(&p->sock, held);
	else if (held > 0 && sm_group_live(seg, RLX(&s->group)))
		sockmem_uncharge(seg, RLX(&s->group), held);
	atomic_store_explicit(&s->proc, SOCKMEM_NONE, memory_order_relaxed);
	atomic_store_explicit(&s->busy, 0, memory_order_relaxed);
	if (stolen)
		atomic_store_explicit(&s->steal, 0, memory_order_release);
	atomic_store_explicit(&s->state, SOCKMEM_FREE, memory_order_release);
}

/*
 * Concurrency: the caller holds the table lock and moved the record to DEAD
 * (or found it DEAD: a releaser killed half-way, whose work this finishes).
 * Every step can be redone: slots are moved into the record one by one,
 * then the record's total is taken and uncharged in one step.
 */
int64_t sm_proc_release(sockmem_seg_t *seg, uint32_t idx)
{
	struct sockmem_proc *p = &seg->procs[idx];
	struct sockmem_group *g = sockmem_group_at(seg, p->group);
	int64_t held;

	for (uint32_t i = 0; i < seg->nslots; i++) {
		struct sockmem_slot *s = &seg->slots[i];
		uint32_t st = RLX(&s->state);

		if (RLX(&s->proc) != idx || (st != SOCKMEM_LIVE && st != SOCKMEM_DEAD))
			continue;
		/* DEAD slots exist only under the table lock, which we hold: one
		 * is an earlier releaser's unfinished work. */
		if (st == SOCKMEM_DEAD ||
		    atomic_compare_exchange_strong(&s->state, &st, SOCKMEM_DEAD))
			release_slot(seg, s, p);
	}
	held = atomic_exchange(&p->sock, 0);
	if (held > 0 && g)
		sockmem_uncharge(seg, p->group, held);
	else if (held < 0)
		sm_log_once(SM_LOG_ERROR,
			    "segment %s: process record %u held %lld bytes (negative: an "
			    "accounting bug)",
			    seg->name, idx, (long long)held);
	if (g) {
		/* fetch_sub, not an add of the negation: -INT64_MIN overflows,
		 * atomic arithmetic wraps by definition. */
		atomic_fetch_sub_explicit(&g->sockets, atomic_exchange(&p->sockets, 0),
					  memory_order_relaxed);
		ADD(&g->processes, -1);
	}
	atomic_store_explicit(&p->state, SOCKMEM_FREE, memory_order_release);
	return held > 0 ? held : 0;
}

/* Concurrency: table lock; the caller's threads have detached their caches. */
void sockmem_proc_unregister(sockmem_seg_t *seg, uint32_t proc)
{
	struct sockmem_proc *p = sockmem_proc_at(seg, proc);
	uint32_t live = SOCKMEM_LIVE;

	if (!p || sm_table_lock(seg) < 0)
		return;
	if (p->pid == getpid() && atomic_compare_exchange_strong(&p->state, &live, SOCKMEM_DEAD))
		sm_proc_release(seg, proc);
	sm_table_unlock(seg);
}

/* A record whose start time was unreadable at registration (0) cannot
 * tell a reused pid from its process: it counts as alive while the pid
 * exists. Nothing unreadable counts as dead: a reaper at its own fd limit
 * once took every other member's record. */
static bool proc_dead(const struct sockmem_proc *p)
{
	uint64_t st = 0, threads = 0;
	char state = '?';
	enum stat_rc r;

	if (p->pid <= 0)
		return true;
	if (p->pid == getpid()) {
		uint64_t mine = self_start_time();

		return mine != 0 && p->start_time != 0 && p->start_time != mine;
	}
	if (kill(p->pid, 0) < 0 && errno == ESRCH)
		return true;
	r = read_stat(p->pid, &state, &threads, &st);
	if (r != ST_OK)
		return r == ST_GONE;
	if (p->start_time != 0 && st != p->start_time)
		return true; /* the pid was reused */
	/* A zombie has closed its files. (A leader that called pthread_exit
	 * shows 'Z' too, but with its other threads still counted.) */
	return (state == 'Z' || state == 'X') && threads <= 1;
}

/* Under the lock, CLAIMED means the claimer died before publishing. */
static void free_abandoned_groups(sockmem_seg_t *seg)
{
	for (uint32_t i = 0; i < seg->ngroups; i++) {
		struct sockmem_group *g = &seg->groups[i];

		if (RLX(&g->state) == SOCKMEM_CLAIMED || RLX(&g->state) == SOCKMEM_DEAD) {
			sm_log(SM_LOG_WARN,
			       "segment %s: freeing group entry %u abandoned by a dead "
			       "process",
			       seg->name, i);
			atomic_store_explicit(&g->state, SOCKMEM_FREE, memory_order_release);
		}
	}
}

/* Slots left behind by killed processes that no record will release: a
 * DEAD slot whose record was freed (its releaser died between the two), and
 * a `steal` raised by a drainer that was killed mid-drain. Table lock. */
static int64_t sweep_slots(sockmem_seg_t *seg)
{
	int64_t bytes = 0;

	for (uint32_t i = 0; i < seg->nslots; i++) {
		struct sockmem_slot *s = &seg->slots[i];

		if (RLX(&s->steal))
			sm_slot_unsteal(s);
		if (RLX(&s->state) == SOCKMEM_DEAD) {
			int64_t before = sm_add_sat(RLX(&s->stock), RLX(&s->sock));

			release_slot(seg, s, NULL);
			bytes = sm_add_sat(bytes, before > 0 ? before : 0);
		}
	}
	return bytes;
}

/* Concurrency: table lock; any process; the CAS LIVE->DEAD picks one reaper. */
int sockmem_reap(sockmem_seg_t *seg, int64_t *bytes_returned)
{
	int64_t bytes = 0;
	int n = 0, rc;

	if (bytes_returned)
		*bytes_returned = 0;
	rc = sm_table_lock(seg);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < seg->nprocs; i++) {
		struct sockmem_proc *p = &seg->procs[i];
		uint32_t live = SOCKMEM_LIVE;
		uint32_t st = RLX(&p->state);

		if (st == SOCKMEM_CLAIMED) { /* its registrant died holding the lock */
			atomic_store_explicit(&p->state, SOCKMEM_FREE, memory_order_release);
			continue;
		}
		/* DEAD under the lock: a releaser (a reaper, or the process's own
		 * unregister) was killed half-way; finish its work. */
		if (st != SOCKMEM_DEAD &&
		    (st != SOCKMEM_LIVE || !proc_dead(p) ||
		     !atomic_compare_exchange_strong(&p->state, &live, SOCKMEM_DEAD)))
			continue;
		bytes = sm_add_sat(bytes, sm_proc_release(seg, i));
		n++;
	}
	bytes = sm_add_sat(bytes, sweep_slots(seg));
	free_abandoned_groups(seg);
	sm_table_unlock(seg);
	if (bytes_returned)
		*bytes_returned = bytes;
	return n;
}
