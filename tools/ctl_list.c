/*
 * sockmemctl list: the group tree with usage, limits, peak and pressure.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char list_help[] =
	"Usage: sockmemctl list\n"
	"\n"
	"Show every group of the namespace as a tree (children indented under their\n"
	"parent) with CURRENT (charged, including per-thread caches), SOCK (charged\n"
	"to sockets), MAX, HIGH, LOW, PEAK, PROCS (live member processes) and P: '!'\n"
	"when the group or an ancestor is under socket pressure. Sizes are human\n"
	"(base 1024); 'max' means unlimited.\n"
	"\n"
	"Reads the segment without changing it. Exit status: 0, or 1 when the\n"
	"namespace has no segment or it is invalid.\n";

/* The last component of a path: the name shown under its parent. */
static const char *leaf(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static void print_row(const struct sockmem_group_stat *st)
{
	char name[SOCKMEM_PATH_MAX + 64], b[6][32];
	unsigned depth = st->depth < 16 ? st->depth : 16;

	snprintf(name, sizeof(name), "%*s%s", (int)(2 * depth), "", leaf(st->path));
	printf("%-24s %8s %8s %8s %8s %8s %8s %5lld %s\n", name,
	       ctl_size(st->current, b[0], sizeof(b[0])), ctl_size(st->sock, b[1], sizeof(b[1])),
	       ctl_size(st->max, b[2], sizeof(b[2])), ctl_size(st->high, b[3], sizeof(b[3])),
	       ctl_size(st->low, b[4], sizeof(b[4])), ctl_size(st->peak, b[5], sizeof(b[5])),
	       (long long)st->processes, st->under_pressure ? "!" : "");
}

int ctl_cmd_list(struct ctl *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sockmem_group_stat *st;
	sockmem_seg_t *seg;
	int c, n, rc;

	while ((c = ctl_getopt(ctx, argc, argv, "h", opts, false)) != -1) {
		if (c == 'h')
			return ctl_help(list_help);
		return CTL_USAGE;
	}
	if (optind < argc)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind]);
	rc = ctl_open(ctx, CTL_READ, &seg);
	if (rc != CTL_OK)
		return rc;
	n = ctl_snapshot(seg, &st);
	if (n < 0) {
		sockmem_close(seg);
		return ctl_fail(CTL_ERR, "out of memory");
	}
	printf("%-24s %8s %8s %8s %8s %8s %8s %5s %s\n", "GROUP", "CURRENT", "SOCK", "MAX", "HIGH",
	       "LOW", "PEAK", "PROCS", "P");
	for (int i = 0; i < n; i++)
		print_row(&st[i]);
	free(st);
	sockmem_close(seg);
	return CTL_OK;
}
