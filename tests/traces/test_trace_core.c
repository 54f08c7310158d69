/*
 * The trace table (lib/trace.c) and the ELF symboliser (tools/ctl_symbols.c),
 * in process: find-or-claim, merging, a full table, reset, read-only
 * mappings, sanitised reads, validation, concurrent hits; symbol lookup of
 * this program's own function and robustness against non-ELF or damaged files.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_symbols.h"
#include "sockmem/sockmem.h"

static char ns[64];

static void setup(void)
{
	snprintf(ns, sizeof(ns), "t-trace-%d", (int)getpid());
	sockmem_unlink(ns);
}

static void teardown(void)
{
	sockmem_unlink(ns);
}

TestSuite(trace, .init = setup, .fini = teardown, .timeout = 60);

static sockmem_seg_t *seg_open(uint32_t traces, bool readonly)
{
	struct sockmem_open_opts o = {
		.ns = ns, .create = !readonly, .readonly = readonly, .traces = traces};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;

	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	return seg;
}

static void site_of(struct sockmem_trace *s, uint32_t group, uint64_t pc0)
{
	memset(s, 0, sizeof(*s));
	s->group = group;
	s->depth = 3;
	s->nobjs = 1;
	s->pid = 42;
	strcpy(s->exe, "prog");
	strcpy(s->objs[0], "/usr/bin/prog");
	for (int i = 0; i < 3; i++) {
		s->pcs[i] = pc0 + 16 * (uint64_t)i;
		s->obj[i] = 0;
	}
}

/* Live records: count, and the total of their counts for `hash`. */
static int live(sockmem_seg_t *seg, uint64_t hash, uint64_t *sum, uint64_t *bytes)
{
	struct sockmem_trace t;
	int n = 0;

	*sum = *bytes = 0;
	for (uint32_t i = 0; i < sockmem_header(seg)->trace_capacity; i++) {
		if (sockmem_trace_read(seg, i, &t) < 0)
			continue;
		n++;
		if (atomic_load(&t.hash) == hash) {
			*sum += atomic_load(&t.count);
			*bytes += atomic_load(&t.bytes);
		}
	}
	return n;
}

Test(trace, same_site_merges_into_one_record)
{
	sockmem_seg_t *seg = seg_open(0, false);
	struct sockmem_trace s;
	uint64_t sum, bytes;
	uint32_t g;

	cr_assert_eq(sockmem_group_create(seg, "a", &g), 0);
	site_of(&s, g, 0x1000);
	cr_assert_eq(sockmem_trace_add(seg, &s, 100, SOCKMEM_TRACE_KIND_MAX), 0);
	cr_assert_eq(sockmem_trace_add(seg, &s, 50, SOCKMEM_TRACE_KIND_THROTTLE), 0);
	cr_assert_eq(sockmem_trace_add(seg, &s, 1, SOCKMEM_TRACE_KIND_MAX), 0);
	cr_expect_eq(live(seg, sockmem_trace_hash(&s), &sum, &bytes), 1);
	cr_expect_eq(sum, 3);
	cr_expect_eq(bytes, 151);
	for (uint32_t i = 0; i < sockmem_header(seg)->trace_capacity; i++) {
		struct sockmem_trace t;

		if (sockmem_trace_read(seg, i, &t) == 0) {
			cr_expect_eq(atomic_load(&t.kinds), 3u);
			cr_expect_eq(t.pid, 42);
			cr_expect_str_eq(t.objs[0], "/usr/bin/prog");
			cr_expect_eq(t.pcs[2], 0x1020);
			cr_expect_gt(t.first_ns, 0);
		}
	}
	sockmem_close(seg);
}

Test(trace, identity_covers_frames_objects_and_group)
{
	struct sockmem_trace a, b;

	site_of(&a, 1, 0x1000);
	b = a;
	cr_expect_eq(sockmem_trace_hash(&a), sockmem_trace_hash(&b));
	b.pcs[2]++;
	cr_expect_neq(sockmem_trace_hash(&a), sockmem_trace_hash(&b));
	b = a;
	strcpy(b.objs[0], "/usr/bin/other");
	cr_expect_neq(sockmem_trace_hash(&a), sockmem_trace_hash(&b));
	b = a;
	b.group_gen++;
	cr_expect_neq(sockmem_trace_hash(&a), sockmem_trace_hash(&b));
	b = a;
	b.pid = 7; /* not part of the identity: processes merge */
	strcpy(b.exe, "x");
	cr_expect_eq(sockmem_trace_hash(&a), sockmem_trace_hash(&b));
}

