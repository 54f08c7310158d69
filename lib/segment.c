/*
 * The shared-memory segment: naming, race-free create-or-attach, validation.
 *
 * Creation builds the whole segment in an unnamed file (O_TMPFILE; else
 * under a private temporary name) and publishes it with linkat(2) into
 * /dev/shm, which either atomically creates the final name or fails with
 * EEXIST; an attacher therefore only ever sees a fully initialised segment,
 * and of N simultaneous creators exactly one wins while the others attach
 * to the winner's segment. A creator killed before publishing leaves
 * nothing behind (with the private-name fallback: that file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define SHM_DIR	   "/dev/shm"
#define SHM_PREFIX "/sockmem-"
#define CAP_MAX	   (1u << 20)

/* ---- names ----------------------------------------------------------- */

/* Concurrency: pure function. */
int sockmem_ns_valid(const char *ns)
{
	size_t n;

	if (!ns || !*ns)
		return -EINVAL;
	for (n = 0; ns[n]; n++) {
		char c = ns[n];

		if (n >= SOCKMEM_NS_MAX - 1)
			return -EINVAL;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	/* "." and ".." would name odd files; a leading '.' hides it. */
	return ns[0] == '.' ? -EINVAL : 0;
}

/* Concurrency: pure function. */
int sockmem_shm_name(const char *ns, char *buf, size_t len)
{
	int n;

	if (sockmem_ns_valid(ns) < 0)
		return -EINVAL;
	n = snprintf(buf, len, SHM_PREFIX "%s", ns);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The effective uid: the one the owner check on attach compares with. */
static void default_ns(char *buf, size_t len)
{
	snprintf(buf, len, "u%u", (unsigned)geteuid());
}

/* Concurrency: pure (reads the effective uid). */
char *sockmem_default_ns(char *buf, size_t len)
{
	if (buf && len)
		default_ns(buf, len);
	return buf;
}

/* Concurrency: any time; processes still attached keep their mapping. */
int sockmem_unlink(const char *ns)
{
	char name[SOCKMEM_NS_MAX + 16], def[SOCKMEM_NS_MAX];

	if (!ns) {
		default_ns(def, sizeof(def));
		ns = def;
	}
	if (sockmem_shm_name(ns, name, sizeof(name)) < 0)
		return -EINVAL;
	return shm_unlink(name) < 0 ? -errno : 0;
}

/* ---- accessors (pure index arithmetic, bounds-checked) ---------------- */

struct sockmem_header *sockmem_header(sockmem_seg_t *seg)
{
	return seg->hdr;
}

/* Concurrency: process-local values, fixed at attach. */
void sockmem_capacities(const sockmem_seg_t *seg, struct sockmem_capacities *out)
{
	out->groups = seg->ngroups;
	out->procs = seg->nprocs;
	out->slots = seg->nslots;
	out->traces = seg->ntraces;
}

struct sockmem_group *sockmem_group_at(sockmem_seg_t *seg, uint32_t idx)
{
	return idx < seg->ngroups ? &seg->groups[idx] : NULL;
}

struct sockmem_proc *sockmem_proc_at(sockmem_seg_t *seg, uint32_t idx)
{
	return idx < seg->nprocs ? &seg->procs[idx] : NULL;
}

struct sockmem_slot *sockmem_slot_at(sockmem_seg_t *seg, uint32_t idx)
{
	return idx < seg->nslots ? &seg->slots[idx] : NULL;
}

/* ---- the table lock --------------------------------------------------- */

uint32_t sm_table_lock_timeout_ms = 1000;

/* After a timeout, only try once for this long: the holder is most likely
 * stopped, and a process should not pay the full wait on every operation. */
#define WEDGED_NS (5 * UINT64_C(1000000000))

static int lock_timed(pthread_mutex_t *m, uint32_t ms)
{
	struct timespec ts;

	/* pthread_mutex_timedlock measures against CLOCK_REALTIME; a clock
	 * step only lengthens or shortens this one wait. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_mutex_timedlock(m, &ts);
}

static int lock_wedged(sockmem_seg_t *seg, uint64_t now)
{
	atomic_store_explicit(&seg->lock_wedged_until, now + WEDGED_NS, memory_order_relaxed);
	sm_log_once(SM_LOG_WARN,
		    "segment %s: the table lock was not released within %u ms (is a member "
		    "stopped or frozen while holding it?); registering, creating or removing "
		    "groups, setting limits and reaping fail until it is released",
		    seg->name, sm_table_lock_timeout_ms);
	return -ETIMEDOUT;
}

/* Concurrency: process-shared robust mutex; a holder that died (SIGKILL)
 * hands the lock over with EOWNERDEAD and the tables are consistent again
 * because every multi-step change under it goes through CLAIMED/DEAD states
 * that the next holder (reap) cleans up. A holder that is stopped (SIGSTOP,
 * debugger, freezer) is not dead: the wait is bounded, and callers skip or
 * fail the operation (the shim then runs unaccounted, it never hangs). */
int sm_table_lock(sockmem_seg_t *seg)
{
	pthread_mutex_t *m = &seg->hdr->table_lock;
	uint64_t now = sockmem_now_ns();
	int rc;

	if (seg->readonly)
		return -EROFS;
	if (now < atomic_load_explicit(&seg->lock_wedged_until, memory_order_relaxed))
		rc = pthread_mutex_trylock(m);
	else
		rc = lock_timed(m, sm_table_lock_timeout_ms);
	if (rc == ETIMEDOUT || rc == EBUSY)
		return lock_wedged(seg, now);
	if (rc == EOWNERDEAD) {
		sm_log(SM_LOG_WARN, "segment %s: a process died holding the table lock; recovering",
		       seg->name);
		rc = pthread_mutex_consistent(m);
	}
	if (rc == 0)
		atomic_store_explicit(&seg->lock_wedged_until, 0, memory_order_relaxed);
	return -rc;
}

void sm_table_unlock(sockmem_seg_t *seg)
{
	pthread_mutex_unlock(&seg->hdr->table_lock);
}

/* ---- layout ----------------------------------------------------------- */

struct layout {
	uint32_t cap[4];
	uint64_t off[4];
	uint64_t total;
};

static const uint32_t table_size[4] = {
	sizeof(struct sockmem_group),
	sizeof(struct sockmem_proc),
	sizeof(struct sockmem_slot),
	sizeof(struct sockmem_trace),
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int plan_layout(const struct sockmem_open_opts *o, struct layout *l, char *err,
		       size_t errlen)
{
	uint32_t want[4] = {o->groups, o->procs, o->slots, o->traces};
	static const uint32_t def[4] = {SOCKMEM_DEFAULT_GROUPS, SOCKMEM_DEFAULT_PROCS,
					SOCKMEM_DEFAULT_SLOTS, SOCKMEM_DEFAULT_TRACES};
	static const char *const what[4] = {"groups", "procs", "slots", "traces"};
	uint64_t pos = align_up(sizeof(struct sockmem_header), SOCKMEM_CACHELINE);

	for (int i = 0; i < 4; i++) {
		l->cap[i] = want[i] ? want[i] : def[i];
		if (l->cap[i] > CAP_MAX)
			return sm_fail(err, errlen, -EINVAL, "capacity of %s %u exceeds %u",
				       what[i], l->cap[i], CAP_MAX);
		l->off[i] = pos;
		pos = align_up(pos + (uint64_t)l->cap[i] * table_size[i], SOCKMEM_CACHELINE);
	}
	l->total = align_up(pos, 4096);
	return 0;
}

static void init_lock(struct sockmem_header *h)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&h->table_lock, &a);
	pthread_mutexattr_destroy(&a);
}

/* Fill a zeroed mapping; the magic is stored last (release). */
static void init_segment(void *base, const struct layout *l, const char *ns)
{
	struct sockmem_header *h = base;
	struct timespec ts;

	h->abi_version = SOCKMEM_ABI_VERSION;
	h->header_size = sizeof(*h);
	h->total_size = l->total;
	h->owner_uid = (uint32_t)geteuid();
	h->mode = 0600;
	h->group_capacity = l->cap[0];
	h->group_size = table_size[0];
	h->proc_capacity = l->cap[1];
	h->proc_size = table_size[1];
	h->slot_capacity = l->cap[2];
	h->slot_size = table_size[2];
	h->trace_capacity = l->cap[3];
	h->trace_size = table_size[3];
	h->group_offset = l->off[0];
	h->proc_offset = l->off[1];
	h->slot_offset = l->off[2];
	h->trace_offset = l->off[3];
	clock_gettime(CLOCK_REALTIME, &ts);
	h->created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	snprintf(h->ns, sizeof(h->ns), "%s", ns);
	init_lock(h);
	__atomic_store_n(&h->magic, SOCKMEM_SHM_MAGIC, __ATOMIC_RELEASE);
}

/* The view: hdr points at the mapping (for the lock), but capacities and
 * offsets come from `h`, the header copy that was validated (or written).
 * Offsets are validated 64-byte aligned (hence void *, not a cast clang's
 * -Wcast-align would flag). */
static void seg_fill(sockmem_seg_t *seg, void *base, const struct sockmem_header *h, size_t len,
		     bool ro, const char *name)
{
	seg->hdr = base;
	seg->size = len;
	seg->groups = (void *)((char *)base + h->group_offset);
	seg->procs = (void *)((char *)base + h->proc_offset);
	seg->slots = (void *)((char *)base + h->slot_offset);
	seg->traces = (void *)((char *)base + h->trace_offset);
	seg->ngroups = h->group_capacity;
	seg->nprocs = h->proc_capacity;
	seg->nslots = h->slot_capacity;
	seg->ntraces = h->trace_capacity;
	seg->readonly = ro;
	snprintf(seg->name, sizeof(seg->name), "%s", name);
}

/* ---- create / attach -------------------------------------------------- */

/* An unnamed file in /dev/shm (O_TMPFILE), and in `from` the path that
 * linkat(2) publishes it by; -1 where the kernel or the lack of /proc says
 * no. A creator killed before publishing then leaves nothing behind. */
static int open_unnamed(char *from, size_t len)
{
	int fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	snprintf(from, len, "/proc/self/fd/%d", fd);
	if (access(from, F_OK) == 0)
		return fd;
	close(fd);
	return -1;
}

/* Build a segment in an unnamed file (else under a private name) and
 * publish it with linkat(2). -EEXIST: another process published first (the
 * caller attaches). */
static int create_seg(const char *name, const char *ns, const struct sockmem_open_opts *o,
		      sockmem_seg_t *seg, char *err, size_t errlen)
{
	char tmp[SOCKMEM_NS_MAX + 64], from[sizeof(tmp) + 16], to[SOCKMEM_NS_MAX + 32];
	struct layout l = {0};
	bool named = true;
	uint32_t rnd = 0;
	void *base;
	int fd, rc;

	rc = plan_layout(o, &l, err, errlen);
	if (rc < 0)
		return rc;
	fd = open_unnamed(from, sizeof(from));
	if (fd >= 0) {
		snprintf(tmp, sizeof(tmp), "an unnamed file");
		named = false;
	} else {
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
			rnd = (uint32_t)sockmem_now_ns();
		snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%08x", name, (int)getpid(), rnd);
		fd = shm_open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return sm_fail(err, errlen, -errno, "segment %s: cannot create %s: %s",
				       name, tmp, strerror(errno));
		snprintf(from, sizeof(from), SHM_DIR "%s", tmp);
	}
	/* The umask may have cleared bits; set exactly 0600 on purpose. */
	if (fchmod(fd, 0600) < 0) {
		rc = sm_fail(err, errlen, -errno, "segment %s: cannot chmod %s: %s", name, tmp,
			     strerror(errno));
		goto out_unlink;
	}
	/* Allocate every page now, not sparse: on a full tmpfs a member's
	 * first write to a page it cannot back would be SIGBUS. Where the call
	 * itself is refused (a seccomp sandbox, EINTR), sparse as before. */
	rc = posix_fallocate(fd, 0, (off_t)l.total);
	if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG) {
		rc = sm_fail(err, errlen, -rc,
			     "segment %s: cannot allocate %llu bytes in " SHM_DIR ": %s", name,
			     (unsigned long long)l.total, strerror(rc));
		goto out_unlink;
	}
	if (rc != 0 && ftruncate(fd, (off_t)l.total) < 0) {
		rc = sm_fail(err, errlen, -errno, "segment %s: cannot size %s: %s", name, tmp,
			     strerror(errno));
		goto out_unlink;
	}
	base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = sm_fail(err, errlen, -errno, "segment %s: mmap: %s", name, strerror(errno));
		goto out_unlink;
	}
	init_segment(base, &l, ns);
	snprintf(to, sizeof(to), SHM_DIR "%s", name);
	if (linkat(AT_FDCWD, from, AT_FDCWD, to, named ? 0 : AT_SYMLINK_FOLLOW) < 0) {
		rc = errno == EEXIST ? -EEXIST : -errno;
		if (rc != -EEXIST)
			sm_fail(err, errlen, rc, "segment %s: cannot publish: %s", name,
				strerror(errno));
		munmap(base, l.total);
		goto out_unlink;
	}
	seg_fill(seg, base, base, l.total, false, name); /* our own, still private */
	sm_log(SM_LOG_INFO, "segment %s: created (%u groups, %u processes, %u slots)", name,
	       l.cap[0], l.cap[1], l.cap[2]);
	rc = 0;
out_unlink:
	if (named)
		shm_unlink(tmp);
	close(fd);
	return rc;
}

