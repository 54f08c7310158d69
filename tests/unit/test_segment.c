/* The segment: refusal of bad segments (each with a message that names the
 * problem, none crashing), owner and mode checks, read-only use, and the
 * create-or-attach race. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "core.h"
#include "tutil.h"

TestSuite(segment, .fini = t_fini);

struct raw {
	int fd;
	size_t len;
	void *base;
	struct sockmem_header *h;
};

static const char *name_of_ns(void)
{
	static char name[128];

	sockmem_shm_name(t_ns, name, sizeof(name));
	return name;
}

/* Map the namespace's file directly, as a hostile or buggy writer would. */
static struct raw raw_map(void)
{
	char name[128];
	struct raw r;
	struct stat st;

	sockmem_shm_name(t_ns, name, sizeof(name));
	r.fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(r.fd, 0);
	cr_assert_eq(fstat(r.fd, &st), 0);
	r.len = (size_t)st.st_size;
	r.base = mmap(NULL, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
	cr_assert_neq(r.base, MAP_FAILED);
	r.h = r.base;
	return r;
}

static void raw_unmap(struct raw *r)
{
	munmap(r->base, r->len);
	close(r->fd);
}

static struct sockmem_group *raw_group(struct raw *r, uint32_t i)
{
	return (struct sockmem_group *)((char *)r->base + r->h->group_offset) + i;
}

/* Attach and expect refusal with `rc` and a message containing `want`. */
static void expect_refused(int rc, const char *want, bool allow_foreign)
{
	struct sockmem_open_opts o = {.ns = t_ns, .allow_foreign = allow_foreign};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	int got = sockmem_open(&o, &seg, err, sizeof(err));

	cr_expect_eq(got, rc, "open returned %d (%s), want %d", got, err, rc);
	cr_expect_null(seg);
	cr_expect(strstr(err, want) != NULL, "message \"%s\" should mention \"%s\"", err, want);
	cr_expect(strstr(err, t_ns) != NULL, "message \"%s\" names the segment", err);
}

/* Attach to this test's existing segment, read-write. */
static sockmem_seg_t *t_open_attach(void)
{
	struct sockmem_open_opts o = {.ns = t_ns};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;

	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "attach: %s", err);
	return seg;
}

static const char *h_fmt_dup(uint32_t a, uint32_t b)
{
	static char buf[96];

	snprintf(buf, sizeof(buf), "groups %u and %u have the same path", a, b);
	return buf;
}

/* A fresh segment with groups a, a/b; returns b's index. */
static uint32_t fresh(const char *name)
{
	sockmem_seg_t *seg = t_open(name);
	uint32_t b = t_group(seg, "a/b");

	sockmem_close(seg);
	return b;
}

Test(segment, wrong_magic)
{
	struct raw r;

	fresh("s-magic");
	r = raw_map();
	r.h->magic = 0x1234;
	expect_refused(-EPROTO, "magic", false);
	raw_unmap(&r);
}

Test(segment, wrong_version)
{
	struct raw r;

	fresh("s-version");
	r = raw_map();
	r.h->abi_version = SOCKMEM_ABI_VERSION + 1;
	expect_refused(-EPROTO, "version 3", false);
	raw_unmap(&r);
}

Test(segment, truncated_file)
{
	struct raw r;

	fresh("s-trunc");
	r = raw_map();
	raw_unmap(&r); /* ftruncate below the mapping would SIGBUS our own view */
	r.fd = shm_open(name_of_ns(), O_RDWR, 0);
	cr_assert_geq(r.fd, 0);
	cr_assert_eq(ftruncate(r.fd, 8192), 0);
	expect_refused(-EPROTO, "truncated", false);
	cr_assert_eq(ftruncate(r.fd, 100), 0);
	expect_refused(-EPROTO, "truncated", false);
	cr_assert_eq(ftruncate(r.fd, 0), 0);
	expect_refused(-EPROTO, "truncated", false);
	close(r.fd);
}

Test(segment, parent_index_out_of_range)
{
	uint32_t b = fresh("s-parent");
	struct raw r = raw_map();
	char want[64];

	raw_group(&r, b)->parent = 9999;
	snprintf(want, sizeof(want), "group %u parent index 9999 out of range (capacity 256)", b);
	expect_refused(-EPROTO, want, false);
	raw_unmap(&r);
}

Test(segment, parent_not_live_or_wrong_depth)
{
	uint32_t b = fresh("s-depth");
	struct raw r = raw_map();
	struct sockmem_group *g = raw_group(&r, b);

	g->depth = 5;
	expect_refused(-EPROTO, "depth", false);
	g->depth = 1;
	atomic_store(&raw_group(&r, g->parent)->state, SOCKMEM_FREE);
	expect_refused(-EPROTO, "not live", false);
	raw_unmap(&r);
}