Test(trace, full_table_refuses_new_sites)
{
	sockmem_seg_t *seg = seg_open(4, false);
	struct sockmem_trace s;
	uint32_t g;

	cr_assert_eq(sockmem_group_create(seg, "a", &g), 0);
	for (int i = 0; i < 4; i++) {
		site_of(&s, g, 0x1000 * (uint64_t)(i + 1));
		cr_assert_eq(sockmem_trace_add(seg, &s, 1, SOCKMEM_TRACE_KIND_MAX), 0);
	}
	site_of(&s, g, 0x9000);
	cr_expect_eq(sockmem_trace_add(seg, &s, 1, SOCKMEM_TRACE_KIND_MAX), -ENOSPC);
	site_of(&s, g, 0x2000); /* a known site still counts */
	cr_expect_eq(sockmem_trace_add(seg, &s, 1, SOCKMEM_TRACE_KIND_MAX), 0);
	s.depth = SOCKMEM_TRACE_DEPTH + 1;
	cr_expect_eq(sockmem_trace_add(seg, &s, 1, SOCKMEM_TRACE_KIND_MAX), -EINVAL);
	sockmem_close(seg);
}

Test(trace, reset_frees_a_subtree_only)
{
	sockmem_seg_t *seg = seg_open(0, false);
	struct sockmem_trace s;
	uint32_t a, ab, c;
	uint64_t sum, bytes;

	cr_assert_eq(sockmem_group_create(seg, "a/b", &ab), 0);
	cr_assert_eq(sockmem_group_lookup(seg, "a", &a), 0);
	cr_assert_eq(sockmem_group_create(seg, "c", &c), 0);
	site_of(&s, a, 0x1000);
	sockmem_trace_add(seg, &s, 1, 1);
	site_of(&s, ab, 0x1000);
	sockmem_trace_add(seg, &s, 1, 1);
	site_of(&s, c, 0x1000);
	sockmem_trace_add(seg, &s, 1, 1);
	cr_expect_eq(live(seg, 0, &sum, &bytes), 3);
	cr_expect_eq(sockmem_trace_reset(seg, ab), 1);
	cr_expect_eq(sockmem_trace_reset(seg, a), 1);
	cr_expect_eq(live(seg, 0, &sum, &bytes), 1);
	cr_expect_eq(sockmem_trace_reset(seg, SOCKMEM_NONE), 1);
	cr_expect_eq(live(seg, 0, &sum, &bytes), 0);
	/* A freed record is claimed again. */
	cr_expect_eq(sockmem_trace_add(seg, &s, 5, 1), 0);
	cr_expect_eq(live(seg, sockmem_trace_hash(&s), &sum, &bytes), 1);
	cr_expect_eq(sum, 1);
	cr_expect_eq(bytes, 5);
	sockmem_close(seg);
}

Test(trace, read_only_mapping_is_refused)
{
	sockmem_seg_t *rw = seg_open(0, false), *ro = seg_open(0, true);
	struct sockmem_trace s;

	site_of(&s, 0, 0x1000);
	cr_expect_eq(sockmem_trace_add(ro, &s, 1, 1), -EROFS);
	cr_expect_eq(sockmem_trace_reset(ro, SOCKMEM_NONE), -EROFS);
	sockmem_close(ro);
	sockmem_close(rw);
}

