/*
 * Writes the binary seed corpora of the two segment targets:
 *
 *   corpus/segment/      whole images: a real segment (valid, full and
 *                        compacted), and one image per kind of damage
 *                        validation must refuse;
 *   corpus/segment_mut/  patch lists for fuzz_segment_mut (see its header
 *                        comment), each aimed at one field of the real image.
 *
 * Usage: fuzz_mkseeds CORPUS_DIR (run from the build; see tests/fuzz/README.md). The
 * seeds are committed; this program documents how they were made.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define HDR(f)	 offsetof(struct sockmem_header, f)
#define GRP(f)	 offsetof(struct sockmem_group, f)
#define SLOT(f)	 offsetof(struct sockmem_slot, f)
#define PROC(f)	 offsetof(struct sockmem_proc, f)
#define TRACE(f) offsetof(struct sockmem_trace, f)

static const char *out_dir;

static void put(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "mkseeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void set32(uint8_t *img, size_t off, uint32_t v)
{
	memcpy(img + off, &v, sizeof(v));
}

static void set64(uint8_t *img, size_t off, uint64_t v)
{
	memcpy(img + off, &v, sizeof(v));
}

/* One live call-site record charging group g. */
static void add_trace(sockmem_seg_t *seg, uint32_t g)
{
	struct sockmem_trace site;

	memset(&site, 0, sizeof(site));
	site.group = g;
	site.group_gen = sockmem_group_at(seg, g)->generation;
	site.depth = 2;
	site.pcs[0] = 0x401000;
	site.pcs[1] = 0x1234;
	site.obj[0] = 0;
	site.obj[1] = 1;
	site.nobjs = 2;
	snprintf(site.objs[0], sizeof(site.objs[0]), "/usr/bin/server");
	snprintf(site.objs[1], sizeof(site.objs[1]), "/lib/x86_64-linux-gnu/libc.so.6");
	snprintf(site.exe, sizeof(site.exe), "server");
	site.pid = (int32_t)getpid();
	sockmem_trace_add(seg, &site, 65536, SOCKMEM_TRACE_KIND_MAX);
}

/* A real segment with small capacities and live records; returns a copy. */
static uint8_t *real_image(size_t *len, bool populate)
{
	struct sockmem_open_opts o = {
		.create = true,
		.groups = 4,
		.procs = 2,
		.slots = 2,
		.traces = 1,
	};
	char ns[SOCKMEM_NS_MAX], err[SOCKMEM_ERRLEN] = "";
	struct sockmem_cache c;
	sockmem_seg_t *seg;
	uint32_t g, p;
	uint8_t *img;

	snprintf(ns, sizeof(ns), "fuzz-mkseeds-%d", (int)getpid());
	o.ns = ns;
	if (sockmem_open(&o, &seg, err, sizeof(err)) < 0) {
		fprintf(stderr, "mkseeds: %s\n", err);
		exit(1);
	}
	if (populate) {
		sockmem_group_create(seg, "t/web", &g);
		sockmem_group_set_limits(seg, g, 1 << 20, 1 << 19, 1 << 18, err, sizeof(err));
		sockmem_proc_register(seg, g, &p);
		sockmem_cache_attach(seg, p, 4096, &c);
		sockmem_cache_charge(&c, 100, false, NULL);
		add_trace(seg, g);
	}
	*len = sockmem_header(seg)->total_size;
	img = malloc(*len);
	memcpy(img, sockmem_header(seg), *len);
	if (populate) {
		sockmem_cache_detach(&c);
		sockmem_proc_unregister(seg, p);
	}
	sockmem_close(seg);
	sockmem_unlink(ns);
	return img;
}

/* One damaged copy of img per kind of damage. */
static void damaged(const uint8_t *img, size_t len, size_t compact)
{
	struct sockmem_header h;
	uint8_t *d = malloc(len);
	size_t g0 = 0, g1 = 0;

	memcpy(&h, img, sizeof(h));
	g0 = h.group_offset;
	g1 = h.group_offset + h.group_size; /* "t/web", child of group 0 "t" */
#define DAMAGE(name, n, stmt)                                                                      \
	do {                                                                                       \
		memcpy(d, img, len);                                                               \
		stmt;                                                                              \
		put("segment", name, d, n);                                                        \
	} while (0)
	DAMAGE("bad-magic", len, set64(d, HDR(magic), 0x1122334455667788u));
	DAMAGE("abi-next", len, set32(d, HDR(abi_version), SOCKMEM_ABI_VERSION + 1));
	DAMAGE("abi-previous", len, set32(d, HDR(abi_version), SOCKMEM_ABI_VERSION - 1));
	DAMAGE("truncated-header", 100, (void)0);
	DAMAGE("truncated-file", compact - 64, (void)0);
	DAMAGE("size-mismatch", len, set64(d, HDR(total_size), len * 2));
	DAMAGE("tables-overlap", len, set64(d, HDR(proc_offset), h.group_offset + 64));
	DAMAGE("capacity-huge", len, set32(d, HDR(slot_capacity), 0x40000000u));
	DAMAGE("offset-unaligned", len, set64(d, HDR(trace_offset), h.trace_offset + 8));
	DAMAGE("ns-unterminated", len, memset(d + HDR(ns), 'n', SOCKMEM_NS_MAX));
	DAMAGE("group-parent-range", len, set32(d, g1 + GRP(parent), 77));
	DAMAGE("group-parent-self", len, set32(d, g1 + GRP(parent), 1));
	DAMAGE("group-depth", len, set32(d, g1 + GRP(depth), 5));
	DAMAGE("group-path-unterminated", len, memset(d + g0 + GRP(path), 'p', SOCKMEM_PATH_MAX));
	DAMAGE("group-path-dotdot", len, memcpy(d + g1 + GRP(path), "t/..", 5));
	DAMAGE("group-negative-max", len, set64(d, g1 + GRP(max), (uint64_t)-1));
	DAMAGE("group-state", len, set32(d, g0 + GRP(state), 9));
	DAMAGE("slot-group-range", len, set32(d, h.slot_offset + SLOT(group), 4));
	DAMAGE("proc-group-range", len, set32(d, h.proc_offset + PROC(group), 0xffffffffu));
	DAMAGE("trace-nobjs", len, set32(d, h.trace_offset + TRACE(nobjs), 5));
	DAMAGE("trace-depth", len, set32(d, h.trace_offset + TRACE(depth), 17));
#undef DAMAGE
	free(d);
}

