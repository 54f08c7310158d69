/*
 * sockmem shared-memory layout (ABI).
 *
 * Every process of one namespace maps the same POSIX shared-memory segment
 * ("/sockmem-<namespace>", i.e. /dev/shm/sockmem-<namespace>). The segment is
 * a header followed by four fixed-size tables:
 *
 *   header | groups[group_capacity] | procs[proc_capacity]
 *          | slots[slot_capacity]   | traces[trace_capacity]
 *
 * All fields are fixed-width; offsets and capacities are recorded in the
 * header so that a reader can validate them before touching anything else.
 * Any change to this file that moves or resizes a field must bump
 * SOCKMEM_ABI_VERSION; tests/unit/test_layout.c pins the offsets.
 *
 * Concurrency notation used in the field comments:
 *   W: who writes the field, R: who reads it, and under what.
 *   "table lock" is hdr.table_lock (a process-shared robust mutex).
 *   "slot owner" is the one thread that claimed a slot.
 */
#ifndef SOCKMEM_ABI_H
#define SOCKMEM_ABI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SOCKMEM_SHM_MAGIC   UINT64_C(0x314d454d4b434f53) /* "SOCKMEM1" (LE) */
#define SOCKMEM_ABI_VERSION 2u

#define SOCKMEM_CACHELINE 64
#define SOCKMEM_PATH_MAX  128	     /* group path, including the NUL */
#define SOCKMEM_NS_MAX	  64	     /* namespace, including the NUL */
#define SOCKMEM_NONE	  UINT32_MAX /* "no index" (e.g. a top-level group's parent) */
#define SOCKMEM_UNLIMITED INT64_MAX  /* the "max" keyword */

/* Default capacities, chosen at creation (SOCKMEM_GROUPS/PROCS/SLOTS). */
#define SOCKMEM_DEFAULT_GROUPS 256u
#define SOCKMEM_DEFAULT_PROCS  1024u
#define SOCKMEM_DEFAULT_SLOTS  4096u
#define SOCKMEM_DEFAULT_TRACES 256u

/* Slot/proc/group state words. */
enum sockmem_state {
	SOCKMEM_FREE = 0,
	SOCKMEM_CLAIMED = 1, /* being set up by its creator; not yet visible */
	SOCKMEM_LIVE = 2,
	SOCKMEM_DEAD = 3, /* being torn down (reaping, removal) */
};

/*
 * A group: one level of the hierarchical counter (the kernel's page_counter
 * plus the memcg statistics sockmem reports).
 *
 * Line 0 is written on every batch refill or return of a per-thread cache;
 * nothing read-mostly shares it.
 */
struct sockmem_group {
	/* ---- line 0: hot ---- */
	/* W: try_charge/charge/uncharge by any member (atomic RMW). R: all. */
	_Atomic int64_t usage;
	/* W: charge paths, max(peak, usage) by CAS; reset by sockmemctl. */
	_Atomic int64_t peak;
	uint8_t pad0[SOCKMEM_CACHELINE - 2 * sizeof(int64_t)];

	/* ---- line 1: read-mostly ---- */
	/* W: sockmem_group_set_limits (table lock). R: every try_charge. */
	_Atomic int64_t max;
	_Atomic int64_t high;
	_Atomic int64_t low;
	/* W: creator under table lock before state=LIVE. R: all. */
	uint32_t parent; /* SOCKMEM_NONE for a top-level group */
	uint32_t depth;	 /* 0 for a top-level group */
	/* W: table lock (FREE->CLAIMED->LIVE->DEAD->FREE). R: all (acquire). */
	_Atomic uint32_t state;
	/* W: bumped each time the slot is reused, under table lock. */
	_Atomic uint32_t generation;
	/* W: max hit / failed reclaim pass (store of a later time). R: pressure checks. */
	_Atomic uint64_t pressure_until_ns; /* CLOCK_MONOTONIC */
	uint8_t pad1[SOCKMEM_CACHELINE - 3 * sizeof(int64_t) - 4 * sizeof(uint32_t) -
		     sizeof(uint64_t)];

