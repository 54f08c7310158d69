/*
 * A member process for the sockmemctl tests, linked against the core (no
 * preload): it joins a group and charges it so that sockmemctl has something
 * to show.
 *
 *   ctl-helper hold NS GROUP BYTES MS [PRESSURE_MS]
 *       register in GROUP, charge BYTES (forced, through a per-thread cache),
 *       optionally put the group under pressure, print "ready", hold for MS
 *       milliseconds, then give everything back and unregister.
 *   ctl-helper saw NS GROUP MS
 *       for MS milliseconds, charge max/64 every 10 ms until max refuses,
 *       then enter pressure and fall back to low: the sawtooth between the
 *       watermarks that `sockmemctl plot` draws. GROUP must have a max.
 *
 * Exit status 0, or 1 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sockmem/sockmem.h"

struct member {
	sockmem_seg_t *seg;
	uint32_t group, proc;
	struct sockmem_cache cache;
};

static int die(const char *what, int rc, const char *err)
{
	fprintf(stderr, "ctl-helper: %s: %d %s\n", what, rc, err ? err : "");
	return 1;
}

static int join(struct member *m, const char *ns, const char *group)
{
	struct sockmem_open_opts o = {.ns = ns, .create = true};
	char err[SOCKMEM_ERRLEN] = "";
	int rc;

	rc = sockmem_open(&o, &m->seg, err, sizeof(err));
	if (rc < 0)
		return die("open", rc, err);
	rc = sockmem_group_create(m->seg, group, &m->group);
	if (rc < 0)
		return die("group_create", rc, NULL);
	rc = sockmem_proc_register(m->seg, m->group, &m->proc);
	if (rc < 0)
		return die("proc_register", rc, NULL);
	/* Without a slot the cache still works, uncached. */
	sockmem_cache_attach(m->seg, m->proc, SOCKMEM_DEFAULT_BATCH, &m->cache);
	return 0;
}

static void leave(struct member *m)
{
	sockmem_cache_detach(&m->cache);
	sockmem_proc_unregister(m->seg, m->proc);
	sockmem_close(m->seg);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int hold(const char *ns, const char *group, long long bytes, long ms, long pressure_ms)
{
	struct member m;

	if (join(&m, ns, group))
		return 1;
	sockmem_cache_charge(&m.cache, bytes, true, NULL);
	if (pressure_ms > 0)
		sockmem_enter_pressure(m.seg, m.group, (uint64_t)pressure_ms * 1000000u);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	sleep_ms(ms);
	sockmem_cache_uncharge(&m.cache, bytes);
	leave(&m);
	return 0;
}

static int saw(const char *ns, const char *group, long ms)
{
	struct sockmem_group_stat st;
	uint64_t end = sockmem_now_ns() + (uint64_t)ms * 1000000u;
	int64_t held = 0, step;
	struct member m;

	if (join(&m, ns, group))
		return 1;
	if (sockmem_group_stat(m.seg, m.group, &st) < 0 || st.max == SOCKMEM_UNLIMITED)
		return die("saw needs a group with a max", 0, NULL);
	step = st.max / 64 > 0 ? st.max / 64 : 1;
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	while (sockmem_now_ns() < end) {
		if (sockmem_cache_charge(&m.cache, step, false, NULL)) {
			held += step;
		} else {
			/* Hit max: pressure, then fall back to low like a reclaimer. */
			sockmem_enter_pressure(m.seg, m.group, 150 * 1000000u);
			while (held > 0 && held > st.low) {
				sockmem_cache_uncharge(&m.cache, step);
				held -= step;
			}
		}
		sleep_ms(10);
	}
	sockmem_cache_uncharge(&m.cache, held);
	leave(&m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && argv[1][0] == 'h')
		return hold(argv[2], argv[3], atoll(argv[4]), atol(argv[5]),
			    argc > 6 ? atol(argv[6]) : 0);
	if (argc == 5 && argv[1][0] == 's')
		return saw(argv[2], argv[3], atol(argv[4]));
	fprintf(stderr, "usage: ctl-helper hold NS GROUP BYTES MS [PRESSURE_MS] | "
			"saw NS GROUP MS\n");
	return 2;
}