/* Patch-list seeds for fuzz_segment_mut: header (2 bytes), then records. */
struct rec {
	uint8_t op;
	uint16_t off;
	uint8_t n;
	uint8_t data[8];
};

static void mut_seed(const char *name, uint8_t len_mode, uint8_t len_units, const struct rec *r,
		     int k)
{
	uint8_t buf[2 + 8 * 12], *p = buf;

	*p++ = len_mode;
	*p++ = len_units;
	for (int i = 0; i < k; i++) {
		*p++ = r[i].op;
		*p++ = (uint8_t)(r[i].off & 0xff);
		*p++ = (uint8_t)(r[i].off >> 8);
		*p++ = r[i].n;
		memcpy(p, r[i].data, r[i].n);
		p += r[i].n;
	}
	put("segment_mut", name, buf, (size_t)(p - buf));
}

/* Offsets in fuzz_segment_mut's base image: capacities 8/4/4/2. */
static void mut_seeds(void)
{
	const uint16_t groups = 256, procs = groups + 8 * sizeof(struct sockmem_group);
	const uint16_t slots = procs + 4 * sizeof(struct sockmem_proc);
	const uint16_t g1 = groups + sizeof(struct sockmem_group);
	struct rec r[4];

	mut_seed("unchanged", 0, 0, r, 0);
	mut_seed("shrink-8", 1, 1, r, 0);
	mut_seed("grow-64", 2, 8, r, 0);
	r[0] = (struct rec){0, HDR(abi_version), 1, {3}};
	mut_seed("pre-abi-version", 0, 0, r, 1);
	r[0] = (struct rec){0, HDR(group_capacity), 4, {9}};
	mut_seed("pre-group-capacity", 0, 0, r, 1);
	r[0] = (struct rec){0, (uint16_t)(g1 + GRP(parent)), 4, {1}};
	mut_seed("pre-parent-self", 0, 0, r, 1);
	r[0] = (struct rec){0, (uint16_t)(groups + GRP(state)), 4, {0}};
	mut_seed("pre-free-root", 0, 0, r, 1);
	r[0] = (struct rec){1, (uint16_t)(g1 + GRP(parent)), 4, {1, 0, 0, 0}};
	mut_seed("post-parent-cycle", 0, 0, r, 1);
	r[0] = (struct rec){1, (uint16_t)(slots + SLOT(group)), 4, {0xff, 0xff, 0xff, 0x7f}};
	mut_seed("post-slot-group", 0, 0, r, 1);
	r[0] = (struct rec){1, (uint16_t)(procs + PROC(group)), 4, {0xfe, 0xff, 0xff, 0xff}};
	mut_seed("post-proc-group", 0, 0, r, 1);
	r[0] = (struct rec){1, (uint16_t)(g1 + GRP(path)), 8, {'a', '/', 'b', '/', '.', '.'}};
	mut_seed("post-path-dotdot", 0, 0, r, 1);
	r[0] = (struct rec){1, (uint16_t)(groups + GRP(state)), 4, {3}};
	r[1] = (struct rec){1, (uint16_t)(g1 + GRP(depth)), 4, {0xff, 0xff, 0xff, 0xff}};
	mut_seed("post-dead-root", 0, 0, r, 2);
}

int main(int argc, char **argv)
{
	size_t len, compact;
	uint8_t *img, *fresh;
	struct sockmem_header h;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	img = real_image(&len, true);
	put("segment", "valid-populated", img, len);
	/* The same image cut after its last table: the size need not be a page. */
	memcpy(&h, img, sizeof(h));
	compact = h.trace_offset + (size_t)h.trace_capacity * h.trace_size;
	set64(img, HDR(total_size), compact);
	put("segment", "valid-compact", img, compact);
	set64(img, HDR(total_size), len);
	fresh = real_image(&len, false);
	put("segment", "valid-fresh", fresh, len);
	damaged(img, len, compact);
	mut_seeds();
	free(img);
	free(fresh);
	return 0;
}
