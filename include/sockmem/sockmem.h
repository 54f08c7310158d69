/*
 * libsockmem-core: the public API of the accounting core.
 *
 * Used by sockmemctl, the benchmarks and the tests; the preload shim uses it
 * too, plus the inline fast paths in lib/cache.h.
 *
 * Conventions (libuv's): every call that can fail returns 0 or a negative
 * errno value; functions that can fail for a reason a user must read also
 * fill a caller-supplied message buffer (one line, no trailing newline).
 * Nothing here calls exit() or abort().
 *
 * The table lock. Changes to the tables (creating or removing a group,
 * setting limits, registering a process, reaping) take one process-shared
 * robust mutex in the segment (lib/segment.c, sm_table_lock). A holder that
 * died is recovered from (EOWNERDEAD). A holder that is stopped (SIGSTOP, a
 * debugger, a freezer) is not waited for forever: the lock is waited for at
 * most 1 s; after such a timeout the process only tries it once per call for
 * the next 5 s, then waits the bounded 1 s again. When the lock cannot be
 * had, these functions return -ETIMEDOUT and change nothing (one warning per
 * process is logged): sockmem_group_create (only when it must create),
 * sockmem_group_remove, sockmem_group_set_limits (with a message in `err`),
 * sockmem_proc_register and sockmem_reap. sockmem_proc_unregister returns
 * nothing: on timeout the record stays and a later reap returns its charges.
 * sockmem_open skips its reap (and its limits check) and succeeds. The
 * caller may retry later; the shim runs unaccounted instead. On a read-only
 * mapping the same functions return -EROFS.
 */
#ifndef SOCKMEM_H
#define SOCKMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockmem/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sockmem_seg sockmem_seg_t;

#define SOCKMEM_ERRLEN 256
#define SOCKMEM_KEEP   INT64_MIN /* sockmem_group_set_limits: leave unchanged */

/* ---- segment ---------------------------------------------------------- */

struct sockmem_open_opts {
	const char *ns;	    /* NULL: default namespace ("u<euid>") */
	bool create;	    /* create if missing (else -ENOENT) */
	bool readonly;	    /* map read-only (sockmemctl list/stat) */
	bool allow_foreign; /* accept a segment owned by another uid / wider mode */
	uint32_t groups;    /* capacities when creating; 0: defaults */
	uint32_t procs;
	uint32_t slots;
	uint32_t traces;
};

/*
 * Create-or-attach the namespace's segment. Race-free: a creator builds and
 * initialises the segment under a private temporary name and publishes it
 * with link(2), so an attacher never sees a half-initialised segment.
 * Validates everything (magic, version, sizes, owner, mode, every index and
 * name, the group tree: parents, depths, no duplicate paths) before
 * returning; on failure `err` names what is wrong. A read-write attach also
 * checks every live group's limits (sockmem_limits_check) under the table
 * lock, where no legitimate writer is half-way through changing them; it
 * skips that check when the lock times out (see top), and a read-only
 * attach, which cannot take the lock, does not make it.
 * Returns 0, -ENOENT (missing and !create), -EPROTO (invalid segment),
 * -EACCES/-EPERM (foreign owner or mode), or another -errno.
 */
int sockmem_open(const struct sockmem_open_opts *opts, sockmem_seg_t **out, char *err,
		 size_t errlen);
void sockmem_close(sockmem_seg_t *seg);

/* Validate a mapped image of `len` bytes that nobody is changing (fuzzable;
 * sockmem_open makes the same checks, the limits under the table lock).
 * `uid`: the owner the file has (validated against the header). */
int sockmem_validate(const void *base, size_t len, uint32_t file_uid, char *err, size_t errlen);

/* Namespace → shm name ("/sockmem-<ns>"). -EINVAL for a bad namespace. */
int sockmem_shm_name(const char *ns, char *buf, size_t len);
/* Validate a namespace name: [A-Za-z0-9._-], 1..SOCKMEM_NS_MAX-1 chars. */
int sockmem_ns_valid(const char *ns);
/* Remove the namespace's segment (sockmemctl, tests). */
int sockmem_unlink(const char *ns);

