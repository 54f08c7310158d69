/*
 * sockmemctl run: exec a command inside a group, with libsockmem.so
 * preloaded (like `systemd-run -p MemoryMax=`).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"

static const char run_help[] =
	"Usage: sockmemctl run [-g GROUP] [--max SIZE] [--high SIZE] [--low SIZE]\n"
	"                      [--dry-run] [--] COMMAND [ARGS...]\n"
	"\n"
	"Run COMMAND with libsockmem.so preloaded and its sockets charged to GROUP.\n"
	"\n"
	"  -g, --group GROUP  the group (default: run-<pid>, the pid COMMAND will have;\n"
	"                     remove it afterwards with 'sockmemctl rm')\n"
	"      --max SIZE     set the group's limits before starting (see 'set'); the\n"
	"      --high SIZE    group and the segment are created if missing\n"
	"      --low SIZE\n"
	"      --dry-run      print the environment, command and warnings; run nothing\n"
	"                     and change nothing\n"
	"  -h, --help         this help\n"
	"\n"
	"COMMAND's environment gets LD_PRELOAD (libsockmem.so first, after any\n"
	"sanitizer runtime, then what LD_PRELOAD held), SOCKMEM_GROUP and, with\n"
	"--namespace, SOCKMEM_NAMESPACE. The library is $SOCKMEM_LIB if set, else\n"
	"libsockmem.so in sockmemctl's own directory.\n"
	"\n"
	"The preload cannot reach static binaries (no dynamic loader runs) nor\n"
	"setuid/setgid or file-capability programs that change credentials (the\n"
	"loader ignores LD_PRELOAD paths in secure-execution mode); run warns when\n"
	"COMMAND is one and runs it unaccounted.\n"
	"\n"
	"Inherited SOCKMEM_* variables that the library would refuse (a bad value,\n"
	"or limits that break low <= high <= max on top of the group's) would run\n"
	"COMMAND unaccounted: run refuses them first.\n"
	"\n"
	"Exit status: COMMAND's; 126 if it cannot be executed, 127 if not found;\n"
	"1 when the group cannot be set up; 2 for a usage error.\n";

struct run_opts {
	const char *group;
	int64_t max, high, low; /* SOCKMEM_KEEP when not given */
	bool dry_run;
	size_t missing_from; /* what setup_group created (ctl_missing_from), undone if exec fails */
	char **argv;	     /* the command */
	char group_buf[32];
	char lib[PATH_MAX];
	char path[PATH_MAX]; /* the command, resolved through PATH */
};

/* ---- options ------------------------------------------------------------------- */

