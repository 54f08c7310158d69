/*
 * Fuzz target: segment validation, starting from a real segment.
 *
 * At start-up a real segment is created in a namespace of its own (small
 * capacities, a few groups with limits, a registered process holding a
 * charged cache slot, a group under pressure, a call-site trace), its bytes
 * are copied, and it is unlinked. Each input is a list of patches to that
 * image, so the fuzzer starts past the magic and layout checks:
 *
 *   byte 0   bits 0-1: length: 0/3 keep, 1 shrink, 2 grow (zero-filled)
 *   byte 1   length change in units of 8 bytes
 *   then     records: op, offset (u16 LE, modulo the length), n (0..32), n bytes
 *            op bit 0 clear: patch before validation (a corrupt, stale or
 *            foreign image); set: patch after an accepted attach (a member
 *            writing the segment while others use it).
 *
 * Properties: validation returns 0 or -EPROTO with a one-line message; an
 * accepted image satisfies fz_check_accepted; after the post-attach patches
 * the lock-free readers, the counter, the caches, drain, reap and group
 * creation stay memory-safe and free of undefined behaviour.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "segfuzz.h"

#define MAX_PATCHES 64
#define MAX_N	    32

static uint8_t *base_img;
static size_t base_len;

static __attribute__((noreturn)) void fail_init(const char *what, int rc, const char *err)
{
	fprintf(stderr, "fuzz_segment_mut: cannot build the base image: %s: %s (%d)\n", what, err,
		rc);
	abort();
}

/* A live call-site record for group g (so the trace table is not empty). */
static void add_trace(sockmem_seg_t *seg, uint32_t g)
{
	struct sockmem_trace site;
	int rc;

	memset(&site, 0, sizeof(site));
	site.group = g;
	site.group_gen = sockmem_group_at(seg, g)->generation;
	site.depth = 2;
	site.pcs[0] = 0x401000;
	site.pcs[1] = 0x1234;
	site.obj[1] = 1;
	site.nobjs = 2;
	snprintf(site.objs[0], sizeof(site.objs[0]), "/usr/bin/server");
	snprintf(site.objs[1], sizeof(site.objs[1]), "/lib/libc.so.6");
	snprintf(site.exe, sizeof(site.exe), "server");
	if ((rc = sockmem_trace_add(seg, &site, 65536, SOCKMEM_TRACE_KIND_MAX)) < 0)
		fail_init("trace", rc, "");
}

/* Populate a fresh segment so that every table has live records. */
static void populate(sockmem_seg_t *seg)
{
	char err[SOCKMEM_ERRLEN] = "";
	struct sockmem_cache c;
	uint32_t a = 0, ab = 0, x = 0, p = 0;
	int rc;

	if ((rc = sockmem_group_create(seg, "a/b/c", NULL)) < 0 ||
	    (rc = sockmem_group_create(seg, "x.y/z-1", &x)) < 0 ||
	    (rc = sockmem_group_lookup(seg, "a", &a)) < 0 ||
	    (rc = sockmem_group_lookup(seg, "a/b", &ab)) < 0)
		fail_init("groups", rc, "");
	rc = sockmem_group_set_limits(seg, a, 1 << 20, 512 << 10, 256 << 10, err, sizeof(err));
	if (rc < 0)
		fail_init("limits", rc, err);
	if ((rc = sockmem_proc_register(seg, ab, &p)) < 0)
		fail_init("register", rc, "");
	if ((rc = sockmem_cache_attach(seg, p, 8192, &c)) < 0)
		fail_init("cache", rc, "");
	if (!sockmem_cache_charge(&c, 1000, false, NULL))
		fail_init("charge", -1, "");
	sockmem_charge(seg, x, 100);
	sockmem_enter_pressure(seg, x, 1000000000u);
	add_trace(seg, ab);
	/* Copy while the process record and the slot are live. */
	base_len = sockmem_header(seg)->total_size;
	base_img = malloc(base_len);
	if (!base_img)
		fail_init("malloc", -ENOMEM, "");
	memcpy(base_img, sockmem_header(seg), base_len);
	sockmem_cache_detach(&c);
	sockmem_proc_unregister(seg, p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockmem_open_opts o = {
		.create = true,
		.groups = 8,
		.procs = 4,
		.slots = 4,
		.traces = 2,
	};
	char ns[SOCKMEM_NS_MAX], err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg;
	int rc;

	sm_log_level = -1; /* reaps and underflows in fuzzed images log; keep quiet */
	snprintf(ns, sizeof(ns), "fuzz-mut-%d", (int)getpid());
	o.ns = ns;
	sockmem_unlink(ns);
	rc = sockmem_open(&o, &seg, err, sizeof(err));
	if (rc < 0)
		fail_init("open", rc, err);
	populate(seg);
	sockmem_close(seg);
	sockmem_unlink(ns);
	return 0;
}

struct patch {
	const uint8_t *data;
	uint16_t off;
	uint8_t n;
	bool post;
};

/* Decode the patch records; returns how many. */
static int decode(const uint8_t *d, size_t size, struct patch *p)
{
	size_t pos = 2;
	int k = 0;

	while (pos + 4 <= size && k < MAX_PATCHES) {
		p[k].post = d[pos] & 1;
		p[k].off = (uint16_t)(d[pos + 1] | d[pos + 2] << 8);
		p[k].n = d[pos + 3] % (MAX_N + 1);
		pos += 4;
		if (p[k].n > size - pos)
			p[k].n = (uint8_t)(size - pos);
		p[k].data = d + pos;
		pos += p[k].n;
		k++;
	}
	return k;
}

static void apply(uint8_t *img, size_t len, const struct patch *p, int k, bool post)
{
	for (int i = 0; i < k; i++) {
		if (p[i].post != post || len == 0)
			continue;
		for (size_t j = 0; j < p[i].n; j++)
			img[(p[i].off + j) % len] = p[i].data[j];
	}
}

static size_t new_length(const uint8_t *d, size_t size)
{
	size_t delta;

	if (size < 2)
		return base_len;
	delta = (size_t)d[1] * 8;
	switch (d[0] & 3) {
	case 1:
		return delta < base_len ? base_len - delta : 0;
	case 2:
		return base_len + delta;
	default:
		return base_len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct patch p[MAX_PATCHES];
	size_t len = new_length(data, size);
	int k = decode(data, size, p);
	uint32_t uid = (uint32_t)geteuid();
	uint8_t *img = malloc(len ? len : 1);
	sockmem_seg_t seg;
	void *work;

	FZ_CHECK(img != NULL);
	memset(img, 0, len);
	memcpy(img, base_img, len < base_len ? len : base_len);
	apply(img, len, p, k, false);
	/* Exactly `len` bytes: ASan sees any read past the end. */
	if (fz_validate(img, len, uid) == 0) {
		work = fz_aligned_copy(img, len);
		fz_seg_wrap(&seg, work, len);
		fz_check_accepted(&seg, uid);
		apply(work, len, p, k, true);
		fz_exercise(&seg);
		fz_exercise_slow(&seg);
		free(work);
	}
	free(img);
	return 0;
}