Test(segment, name_without_terminator)
{
	uint32_t b = fresh("s-noterm");
	struct raw r = raw_map();

	memset(raw_group(&r, b)->path, 'x', SOCKMEM_PATH_MAX);
	expect_refused(-EPROTO, "without terminator", false);
	raw_unmap(&r);
}

Test(segment, invalid_name_and_state)
{
	uint32_t b = fresh("s-badname");
	struct raw r = raw_map();

	strcpy(raw_group(&r, b)->path, "a/../b");
	expect_refused(-EPROTO, "invalid name", false);
	strcpy(raw_group(&r, b)->path, "a/b");
	atomic_store(&raw_group(&r, 7)->state, 77);
	expect_refused(-EPROTO, "group 7 has invalid state 77", false);
	raw_unmap(&r);
}

Test(segment, table_geometry)
{
	struct raw r;

	fresh("s-geom");
	r = raw_map();
	r.h->slot_offset += 8;
	expect_refused(-EPROTO, "slot table offset", false);
	r.h->slot_offset -= 8;
	r.h->group_capacity = 0;
	expect_refused(-EPROTO, "group capacity 0", false);
	r.h->group_capacity = 256;
	r.h->proc_offset = r.h->group_offset;
	expect_refused(-EPROTO, "overlaps", false);
	raw_unmap(&r);
}

Test(segment, slot_and_proc_indices)
{
	struct raw r;
	struct sockmem_slot *s;
	struct sockmem_proc *p;

	fresh("s-slot");
	r = raw_map();
	s = (struct sockmem_slot *)((char *)r.base + r.h->slot_offset) + 3;
	atomic_store(&s->state, SOCKMEM_LIVE);
	s->proc = 1u << 30;
	expect_refused(-EPROTO, "slot 3", false);
	atomic_store(&s->state, SOCKMEM_FREE);
	p = (struct sockmem_proc *)((char *)r.base + r.h->proc_offset) + 2;
	atomic_store(&p->state, SOCKMEM_LIVE);
	p->group = 4096;
	expect_refused(-EPROTO, "process record 2 group index 4096", false);
	raw_unmap(&r);
}

/* Counters the arithmetic relies on: usage, peak and a live slot's stock
 * are never negative in a healthy segment (issue 7, finding F4). */
Test(segment, negative_counters)
{
	uint32_t b = fresh("s-negctr");
	struct raw r = raw_map();
	struct sockmem_slot *s;

	atomic_store(&raw_group(&r, b)->usage, -1);
	expect_refused(-EPROTO, "negative usage (-1)", false);
	atomic_store(&raw_group(&r, b)->usage, 0);
	atomic_store(&raw_group(&r, b)->peak, INT64_MIN);
	expect_refused(-EPROTO, "or peak (-9223372036854775808)", false);
	atomic_store(&raw_group(&r, b)->peak, 0);
	s = (struct sockmem_slot *)((char *)r.base + r.h->slot_offset) + 1;
	s->proc = 0;
	s->group = b;
	atomic_store(&s->stock, -4096);
	atomic_store(&s->state, SOCKMEM_LIVE);
	expect_refused(-EPROTO, "slot 1 has a negative stock (-4096)", false);
	atomic_store(&s->state, SOCKMEM_FREE);
	raw_unmap(&r);
}

/* ---- the group tree (threat model G6) ---- */

/* A child one component deeper than its depth says: "a/b/c" below "a" at
 * depth 1 (lookup and the statistics would disagree about the tree). */
Test(segment, depth_must_match_path_components)
{
	uint32_t b = fresh("s-comps");
	struct raw r = raw_map();
	char want[96];

	strcpy(raw_group(&r, b)->path, "a/b/c");
	snprintf(want, sizeof(want), "group %u \"a/b/c\" has depth 1 but 3 path components", b);
	expect_refused(-EPROTO, want, false);
	strcpy(raw_group(&r, b)->path, "a/b");
	/* A top-level group with a '/' in its path. */
	raw_group(&r, b)->parent = SOCKMEM_NONE;
	raw_group(&r, b)->depth = 0;
	expect_refused(-EPROTO, "has no parent", false);
	raw_unmap(&r);
}

/* Parent chains that loop: a group its own parent, and two groups each the
 * other's parent. Refused (depth = parent's depth + 1 cannot hold around a
 * loop), not followed. */
