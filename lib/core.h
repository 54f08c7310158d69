/*
 * Private declarations shared by the core's own files (the .c files under lib/).
 */
#ifndef SOCKMEM_CORE_H
#define SOCKMEM_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Deepest hierarchy a walk will follow (a path of 127 chars has at most 64
 * components); also the bound that stops a walk on a corrupted parent chain. */
#define SM_DEPTH_MAX 64

/* Pressure period after a max hit (default 1 s; the shim may tune it). */
extern uint64_t sm_pressure_period_ns;

/* Longest wait for the table lock (default 1000 ms; tests lower it). A
 * holder that is stopped, not dead, would otherwise block every process
 * that needs the lock, including the shim's constructor. */
extern uint32_t sm_table_lock_timeout_ms;

/* sockmem_validate, also handing back the header copy it checked: build the
 * view of the segment from *h, never from a second read of the mapping. */
int sm_validate_copy(const void *base, size_t len, uint32_t file_uid, struct sockmem_header *h,
		     char *err, size_t errlen);

/* sockmem_try_charge; with count == false a refusal is not counted (no
 * failcnt, events.max or pressure): for speculative attempts. */
bool sm_try_charge(sockmem_seg_t *seg, uint32_t group, int64_t nr, uint32_t *fail, bool count);

/* hdr.table_lock (robust). 0; -ETIMEDOUT if it was not released within
 * sm_table_lock_timeout_ms (after such a timeout, for a few seconds, only
 * one attempt is made: the holder is likely stopped); -EROFS on a read-only
 * view; other -errno if the lock is unrecoverable. */
int sm_table_lock(sockmem_seg_t *seg);
void sm_table_unlock(sockmem_seg_t *seg);

/* The five (max, high, low) states set_limits moves a group through, one
 * field changed per step, from a valid `from` to a valid `to`: every step
 * satisfies low <= high <= max (an unlimited high: no watermark). */
void sm_limits_steps(const int64_t from[3], const int64_t to[3], int64_t steps[5][3]);

/* Group index -> live group, or NULL (out of range / not live). */
struct sockmem_group *sm_group_live(sockmem_seg_t *seg, uint32_t idx);
/* The parent of a group, NULL at the top or if the index is out of range. */
struct sockmem_group *sm_group_parent(sockmem_seg_t *seg, const struct sockmem_group *g);
/* Is `idx` equal to `anc` or one of its descendants? */
bool sm_group_within(sockmem_seg_t *seg, uint32_t idx, uint32_t anc);

/* Return what a process record and its slots hold to its group and free
 * them. The caller owns the record (state DEAD). Returns bytes uncharged. */
int64_t sm_proc_release(sockmem_seg_t *seg, uint32_t idx);

/* /proc/<pid>/stat field 22 (starttime, clock ticks since boot); 0 if the
 * process does not exist or the file cannot be parsed. */
uint64_t sm_proc_start_time(int pid);

/* Has process `pid` ended (or is it a zombie)? A reused pid reads as alive.
 * 0 is no process; values above INT32_MAX are never processes (gone). */
bool sm_pid_gone(uint32_t pid);

/* If the drainer named by a slot's `steal` has died, lower `steal` (CAS, so
 * a live drainer that took the slot since is left alone). True if `steal`
 * is down now. Any thread. */
bool sm_slot_unsteal(struct sockmem_slot *s);

/* Cache subsystem: register this process for membarrier (idempotent, redone
 * after fork). */
void sm_cache_register_process(void);

#endif /* SOCKMEM_CORE_H */