static int parse_run_args(struct ctl *ctx, int argc, char **argv, struct run_opts *o)
{
	static const struct option opts[] = {
		{"group", required_argument, NULL, 'g'},
		{"max", required_argument, NULL, 'M'},
		{"high", required_argument, NULL, 'H'},
		{"low", required_argument, NULL, 'L'},
		{"dry-run", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, rc = CTL_OK;

	while (rc == CTL_OK && (c = ctl_getopt(ctx, argc, argv, "g:h", opts, true)) != -1) {
		switch (c) {
		case 'g':
			o->group = optarg;
			rc = ctl_check_path(ctx, optarg);
			break;
		case 'M':
			rc = ctl_parse_size(ctx, "--max", optarg, &o->max);
			break;
		case 'H':
			rc = ctl_parse_size(ctx, "--high", optarg, &o->high);
			break;
		case 'L':
			rc = ctl_parse_size(ctx, "--low", optarg, &o->low);
			break;
		case 'd':
			o->dry_run = true;
			break;
		case 'h':
			ctl_help(run_help);
			return -1;
		default:
			return CTL_USAGE;
		}
	}
	if (rc != CTL_OK)
		return rc;
	if (optind >= argc)
		return ctl_usage(ctx, "missing COMMAND");
	o->argv = argv + optind;
	return ctl_precheck_limits(o->max, o->high, o->low);
}

/* ---- the environment -------------------------------------------------------------- */

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* The preload library: $SOCKMEM_LIB, else libsockmem.so beside our binary. */
static int find_library(const struct ctl *ctx, struct run_opts *o)
{
	char exe[PATH_MAX], want[PATH_MAX + 32];
	ssize_t n;

	if (ctx->env_lib) {
		snprintf(want, sizeof(want), "%s", ctx->env_lib);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0)
			return ctl_fail(CTL_ERR,
					"cannot find sockmemctl's own path (/proc/self/exe):"
					" %s; set SOCKMEM_LIB to libsockmem.so",
					strerror(errno));
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(want, sizeof(want), "%s/libsockmem.so", exe);
	}
	/* Absolute, so that a command that changes directory still finds it. */
	if (!realpath(want, o->lib) || access(o->lib, R_OK) != 0)
		return ctl_fail(CTL_ERR,
				"preload library %s not found (%s); build libsockmem.so or "
				"set SOCKMEM_LIB to its path",
				want, strerror(errno));
	return CTL_OK;
}

/* Sanitizer runtimes must stay first in LD_PRELOAD (ASan insists). */
static bool is_sanitizer_runtime(const char *entry, size_t len)
{
	const char *base = entry;

	for (size_t i = 0; i < len; i++)
		if (entry[i] == '/')
			base = entry + i + 1;
	return strncmp(base, "libasan", 7) == 0 || strncmp(base, "libtsan", 7) == 0 ||
	       strncmp(base, "libubsan", 8) == 0 || strncmp(base, "libclang_rt.", 12) == 0;
}

/* Is the LD_PRELOAD entry p[0..n) our library (by resolved path)? */
static bool same_file(const char *p, size_t n, const char *lib)
{
	char entry[PATH_MAX], real[PATH_MAX];

	if (n >= sizeof(entry))
		return false;
	memcpy(entry, p, n);
	entry[n] = '\0';
	return strcmp(entry, lib) == 0 || (realpath(entry, real) && strcmp(real, lib) == 0);
}

/* Append the entries of `old` (separated by ':' or ' ') that are (or are
 * not) sanitizer runtimes, skipping our own library. */
static void append_entries(char *buf, size_t len, const char *old, const char *lib, bool san)
{
	for (const char *p = old; p && *p;) {
		size_t n = strcspn(p, ": ");

		if (n && is_sanitizer_runtime(p, n) == san && !same_file(p, n, lib)) {
			size_t used = strlen(buf);

			snprintf(buf + used, len - used, "%s%.*s", used ? ":" : "", (int)n, p);
		}
		p += n + (p[n] != '\0');
	}
}

static char *build_preload(const char *lib, const char *old)
{
	static const char var[] = "LD_PRELOAD=";
	size_t cap = strlen(lib) + (old ? strlen(old) : 0) + 2;
	char *s = calloc(1, sizeof(var) + cap), *body;

	if (!s)
		return NULL;
	memcpy(s, var, sizeof(var) - 1);
	body = s + sizeof(var) - 1;
	append_entries(body, cap, old, lib, true);
	snprintf(body + strlen(body), cap - strlen(body), "%s%s", *body ? ":" : "", lib);
	append_entries(body, cap, old, lib, false);
	return s;
}

static bool overridden(const char *entry, const char *const *names)
{
	for (; *names; names++) {
		size_t n = strlen(*names);

		if (strncmp(entry, *names, n) == 0 && entry[n] == '=')
			return true;
	}
	return false;
}

/* COMMAND's environment: the inherited strings minus what we override, then
 * ours (owned, freed by free_env). */
struct run_env {
	char **env;
	char *own[3];
	int nown;
};

static void free_env(struct run_env *e)
{
	while (e->nown > 0)
		free(e->own[--e->nown]);
	free(e->env);
	e->env = NULL;
}

/* Append an owned string (NULL: out of memory). */
static int add_own(struct run_env *e, size_t *j, char *s)
{
	if (!s)
		return -1;
	e->own[e->nown++] = s;
	e->env[(*j)++] = s;
	return 0;
}

static int build_env(const struct ctl *ctx, const struct run_opts *o, struct run_env *e)
{
	const char *drop[8] = {"LD_PRELOAD", "SOCKMEM_GROUP"};
	size_t n = 0, k = 2, j = 0;
	char *s = NULL, *t = NULL;

	if (ctx->ns)
		drop[k++] = "SOCKMEM_NAMESPACE";
	/* Limits given here win over inherited SOCKMEM_MAX etc. that the shim
	 * would otherwise apply when the command starts. */
	if (o->max != SOCKMEM_KEEP)
		drop[k++] = "SOCKMEM_MAX";
	if (o->high != SOCKMEM_KEEP)
		drop[k++] = "SOCKMEM_HIGH";
	if (o->low != SOCKMEM_KEEP)
		drop[k++] = "SOCKMEM_LOW";
	while (ctx->environ && ctx->environ[n])
		n++;
	e->env = calloc(n + 4, sizeof(*e->env));
	if (!e->env)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!overridden(ctx->environ[i], drop))
			e->env[j++] = ctx->environ[i];
	if (add_own(e, &j, build_preload(o->lib, env_get(ctx->environ, "LD_PRELOAD"))) < 0 ||
	    asprintf(&s, "SOCKMEM_GROUP=%s", o->group) < 0 || add_own(e, &j, s) < 0)
		return -1;
	if (ctx->ns && (asprintf(&t, "SOCKMEM_NAMESPACE=%s", ctx->ns) < 0 || add_own(e, &j, t) < 0))
		return -1;
	return 0;
}