Test(segment, parent_cycles_refused)
{
	uint32_t b = fresh("s-cycle");
	struct raw r = raw_map();
	uint32_t a = raw_group(&r, b)->parent;
	char want[96];

	raw_group(&r, b)->parent = b;
	snprintf(want, sizeof(want), "group %u depth 1, parent %u has depth 1", b, b);
	expect_refused(-EPROTO, want, false);
	raw_group(&r, b)->parent = a;
	raw_group(&r, a)->parent = b; /* a below a/b, a/b below a */
	raw_group(&r, a)->depth = 2;
	snprintf(want, sizeof(want), "group %u path is not below its parent %u's path", a, b);
	expect_refused(-EPROTO, want, false);
	raw_group(&r, a)->depth = 0; /* depth agrees with a's path, not with b's */
	snprintf(want, sizeof(want), "group %u depth 0, parent %u has depth 1", a, b);
	expect_refused(-EPROTO, want, false);
	raw_unmap(&r);
}

/* Two live groups with one path: lookup would only ever find the first. */
Test(segment, duplicate_paths_refused)
{
	uint32_t b = fresh("s-dup"), c;
	sockmem_seg_t *seg;
	struct raw r;
	char want[96];

	seg = t_open_attach();
	c = t_group(seg, "a/c");
	sockmem_close(seg);
	r = raw_map();
	strcpy(raw_group(&r, c)->path, "a/b");
	snprintf(want, sizeof(want), "groups %u and %u have the same path \"a/b\"", b < c ? b : c,
		 b < c ? c : b);
	expect_refused(-EPROTO, want, false);
	/* The same last component under different parents is no duplicate. */
	strcpy(raw_group(&r, c)->path, "a/c");
	seg = t_open_attach();
	cr_assert_eq(sockmem_group_create(seg, "x/b", NULL), 0);
	sockmem_close(seg);
	/* A duplicate among groups that are not live does not count. */
	atomic_store(&raw_group(&r, c)->state, SOCKMEM_FREE);
	strcpy(raw_group(&r, c)->path, "a/b");
	sockmem_close(t_open_attach());
	raw_unmap(&r);
}

/* Many groups: the duplicate check stays linear and still finds the pair. */
Test(segment, duplicate_paths_among_many)
{
	struct sockmem_open_opts o = {.groups = 4096};
	sockmem_seg_t *seg = t_open_opts("s-dupmany", &o);
	uint32_t first = SOCKMEM_NONE, last = SOCKMEM_NONE;
	char path[32];
	struct raw r;

	for (int i = 0; i < 4000; i++) {
		snprintf(path, sizeof(path), "g%d", i);
		last = t_group(seg, path);
		if (i == 17)
			first = last;
	}
	sockmem_close(seg);
	sockmem_close(t_open_attach());
	r = raw_map();
	strcpy(raw_group(&r, last)->path, "g17");
	expect_refused(-EPROTO, h_fmt_dup(first, last), false);
	raw_unmap(&r);
}

/* low <= high <= max, as sockmem_group_set_limits enforces. */
Test(segment, inconsistent_limits_refused)
{
	uint32_t b = fresh("s-limits");
	struct raw r = raw_map();
	struct sockmem_group *g = raw_group(&r, b);
	char want[128];

	atomic_store(&g->max, 1 << 20);
	atomic_store(&g->high, 2 << 20);
	snprintf(want, sizeof(want),
		 "group %u \"a/b\" has inconsistent limits: high (2097152) must not exceed max "
		 "(1048576)",
		 b);
	expect_refused(-EPROTO, want, false);
	atomic_store(&g->high, SOCKMEM_UNLIMITED); /* no high watermark: fine */
	atomic_store(&g->low, 4 << 20);
	expect_refused(-EPROTO, "low (4194304) must not exceed max (1048576)", false);
	atomic_store(&g->high, 1 << 19);
	expect_refused(-EPROTO, "low (4194304) must not exceed high (524288)", false);
	atomic_store(&g->low, 1 << 19);
	sockmem_close(t_open_attach());
	raw_unmap(&r);
}

/* The limits are checked under the table lock: a reader cannot see
 * set_limits half-way, however often both run. A writer flips a group
 * between two consistent settings whose mix (the new max with the old high)
 * is not; every attach must succeed. */
static sockmem_seg_t *flip_seg;
static uint32_t flip_group;
static atomic_int flip_limits_stop;

static void *limits_flipper(void *arg)
{
	char err[SOCKMEM_ERRLEN];

	(void)arg;
	while (!atomic_load(&flip_limits_stop)) {
		cr_assert_eq(sockmem_group_set_limits(flip_seg, flip_group, 1 << 20, 1 << 19,
						      1 << 18, err, sizeof(err)),
			     0, "%s", err);
		cr_assert_eq(sockmem_group_set_limits(flip_seg, flip_group, 8 << 20, 4 << 20,
						      2 << 20, err, sizeof(err)),
			     0, "%s", err);
	}
	return NULL;
}