Test(trace, read_sanitises_a_corrupt_record)
{
	sockmem_seg_t *seg = seg_open(0, false);
	struct sockmem_trace *t = sockmem_trace_at(seg, 3), c;

	cr_assert_null(sockmem_trace_at(seg, sockmem_header(seg)->trace_capacity));
	cr_expect_eq(sockmem_trace_read(seg, 3, &c), -ENOENT);
	memset(t, 0xff, sizeof(*t));
	t->depth = 1000;
	t->nobjs = 77;
	atomic_store(&t->state, SOCKMEM_LIVE);
	cr_assert_eq(sockmem_trace_read(seg, 3, &c), 0);
	cr_expect_eq(c.depth, SOCKMEM_TRACE_DEPTH);
	cr_expect_eq(c.nobjs, SOCKMEM_TRACE_OBJS);
	for (int i = 0; i < SOCKMEM_TRACE_DEPTH; i++)
		cr_expect_eq(c.obj[i], SOCKMEM_TRACE_NO_OBJ);
	cr_expect_lt(strlen(c.exe), sizeof(c.exe));
	for (int i = 0; i < SOCKMEM_TRACE_OBJS; i++)
		cr_expect_lt(strlen(c.objs[i]), sizeof(c.objs[i]));
	sockmem_close(seg);
}

Test(trace, validation_refuses_out_of_range_records)
{
	sockmem_seg_t *seg = seg_open(0, false);
	struct sockmem_header *h = sockmem_header(seg);
	struct sockmem_trace *t = sockmem_trace_at(seg, 0);
	char err[SOCKMEM_ERRLEN];

	atomic_store(&t->state, SOCKMEM_LIVE);
	cr_expect_eq(sockmem_validate(h, h->total_size, h->owner_uid, err, sizeof(err)), 0, "%s",
		     err);
	t->nobjs = SOCKMEM_TRACE_OBJS + 1;
	cr_expect_eq(sockmem_validate(h, h->total_size, h->owner_uid, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "trace 0"), "%s", err);
	t->nobjs = 0;
	t->depth = SOCKMEM_TRACE_DEPTH + 1;
	cr_expect_eq(sockmem_validate(h, h->total_size, h->owner_uid, err, sizeof(err)), -EPROTO);
	t->depth = 0;
	atomic_store(&t->state, 9);
	cr_expect_eq(sockmem_validate(h, h->total_size, h->owner_uid, err, sizeof(err)), -EPROTO);
	atomic_store(&t->state, SOCKMEM_FREE);
	sockmem_close(seg);
}

/* ---- concurrency ------------------------------------------------------ */

#define THREADS 4
#define HITS	20000

static sockmem_seg_t *shared;
static uint32_t shared_group;

static void *hammer(void *arg)
{
	struct sockmem_trace s;
	long id = (long)arg;

	for (int i = 0; i < HITS; i++) {
		/* One common site, and a private one per thread every 64 hits. */
		site_of(&s, shared_group, (i % 64) ? 0x1000 : 0x100000 * (uint64_t)(id + 1));
		cr_assert_eq(sockmem_trace_add(shared, &s, 10, 1), 0);
	}
	return NULL;
}