/* ---- the command -------------------------------------------------------------------- */

/* execvp's search: the first executable regular file along PATH. As there,
 * a name found but not executable (not a regular file, or no x bit for us)
 * does not stop the search, but is what fails if nothing better is found:
 * 126 "Permission denied" (like env(1)), not 127. */
static int resolve_command(const struct ctl *ctx, struct run_opts *o)
{
	const char *name = o->argv[0], *path = env_get(ctx->environ, "PATH");
	char denied[PATH_MAX] = "";
	struct stat st;

	if (strchr(name, '/')) {
		snprintf(o->path, sizeof(o->path), "%s", name);
		return CTL_OK;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;; p += strcspn(p, ":") + 1) {
		size_t n = strcspn(p, ":");

		snprintf(o->path, sizeof(o->path), "%.*s%s%s", (int)n, n ? p : ".", "/", name);
		if (stat(o->path, &st) == 0) {
			if (S_ISREG(st.st_mode) && access(o->path, X_OK) == 0)
				return CTL_OK;
			if (!denied[0])
				snprintf(denied, sizeof(denied), "%s", o->path);
		}
		if (p[n] == '\0')
			break;
	}
	if (denied[0])
		return ctl_fail(126, "run: cannot execute %s: %s", denied, strerror(EACCES));
	return ctl_fail(127, "run: command '%s' not found in PATH", name);
}

/* Does this ELF file name a program interpreter (the dynamic loader)?
 * 1: yes, 0: no (static), -1: not an ELF file we can read. */
static int elf_has_interp(int fd)
{
	unsigned char id[EI_NIDENT];
	Elf64_Ehdr e64;
	Elf32_Ehdr e32;
	uint64_t phoff;
	unsigned phnum, phentsize;

	if (pread(fd, id, sizeof(id), 0) != (ssize_t)sizeof(id) || memcmp(id, ELFMAG, SELFMAG))
		return -1;
	if (id[EI_CLASS] == ELFCLASS64 && pread(fd, &e64, sizeof(e64), 0) == (ssize_t)sizeof(e64)) {
		phoff = e64.e_phoff, phnum = e64.e_phnum, phentsize = e64.e_phentsize;
	} else if (id[EI_CLASS] == ELFCLASS32 &&
		   pread(fd, &e32, sizeof(e32), 0) == (ssize_t)sizeof(e32)) {
		phoff = e32.e_phoff, phnum = e32.e_phnum, phentsize = e32.e_phentsize;
	} else {
		return -1;
	}
	for (unsigned i = 0; i < phnum && i < 4096; i++) {
		uint32_t type; /* p_type is the first word in both classes */

		if (pread(fd, &type, sizeof(type), (off_t)(phoff + (uint64_t)i * phentsize)) !=
		    (ssize_t)sizeof(type))
			return -1;
		if (type == PT_INTERP)
			return 1;
	}
	return 0;
}