/* set_limits half-way, slowed down: under the table lock, max already
 * lowered below high, for `hold_ms`, then the rest. */
static int half_hold_ms;
static atomic_int half_started;

static void *half_set_limits(void *arg)
{
	struct sockmem_group *g = sockmem_group_at(flip_seg, flip_group);
	struct timespec ts = {half_hold_ms / 1000, (long)(half_hold_ms % 1000) * 1000000};

	(void)arg;
	cr_assert_eq(sm_table_lock(flip_seg), 0);
	atomic_store(&g->max, 1 << 20); /* high is still 4M */
	atomic_store(&half_started, 1);
	nanosleep(&ts, NULL);
	atomic_store(&g->high, 1 << 19);
	atomic_store(&g->low, 1 << 18);
	sm_table_unlock(flip_seg);
	return NULL;
}

static int attach_during_half_set(int hold_ms, bool readonly)
{
	struct sockmem_open_opts o = {.ns = t_ns, .readonly = readonly};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	pthread_t t;
	int rc;

	t_limits(flip_seg, flip_group, 8 << 20, 4 << 20, 2 << 20);
	half_hold_ms = hold_ms;
	atomic_store(&half_started, 0);
	cr_assert_eq(pthread_create(&t, NULL, half_set_limits, NULL), 0);
	while (!atomic_load(&half_started))
		sched_yield();
	rc = sockmem_open(&o, &seg, err, sizeof(err));
	cr_expect_eq(rc, 0, "attach (%s) during a slow set_limits: %s",
		     readonly ? "read-only" : "read-write", err);
	if (rc == 0)
		sockmem_close(seg);
	pthread_join(t, NULL);
	return rc;
}

/* A writer inside set_limits (preempted, or slow) leaves max, high and low
 * inconsistent for as long as it pleases; a lock-free check would refuse the
 * segment (validation retries for about 3 ms only). Under the lock the
 * attach waits for the writer, then sees consistent limits; a read-only
 * attach does not check them; a writer that keeps the lock past the bounded
 * wait (stopped) makes the attach skip the check, not fail. */
Test(segment, limits_half_set_during_attach, .timeout = 60)
{
	uint32_t b = fresh("s-limhalf");
	uint32_t saved = sm_table_lock_timeout_ms;

	flip_seg = t_open_attach();
	flip_group = b;
	attach_during_half_set(200, false);
	attach_during_half_set(200, true);
	sm_table_lock_timeout_ms = 100;
	attach_during_half_set(600, false);
	sm_table_lock_timeout_ms = saved;
	/* And a segment whose limits really are inconsistent is still refused. */
	atomic_store(&sockmem_group_at(flip_seg, b)->high, 2 << 20);
	expect_refused(-EPROTO, "high (2097152) must not exceed max (1048576)", false);
	sockmem_close(flip_seg);
}

Test(segment, limits_changing_during_attach, .timeout = 60)
{
	uint32_t b = fresh("s-limrace");
	struct sockmem_open_opts ro = {.readonly = true};
	pthread_t t;
	int fails = 0;

	flip_seg = t_open_attach();
	flip_group = b;
	cr_assert_eq(pthread_create(&t, NULL, limits_flipper, NULL), 0);
	ro.ns = t_ns;
	for (int i = 0; i < 300; i++) {
		struct sockmem_open_opts o = {.ns = t_ns};
		char err[SOCKMEM_ERRLEN] = "";
		sockmem_seg_t *seg = NULL;

		if (sockmem_open(i % 3 ? &o : &ro, &seg, err, sizeof(err)) == 0)
			sockmem_close(seg);
		else
			cr_log_error("attach %d: %s (%d)", i, err, ++fails);
	}
	atomic_store(&flip_limits_stop, 1);
	pthread_join(t, NULL);
	sockmem_close(flip_seg);
	cr_expect_eq(fails, 0, "%d attaches refused a legitimate change of limits", fails);
}

