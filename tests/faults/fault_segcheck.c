/*
 * sockmem-fault-segcheck NS GROUP: one line of what the segment holds for
 * scripts (the soak): the group's counters and what the process and slot
 * tables hold, including slots left with a busy/steal flag.
 *
 *   current=<n> sock=<n> cached=<n> sockets=<n> processes=<n> records=<n>
 *   slots=<n> table_sock=<n> table_stock=<n> flags=<n> underflows=<n>
 */
#include <stdio.h>

#include "fh.h"

int main(int argc, char **argv)
{
	struct sockmem_group_stat st;
	struct sockmem_slot *s;
	sockmem_seg_t *seg;
	struct fh_held h;
	int flags = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s NAMESPACE GROUP\n", argv[0]);
		return 2;
	}
	seg = fh_open(argv[1]);
	if (!seg || fh_stat(seg, argv[2], &st) != 0) {
		fprintf(stderr, "%s: no segment or group\n", argv[0]);
		return 1;
	}
	fh_held(seg, NULL, 0, false, &h);
	for (uint32_t i = 0; (s = sockmem_slot_at(seg, i)) != NULL; i++)
		flags += atomic_load(&s->busy) != 0 || atomic_load(&s->steal) != 0;
	printf("current=%lld sock=%lld cached=%lld sockets=%lld processes=%lld records=%d "
	       "slots=%d table_sock=%lld table_stock=%lld flags=%d underflows=%llu\n",
	       (long long)st.current, (long long)st.sock, (long long)st.cached,
	       (long long)st.sockets, (long long)st.processes, h.nprocs, h.nslots,
	       (long long)h.sock, (long long)h.stock, flags, (unsigned long long)st.underflows);
	sockmem_close(seg);
	return 0;
}
