/*
 * Shared by the two segment targets: wrapping an image held in memory as a
 * sockmem_seg_t, the properties of an accepted image, and a workout of the
 * core functions that read or write a segment without taking its lock.
 */
#ifndef SOCKMEM_SEGFUZZ_H
#define SOCKMEM_SEGFUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Allocate a 64-byte-aligned copy of data[0..size) (at least 64 bytes). */
void *fz_aligned_copy(const void *data, size_t size);

/* Fill *seg as sockmem_open does for a mapped, validated image (from one
 * copy of the header, so later writes to it cannot change the view). */
void fz_seg_wrap(sockmem_seg_t *seg, void *base, size_t len);

/* Validate and check the one-line message on refusal. Returns the rc. */
int fz_validate(const void *base, size_t len, uint32_t uid);

/* Properties every accepted image must have (read-only checks). */
void fz_check_accepted(sockmem_seg_t *seg, uint32_t uid);

/* Call every lock-free reader and the counter's writers on every index
 * (and one past the end). Must be memory-safe on any contents once the
 * image was accepted, including contents changed after validation. */
void fz_exercise(sockmem_seg_t *seg);

/* The slow paths that take the table lock or touch other processes' slots:
 * cache attach/charge/uncharge/detach for every live process record, a
 * remote drain, a reap, group creation, limits and removal. The table lock
 * is re-initialised first (its bytes cannot be validated: see
 * docs/THREAT-MODEL.md, G6) and slots' busy/steal flags are cleared (a
 * raised flag only costs a bounded wait, which would make fuzzing slow). */
void fz_exercise_slow(sockmem_seg_t *seg);

/* Known finding "counter-overflow": bring the counters that lib/'s
 * arithmetic cannot take (negative, or near INT64_MAX: group usage, peak,
 * limits, sockets, processes; process sock/sockets; slot stock/sock) back
 * into range, so a long run can go on past it. Only used when fz_known()
 * says so. */
void fz_mask_counters(sockmem_seg_t *seg);

#endif /* SOCKMEM_SEGFUZZ_H */