/* A public rule, shared with sockmem_group_set_limits. */
Test(segment, limits_check_rule)
{
	char err[SOCKMEM_ERRLEN];

	cr_expect_eq(sockmem_limits_check(SOCKMEM_UNLIMITED, SOCKMEM_UNLIMITED, 0, err, 64), 0);
	cr_expect_eq(sockmem_limits_check(100, SOCKMEM_UNLIMITED, 100, err, 64), 0);
	cr_expect_eq(sockmem_limits_check(100, 100, 100, err, 64), 0);
	cr_expect_eq(sockmem_limits_check(100, 101, 0, err, sizeof(err)), -EINVAL);
	cr_expect_str_eq(err, "high (101) must not exceed max (100)");
	cr_expect_eq(sockmem_limits_check(100, SOCKMEM_UNLIMITED, 101, err, sizeof(err)), -EINVAL);
	cr_expect_str_eq(err, "low (101) must not exceed max (100)");
	cr_expect_eq(sockmem_limits_check(100, 50, 51, err, sizeof(err)), -EINVAL);
	cr_expect_str_eq(err, "low (51) must not exceed high (50)");
	cr_expect_eq(sockmem_limits_check(-1, 0, 0, err, sizeof(err)), -EINVAL);
	cr_expect_str_eq(err, "max must not be negative");
}

/* The capacities a tool must use are the validated ones, not the header's. */
Test(segment, capacities_are_the_validated_ones)
{
	struct sockmem_open_opts o = {.groups = 7, .procs = 5, .slots = 3, .traces = 2};
	sockmem_seg_t *seg = t_open_opts("s-caps", &o);
	struct sockmem_capacities c;

	sockmem_header(seg)->group_capacity = 100000; /* a member rewrites the header */
	sockmem_capacities(seg, &c);
	cr_expect(c.groups == 7 && c.procs == 5 && c.slots == 3 && c.traces == 2, "%u %u %u %u",
		  c.groups, c.procs, c.slots, c.traces);
	cr_expect_null(sockmem_group_at(seg, 7));
	sockmem_header(seg)->group_capacity = 7;
	sockmem_close(seg);
}

Test(segment, default_namespace_is_the_effective_uid)
{
	char buf[SOCKMEM_NS_MAX], want[SOCKMEM_NS_MAX];

	snprintf(want, sizeof(want), "u%u", (unsigned)geteuid());
	cr_expect_str_eq(sockmem_default_ns(buf, sizeof(buf)), want);
}

/* ---- the header is read once (issue 7, finding F5) ---- */

static struct sockmem_header *flip_hdr;
static atomic_int flip_stop;

static void *flipper(void *arg)
{
	volatile uint32_t *cap = &flip_hdr->group_capacity;

	(void)arg;
	while (!atomic_load_explicit(&flip_stop, memory_order_relaxed)) {
		*cap = 100000;
		*cap = 4;
	}
	return NULL;
}

/* A writer flips group_capacity between a valid and an out-of-file value
 * while we attach: every attach that succeeds must have the validated 4. */
Test(segment, header_changed_during_attach, .timeout = 30)
{
	struct sockmem_open_opts o = {.groups = 4, .procs = 2, .slots = 2, .traces = 1};
	struct sockmem_open_opts ro = {.readonly = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *own = t_open_opts("s-toctou", &o), *seg;
	uint64_t end = sockmem_now_ns() + 2 * UINT64_C(1000000000);
	int ok = 0, refused = 0, bad = 0;
	pthread_t t;

	flip_hdr = own->hdr;
	ro.ns = t_ns;
	cr_assert_eq(pthread_create(&t, NULL, flipper, NULL), 0);
	while (sockmem_now_ns() < end && bad == 0) {
		if (sockmem_open(&ro, &seg, err, sizeof(err)) != 0) {
			refused++;
			continue;
		}
		ok++;
		if (seg->ngroups != 4 || sockmem_group_at(seg, 99999) != NULL)
			bad = ok;
		sockmem_close(seg);
	}
	atomic_store(&flip_stop, 1);
	pthread_join(t, NULL);
	own->hdr->group_capacity = 4;
	cr_expect_eq(bad, 0, "attach %d has %u groups; validation saw at most 4", bad,
		     bad ? 100000u : 4u);
	cr_expect_gt(ok, 0, "some attaches succeed (%d refused)", refused);
	sockmem_close(own);
}

/* ---- not a regular file (issue 7, finding F7) ---- */

/* Open t_ns read-only and read-write: both refused at once, never blocked.
 * (glibc's shm_open itself fails a directory opened for writing: EINVAL.) */
static void expect_not_regular(bool dir)
{
	struct sockmem_open_opts o = {.ns = t_ns};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	int rc;

	for (int rw = 0; rw < 2; rw++) {
		o.readonly = rw == 0;
		o.allow_foreign = rw == 1; /* refused whoever owns it */
		rc = sockmem_open(&o, &seg, err, sizeof(err));
		cr_expect_null(seg);
		if (dir && rw == 1 && rc == -EINVAL)
			continue;
		cr_expect_eq(rc, -EACCES, "%s", err);
		cr_expect(strstr(err, "not a regular file") != NULL, "%s", err);
	}
}

Test(segment, fifo_or_directory_refused, .timeout = 20)
{
	char path[128];

	snprintf(t_ns, sizeof(t_ns), "t-s-fifo-%d", (int)getpid());
	snprintf(path, sizeof(path), "/dev/shm/sockmem-%s", t_ns);
	unlink(path);
	cr_assert_eq(mkfifo(path, 0600), 0);
	expect_not_regular(false); /* before the fix: blocked in open(O_RDONLY) */
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(mkdir(path, 0700), 0);
	expect_not_regular(true);
	cr_expect_eq(rmdir(path), 0);
}

Test(segment, foreign_owner)
{
	struct raw r;
	struct sockmem_open_opts o = {.ns = NULL, .allow_foreign = true};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg;

	if (geteuid() != 0)
		cr_skip_test("needs root to give the file away (fchown)");
	fresh("s-foreign");
	r = raw_map();
	cr_assert_eq(fchown(r.fd, 65534, 65534), 0);
	r.h->owner_uid = 65534; /* as if uid 65534 had created it */
	expect_refused(-EACCES, "owned by uid 65534", false);
	o.ns = t_ns;
	cr_expect_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "allow_foreign: %s", err);
	sockmem_close(seg);
	/* The header must still agree with the file's owner. */
	r.h->owner_uid = 0;
	expect_refused(-EPROTO, "owner uid", true);
	raw_unmap(&r);
}