	/* ---- line 2: event counters (relaxed atomic adds; R: sockmemctl) ---- */
	_Atomic uint64_t failcnt;      /* try_charge refused at this level */
	_Atomic uint64_t ev_low;       /* usage fell below low during reclaim */
	_Atomic uint64_t ev_high;      /* a charge took usage over high */
	_Atomic uint64_t ev_max;       /* a charge would have exceeded max (incl. forced) */
	_Atomic uint64_t ev_pressure;  /* entered socket pressure */
	_Atomic uint64_t ev_throttled; /* a charging thread was throttled */
	_Atomic uint64_t underflows;   /* uncharge below zero (a bug: clamped) */
	_Atomic uint64_t throttle_ns;  /* total time charging threads slept */

	/* ---- line 3: membership and reclaim (W: slow paths, R: sockmemctl) ---- */
	_Atomic int64_t sockets;   /* accounted sockets open in member processes */
	_Atomic int64_t processes; /* live process records naming this group */
	_Atomic uint64_t reclaim_passes;
	_Atomic uint64_t reclaim_drained;    /* bytes taken back from idle caches */
	_Atomic uint64_t reclaim_reconciled; /* bytes released by reconciliation */
	_Atomic uint64_t reclaim_clamped;    /* sockets clamped by the reclaimer */
	/* futex word: bumped (and FUTEX_WAKE'd) when usage crosses high. */
	_Atomic uint32_t reclaim_seq;
	uint32_t pad3;
	uint64_t reserved3;

	/* ---- lines 4-5: name (W: creator before LIVE; R: all) ---- */
	char path[SOCKMEM_PATH_MAX]; /* full path "a/b/c", NUL-terminated */
};

/*
 * A process that attached to the segment and charges a group. Its charges are
 * split between the record (sockets' charges handed over by exited threads)
 * and the slots of its live threads; on death everything returns to `group`.
 */
struct sockmem_proc {
	/* W: CAS by the registering process (FREE->CLAIMED->LIVE) and by a
	 * reaper (LIVE->DEAD->FREE). R: all. */
	_Atomic uint32_t state;
	int32_t pid;	     /* W: registrant before LIVE */
	uint64_t start_time; /* /proc/<pid>/stat starttime: guards pid reuse */
	uint32_t group;	     /* group index charged by this process */
	uint32_t group_gen;  /* the group's generation when registered */
	/* W: atomic adds by the process's threads on slow paths. R: reaper. */
	_Atomic int64_t sock; /* socket charges not held by any live slot */
	_Atomic int64_t sockets;
	/* W: the process's helper thread, each tick. R: reapers, sockmemctl. */
	_Atomic uint64_t heartbeat_ns;
	uint8_t pad[SOCKMEM_CACHELINE - 4 * sizeof(uint32_t) - 4 * sizeof(uint64_t) -
		    sizeof(int32_t) * 0];
};

/*
 * A per-thread charge cache (the kernel's per-cpu "stock"), in the segment so
 * that other processes can take back idle bytes without the owner's help.
 *
 * The owner updates `stock` and `sock` with plain (relaxed) loads and stores,
 * bracketed by `busy`. A remote drainer sets `steal` (to its pid, so that a
 * drainer killed mid-drain can be recognised), issues a process-wide
 * memory barrier on every registered process (membarrier GLOBAL_EXPEDITED),
 * waits for `busy` to clear, then takes `stock`. This is an asymmetric
 * Dekker handshake: the owner pays only compiler barriers. See lib/cache.h.
 */
struct sockmem_slot {
	_Atomic uint32_t state; /* W: CAS by claimer / owner on exit / reaper */
	_Atomic uint32_t busy;	/* W: owner only. R: drainers */
	/* The pid of the drainer (or reaper) holding the slot, 0 if none. W: CAS
	 * 0->pid by one drainer, store 0 after; if the holder died, the owner,
	 * a reaper or the next claimer CASes pid->0. R: owner. */
	_Atomic uint32_t steal;
	/* W: claimer before LIVE, releaser before FREE (relaxed). R: all, after
	 * an acquire of `state` (re-checked, as the slot may be reused). */
	_Atomic uint32_t proc;
	_Atomic uint32_t group;
	int32_t tid; /* W: claimer before LIVE (diagnostics) */
	/* Bytes charged to the group's counter and not yet used (>= 0).
	 * W: owner (relaxed store) or a drainer holding `steal` with busy==0. */
	_Atomic int64_t stock;
	/* Socket bytes charged through this slot minus uncharged (may be < 0).
	 * W: owner only (relaxed store). R: reaper, sockmemctl. */
	_Atomic int64_t sock;
	uint8_t pad[SOCKMEM_CACHELINE - 6 * sizeof(uint32_t) - 2 * sizeof(int64_t)];
};

