/*
 * Call-site tracing (issue 5, SOCKMEM_TRACE=1): see trace.h.
 *
 * Capture, on the slow path of a call that hit max or was throttled:
 *   1. the per-process rate limit (GCRA: one atomic "theoretical arrival
 *      time", equivalent to a token bucket of `rate` tokens refilled at
 *      `rate` per second) lets at most rate + rate x seconds captures through;
 *   2. libunwind's cursor (unw_init_local, unw_step) walks the stack into an
 *      array on our stack;
 *   3. frames inside this library and libunwind are dropped; each remaining
 *      frame becomes (object, address in the object's ELF space) with
 *      dladdr1(RTLD_DL_LINKMAP): pc - l_addr, and the object's l_name;
 *   4. lib/trace.c finds or claims the record of that site in the segment and
 *      adds the hit with atomics.
 * Nothing allocates: the site image lives on the stack; glibc's dladdr1 only
 * takes the loader's lock (so a signal handler that interrupted the loader
 * must not get here: documented in trace.h).
 *
 * Why libunwind is dlopen'd privately (RTLD_LOCAL), by the constructor:
 * libunwind.so.8 also defines the _Unwind_* ABI that C++ exceptions use. Linked
 * into the shim (which is preloaded, so it comes first in the global symbol
 * scope) it would replace libgcc_s's unwinder for every C++ program, tracing
 * or not. Loaded RTLD_LOCAL, its symbols are reachable only through our
 * handle; and programs without SOCKMEM_TRACE=1 never load it at all. Not on
 * the first capture: dlopen allocates, and a capture may run in a signal
 * handler (send is async-signal-safe) that interrupted malloc. For the same
 * reason not unw_backtrace: it keeps a per-thread cache in libunwind's TLS,
 * which for a dlopen'd library glibc allocates (malloc) on a thread's first
 * use; the cursor functions keep no per-thread state.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "state.h"
#include "trace.h"

/* libunwind's header for its types, register names and this architecture's
 * symbol names only: nothing is linked, the functions come from dlsym. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define SYM_(x) #x
#define SYM(x)	SYM_(x) /* the symbol a libunwind macro names */

#define RAW_DEPTH 48 /* frames asked of libunwind (ours included) */

_Static_assert(SM_TRACE_MAX == SOCKMEM_TRACE_KIND_MAX &&
		       SM_TRACE_THROTTLE == SOCKMEM_TRACE_KIND_THROTTLE,
	       "trace.h's kinds are the ABI's");

typedef int (*backtrace_fn)(void **, int);

/* W: sm_trace_init (the constructor), before sm_hot.active is published.
 * R: capturing threads; unw_bt NULL: tracing off or the unwinder missing. */
static struct {
	int (*getcontext)(unw_context_t *);
	int (*init_local)(unw_cursor_t *, unw_context_t *);
	int (*step)(unw_cursor_t *);
	int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
} unw;
static backtrace_fn unw_bt;
static const struct link_map *self_map, *unw_map, *libc_map;
static char exe_path[SOCKMEM_TRACE_OBJ_PATH];
static uint64_t emission_ns, tolerance_ns;

/* GCRA state: when the bucket is full again. W/R: CAS by capturing threads. */
static _Atomic uint64_t tat;

static const struct link_map *map_of(const void *pc)
{
	struct link_map *lm = NULL;
	Dl_info info;

	/* pc - 1: a return address may point just past its function's object. */
	if (!dladdr1((const char *)pc - 1, &info, (void **)&lm, RTLD_DL_LINKMAP))
		return NULL;
	return lm;
}

/* SOCKMEM_TRACE_RATE (1..100000 captures per second, checked by the option
 * table): the bucket's refill interval and its burst. */
static void set_rate(int64_t r)
{
	emission_ns = 1000000000u / (uint64_t)r;
	tolerance_ns = (uint64_t)(r - 1) * emission_ns;
}

/* The return addresses on the stack, this function's first. */
__attribute__((noinline)) static int walk(void **pcs, int max)
{
	unw_context_t uc;
	unw_cursor_t c;
	unw_word_t ip;
	int n = 0;

	if (unw.getcontext(&uc) != 0 || unw.init_local(&c, &uc) != 0)
		return 0;
	do {
		if (unw.get_reg(&c, UNW_REG_IP, &ip) != 0 || ip == 0)
			break;
		pcs[n++] = (void *)(uintptr_t)ip;
	} while (n < max && unw.step(&c) > 0);
	return n;
}

static void *need(void *h, const char *lib, const char *sym)
{
	void *f = dlsym(h, sym);

	if (!f)
		sm_log(SM_LOG_WARN, "SOCKMEM_TRACE: call-site tracing disabled: %s has no %s", lib,
		       sym);
	return f;
}