Test(segment, mode_wider_than_0600)
{
	struct raw r;
	struct stat st;

	fresh("s-mode");
	r = raw_map();
	cr_assert_eq(fstat(r.fd, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600, "created 0600 whatever the umask");
	cr_assert_eq(fchmod(r.fd, 0644), 0);
	expect_refused(-EACCES, "mode 0644", false);
	raw_unmap(&r);
}

Test(segment, missing_without_create)
{
	struct sockmem_open_opts o = {.ns = "t-s-missing-x"};
	char err[SOCKMEM_ERRLEN];
	sockmem_seg_t *seg = NULL;

	snprintf(t_ns, sizeof(t_ns), "t-s-missing-%d", (int)getpid());
	o.ns = t_ns;
	cr_expect_eq(sockmem_open(&o, &seg, err, sizeof(err)), -ENOENT);
	o.ns = "bad/ns";
	cr_expect_eq(sockmem_open(&o, &seg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "namespace"), "%s", err);
}

Test(segment, readonly_stat_works)
{
	sockmem_seg_t *seg = t_open("s-ro"), *ro;
	struct sockmem_open_opts o = {.readonly = true};
	struct sockmem_group_stat st;
	char err[SOCKMEM_ERRLEN];
	uint32_t g = t_group(seg, "a/b"), i;

	cr_assert(sockmem_try_charge(seg, g, 777, NULL));
	o.ns = t_ns;
	cr_assert_eq(sockmem_open(&o, &ro, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sockmem_group_lookup(ro, "a/b", &i), 0);
	cr_expect_eq(i, g);
	cr_assert_eq(sockmem_group_stat(ro, i, &st), 0);
	cr_expect_eq(st.current, 777);
	cr_expect_eq(sockmem_group_set_limits(ro, i, 1, 1, 1, err, sizeof(err)), -EROFS);
	cr_expect_eq(sockmem_group_reset_peak(ro, i), -EROFS);
	cr_expect_eq(sockmem_drain_caches(ro, i), 0);
	sockmem_close(ro);
	sockmem_close(seg);
}

Test(segment, validate_arbitrary_bytes)
{
	sockmem_seg_t *seg = t_open("s-fuzz");
	size_t len = seg->size;
	uint64_t *img = malloc(len);
	char err[SOCKMEM_ERRLEN];
	unsigned seed = 1;

	t_group(seg, "a/b/c");
	memcpy(img, seg->hdr, len);
	cr_expect_eq(sockmem_validate(img, len, geteuid(), err, sizeof(err)), 0, "%s", err);
	/* Every prefix length of the header, and random corruptions. */
	for (size_t l = 0; l < 512; l++)
		cr_expect_neq(sockmem_validate(img, l, geteuid(), err, sizeof(err)), 0);
	for (int i = 0; i < 3000; i++) {
		size_t at = (size_t)rand_r(&seed) % (i < 1500 ? 256 : len);
		uint8_t saved = ((uint8_t *)img)[at];

		((uint8_t *)img)[at] = (uint8_t)rand_r(&seed);
		sockmem_validate(img, len, geteuid(), err, sizeof(err));
		((uint8_t *)img)[at] = saved;
	}
	cr_expect_eq(sockmem_validate(img, len, geteuid() + 1, err, sizeof(err)), -EPROTO);
	free(img);
	sockmem_close(seg);
}

/* ---- create-or-attach race ---- */

#define RACERS 8

static void racer(int go_fd, int hold_fd, int out_fd, int log_fd)
{
	struct sockmem_open_opts o = {.ns = t_ns, .create = true};
	char err[SOCKMEM_ERRLEN], c;
	uint64_t created = 0;
	sockmem_seg_t *seg;
	uint32_t g, p;

	sm_log_level = SM_LOG_INFO; /* the creator says "created" */
	dup2(log_fd, 2);
	if (read(go_fd, &c, 1) < 0) /* EOF for all at once when the parent closes it */
		_exit(3);
	if (sockmem_open(&o, &seg, err, sizeof(err)) == 0 &&
	    sockmem_group_create(seg, "race/x", &g) == 0 && sockmem_proc_register(seg, g, &p) == 0)
		created = sockmem_header(seg)->created_ns;
	if (write(out_fd, &created, sizeof(created)) != sizeof(created))
		_exit(2);
	if (read(hold_fd, &c, 1) < 0) /* hold (registered) until the parent looked */
		_exit(3);
	_exit(0);
}

static int tmp_files_left(void)
{
	char prefix[128];
	struct dirent *e;
	DIR *d = opendir("/dev/shm");
	int n = 0;

	snprintf(prefix, sizeof(prefix), "sockmem-%s.tmp.", t_ns);
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return n;
}

Test(segment, create_or_attach_race)
{
	int go[2], hold[2], out[2], logp[2], status, creators = 0;
	char logbuf[8192];
	ssize_t n, got = 0;
	uint64_t seen[RACERS];
	pid_t pids[RACERS];
	sockmem_seg_t *seg;
	struct sockmem_open_opts o = {0};
	char err[SOCKMEM_ERRLEN];
	uint32_t g, ngroups = 0;

	snprintf(t_ns, sizeof(t_ns), "t-s-race-%d", (int)getpid());
	sockmem_unlink(t_ns);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(hold), 0);
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(logp), 0);
	for (int i = 0; i < RACERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(go[1]);
			close(hold[1]);
			racer(go[0], hold[0], out[1], logp[1]);
		}
	}
	close(go[0]);
	close(hold[0]);
	usleep(50 * 1000); /* let every racer reach its read */
	close(go[1]);	   /* all start at once */
	for (int i = 0; i < RACERS; i++)
		cr_assert_eq(read(out[0], &seen[i], sizeof(seen[i])), sizeof(seen[i]));
	for (int i = 0; i < RACERS; i++) {
		cr_expect_neq(seen[i], 0, "racer %d failed", i);
		cr_expect_eq(seen[i], seen[0], "racer %d attached to another segment", i);
	}
	o.ns = t_ns;
	cr_assert_eq(sockmem_open(&o, &seg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(sockmem_header(seg)->created_ns, seen[0], "one segment");
	cr_assert_eq(sockmem_group_lookup(seg, "race/x", &g), 0);
	cr_expect_eq(atomic_load(&sockmem_group_at(seg, g)->processes), RACERS,
		     "every racer registered in the one segment");
	for (uint32_t i = sockmem_group_next(seg, 0); i != SOCKMEM_NONE;
	     i = sockmem_group_next(seg, i + 1))
		ngroups++;
	cr_expect_eq(ngroups, 2, "\"race\" and \"race/x\" created once each");
	cr_expect_eq(tmp_files_left(), 0, "losers cleaned up their temporary segments");
	close(hold[1]);
	for (int i = 0; i < RACERS; i++)
		waitpid(pids[i], &status, 0);
	close(logp[1]);
	while (got < (ssize_t)sizeof(logbuf) - 1 &&
	       (n = read(logp[0], logbuf + got, sizeof(logbuf) - 1 - (size_t)got)) > 0)
		got += n;
	logbuf[got] = '\0';
	for (char *q = logbuf; (q = strstr(q, ": created (")); q++)
		creators++;
	cr_expect_eq(creators, 1, "exactly one creator; log:\n%s", logbuf);
	sockmem_close(seg);
	cr_expect_eq(sockmem_unlink(t_ns), 0);
}

/* A private mount namespace (a user namespace too when not root) with a
 * tmpfs of `bytes` on /dev/shm: shm_open then lands there, and nothing of
 * the machine's /dev/shm is touched. Child process only. -1: not possible
 * here. */
static int small_dev_shm(size_t bytes)
{
	char opt[32], map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	int fd;

	if (unshare(CLONE_NEWNS) < 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			return -1;
		fd = open("/proc/self/setgroups", O_WRONLY);
		if (fd >= 0) {
			(void)!write(fd, "deny", 4);
			close(fd);
		}
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
		fd = open("/proc/self/uid_map", O_WRONLY);
		if (fd < 0 || write(fd, map, strlen(map)) < 0)
			return -1;
		close(fd);
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
		fd = open("/proc/self/gid_map", O_WRONLY);
		if (fd < 0 || write(fd, map, strlen(map)) < 0)
			return -1;
		close(fd);
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	snprintf(opt, sizeof(opt), "size=%zu,mode=1777", bytes);
	return mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opt);
}

/*
 * /dev/shm nearly full (a container's 64 MB, or a host's shared by everyone):
 * a sparse segment is created fine, and the first write to a page tmpfs
 * cannot back kills the program with SIGBUS. Creation must reserve the
 * whole segment, or fail with a message.
 */
Test(segment, dev_shm_full_refused_at_creation, .timeout = 20)
{
	struct sockmem_open_opts o = {.create = true};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	uint32_t g, p;
	int status, rc;
	pid_t pid;

	snprintf(t_ns, sizeof(t_ns), "t-s-shmfull-%d", (int)getpid());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (small_dev_shm(64 * 1024) < 0)
			_exit(77);
		o.ns = t_ns;
		rc = sockmem_open(&o, &seg, err, sizeof(err));
		if (rc == 0) {
			/* What a new member does first: its group, its record. */
			if (sockmem_group_create(seg, "a", &g) == 0 &&
			    sockmem_proc_register(seg, g, &p) == 0)
				sockmem_proc_unregister(seg, p);
			_exit(1);
		}
		if (rc != -ENOSPC || !strstr(err, t_ns) || !strstr(err, "/dev/shm")) {
			fprintf(stderr, "rc %d, message \"%s\"\n", rc, err);
			_exit(2);
		}
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("no private mount namespace here (unshare)");
	cr_expect(!WIFSIGNALED(status), "the member was killed by signal %d (%s)",
		  WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		  WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "");
	cr_expect(!WIFEXITED(status) || WEXITSTATUS(status) == 0,
		  "exit %d: 1 = a segment larger than the tmpfs was accepted, 2 = refused "
		  "without -ENOSPC and a message naming the segment and /dev/shm",
		  WEXITSTATUS(status));
}

/* In a child under the seccomp filter `prog`, open (creating) namespace
 * t_ns; its wait status. Skips the test where seccomp is not available. The
 * child exits 0 if the open succeeded, 1 (with the message) if it failed. */
static int open_filtered(struct sock_fprog *prog)
{
	struct sockmem_open_opts o = {.create = true, .ns = t_ns};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	int status, rc;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog) != 0)
			_exit(77);
		rc = sockmem_open(&o, &seg, err, sizeof(err));
		if (rc != 0)
			fprintf(stderr, "rc %d, message \"%s\"\n", rc, err);
		_exit(rc != 0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("no seccomp here");
	return status;
}

