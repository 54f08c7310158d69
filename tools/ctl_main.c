/*
 * sockmemctl: global options, the command table and the tool's help.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

#ifndef SOCKMEM_VERSION
#define SOCKMEM_VERSION "unknown"
#endif

static const struct ctl_cmd commands[] = {
	{"list", "show the group tree with usage, limits, peak and pressure", ctl_cmd_list},
	{"stat", "every statistic of a group (table, --json, --prometheus)", ctl_cmd_stat},
	{"set", "set max/high/low of a group (creates it if missing)", ctl_cmd_set},
	{"watch", "live view of usage against low/high/max", ctl_cmd_watch},
	{"run", "run a command inside a group (LD_PRELOAD of libsockmem.so)", ctl_cmd_run},
	{"record", "sample a group into a CSV file", ctl_cmd_record},
	{"plot", "draw a recorded CSV file as a PNG (gnuplot)", ctl_cmd_plot},
	{"reset-peak", "reset a group's peak to its current usage", ctl_cmd_reset_peak},
	{"reap", "return the charges of dead processes now", ctl_cmd_reap},
	{"rm", "remove an unused group", ctl_cmd_rm},
	{"traces", "call sites that hit max or were throttled, symbolised", ctl_cmd_traces},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_help(void)
{
	printf("Usage: sockmemctl [--namespace NS] [--allow-foreign] COMMAND [ARGS...]\n"
	       "       sockmemctl COMMAND --help\n"
	       "\n"
	       "See and steer sockmem's socket-memory groups.\n"
	       "\n"
	       "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		printf("  %-11s %s\n", commands[i].name, commands[i].summary);
	printf("\n"
	       "Options:\n"
	       "  -n, --namespace NS  the segment /dev/shm/sockmem-NS to use (default:\n"
	       "                      $SOCKMEM_NAMESPACE, else the per-user default u<euid>)\n"
	       "      --allow-foreign open a segment owned by another user, or with a mode\n"
	       "                      wider than 0600, which is refused otherwise; only for\n"
	       "                      the commands that read (list, stat, watch, record,\n"
	       "                      traces), which map it read-only. The segment must\n"
	       "                      still be valid (its header names the file's owner).\n"
	       "  -h, --help          this help\n"
	       "  -V, --version       print the version\n"
	       "\n"
	       "Sizes are bytes with an optional K/M/G/T suffix (base 1024); 'max' means\n"
	       "unlimited.\n"
	       "\n"
	       "Environment: SOCKMEM_NAMESPACE (default namespace), SOCKMEM_LIB (the\n"
	       "library 'run' preloads; default: libsockmem.so next to sockmemctl).\n"
	       "\n"
	       "Exit status: 0 success; 1 operational error (missing segment or group,\n"
	       "invalid segment, request refused); 2 usage error. 'run' exits with the\n"
	       "command's status (126/127 if it cannot be executed, like env(1)).\n");
}

static const struct ctl_cmd *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Global options; returns -1 to go on with the command at argv[optind]. */
static int parse_globals(struct ctl *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"namespace", required_argument, NULL, 'n'},
		{"allow-foreign", no_argument, NULL, 'F'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = ctl_getopt(ctx, argc, argv, "n:hV", opts, true)) != -1) {
		switch (c) {
		case 'n':
			ctx->ns = optarg;
			ctx->ns_from = "--namespace";
			break;
		case 'F':
			ctx->allow_foreign = true;
			break;
		case 'h':
			print_help();
			return CTL_OK;
		case 'V':
			printf("sockmemctl %s\n", SOCKMEM_VERSION);
			return CTL_OK;
		default:
			return CTL_USAGE;
		}
	}
	return -1;
}

static int check_namespace(const struct ctl *ctx)
{
	if (!ctx->ns || sockmem_ns_valid(ctx->ns) == 0)
		return -1;
	return ctl_fail(CTL_USAGE,
			"invalid namespace '%s' (from %s): use 1 to %d characters of "
			"[A-Za-z0-9._-]",
			ctx->ns, ctx->ns_from, SOCKMEM_NS_MAX - 1);
}

int main(int argc, char **argv)
{
	extern char **environ;
	struct ctl ctx = {
		.cmd = NULL,
		.ns = getenv("SOCKMEM_NAMESPACE"),
		.ns_from = "SOCKMEM_NAMESPACE",
		.env_lib = getenv("SOCKMEM_LIB"),
		.environ = environ,
	};
	const struct ctl_cmd *cmd;
	int rc;

	/* An empty variable means "not set", as for most tools. */
	if (ctx.ns && !*ctx.ns)
		ctx.ns = NULL;
	if (ctx.env_lib && !*ctx.env_lib)
		ctx.env_lib = NULL;
	rc = parse_globals(&ctx, argc, argv);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return ctl_fail(CTL_USAGE, "no command given; see 'sockmemctl --help'");
	cmd = find_command(argv[optind]);
	if (!cmd)
		return ctl_fail(CTL_USAGE, "unknown command '%s'; see 'sockmemctl --help'",
				argv[optind]);
	rc = check_namespace(&ctx);
	if (rc >= 0)
		return rc;
	ctx.cmd = cmd->name;
	argc -= optind;
	argv += optind;
	ctl_getopt_reset();
	rc = cmd->run(&ctx, argc, argv);
	/* Output lost (a full disk, a closed pipe) is a failure too. */
	if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CTL_OK)
		return ctl_fail(CTL_ERR, "write error on standard output: %s", strerror(errno));
	return rc;
}