/*
 * One call site that hit max or was throttled (issue 5's tracer: shim/trace.c
 * captures, lib/trace.c stores, sockmemctl traces reads and symbolises).
 *
 * Frames are stored relocatably, so another process can symbolise them after
 * the traced one has exited: each frame is an address in its object's own
 * ELF address space (return address minus the object's load bias: what
 * .symtab/.dynsym and addr2line use) plus an index into the record's small
 * table of object paths. A record is identified by `hash` over the group, its
 * generation, and every frame's (object path, address); records of different
 * processes running the same code therefore merge.
 */
#define SOCKMEM_TRACE_DEPTH	    16
#define SOCKMEM_TRACE_OBJS	    4	  /* distinct objects per record */
#define SOCKMEM_TRACE_OBJ_PATH	    128	  /* object path, including the NUL */
#define SOCKMEM_TRACE_NO_OBJ	    0xffu /* frame in no recorded object */
#define SOCKMEM_TRACE_KIND_MAX	    1u
#define SOCKMEM_TRACE_KIND_THROTTLE 2u
struct sockmem_trace {
	/* W: CAS FREE->CLAIMED by the claimer, release LIVE once filled; a
	 * reset CASes LIVE->DEAD, clears, releases FREE. R: all (acquire). */
	_Atomic uint32_t state;
	/* Identity: W: claimer before LIVE. R: all after acquiring LIVE. */
	uint32_t group;
	uint32_t group_gen; /* the group's generation when claimed */
	uint32_t depth;	    /* frames used (<= SOCKMEM_TRACE_DEPTH) */
	_Atomic uint64_t hash;
	/* W: relaxed atomic adds / or by every process hitting the site. */
	_Atomic uint64_t count;		   /* captured hits (rate-limited sample) */
	_Atomic uint64_t bytes;		   /* bytes of those hits */
	_Atomic uint32_t kinds;		   /* SOCKMEM_TRACE_KIND_* seen */
	int32_t pid;			   /* W: claimer. First process that hit it */
	_Atomic uint64_t last_ns;	   /* CLOCK_REALTIME of the latest capture */
	uint64_t first_ns;		   /* W: claimer. CLOCK_REALTIME of the first */
	uint64_t pcs[SOCKMEM_TRACE_DEPTH]; /* address in the object's ELF space */
	uint8_t obj[SOCKMEM_TRACE_DEPTH];  /* index into objs, or NO_OBJ */
	uint32_t nobjs;			   /* entries used in objs */
	uint32_t pad;
	char exe[64]; /* program name (comm) of the first hit, NUL-terminated */
	char objs[SOCKMEM_TRACE_OBJS][SOCKMEM_TRACE_OBJ_PATH]; /* object paths */
};

struct sockmem_header {
	uint64_t magic;	      /* SOCKMEM_SHM_MAGIC, written last by the creator */
	uint32_t abi_version; /* SOCKMEM_ABI_VERSION */
	uint32_t header_size; /* sizeof(struct sockmem_header) */
	uint64_t total_size;  /* bytes of the whole segment (== file size) */
	uint32_t owner_uid;   /* creator's uid; must match the file's owner */
	uint32_t mode;	      /* permission bits at creation (0600) */
	uint32_t group_capacity, group_size;
	uint32_t proc_capacity, proc_size;
	uint32_t slot_capacity, slot_size;
	uint32_t trace_capacity, trace_size;
	uint64_t group_offset, proc_offset, slot_offset, trace_offset;
	uint64_t created_ns;	 /* CLOCK_REALTIME at creation */
	char ns[SOCKMEM_NS_MAX]; /* namespace name, NUL-terminated */
	/* Serialises group creation/removal and reaping (never a hot path).
	 * Robust: a holder killed by SIGKILL does not wedge the segment. */
	pthread_mutex_t table_lock;
	uint8_t pad[256 - 8 - 4 - 4 - 8 - 4 - 4 - 8 * 4 - 8 * 4 - 8 - SOCKMEM_NS_MAX -
		    sizeof(pthread_mutex_t)];
};

#endif /* SOCKMEM_ABI_H */