/* A sandbox that refuses fallocate(2) itself (seccomp, EPERM) still gets a
 * segment: sparse, as before allocation was asked for. */
Test(segment, creation_without_fallocate_falls_back, .timeout = 20)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fallocate, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	int status;

	snprintf(t_ns, sizeof(t_ns), "t-s-nofalloc-%d", (int)getpid());
	sockmem_unlink(t_ns);
	status = open_filtered(&prog);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	sockmem_close(t_open_attach());
}

/* Remove what tmp_files_left() counts (a test's own leftovers). */
static void tmp_files_remove(void)
{
	char prefix[128], path[512];
	struct dirent *e;
	DIR *d = opendir("/dev/shm");

	snprintf(prefix, sizeof(prefix), "sockmem-%s.tmp.", t_ns);
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
}

/*
 * The first process of a namespace killed while it builds the segment
 * (here: by a seccomp filter at the moment it publishes it, as SIGKILL or
 * the OOM killer could at any instant) must leave nothing behind: nobody
 * would ever remove a half-built segment, all of it allocated in /dev/shm.
 */
Test(segment, creator_killed_leaves_no_file, .timeout = 20)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_link, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_linkat, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	struct sockmem_open_opts o = {.ns = t_ns};
	char err[SOCKMEM_ERRLEN] = "";
	sockmem_seg_t *seg = NULL;
	int status, left;

	snprintf(t_ns, sizeof(t_ns), "t-s-killed-%d", (int)getpid());
	sockmem_unlink(t_ns);
	status = open_filtered(&prog);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
		  "the creator was not stopped at publication (status %#x)", status);
	left = tmp_files_left();
	tmp_files_remove();
	cr_expect_eq(left, 0, "%d half-built segment(s) left in /dev/shm", left);
	cr_expect_eq(sockmem_open(&o, &seg, err, sizeof(err)), -ENOENT, "nothing published");
}