static int check_file(const char *name, const struct stat *st, const struct sockmem_open_opts *o,
		      char *err, size_t errlen)
{
	uid_t me = geteuid();

	/* Anyone can put a FIFO, directory or device node at the name; never
	 * map one, whoever owns it. */
	if (!S_ISREG(st->st_mode))
		return sm_fail(err, errlen, -EACCES,
			       "segment %s: not a regular file (file type 0%o); refused", name,
			       (unsigned)(st->st_mode & S_IFMT));
	if (o->allow_foreign)
		return 0;
	if (st->st_uid != me)
		return sm_fail(err, errlen, -EACCES,
			       "segment %s: owned by uid %u, not by this user (uid %u)", name,
			       (unsigned)st->st_uid, (unsigned)me);
	if (st->st_mode & 0177)
		return sm_fail(err, errlen, -EACCES, "segment %s: mode %04o is wider than 0600",
			       name, (unsigned)(st->st_mode & 07777));
	return 0;
}

/*
 * Validation reads a live image: a group being removed by another process
 * right now (child freed, then its parent) can look inconsistent for a few
 * instructions. A real fault fails every attempt; a race passes the next.
 */
static int validate_settled(const void *base, size_t len, uint32_t uid, struct sockmem_header *h,
			    char *err, size_t errlen)
{
	struct timespec ts = {0, 1000 * 1000};
	int rc = 0;

	for (int i = 0; i < 3; i++) {
		rc = sm_validate_copy(base, len, uid, h, err, errlen);
		if (rc == 0)
			break;
		nanosleep(&ts, NULL);
	}
	return rc;
}