void sm_trace_init(void)
{
	const char *lib = sm_cfg.trace_lib[0] ? sm_cfg.trace_lib : SM_TRACE_LIB_DEFAULT;
	void *raw[RAW_DEPTH];
	void *h;
	ssize_t n;

	if (!sm_cfg.trace)
		return;
	set_rate(sm_cfg.trace_rate);
	h = dlopen(lib, RTLD_LOCAL | RTLD_LAZY);
	if (!h) {
		const char *why = dlerror();

		sm_log(SM_LOG_WARN,
		       "SOCKMEM_TRACE: call-site tracing disabled: cannot load %s (%s)", lib,
		       why ? why : "?");
		return;
	}
	if (!(unw.getcontext = need(h, lib, SYM(unw_tdep_getcontext))) ||
	    !(unw.init_local = need(h, lib, SYM(unw_init_local))) ||
	    !(unw.step = need(h, lib, SYM(unw_step))) ||
	    !(unw.get_reg = need(h, lib, SYM(unw_get_reg))))
		return;
	self_map = map_of((const char *)(uintptr_t)sm_trace_hit + 1);
	unw_map = map_of((const char *)(uintptr_t)unw.step + 1);
	libc_map = map_of((const char *)(uintptr_t)getpid + 1);
	/* A path that fills the buffer may be cut: then the program's own
	 * frames are stored as bare addresses rather than under a wrong name. */
	n = readlink("/proc/self/exe", exe_path, sizeof(exe_path));
	exe_path[n > 0 && n < (ssize_t)sizeof(exe_path) ? n : 0] = '\0';
	/* One walk now: whatever the unwinder sets up on its first use (lazy
	 * bindings, caches) is done here rather than in a capture. */
	walk(raw, RAW_DEPTH);
	unw_bt = walk;
}

/* Token bucket as GCRA: admit if the bucket's debt stays within the burst. */
static bool rate_ok(void)
{
	uint64_t now = sockmem_now_ns();
	uint64_t t = atomic_load_explicit(&tat, memory_order_relaxed);

	for (int i = 0; i < 8; i++) {
		uint64_t base = t > now ? t : now;

		if (base - now > tolerance_ns)
			return false;
		if (atomic_compare_exchange_weak_explicit(&tat, &t, base + emission_ns,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
	return false; /* heavy contention: other threads are capturing anyway */
}

static uint8_t obj_index(struct sockmem_trace *s, const char *path)
{
	size_t len = strlen(path);

	if (len == 0 || len >= SOCKMEM_TRACE_OBJ_PATH)
		return SOCKMEM_TRACE_NO_OBJ;
	for (uint32_t i = 0; i < s->nobjs; i++)
		if (strcmp(s->objs[i], path) == 0)
			return (uint8_t)i;
	if (s->nobjs == SOCKMEM_TRACE_OBJS)
		return SOCKMEM_TRACE_NO_OBJ;
	memcpy(s->objs[s->nobjs], path, len + 1);
	return (uint8_t)s->nobjs++;
}

/* Append one frame; returns whether it lies outside the C library. */
static bool add_frame(struct sockmem_trace *s, void *pc, const struct link_map *lm)
{
	uint32_t d = s->depth++;

	s->pcs[d] = (uintptr_t)pc;
	s->obj[d] = SOCKMEM_TRACE_NO_OBJ;
	if (!lm)
		return true;
	s->pcs[d] = (uintptr_t)pc - lm->l_addr;
	s->obj[d] = obj_index(s, lm->l_name && lm->l_name[0] ? lm->l_name : exe_path);
	return lm != libc_map;
}

/* Build the site from the stack; false if there is no caller worth naming
 * (only our own frames and the C library's: the helper thread). */
static bool build_site(backtrace_fn bt, struct sockmem_trace *s)
{
	void *raw[RAW_DEPTH];
	int n = bt(raw, RAW_DEPTH), i = 0;
	const struct sockmem_group *g = sockmem_group_at(sm_seg, sm_group);
	const struct link_map *lm = NULL;
	bool named = false;

	if (!g)
		return false;
	memset(s, 0, sizeof(*s));
	s->group = sm_group;
	s->group_gen = atomic_load_explicit(&g->generation, memory_order_relaxed);
	s->pid = sm_pid;
	strncpy(s->exe, program_invocation_short_name ?: "?", sizeof(s->exe) - 1);
	for (; i < n; i++) { /* skip the shim's and libunwind's own frames */
		lm = map_of(raw[i]);
		if (!lm || (lm != self_map && lm != unw_map))
			break;
	}
	for (; i < n && s->depth < SOCKMEM_TRACE_DEPTH; i++)
		named |= add_frame(s, raw[i], map_of(raw[i]));
	return named;
}

static void capture(backtrace_fn bt, int64_t bytes, uint32_t kind)
{
	struct sockmem_trace site;
	int rc;

	if (!build_site(bt, &site))
		return;
	rc = sockmem_trace_add(sm_seg, &site, bytes, kind);
	if (rc == -ENOSPC)
		sm_log_once(SM_LOG_WARN,
			    "SOCKMEM_TRACE: trace table full; new call sites are not recorded "
			    "(free it with 'sockmemctl traces GROUP --reset')");
}

static void trace_slow(int64_t bytes, uint32_t kind)
{
	backtrace_fn bt;

	if (!sm_seg || sm_group == SOCKMEM_NONE)
		return;
	sm_nest++; /* dladdr, the unwinder's reads: all pass through */
	bt = unw_bt;
	if (bt && rate_ok())
		capture(bt, bytes, kind);
	sm_nest--;
}

void sm_trace_hit(int64_t bytes, int kind)
{
	if (__builtin_expect(!sm_cfg.trace, 1))
		return;
	SM_SAVE_ERRNO(trace_slow(bytes, (uint32_t)kind & (SM_TRACE_MAX | SM_TRACE_THROTTLE)));
}