/* The default namespace, "u<euid>" (the effective uid, like the owner check
 * on attach). Callers that show the namespace to users should use this rather
 * than spell it themselves. Returns `buf`. */
char *sockmem_default_ns(char *buf, size_t len);

/* The raw header in the shared mapping. Any member can rewrite it at any time:
 * do not size loops or buffers from its capacities; use sockmem_capacities. */
struct sockmem_header *sockmem_header(sockmem_seg_t *seg);

/* The table capacities this process validated at attach (or wrote, as the
 * creator): the bounds that sockmem_group_at, _proc_at, _slot_at and
 * sockmem_trace_at check against. Process-local, never re-read from the
 * segment. */
struct sockmem_capacities {
	uint32_t groups, procs, slots, traces;
};
void sockmem_capacities(const sockmem_seg_t *seg, struct sockmem_capacities *out);
struct sockmem_group *sockmem_group_at(sockmem_seg_t *seg, uint32_t idx); /* NULL if out of range */
struct sockmem_proc *sockmem_proc_at(sockmem_seg_t *seg, uint32_t idx);
struct sockmem_slot *sockmem_slot_at(sockmem_seg_t *seg, uint32_t idx);

/* ---- groups ----------------------------------------------------------- */

/* Validate a group path ("a/b/c"): components of [A-Za-z0-9_.-], not empty,
 * not "." or "..", total length < SOCKMEM_PATH_MAX. On failure `why` (if not
 * NULL) points to a static string saying why. */
int sockmem_path_valid(const char *path, const char **why);

int sockmem_group_lookup(sockmem_seg_t *seg, const char *path, uint32_t *idx);
/* Find or create, creating missing parents. -ENOSPC when the table is full;
 * -ETIMEDOUT (table lock, see top) when something must be created. */
int sockmem_group_create(sockmem_seg_t *seg, const char *path, uint32_t *idx);
/* Remove an unused group (no children, no processes, zero usage): -EBUSY.
 * -ETIMEDOUT: table lock (see top). */
int sockmem_group_remove(sockmem_seg_t *seg, const char *path);

/* Set limits; SOCKMEM_KEEP leaves one unchanged, SOCKMEM_UNLIMITED is "max".
 * Refused with -EINVAL unless low <= high <= max after the change; `err`
 * says which. max below usage is accepted and puts the group under pressure.
 * -ETIMEDOUT: table lock (see top); `err` says so. */
int sockmem_group_set_limits(sockmem_seg_t *seg, uint32_t idx, int64_t max, int64_t high,
			     int64_t low, char *err, size_t errlen);
/* The same on the live group with that path, looked up under the table lock:
 * an index taken earlier may by now name another group (the one it named
 * removed, its entry reused). -ENOENT if there is none. */
int sockmem_group_set_limits_path(sockmem_seg_t *seg, const char *path, int64_t max, int64_t high,
				  int64_t low, char *err, size_t errlen);
/* The rule sockmem_group_set_limits enforces, on final values (no
 * SOCKMEM_KEEP): none negative, high <= max unless high is SOCKMEM_UNLIMITED
 * (no high watermark), low <= min(high, max). 0 or -EINVAL with `err` saying
 * which. Also applied to every live group on attach (see sockmem_open).
 * Pure function. */
int sockmem_limits_check(int64_t max, int64_t high, int64_t low, char *err, size_t errlen);
int sockmem_group_reset_peak(sockmem_seg_t *seg, uint32_t idx);

