/*
 * sockmemctl record and plot: a sawtooth between the watermarks recorded to
 * CSV, checked row by row, and drawn to a PNG by gnuplot.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ctl_harness.h"

TestSuite(record, .init = h_setup, .fini = h_teardown, .timeout = 90);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

#define HEADER                                                                                     \
	"time_s,current,sock,cached,max,high,low,peak,under_pressure,failcnt,events_low,"          \
	"events_high,events_max,events_pressure,events_throttled,throttle_ns,sockets,processes"

struct csv_summary {
	int rows, pressured, calm, distinct_current;
	long long last_current[64];
	double last_t;
};

static void check_row(char *line, struct csv_summary *s)
{
	char *f[32], *p = line;
	int n = 0;
	long long cur;
	double t;

	line[strcspn(line, "\n")] = '\0';
	while (n < 32 && (f[n++] = strsep(&p, ",")))
		;
	n -= f[n - 1] == NULL;
	cr_assert_eq(n, 18, "row with %d fields: %s", n, line);
	t = strtod(f[0], NULL);
	cr_assert(t >= s->last_t, "time goes back: %s", line);
	s->last_t = t;
	cr_assert_str_eq(f[4], "4194304", "max column: %s", line);
	cr_assert_str_eq(f[5], "3145728", "high column: %s", line);
	cr_assert_str_eq(f[6], "1048576", "low column: %s", line);
	cr_assert(!strcmp(f[8], "0") || !strcmp(f[8], "1"), "under_pressure: %s", line);
	s->pressured += f[8][0] == '1';
	s->calm += f[8][0] == '0';
	cur = atoll(f[1]);
	cr_assert(cur >= 0 && cur <= 4194304 + 65536, "current out of range: %s", line);
	for (int i = 0; i < s->distinct_current; i++)
		if (s->last_current[i] == cur)
			return;
	if (s->distinct_current < 64)
		s->last_current[s->distinct_current++] = cur;
}

Test(record, sawtooth_to_csv_and_png)
{
	const char *csv = h_fmt("%s/saw.csv", h_tmpdir()), *png = h_fmt("%s/saw.png", h_tmpdir());
	struct csv_summary s = {0};
	char line[1024], magic[8];
	struct h_out r;
	FILE *f;
	pid_t pid;

	cr_assert_eq(CTL(&r, "set", "s", "max=4M", "high=3M", "low=1M"), 0, "%s", r.err);
	h_free(&r);
	pid = h_start((const char *const[]){h_build("tests/ctl-helper"), "saw", h_ns(), "s", "3000",
					    NULL},
		      "ready");
	cr_assert_eq(CTL(&r, "record", "s", "--interval", "20", "--duration", "2", "--out", csv), 0,
		     "%s", r.err);
	cr_assert(strstr(r.out, "recorded ") && strstr(r.out, csv), "%s", r.out);
	h_free(&r);
	cr_assert_eq(h_wait(pid, 10000), 0);

	f = fopen(csv, "r");
	cr_assert(f);
	cr_assert(fgets(line, sizeof(line), f));
	cr_assert_str_eq(line, HEADER "\n");
	while (fgets(line, sizeof(line), f)) {
		check_row(line, &s);
		s.rows++;
	}
	fclose(f);
	cr_assert(s.rows >= 50 && s.rows <= 102, "%d rows for 2 s at 20 ms", s.rows);
	cr_assert(s.last_t >= 1.9 && s.last_t <= 2.1, "last sample at %.3f s", s.last_t);
	cr_assert(s.distinct_current >= 4, "usage never moved (%d values)", s.distinct_current);
	cr_assert(s.pressured > 0 && s.calm > 0, "pressure episodes: %d/%d", s.pressured, s.calm);

	cr_assert_eq(CTL(&r, "plot", csv, "--out", png, "--title", "sawtooth"), 0, "%s", r.err);
	cr_assert(strstr(r.out, "wrote "), "%s", r.out);
	h_free(&r);
	f = fopen(png, "rb");
	cr_assert(f, "no PNG");
	cr_assert_eq(fread(magic, 1, 8, f), 8);
	fseek(f, 0, SEEK_END);
	cr_assert(ftell(f) > 10000, "PNG of %ld bytes", ftell(f));
	fclose(f);
	cr_assert_eq(memcmp(magic, "\x89PNG\r\n\x1a\n", 8), 0, "not a PNG");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f);
	fputs(text, f);
	fclose(f);
}

Test(record, bad_input)
{
	const char *bad = h_fmt("%s/bad.csv", h_tmpdir()), *png = h_fmt("%s/x.png", h_tmpdir());
	struct h_out r;
	struct stat st;

	cr_assert_eq(CTL(&r, "set", "s", "max=4M"), 0);
	h_free(&r);
	cr_assert_eq(CTL(&r, "record", "nope", "--out", bad), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no group 'nope'"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "record", "s", "--out", "/nonexistent/dir/x.csv"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "cannot write /nonexistent/dir/x.csv"), "%s",
		  r.err);
	h_free(&r);

	write_file(bad, HEADER "\n0.0,1,2\n");
	cr_assert_eq(CTL(&r, "plot", bad, "--out", png), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "line 2"), "%s", r.err);
	h_free(&r);
	write_file(bad, "a,b,c\n1,2,3\n");
	cr_assert_eq(CTL(&r, "plot", bad, "--out", png), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no column 'time_s'"), "%s", r.err);
	h_free(&r);
	write_file(bad, HEADER "\n");
	cr_assert_eq(CTL(&r, "plot", bad, "--out", png), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no samples"), "%s", r.err);
	h_free(&r);
	write_file(bad, HEADER "\n0.0,1,1,0,max,max,0,1,0,0,0,0,0,0,0,0,0,x\n");
	cr_assert_eq(CTL(&r, "plot", bad, "--out", png), 0, "only used columns are parsed: %s",
		     r.err);
	h_free(&r);
	write_file(bad, HEADER "\n0.0,zz,1,0,max,max,0,1,0,0,0,0,0,0,0,0,0,0\n");
	cr_assert_eq(CTL(&r, "plot", bad, "--out", png), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "bad current value 'zz'"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "plot", "/nonexistent.csv", "--out", png), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "cannot read /nonexistent.csv"), "%s", r.err);
	h_free(&r);
	cr_assert_eq(stat("/nonexistent.csv", &st), -1);
}

/* gnuplot reads text in its "enhanced" mode unless told not to: '_' and '^'
 * in a title (file names have them) become sub- and superscripts. The title
 * must reach the image as written. A stand-in gnuplot on PATH keeps the
 * script it is given. */
