/*
 * sockmemctl plot: draw a `record` CSV file as a PNG with gnuplot: usage over
 * time, the max/high/low lines, and pressure episodes shaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

static const char plot_help[] =
	"Usage: sockmemctl plot FILE.csv --out FILE.png [--title TEXT]\n"
	"\n"
	"Draw a file written by 'sockmemctl record' as a PNG: current and sock usage\n"
	"over time, the max (red), high (orange) and low (green)\n"
	"limits, and pressure episodes shaded in red: the sawtooth between the\n"
	"watermarks. Needs gnuplot with the pngcairo terminal (Debian: gnuplot-nox).\n"
	"\n"
	"  -o, --out FILE.png  the image to write (replaced)\n"
	"  -t, --title TEXT    the title (default: the CSV file's name)\n"
	"  -h, --help          this help\n"
	"\n"
	"Exit status: 0; 1 for an unreadable or malformed CSV file, or when gnuplot\n"
	"is missing or fails; 2 for a usage error.\n";

enum { C_T, C_CUR, C_SOCK, C_MAX, C_HIGH, C_LOW, C_PRESS, NCOLS };
static const char *const col_names[NCOLS] = {"time_s", "current", "sock",	   "max",
					     "high",   "low",	  "under_pressure"};

struct series {
	const char *file;
	int col[NCOLS]; /* field index of each column we use */
	int nfields;
	double (*v)[NCOLS];
	size_t n, cap;
};

/* ---- reading the CSV ------------------------------------------------------- */

static int split(char *line, char **fields, int max)
{
	int n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	for (char *p = line; n < max;) {
		fields[n++] = p;
		p = strchr(p, ',');
		if (!p)
			break;
		*p++ = '\0';
	}
	return n;
}

static int read_header(struct series *s, char *line)
{
	char *f[64];
	int n = split(line, f, 64);

	s->nfields = n;
	for (int c = 0; c < NCOLS; c++) {
		s->col[c] = -1;
		for (int i = 0; i < n; i++)
			if (strcmp(f[i], col_names[c]) == 0)
				s->col[c] = i;
		if (s->col[c] < 0)
			return ctl_fail(CTL_ERR,
					"%s is not a 'sockmemctl record' file: no column '%s'",
					s->file, col_names[c]);
	}
	return CTL_OK;
}

static int read_row(struct series *s, char *line, size_t lineno)
{
	char *f[64], *end;
	int n = split(line, f, 64);

	if (n != s->nfields)
		return ctl_fail(CTL_ERR, "%s line %zu: %d fields, the header has %d", s->file,
				lineno, n, s->nfields);
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		void *v = realloc(s->v, cap * sizeof(*s->v));

		if (!v)
			return ctl_fail(CTL_ERR, "out of memory");
		s->v = v;
		s->cap = cap;
	}
	for (int c = 0; c < NCOLS; c++) {
		const char *x = f[s->col[c]];
		double d;

		if (strcmp(x, "max") == 0 && (c == C_MAX || c == C_HIGH || c == C_LOW)) {
			d = NAN; /* unlimited: no line */
		} else {
			errno = 0;
			d = strtod(x, &end);
			if (errno || end == x || *end || !isfinite(d))
				return ctl_fail(CTL_ERR, "%s line %zu: bad %s value '%s'", s->file,
						lineno, col_names[c], x);
		}
		s->v[s->n][c] = d;
	}
	s->n++;
	return CTL_OK;
}

static int read_csv(struct series *s)
{
	FILE *f = fopen(s->file, "r");
	size_t cap = 0, lineno = 0;
	char *line = NULL;
	int rc = CTL_OK;

	if (!f)
		return ctl_fail(CTL_ERR, "cannot read %s: %s", s->file, strerror(errno));
	while (rc == CTL_OK && getline(&line, &cap, f) > 0) {
		if (++lineno == 1)
			rc = read_header(s, line);
		else if (line[0] != '\n')
			rc = read_row(s, line, lineno);
	}
	free(line);
	fclose(f);
	if (rc == CTL_OK && lineno == 0)
		rc = ctl_fail(CTL_ERR, "%s is empty; record some samples first", s->file);
	else if (rc == CTL_OK && s->n == 0)
		rc = ctl_fail(CTL_ERR, "%s has no samples; record for longer", s->file);
	return rc;
}

