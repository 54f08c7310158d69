/*
 * Limits that hold (issue 4): the core-side pieces the shim's enforcement
 * uses: the reclaimer's cross-process wake-up and wait (a futex on each
 * group's reclaim_seq), the kernel's memory.high overage curve for
 * throttling, the hierarchical receive/send budget share, and the walk that
 * finds a level above its high watermark.
 *
 * Private to lib/ and shim/ (not installed).
 */
#ifndef SOCKMEM_RECLAIM_H
#define SOCKMEM_RECLAIM_H

#include <stdbool.h>
#include <stdint.h>

#include "sockmem/sockmem.h"

/* Throttle delays at or below this are not worth a sleep (the kernel skips
 * penalties of at most HZ/100; we skip below 1 ms). */
#define SM_THROTTLE_MIN_NS 1000000ull
/* The cap of the curve (the kernel's MEMCG_MAX_HIGH_DELAY_JIFFIES, 2 s). */
#define SM_THROTTLE_MAX_NS 2000000000ull

/*
 * The kernel's memory.high penalty (mm/memcontrol.c calculate_overage and
 * calculate_high_delay) in nanoseconds, for a charge of `nr` bytes that left
 * `usage` over `high`: quadratic in the relative overage, scaled by the
 * caller's share of a 256 KiB batch, capped at 2 s; 0 when usage <= high.
 * Just over high it is well under a millisecond; at twice high it is the
 * full 2 s. Pure function.
 */
uint64_t sm_throttle_delay_ns(int64_t usage, int64_t high, int64_t nr);

/*
 * The level (group or ancestor) whose usage is furthest over its high
 * watermark, relative to that watermark; SOCKMEM_NONE if no level is over
 * high. *usage and *high are that level's figures. Lock-free, reads only.
 */
uint32_t sm_over_high(sockmem_seg_t *seg, uint32_t group, int64_t *usage, int64_t *high);

/*
 * Nearest level (group or ancestor) with a high watermark set, or
 * SOCKMEM_NONE. The reclaimer of a member process waits on that level's
 * reclaim_seq. Lock-free, reads only.
 */
uint32_t sm_high_level(sockmem_seg_t *seg, uint32_t group);

/* Bytes a try_charge could still take (smallest max - usage over the group
 * and its ancestors; INT64_MAX if no level has a finite max). A snapshot:
 * the charge itself decides. Lock-free, reads only. */
int64_t sm_headroom(sockmem_seg_t *seg, uint32_t group);
/* How far the group is from anything that acts on its usage, per socket
 * that could be overstating it: the smallest, over the group and its
 * ancestors with a finite max or high, of the room under both divided by
 * the sockets open in that level's subtree (at least min_sockets, at least
 * 1); INT64_MAX if no level has either. Lock-free, reads only; O(groups)
 * per limited level. */
int64_t sm_room_per_socket(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets);

/* Hysteresis of the send path's moderation at max: lifted once every level
 * with a finite max is at or below SM_COMFORT_NUM / SM_COMFORT_DEN of it. */
#define SM_COMFORT_NUM 3
#define SM_COMFORT_DEN 4

/* True if the group or an ancestor has a finite max and every level with a
 * finite max has usage <= max * SM_COMFORT_NUM / SM_COMFORT_DEN, and every
 * level with a high watermark is at or below it. Lock-free, reads only. */
bool sm_comfortable(sockmem_seg_t *seg, uint32_t group);

/* True if the group or an ancestor has a finite max. Lock-free. */
bool sm_limited(sockmem_seg_t *seg, uint32_t group);

/*
 * Budget share of one socket: for every level (the group and its
 * ancestors) with a finite max, max / (accounted sockets open in that
 * level's subtree, at least `min_sockets`); the smallest of these, or
 * INT64_MAX if no level has a finite max. (The floor on the divisor keeps
 * a group's first sockets from taking the whole budget before the others
 * exist: shares shrink as sockets appear, but what a socket already holds
 * cannot be taken back.) Walks the
 * group table (O(groups x depth)): slow paths and the helper's tick only.
 */
int64_t sm_budget_share(sockmem_seg_t *seg, uint32_t group, int64_t min_sockets);

/*
 * Cross-process wake-up of the reclaimers waiting on `group`: bump its
 * reclaim_seq and FUTEX_WAKE every waiter (shared futex on the mapping).
 * Called by the counter on a crossing of high (not on every charge above
 * it), and by a process stopping its own waiter. Lock-free, never blocks.
 */
void sm_reclaim_wake(sockmem_seg_t *seg, uint32_t group);

/* Current value of `group`'s reclaim_seq (to pass to sm_reclaim_wait). */
uint32_t sm_reclaim_seq(sockmem_seg_t *seg, uint32_t group);

/*
 * Wait until `group`'s reclaim_seq differs from `seen` or `timeout_ns`
 * passes (FUTEX_WAIT; returns at once if it already differs). Returns true
 * if woken by a change, false on timeout or interruption. Blocks: the
 * reclaimer thread only.
 */
bool sm_reclaim_wait(sockmem_seg_t *seg, uint32_t group, uint32_t seen, uint64_t timeout_ns);

/*
 * The 2008 RFC's open question: a low watermark too close to high keeps
 * the reclaimer busy for little gain. True when low is set and
 * high - low < max(high / 8, 128 KiB). Pure function.
 */
bool sm_low_too_close(int64_t high, int64_t low);

#endif /* SOCKMEM_RECLAIM_H */