Test(record, plot_title_is_literal)
{
	char dir[512], fake[600], script[600], csv[600], png[600], pathenv[4096], line[1024];
	const char *path = getenv("PATH");
	bool literal = false, titled = false;
	struct h_out r;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/bin", h_tmpdir());
	snprintf(fake, sizeof(fake), "%s/gnuplot", dir);
	snprintf(script, sizeof(script), "%s/script.gp", h_tmpdir());
	snprintf(csv, sizeof(csv), "%s/run_1.csv", h_tmpdir());
	snprintf(png, sizeof(png), "%s/x.png", h_tmpdir());
	snprintf(pathenv, sizeof(pathenv), "PATH=%s:%s", dir, path ? path : "/usr/bin:/bin");
	cr_assert_eq(mkdir(dir, 0700), 0);
	write_file(fake, h_fmt("#!/bin/sh\ncat > '%s'\necho image > '%s'\n", script, png));
	cr_assert_eq(chmod(fake, 0700), 0);
	write_file(csv, HEADER "\n0.0,1,1,0,max,max,0,1,0,0,0,0,0,0,0,0,0,0\n"
			       "1.0,2,2,0,max,max,0,1,0,0,0,0,0,0,0,0,0,0\n");
	h_env((const char *const[]){pathenv, NULL});
	cr_assert_eq(CTL(&r, "plot", csv, "--out", png), 0, "%s", r.err);
	h_free(&r);
	f = fopen(script, "r");
	cr_assert(f, "the stand-in gnuplot got no script");
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "set title ", 10) != 0)
			continue;
		titled = strstr(line, "run_1.csv") != NULL;
		literal = strstr(line, "noenhanced") != NULL;
	}
	fclose(f);
	h_env((const char *const[]){NULL});
	cr_assert(titled, "no title naming the CSV file");
	cr_assert(literal, "the title is drawn in enhanced mode ('_1' becomes a subscript)");
}

/* Rows of `path` after the header (0 if unreadable); `has` is set if a row
 * contains `needle`. */
static int csv_rows(const char *path, const char *needle, bool *has)
{
	char line[1024];
	int rows = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (rows >= 0 && needle && strstr(line, needle))
			*has = true;
		rows++;
	}
	fclose(f);
	return rows > 0 ? rows : 0;
}

Test(record, group_slot_reused_by_another_group)
{
	const char *csv = h_fmt("%s/reuse.csv", h_tmpdir());
	struct timespec ts = {0, 10 * 1000000L};
	bool other = false;
	struct h_out r;
	pid_t pid;
	int st;

	cr_assert_eq(CTL(&r, "set", "a", "max=4M"), 0, "%s", r.err);
	h_free(&r);
	pid = h_start((const char *const[]){h_build("sockmemctl"), "--namespace", h_ns(), "record",
					    "a", "--interval", "1000", "--out", csv, NULL},
		      NULL);
	for (int i = 0; i < 500 && csv_rows(csv, NULL, NULL) < 1; i++)
		nanosleep(&ts, NULL);
	cr_assert_eq(csv_rows(csv, NULL, NULL), 1, "no first sample");
	/* Between two samples: 'a' goes and 'c' takes its table entry. */
	cr_assert_eq(CTL(&r, "rm", "a"), 0, "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "c", "max=1M"), 0, "%s", r.err);
	h_free(&r);
	st = h_wait(pid, 3000);
	csv_rows(csv, "1048576", &other);
	cr_assert_not(other, "rows of group 'c' recorded as 'a'");
	cr_assert_eq(st, 1, "record of a removed group: status %d", st);
}

Test(record, duration_shorter_than_the_interval)
{
	const char *csv = h_fmt("%s/short.csv", h_tmpdir());
	struct timespec t0, t1;
	struct h_out r;
	double took;

	cr_assert_eq(CTL(&r, "set", "s", "max=4M"), 0, "%s", r.err);
	h_free(&r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(
		CTL(&r, "record", "s", "--interval", "4000", "--duration", "0.5", "--out", csv), 0,
		"%s", r.err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	h_free(&r);
	took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_eq(csv_rows(csv, NULL, NULL), 1);
	cr_assert(took >= 0.45 && took < 2.0, "--duration 0.5 took %.2f s (interval 4 s)", took);
}