/* ---- the gnuplot script ------------------------------------------------------- */

struct scale {
	double top;	   /* y range top, in units */
	double unit;	   /* bytes per unit */
	const char *label; /* "MiB" */
	bool has[NCOLS];   /* the column has at least one finite value */
};

static void choose_scale(const struct series *s, struct scale *sc)
{
	static const struct {
		double unit;
		const char *label;
	} units[] = {{1099511627776.0, "TiB"},
		     {1073741824.0, "GiB"},
		     {1048576.0, "MiB"},
		     {1024.0, "KiB"},
		     {1.0, "bytes"}};
	double ymax = 0;

	memset(sc, 0, sizeof(*sc));
	for (size_t i = 0; i < s->n; i++)
		for (int c = C_CUR; c <= C_LOW; c++)
			if (isfinite(s->v[i][c])) {
				sc->has[c] = true;
				ymax = fmax(ymax, s->v[i][c]);
			}
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		sc->unit = units[u].unit;
		sc->label = units[u].label;
		if (ymax >= units[u].unit)
			break;
	}
	sc->top = ymax > 0 ? ymax / sc->unit * 1.1 : 1;
}

/* A gnuplot double-quoted string. */
static void gp_string(FILE *g, const char *s)
{
	fputc('"', g);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', g);
		fputc(*s, g);
	}
	fputc('"', g);
}

static void gp_data(FILE *g, const struct series *s, const struct scale *sc)
{
	fprintf(g, "$d << EOD\n");
	for (size_t i = 0; i < s->n; i++) {
		fprintf(g, "%.3f", s->v[i][C_T]);
		for (int c = C_CUR; c <= C_LOW; c++) {
			if (isfinite(s->v[i][c]))
				fprintf(g, " %.6f", s->v[i][c] / sc->unit);
			else
				fprintf(g, " NaN");
		}
		fprintf(g, " %d\n", s->v[i][C_PRESS] > 0 ? 1 : 0);
	}
	fprintf(g, "EOD\n");
}

static void gp_script(FILE *g, const struct series *s, const char *out, const char *title)
{
	/* Columns of $d: 1 time, 2 current, 3 sock, 4 max, 5 high, 6 low, 7 pressure. */
	static const char *const styles[NCOLS] = {
		[C_CUR] = "with lines lw 2 lc rgb '#1f4e99' title 'current'",
		[C_SOCK] = "with lines lw 1 dt 3 lc rgb '#3aa0c8' title 'sock'",
		[C_MAX] = "with steps lw 2 lc rgb '#c0392b' title 'max'",
		[C_HIGH] = "with steps lw 1.5 lc rgb '#e67e22' title 'high'",
		[C_LOW] = "with steps lw 1.5 lc rgb '#27ae60' title 'low'",
	};
	struct scale sc;

	choose_scale(s, &sc);
	fprintf(g, "set terminal pngcairo size 1100,550 font 'sans,10'\nset output ");
	gp_string(g, out);
	fprintf(g, "\nset title ");
	gp_string(g, title);
	fprintf(g, " noenhanced"); /* as written: no '_' subscripts, no '^' superscripts */
	fprintf(g,
		"\nset xlabel 'time (s)'\nset ylabel 'socket memory (%s)'\n"
		"set grid\nset key outside right top\nset yrange [0:%g]\n"
		"set xrange [%g:%g]\nset style fill transparent solid 0.25 noborder\n",
		sc.label, sc.top, s->v[0][C_T],
		s->v[s->n - 1][C_T] > s->v[0][C_T] ? s->v[s->n - 1][C_T] : s->v[0][C_T] + 1);
	gp_data(g, s, &sc);
	/* Pressure: a filled step curve that is full height while pressured. */
	fprintf(g, "plot $d using 1:($7*%g) with fillsteps lc rgb '#e74c3c' title 'pressure'",
		sc.top);
	for (int c = C_CUR; c <= C_LOW; c++)
		if (sc.has[c])
			fprintf(g, ", \\\n  $d using 1:%d %s", c + 1, styles[c]);
	fprintf(g, "\n");
}