struct sockmem_group_stat {
	char path[SOCKMEM_PATH_MAX];
	uint32_t idx, parent, depth;
	int64_t current; /* usage, including per-thread caches */
	int64_t sock;	 /* charged to sockets only (current - cached) */
	int64_t cached;	 /* bytes sitting in per-thread caches */
	int64_t max, high, low, peak;
	uint64_t failcnt;
	uint64_t ev_low, ev_high, ev_max, ev_pressure, ev_throttled;
	uint64_t underflows, throttle_ns;
	uint64_t reclaim_passes, reclaim_drained, reclaim_reconciled, reclaim_clamped;
	int64_t sockets, processes;
	bool under_pressure; /* this group or an ancestor */
};
/* A snapshot (racy by design: fields are read one by one). -ENOENT if the
 * index is not a live group. Does not write to the segment. */
int sockmem_group_stat(sockmem_seg_t *seg, uint32_t idx, struct sockmem_group_stat *st);
/* Iterate live groups: returns the next live index >= from, or SOCKMEM_NONE. */
uint32_t sockmem_group_next(sockmem_seg_t *seg, uint32_t from);

/* ---- the counter (page_counter) -------------------------------------- */

/*
 * Charge `nr` bytes to `group` and every ancestor, failing if any level would
 * exceed its max; on failure nothing is charged, failcnt/ev_max are counted at
 * the failing level and `*fail` (if not NULL) names it. Never lets a level
 * exceed max: each level is updated with a compare-and-swap.
 */
bool sockmem_try_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr, uint32_t *fail);
/* Forced charge (memory the kernel already allocated): never fails; counts
 * ev_max at any level it takes over max. */
void sockmem_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr);
/* Uncharge from group and ancestors; clamps at zero and counts an underflow
 * (logged once per process). */
void sockmem_uncharge(sockmem_seg_t *seg, uint32_t group, int64_t nr);

/* Is the group, or any ancestor, under socket pressure now? */
bool sockmem_under_pressure(sockmem_seg_t *seg, uint32_t group);
/* Enter pressure for `period_ns` from now (max hit, failed reclaim). */
void sockmem_enter_pressure(sockmem_seg_t *seg, uint32_t group, uint64_t period_ns);
/* The pressure period this process's max hits start (default 1 s; the shim
 * sets SOCKMEM_PRESSURE_MS). Process-wide; 0 is ignored. Call before the
 * process charges (it is read relaxed by charge paths). */
void sockmem_set_pressure_period(uint64_t period_ns);

/* ---- processes -------------------------------------------------------- */

/* Register the calling process as a member of `group`. -ENOSPC when the
 * process table is full; -ETIMEDOUT: table lock (see top). */
int sockmem_proc_register(sockmem_seg_t *seg, uint32_t group, uint32_t *proc);
/* Unregister (normal exit): returns every charge the record and its slots
 * still hold. The caller's own threads must have detached their caches.
 * Takes the table lock; if that times out (see top) the record stays LIVE
 * and the next reap after this process has exited returns its charges. */
void sockmem_proc_unregister(sockmem_seg_t *seg, uint32_t proc);
/* Return the charges of every dead member process (pid gone or reused).
 * Returns the number of records reaped (>= 0) or -errno (-ETIMEDOUT: table
 * lock, see top; nothing was reaped). */
int sockmem_reap(sockmem_seg_t *seg, int64_t *bytes_returned);

/* ---- per-thread charge caches ---------------------------------------- */

#define SOCKMEM_DEFAULT_BATCH (64 * 1024)
/* The largest batch a cache takes (attach clamps to it): SOCKMEM_BATCH's
 * own maximum, far from where 2 x batch, the stock's bound, could overflow. */
#define SOCKMEM_BATCH_MAX (16 * 1024 * 1024)

/* A thread's handle on its slot. Lives in the thread (TLS or stack). */
struct sockmem_cache {
	sockmem_seg_t *seg;
	struct sockmem_slot *slot; /* NULL: no slot, every op goes to the counter */
	uint32_t group;
	uint32_t proc;
	int64_t batch;
	/* This process could not register for membarrier: the fast paths pay
	 * a real fence (lib/cache.h). Set by attach, after registering; a copy
	 * so the fast path reads nothing outside the handle and the slot. */
	bool fence;
};