Test(trace, concurrent_hits_are_all_counted)
{
	pthread_t th[THREADS];
	struct sockmem_trace s;
	uint64_t sum, bytes, total = 0;
	int n;

	shared = seg_open(0, false);
	cr_assert_eq(sockmem_group_create(shared, "a", &shared_group), 0);
	for (long i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, hammer, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	site_of(&s, shared_group, 0x1000);
	n = live(shared, sockmem_trace_hash(&s), &sum, &bytes);
	total += sum;
	cr_expect_geq(n, 1 + THREADS);
	for (long i = 0; i < THREADS; i++) {
		site_of(&s, shared_group, 0x100000 * (uint64_t)(i + 1));
		live(shared, sockmem_trace_hash(&s), &sum, &bytes);
		cr_expect_eq(sum, HITS / 64 + 1, "thread %ld's own site", i);
		total += sum;
	}
	cr_expect_eq(total, (uint64_t)THREADS * HITS);
	sockmem_close(shared);
}

/* ---- the symboliser ----------------------------------------------------- */

int sm_test_known_function(int x);
__attribute__((noinline, visibility("default"))) int sm_test_known_function(int x)
{
	__asm__ volatile("" ::: "memory");
	return x * 3 + 1;
}

static const char *self_exe(void)
{
	static char path[512];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	cr_assert_gt(n, 0);
	path[n] = '\0';
	return path;
}

Test(symbols, resolves_own_function)
{
	struct link_map *lm = NULL;
	struct ctl_sym sym;
	Dl_info info;
	uint64_t addr;

	cr_assert(dladdr1((void *)sm_test_known_function, &info, (void **)&lm, RTLD_DL_LINKMAP));
	addr = (uint64_t)(uintptr_t)sm_test_known_function - lm->l_addr;
	cr_assert_eq(ctl_symbolize(self_exe(), addr + 4, 0, &sym), 0);
	cr_expect_str_eq(sym.name, "sm_test_known_function");
	cr_expect_eq(sym.offset, 4);
	/* A return address just past the function's start still names it. */
	cr_assert_eq(ctl_symbolize(self_exe(), addr + 1, 1, &sym), 0);
	cr_expect_str_eq(sym.name, "sm_test_known_function");
	cr_expect_eq(sym.offset, 1);
	ctl_symbols_release();
}

Test(symbols, resolves_a_shared_library_function)
{
	struct link_map *lm = NULL;
	struct ctl_sym sym;
	Dl_info info;
	void *fn = dlsym(RTLD_DEFAULT, "getpid");

	cr_assert(fn && dladdr1(fn, &info, (void **)&lm, RTLD_DL_LINKMAP));
	cr_assert_eq(ctl_symbolize(lm->l_name, (uint64_t)(uintptr_t)fn - lm->l_addr, 0, &sym), 0,
		     "%s", lm->l_name);
	cr_expect(strstr(sym.name, "getpid"), "%s", sym.name);
	ctl_symbols_release();
}

Test(symbols, non_elf_files_are_errors_not_crashes)
{
	struct ctl_sym sym;
	char tmp[] = "/tmp/sm-sym-XXXXXX";
	int fd = mkstemp(tmp);

	cr_assert_geq(fd, 0);
	cr_expect_eq(write(fd, "\177ELF not really", 15), 15);
	close(fd);
	cr_expect_lt(ctl_symbolize("/nonexistent/x.so", 0x1000, 1, &sym), 0);
	cr_expect_lt(ctl_symbolize("/dev/null", 0x1000, 1, &sym), 0);
	cr_expect_lt(ctl_symbolize("/tmp", 0x1000, 1, &sym), 0);
	cr_expect_lt(ctl_symbolize("/etc/hostname", 0x1000, 1, &sym), 0);
	cr_expect_lt(ctl_symbolize(tmp, 0x1000, 1, &sym), 0);
	cr_expect_null(sym.name);
	unlink(tmp);
	ctl_symbols_release();
}

/* Damage this program's own image at random (the ELF header's section
 * fields, the section table, the symbol tables) and look symbols up: any
 * answer is fine, reading out of bounds is not (ASan build). */
Test(symbols, damaged_objects_do_not_crash, .timeout = 120)
{
	FILE *f = fopen(self_exe(), "rb");
	static unsigned char img[8 << 20];
	size_t len = f ? fread(img, 1, sizeof(img), f) : 0;
	char path[64];
	struct ctl_sym sym;

	cr_assert(f && len > 4096 && len < sizeof(img));
	fclose(f);
	srand(12345);
	snprintf(path, sizeof(path), "/tmp/sm-sym-%d.elf", (int)getpid());
	for (int round = 0; round < 200; round++) {
		static unsigned char d[8 << 20];
		const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
		size_t shoff = eh->e_shoff, n = len;

		memcpy(d, img, len);
		for (int k = 0; k < 8; k++) {
			size_t at = rand() % 3 == 0 ? 0x20 + (size_t)(rand() % 0x20)
						    : shoff + (size_t)rand() % (len - shoff);
			if (at < len)
				d[at] = (unsigned char)rand();
		}
		if (round % 10 == 9)
			n = (size_t)rand() % len; /* truncated */
		f = fopen(path, "wb");
		cr_assert(f);
		fwrite(d, 1, n, f);
		fclose(f);
		ctl_symbolize(path, (uint64_t)rand() % 0x100000, 1, &sym);
		ctl_symbols_release();
	}
	unlink(path);
}
