/* Pins the shared-memory ABI: any change to a field's offset or a struct's
 * size must come with a SOCKMEM_ABI_VERSION bump and an update here. */
#include <criterion/criterion.h>
#include <stddef.h>

#include "sockmem/abi.h"

#define PIN(type, field, off)                                                                      \
	cr_expect_eq(offsetof(struct type, field), (off), #type "." #field " moved")

Test(layout, version)
{
	cr_expect_eq(SOCKMEM_ABI_VERSION, 2u, "bump the pins below with the version");
	cr_expect_eq(SOCKMEM_SHM_MAGIC, UINT64_C(0x314d454d4b434f53));
}

Test(layout, header)
{
	cr_expect_eq(sizeof(struct sockmem_header), 256);
	PIN(sockmem_header, magic, 0);
	PIN(sockmem_header, abi_version, 8);
	PIN(sockmem_header, header_size, 12);
	PIN(sockmem_header, total_size, 16);
	PIN(sockmem_header, owner_uid, 24);
	PIN(sockmem_header, mode, 28);
	PIN(sockmem_header, group_capacity, 32);
	PIN(sockmem_header, group_size, 36);
	PIN(sockmem_header, proc_capacity, 40);
	PIN(sockmem_header, proc_size, 44);
	PIN(sockmem_header, slot_capacity, 48);
	PIN(sockmem_header, slot_size, 52);
	PIN(sockmem_header, trace_capacity, 56);
	PIN(sockmem_header, trace_size, 60);
	PIN(sockmem_header, group_offset, 64);
	PIN(sockmem_header, proc_offset, 72);
	PIN(sockmem_header, slot_offset, 80);
	PIN(sockmem_header, trace_offset, 88);
	PIN(sockmem_header, created_ns, 96);
	PIN(sockmem_header, ns, 104);
	PIN(sockmem_header, table_lock, 168);
}

Test(layout, group)
{
	cr_expect_eq(sizeof(struct sockmem_group), 384);
	PIN(sockmem_group, usage, 0);
	PIN(sockmem_group, peak, 8);
	PIN(sockmem_group, max, 64);
	PIN(sockmem_group, high, 72);
	PIN(sockmem_group, low, 80);
	PIN(sockmem_group, parent, 88);
	PIN(sockmem_group, depth, 92);
	PIN(sockmem_group, state, 96);
	PIN(sockmem_group, generation, 100);
	PIN(sockmem_group, pressure_until_ns, 104);
	PIN(sockmem_group, failcnt, 128);
	PIN(sockmem_group, ev_low, 136);
	PIN(sockmem_group, ev_high, 144);
	PIN(sockmem_group, ev_max, 152);
	PIN(sockmem_group, ev_pressure, 160);
	PIN(sockmem_group, ev_throttled, 168);
	PIN(sockmem_group, underflows, 176);
	PIN(sockmem_group, throttle_ns, 184);
	PIN(sockmem_group, sockets, 192);
	PIN(sockmem_group, processes, 200);
	PIN(sockmem_group, reclaim_passes, 208);
	PIN(sockmem_group, reclaim_drained, 216);
	PIN(sockmem_group, reclaim_reconciled, 224);
	PIN(sockmem_group, reclaim_clamped, 232);
	PIN(sockmem_group, reclaim_seq, 240);
	PIN(sockmem_group, path, 256);
}

/* The hot word shares its line with nothing read-mostly. */
Test(layout, usage_alone_on_line_0)
{
	cr_expect_eq(offsetof(struct sockmem_group, usage) / SOCKMEM_CACHELINE, 0);
	cr_expect_eq(offsetof(struct sockmem_group, peak) / SOCKMEM_CACHELINE, 0);
	cr_expect_eq(offsetof(struct sockmem_group, max) / SOCKMEM_CACHELINE, 1);
	cr_expect_eq(offsetof(struct sockmem_group, state) / SOCKMEM_CACHELINE, 1);
	cr_expect_eq(offsetof(struct sockmem_group, failcnt) % SOCKMEM_CACHELINE, 0);
	cr_expect_eq(sizeof(struct sockmem_group) % SOCKMEM_CACHELINE, 0);
	cr_expect_eq(_Alignof(struct sockmem_group), 8);
}

Test(layout, proc)
{
	cr_expect_eq(sizeof(struct sockmem_proc), 64);
	PIN(sockmem_proc, state, 0);
	PIN(sockmem_proc, pid, 4);
	PIN(sockmem_proc, start_time, 8);
	PIN(sockmem_proc, group, 16);
	PIN(sockmem_proc, group_gen, 20);
	PIN(sockmem_proc, sock, 24);
	PIN(sockmem_proc, sockets, 32);
	PIN(sockmem_proc, heartbeat_ns, 40);
}

/* One slot per cache line: owners never false-share. */
Test(layout, slot)
{
	cr_expect_eq(sizeof(struct sockmem_slot), SOCKMEM_CACHELINE);
	PIN(sockmem_slot, state, 0);
	PIN(sockmem_slot, busy, 4);
	PIN(sockmem_slot, steal, 8);
	PIN(sockmem_slot, proc, 12);
	PIN(sockmem_slot, group, 16);
	PIN(sockmem_slot, tid, 20);
	PIN(sockmem_slot, stock, 24);
	PIN(sockmem_slot, sock, 32);
}

Test(layout, trace)
{
	cr_expect_eq(sizeof(struct sockmem_trace), 792);
	PIN(sockmem_trace, state, 0);
	PIN(sockmem_trace, group, 4);
	PIN(sockmem_trace, group_gen, 8);
	PIN(sockmem_trace, depth, 12);
	PIN(sockmem_trace, hash, 16);
	PIN(sockmem_trace, count, 24);
	PIN(sockmem_trace, bytes, 32);
	PIN(sockmem_trace, kinds, 40);
	PIN(sockmem_trace, pid, 44);
	PIN(sockmem_trace, last_ns, 48);
	PIN(sockmem_trace, first_ns, 56);
	PIN(sockmem_trace, pcs, 64);
	PIN(sockmem_trace, obj, 192);
	PIN(sockmem_trace, nobjs, 208);
	PIN(sockmem_trace, exe, 216);
	PIN(sockmem_trace, objs, 280);
}

Test(layout, table_offsets_aligned)
{
	cr_expect_eq(_Alignof(struct sockmem_slot) <= SOCKMEM_CACHELINE, 1);
	cr_expect_eq(SOCKMEM_PATH_MAX, 128);
	cr_expect_eq(SOCKMEM_NS_MAX, 64);
}