/* Open, check owner and mode, map and validate an existing segment. */
static int attach_seg(const char *name, const struct sockmem_open_opts *o, sockmem_seg_t *seg,
		      char *err, size_t errlen)
{
	struct sockmem_header h;
	struct stat st;
	void *base;
	int fd, rc;

	/* O_NONBLOCK: opening a FIFO squatted at the name read-only would
	 * otherwise block until a writer comes (check_file refuses it). It
	 * changes nothing for a regular file. */
	fd = shm_open(name, (o->readonly ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return sm_fail(err, errlen, -errno, "segment %s: %s", name, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = sm_fail(err, errlen, -errno, "segment %s: fstat: %s", name, strerror(errno));
		goto out;
	}
	rc = check_file(name, &st, o, err, errlen);
	if (rc < 0)
		goto out;
	if ((size_t)st.st_size < sizeof(struct sockmem_header)) {
		rc = sm_fail(err, errlen, -EPROTO,
			     "segment %s: truncated: %lld bytes, smaller than the header", name,
			     (long long)st.st_size);
		goto out;
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | (o->readonly ? 0 : PROT_WRITE),
		    MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = sm_fail(err, errlen, -errno, "segment %s: mmap: %s", name, strerror(errno));
		goto out;
	}
	rc = validate_settled(base, (size_t)st.st_size, (uint32_t)st.st_uid, &h, err, errlen);
	if (rc < 0) {
		munmap(base, (size_t)st.st_size);
		goto out;
	}
	seg_fill(seg, base, &h, (size_t)st.st_size, o->readonly, name);
out:
	close(fd);
	return rc;
}

/*
 * low <= high <= max for every live group, checked under the table lock.
 * The only legitimate writer of the limits, sockmem_group_set_limits, stores
 * max, high and low one after the other under this lock, so a lock-free
 * reader can catch a mix of old and new values that breaks the rule (new max
 * below the old high) although nothing is wrong. Under the lock nobody is
 * half-way. A lock that cannot be had (a holder stopped, possibly inside
 * set_limits) skips the check, as sockmem_open skips its reap.
 */
static int check_limits_locked(sockmem_seg_t *seg, char *err, size_t errlen)
{
	char why[SOCKMEM_ERRLEN], path[SOCKMEM_PATH_MAX];
	int rc = sm_table_lock(seg);

	if (rc < 0)
		return 0;
	for (uint32_t i = 0; rc == 0 && i < seg->ngroups; i++) {
		struct sockmem_group *g = &seg->groups[i];

		if (atomic_load_explicit(&g->state, memory_order_acquire) != SOCKMEM_LIVE)
			continue;
		if (sockmem_limits_check(atomic_load_explicit(&g->max, memory_order_relaxed),
					 atomic_load_explicit(&g->high, memory_order_relaxed),
					 atomic_load_explicit(&g->low, memory_order_relaxed), why,
					 sizeof(why)) == 0)
			continue;
		memcpy(path, g->path, sizeof(path));
		path[sizeof(path) - 1] = '\0';
		rc = sm_fail(err, errlen, -EPROTO, "group %u \"%s\" has inconsistent limits: %s", i,
			     path, why);
	}
	sm_table_unlock(seg);
	return rc;
}

/* Validation messages from sockmem_validate lack the name; prefix it. */
static int name_error(const char *name, int rc, char *err, size_t errlen)
{
	char tmp[SOCKMEM_ERRLEN];

	if (rc == -EPROTO && err && errlen && strncmp(err, "segment ", 8) != 0) {
		snprintf(tmp, sizeof(tmp), "%s", err);
		snprintf(err, errlen, "segment %s: %s", name, tmp);
	}
	return rc;
}

/*
 * Concurrency: any number of processes may open (and create) the same
 * namespace at once; all end up on one segment. Not async-signal-safe.
 */
int sockmem_open(const struct sockmem_open_opts *opts, sockmem_seg_t **out, char *err,
		 size_t errlen)
{
	static const struct sockmem_open_opts none;
	const struct sockmem_open_opts *o = opts ? opts : &none;
	char def[SOCKMEM_NS_MAX], name[SOCKMEM_NS_MAX + 16], esc[4 * 64 + 1];
	const char *ns = o->ns;
	sockmem_seg_t *seg;
	bool created = false;
	int rc = -ENOENT;

	if (!ns) {
		default_ns(def, sizeof(def));
		ns = def;
	}
	if (sockmem_shm_name(ns, name, sizeof(name)) < 0)
		return sm_fail(err, errlen, -EINVAL,
			       "bad namespace \"%s\": use 1-63 of [A-Za-z0-9._-]",
			       sm_escape(esc, sizeof(esc), ns, 64));
	seg = calloc(1, sizeof(*seg));
	if (!seg)
		return sm_fail(err, errlen, -ENOMEM, "out of memory");
	/* Attach; if missing, try to create; if we lost the race, attach again. */
	for (int i = 0; i < 8; i++) {
		rc = attach_seg(name, o, seg, err, errlen);
		if (rc != -ENOENT || !o->create || o->readonly)
			break;
		rc = create_seg(name, ns, o, seg, err, errlen);
		created = rc == 0;
		if (rc != -EEXIST)
			break;
	}
	if (rc == 0 && !created && !seg->readonly) {
		rc = check_limits_locked(seg, err, errlen);
		if (rc < 0)
			munmap(seg->hdr, seg->size);
	}
	if (rc < 0) {
		free(seg);
		return name_error(name, rc, err, errlen);
	}
	/* A reap that cannot get the lock (-ETIMEDOUT) is skipped: later
	 * reaps, by this process's helper or by others, return what is owed. */
	if (!seg->readonly)
		sockmem_reap(seg, NULL);
	*out = seg;
	return 0;
}

/* Concurrency: the caller must have detached its caches and unregistered. */
void sockmem_close(sockmem_seg_t *seg)
{
	if (!seg)
		return;
	munmap(seg->hdr, seg->size);
	free(seg);
}