/* Will exec put the program in secure-execution mode (AT_SECURE), where the
 * loader ignores LD_PRELOAD entries with a slash? */
static const char *secure_exec_reason(const char *path, const struct stat *st)
{
	struct statvfs vfs;

	if (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_NOSUID))
		return NULL; /* the bits are ignored on this mount */
	/* The real uid on purpose (unlike the namespace, which follows the
	 * effective uid): exec enters secure mode when the program's effective
	 * uid will differ from the real one. */
	if ((st->st_mode & S_ISUID) && st->st_uid != getuid())
		return "setuid";
	if ((st->st_mode & S_ISGID) && (st->st_mode & S_IXGRP) && st->st_gid != getgid())
		return "setgid";
	if (getuid() != 0 && getxattr(path, "security.capability", NULL, 0) > 0)
		return "file-capability";
	return NULL;
}

/* One line per reason the preload cannot reach the program. A "#!" script
 * is judged by its interpreter (one level): the kernel ignores the setuid
 * and setgid bits and file capabilities of a script itself. */
static void warn_unreachable(const char *path, int depth)
{
	char line[PATH_MAX], *end;
	struct stat st;
	const char *why;
	bool script;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return; /* exec will report it */
	}
	n = pread(fd, line, sizeof(line) - 1, 0);
	script = n >= 3 && line[0] == '#' && line[1] == '!';
	why = script ? NULL : secure_exec_reason(path, &st);
	if (why)
		ctl_warn("%s is a %s program: the dynamic loader ignores LD_PRELOAD for it "
			 "(secure-execution mode), so its sockets will not be accounted",
			 path, why);
	if (elf_has_interp(fd) == 0)
		ctl_warn("%s is a static binary (no ELF interpreter): no dynamic loader runs, so "
			 "LD_PRELOAD cannot reach it and its sockets will not be accounted",
			 path);
	close(fd);
	if (depth > 0 || !script)
		return;
	line[n] = '\0';
	end = line + 2 + strspn(line + 2, " \t");
	end[strcspn(end, " \t\n")] = '\0';
	if (*end == '/')
		warn_unreachable(end, depth + 1);
}

static void print_dry_run(const struct ctl *ctx, const struct run_opts *o, char **env)
{
	char nsbuf[32];

	printf("group: %s (namespace %s)\n", o->group, ctl_ns_name(ctx, nsbuf, sizeof(nsbuf)));
	for (char **e = env; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0 || strncmp(*e, "SOCKMEM_", 8) == 0)
			printf("%s\n", *e);
	printf("command: %s", o->path);
	for (char **a = o->argv + 1; *a; a++)
		printf(" %s", *a);
	printf("\n");
}

/*
 * What the command's shim will do with its environment, judged before the
 * group is created or changed: it parses every SOCKMEM_* variable (a bad value, and
 * it runs the command unaccounted) and applies SOCKMEM_MAX/HIGH/LOW on top
 * of the limits set here (build_env drops the inherited ones this run
 * gives). Were the result to break low <= high <= max, the shim would
 * refuse it and, again, run the command unaccounted: refuse here instead,
 * naming the inherited variable.
 */