/* Claim a slot for the calling thread. Without a free slot the cache still
 * works, uncached (slot == NULL), and this returns -ENOSPC. `batch`: bytes
 * per refill; <= 0 is SOCKMEM_DEFAULT_BATCH, above SOCKMEM_BATCH_MAX is
 * clamped to it. */
int sockmem_cache_attach(sockmem_seg_t *seg, uint32_t proc, int64_t batch, struct sockmem_cache *c);
/* Thread exit: return the stock to the counter, hand the slot's socket
 * charges over to the process record, free the slot. */
void sockmem_cache_detach(struct sockmem_cache *c);

/* Fast paths: see lib/cache.h (inline). Out-of-line versions for callers
 * that do not include the private header: */
bool sockmem_cache_charge(struct sockmem_cache *c, int64_t nr, bool force, uint32_t *fail);
void sockmem_cache_uncharge(struct sockmem_cache *c, int64_t nr);

/* Take back the stock of every cache charging `group` or a descendant, in
 * every process (remote steal; see struct sockmem_slot). Returns the bytes
 * returned to the counter. */
int64_t sockmem_drain_caches(sockmem_seg_t *seg, uint32_t group);

/* ---- helpers ---------------------------------------------------------- */

/* Parse a size: decimal integer with optional K/M/G/T suffix (base 1024,
 * case-insensitive, optional trailing "B"/"iB"), or "max". Strict: no sign,
 * no spaces, no overflow. -EINVAL / -ERANGE. */
int sockmem_parse_size(const char *s, int64_t *out);
/* Format for humans: "64.0M", "512K", "max". Returns buf. */
char *sockmem_format_size(int64_t v, char *buf, size_t len);

/* Monotonic clock in ns (CLOCK_MONOTONIC, comparable across processes). */
uint64_t sockmem_now_ns(void);

/* ---- call-site traces (issue 5; lib/trace.c) ------------------------- */
/*
 * The trace table: one record per call site (stack) that hit max or was
 * throttled, filled by the shim with SOCKMEM_TRACE=1 (see struct
 * sockmem_trace in abi.h for the layout and each field's writers).
 */

/* Record `idx`, or NULL if out of range (raw access; see sockmem_trace_read). */
struct sockmem_trace *sockmem_trace_at(sockmem_seg_t *seg, uint32_t idx);
/* The identity of a site: hash of group, group_gen and every frame's
 * (object path, address). Pure. */
uint64_t sockmem_trace_hash(const struct sockmem_trace *site);
/*
 * Count one hit of `bytes` (`kind`: SOCKMEM_TRACE_KIND_*) at `site`: a
 * caller-built image whose group, group_gen, depth, pcs, obj, nobjs, objs,
 * exe and pid are filled (the rest is ignored). Finds the site's record or
 * claims a free one (CAS on state). Returns 0, -EINVAL (bad site), -EROFS
 * (read-only mapping), -ENOSPC (table full: not recorded).
 * Concurrency: lock-free, allocation-free; any thread, any process, signal
 * handlers included. Two racing first hits may claim two records for one
 * site; readers merge records with equal hash.
 */
int sockmem_trace_add(sockmem_seg_t *seg, const struct sockmem_trace *site, int64_t bytes,
		      uint32_t kind);
/* Copy record `idx` if LIVE, sanitised (strings terminated, depth and object
 * indices clamped) so a corrupt segment cannot mislead the reader into
 * out-of-bounds accesses. -ENOENT if not LIVE. Reads only (racy snapshot). */
int sockmem_trace_read(sockmem_seg_t *seg, uint32_t idx, struct sockmem_trace *out);
/* Free the records of `group` and its descendants (SOCKMEM_NONE: every
 * record). Returns the number freed, or -EROFS. Lock-free; a hit racing the
 * reset may be lost. */
int sockmem_trace_reset(sockmem_seg_t *seg, uint32_t group);

#ifdef __cplusplus
}
#endif
#endif /* SOCKMEM_H */