/* ---- running gnuplot ---------------------------------------------------------- */

/* gnuplot's first line of complaint, for our one-line error. */
static void first_line(FILE *f, char *buf, size_t len)
{
	buf[0] = '\0';
	rewind(f);
	while (fgets(buf, (int)len, f)) {
		buf[strcspn(buf, "\r\n")] = '\0';
		if (buf[strspn(buf, " \t^")])
			return;
	}
	buf[0] = '\0';
}

static int run_gnuplot(const struct series *s, const char *out, const char *title)
{
	char prog[] = "gnuplot", *argv[] = {prog, NULL}, why[256];
	posix_spawn_file_actions_t fa;
	FILE *errf = tmpfile(), *g;
	int fds[2], status = 0, rc;
	pid_t pid;

	if (!errf || pipe2(fds, O_CLOEXEC) < 0) {
		rc = errno;
		if (errf)
			fclose(errf);
		return ctl_fail(CTL_ERR, "plot: cannot start gnuplot: %s", strerror(rc));
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, fileno(errf), STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, fileno(errf), STDERR_FILENO);
	rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, NULL);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[0]);
	if (rc != 0) {
		close(fds[1]);
		fclose(errf);
		if (rc == ENOENT)
			return ctl_fail(CTL_ERR, "plot: gnuplot not found; install it (Debian: "
						 "apt-get install gnuplot-nox)");
		return ctl_fail(CTL_ERR, "plot: cannot start gnuplot: %s", strerror(rc));
	}
	g = fdopen(fds[1], "w");
	if (g) {
		gp_script(g, s, out, title);
		fclose(g);
	} else {
		close(fds[1]);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	first_line(errf, why, sizeof(why));
	fclose(errf);
	/* gnuplot exits non-zero on an error; its warnings are not ours. */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ctl_fail(CTL_ERR, "plot: gnuplot failed: %s",
				why[0] ? why : "no message (exit status)");
	return CTL_OK;
}

static int parse_plot_args(struct ctl *ctx, int argc, char **argv, const char **csv,
			   const char **out, const char **title)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"title", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = ctl_getopt(ctx, argc, argv, "o:t:h", opts, false)) != -1) {
		if (c == 'o')
			*out = optarg;
		else if (c == 't')
			*title = optarg;
		else if (c == 'h')
			return ctl_help(plot_help), -1;
		else
			return CTL_USAGE;
	}
	if (optind >= argc)
		return ctl_usage(ctx, "missing FILE.csv");
	if (argc - optind > 1)
		return ctl_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
	if (!*out)
		return ctl_usage(ctx, "missing --out FILE.png");
	*csv = argv[optind];
	if (!*title)
		*title = strrchr(*csv, '/') ? strrchr(*csv, '/') + 1 : *csv;
	return CTL_OK;
}

int ctl_cmd_plot(struct ctl *ctx, int argc, char **argv)
{
	struct series s = {0};
	const char *out = NULL, *title = NULL;
	struct stat st;
	int rc;

	rc = parse_plot_args(ctx, argc, argv, &s.file, &out, &title);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	rc = read_csv(&s);
	if (rc == CTL_OK) {
		signal(SIGPIPE, SIG_IGN); /* a dying gnuplot must not kill us */
		rc = run_gnuplot(&s, out, title);
	}
	if (rc == CTL_OK && (stat(out, &st) < 0 || st.st_size == 0))
		rc = ctl_fail(CTL_ERR, "plot: gnuplot wrote no image to %s", out);
	if (rc == CTL_OK)
		printf("wrote %s (%zu samples)\n", out, s.n);
	free(s.v);
	return rc;
}