static int check_command_env(sockmem_seg_t *seg, const struct run_opts *o, char **env)
{
	static const char *const names[3] = {"SOCKMEM_MAX", "SOCKMEM_HIGH", "SOCKMEM_LOW"};
	const int64_t given[3] = {o->max, o->high, o->low};
	int64_t v[3] = {SOCKMEM_UNLIMITED, SOCKMEM_UNLIMITED, 0};
	char err[SOCKMEM_ERRLEN] = "", from[96] = "";
	struct sockmem_group_stat st;
	struct sm_config cfg;
	int64_t inherited[3];
	uint32_t idx;
	int nfrom = 0;

	if (sm_config_parse((const char *const *)env, &cfg, err, sizeof(err)) < 0)
		return ctl_fail(CTL_ERR,
				"refused: %s (inherited: the preloaded library would run the "
				"command unaccounted); unset or fix it",
				err);
	if (sockmem_group_lookup(seg, o->group, &idx) == 0 &&
	    sockmem_group_stat(seg, idx, &st) == 0) {
		v[0] = st.max;
		v[1] = st.high;
		v[2] = st.low;
	}
	inherited[0] = cfg.max;
	inherited[1] = cfg.high;
	inherited[2] = cfg.low;
	for (int k = 0; k < 3; k++) {
		if (inherited[k] != SOCKMEM_KEEP) {
			v[k] = inherited[k];
			snprintf(from + strlen(from), sizeof(from) - strlen(from), "%s%s",
				 nfrom++ ? ", " : "", names[k]);
		} else if (given[k] != SOCKMEM_KEEP) {
			v[k] = given[k];
		}
	}
	if (nfrom == 0 || sockmem_limits_check(v[0], v[1], v[2], err, sizeof(err)) == 0)
		return CTL_OK;
	return ctl_fail(CTL_ERR,
			"refused: %s once the inherited %s %s applied (the preloaded library "
			"would run the command unaccounted); unset %s or give %s to run",
			err, from, nfrom > 1 ? "are" : "is", nfrom > 1 ? "them" : "it",
			nfrom > 1 ? "those limits" : "that limit");
}

static int setup_group(const struct ctl *ctx, struct run_opts *o, char **env)
{
	sockmem_seg_t *seg;
	uint32_t idx;
	int rc;

	rc = ctl_open(ctx, CTL_CREATE, &seg);
	if (rc != CTL_OK)
		return rc;
	rc = check_command_env(seg, o, env);
	if (rc != CTL_OK) {
		sockmem_close(seg);
		return rc;
	}
	o->missing_from = ctl_missing_from(seg, o->group);
	rc = ctl_ensure_group(seg, o->group, o->max, o->high, o->low, &idx);
	sockmem_close(seg);
	return rc;
}

/* The command could not be executed: a group made for it goes again (a
 * failed `run` must not use up a table entry). */
static void undo_group(const struct ctl *ctx, const struct run_opts *o)
{
	sockmem_seg_t *seg;
	int saved = errno;

	if (o->missing_from && ctl_open(ctx, CTL_CREATE, &seg) == CTL_OK) {
		ctl_undo_groups(seg, o->group, o->missing_from);
		sockmem_close(seg);
	}
	errno = saved;
}

int ctl_cmd_run(struct ctl *ctx, int argc, char **argv)
{
	struct run_opts o = {.max = SOCKMEM_KEEP, .high = SOCKMEM_KEEP, .low = SOCKMEM_KEEP};
	struct run_env e = {0};
	int rc;

	rc = parse_run_args(ctx, argc, argv, &o);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	if (!o.group) {
		/* exec keeps our pid: the group is named after the command's pid. */
		snprintf(o.group_buf, sizeof(o.group_buf), "run-%d", (int)getpid());
		o.group = o.group_buf;
	}
	rc = find_library(ctx, &o);
	if (rc == CTL_OK)
		rc = resolve_command(ctx, &o);
	if (rc != CTL_OK)
		return rc;
	warn_unreachable(o.path, 0);
	if (build_env(ctx, &o, &e) < 0) {
		free_env(&e);
		return ctl_fail(CTL_ERR, "out of memory");
	}
	if (o.dry_run) {
		print_dry_run(ctx, &o, e.env);
		free_env(&e);
		return CTL_OK;
	}
	rc = setup_group(ctx, &o, e.env);
	if (rc == CTL_OK) {
		fflush(NULL);
		execve(o.path, o.argv, e.env);
		undo_group(ctx, &o);
		rc = ctl_fail(errno == ENOENT ? 127 : 126, "run: cannot execute %s: %s", o.path,
			      strerror(errno));
	}
	free_env(&e);
	return rc;
}
