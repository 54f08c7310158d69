/*
 * sockmemctl watch: plain lines on a pipe, and the in-place live view in a
 * real terminal (tmux, read back with capture-pane).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_harness.h"

TestSuite(watch, .init = h_setup, .fini = h_teardown, .timeout = 90);

#define CTL(r, ...) h_ctl((r), (const char *const[]){__VA_ARGS__, NULL})

static pid_t pressured_member(const char *group, const char *bytes)
{
	struct h_out r;

	cr_assert_eq(CTL(&r, "set", group, "max=8M", "high=6M", "low=2M"), 0, "%s", r.err);
	h_free(&r);
	return h_start((const char *const[]){h_build("tests/ctl-helper"), "hold", h_ns(), group,
					     bytes, "30000", "30000", NULL},
		       "ready");
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

Test(watch, plain_lines_on_a_pipe)
{
	struct h_out r;
	pid_t pid = pressured_member("w", "3145728");

	cr_assert_eq(CTL(&r, "set", "v", "low=1K"), 0);
	h_free(&r);
	cr_assert_eq(CTL(&r, "watch", "--count", "3", "--interval", "50"), 0, "%s", r.err);
	cr_assert_eq(count(r.out, " w current="), 3, "%s", r.out);
	cr_assert_eq(count(r.out, " v current="), 3, "%s", r.out);
	cr_assert_eq(count(r.out, "\n"), 6, "one line per group per refresh:\n%s", r.out);
	cr_assert_null(strchr(r.out, '\033'), "escape sequences on a pipe:\n%s", r.out);
	cr_assert(strstr(r.out, " w current=3145728 ") || strstr(r.out, " w current=3"), "%s",
		  r.out);
	cr_assert(strstr(r.out, "max=8388608 high=6291456 low=2097152"), "%s", r.out);
	cr_assert(strstr(r.out, " v current=0 sock=0 max=max high=max low=1024"), "%s", r.out);
	cr_assert(strstr(r.out, "pressure=1"), "%s", r.out);
	h_free(&r);
	/* GROUP limits the view to that subtree. */
	cr_assert_eq(CTL(&r, "watch", "v", "--count", "1"), 0, "%s", r.err);
	cr_assert_eq(count(r.out, "\n"), 1, "%s", r.out);
	cr_assert(strstr(r.out, " v current=0"), "%s", r.out);
	h_free(&r);
	cr_assert_eq(CTL(&r, "watch", "nope", "--count", "1"), 1);
	cr_assert(h_one_line(r.err) && strstr(r.err, "no group 'nope'"), "%s", r.err);
	h_free(&r);
	kill(pid, SIGTERM);
	h_wait(pid, 5000);
}

static void tmux(struct h_out *r, const char *sock, const char *const args[])
{
	const char *argv[32] = {"/usr/bin/tmux", "-L", sock, "-f", "/dev/null"};
	size_t n = 5;

	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	h_run(r, argv, NULL);
}

/* capture-pane until `needle` shows up (or the timeout); returns the screen. */
static char *screen_with(const char *sock, const char *needle, int timeout_ms)
{
	struct timespec ts = {0, 100 * 1000000L};
	struct h_out r = {0};

	for (int t = 0; t < timeout_ms; t += 100) {
		tmux(&r, sock, (const char *const[]){"capture-pane", "-p", "-t", "s", NULL});
		if (r.status == 0 && strstr(r.out, needle)) {
			free(r.err);
			return r.out;
		}
		h_free(&r);
		nanosleep(&ts, NULL);
	}
	tmux(&r, sock, (const char *const[]){"capture-pane", "-p", "-t", "s", NULL});
	cr_assert_fail("no '%s' on the screen after %d ms:\n%s", needle, timeout_ms, r.out);
	return NULL;
}

/* A detached tmux session "s" (150 x 30) on socket `sock` running `cmd`. */
static void start_session(const char *sock, const char *cmd)
{
	struct h_out r;

	tmux(&r, sock,
	     (const char *const[]){"new-session", "-d", "-s", "s", "-x", "150", "-y", "30", cmd,
				   NULL});
	cr_assert_eq(r.status, 0, "tmux new-session: %s", r.err);
	h_free(&r);
}

Test(watch, live_view_in_a_terminal)
{
	const char *cmd = h_fmt("%s watch --interval 100 --count 15; echo WATCH-EXIT=$?; sleep 60",
				h_build("sockmemctl"));
	pid_t pid = pressured_member("tenant/web", "5242880");
	struct h_out r;
	char sock[64], *screen;

	/* Our own copy: every tmux poll takes h_fmt's ring a step on. */
	snprintf(sock, sizeof(sock), "ctl-%d", (int)getpid());

	start_session(sock, cmd);
	/* While it runs: the heading and the bars. */
	screen = screen_with(sock, "web", 10000);
	cr_assert(strstr(screen, h_fmt("sockmem watch: namespace %s", h_ns())), "%s", screen);
	free(screen);
	screen = screen_with(sock, "WATCH-EXIT=", 15000);
	tmux(&r, sock, (const char *const[]){"kill-server", NULL});
	h_free(&r);
	kill(pid, SIGTERM);
	h_wait(pid, 5000);
	cr_assert(strstr(screen, "WATCH-EXIT=0"), "%s", screen);
	/* 15 refreshes, drawn in place: the heading is on the screen once. */
	cr_assert_eq(count(screen, "sockmem watch: namespace"), 1, "%s", screen);
	cr_assert(strstr(screen, "GROUP"), "%s", screen);
	cr_assert(strstr(screen, "tenant "), "%s", screen);
	cr_assert(strstr(screen, "  web "), "child not indented:\n%s", screen);
	/* 5M of 8M: a bar with usage, the low and high marks and max at the end. */
	cr_assert(strstr(screen, "[#"), "no usage bar:\n%s", screen);
	cr_assert(strstr(screen, "L") && strstr(screen, "H") && strstr(screen, "|]"),
		  "no watermarks in the bar:\n%s", screen);
	cr_assert(strstr(screen, "    5") && strstr(screen, " 8M "), "sizes:\n%s", screen);
	cr_assert(strstr(screen, "PRESSURE"), "pressure not visible:\n%s", screen);
	free(screen);
}

Test(watch, group_created_again_counts_from_zero)
{
	char sock[64], log[1024], line[4096];
	const char *cmd = h_fmt("%s watch --interval 300 --count 8; echo WATCH-EXIT=$?; sleep 60",
				h_build("sockmemctl"));
	struct h_out r;
	char *screen;
	FILE *f;

	/* Our own copies: every child started takes h_fmt's ring a step on. */
	snprintf(sock, sizeof(sock), "ctl-%d", (int)getpid());
	snprintf(log, sizeof(log), "%s/pane.log", h_tmpdir());
	/* A max hit (a forced charge over max), given back when the helper exits. */
	cr_assert_eq(CTL(&r, "set", "w", "max=64K"), 0, "%s", r.err);
	h_free(&r);
	cr_assert_eq(h_run(&r,
			   (const char *const[]){h_build("tests/ctl-helper"), "hold", h_ns(), "w",
						 "131072", "10", NULL},
			   NULL),
		     0, "%s", r.err);
	h_free(&r);
	start_session(sock, cmd);
	/* Everything watch writes to the terminal, not only the last screen. */
	tmux(&r, sock,
	     (const char *const[]){"pipe-pane", "-t", "s", h_fmt("cat >> %s", log), NULL});
	cr_assert_eq(r.status, 0, "tmux pipe-pane: %s", r.err);
	h_free(&r);
	free(screen_with(sock, "w ", 10000));
	/* Removed and created again between two refreshes: its counters
	 * start again from 0, which is not a wrap-around of the old ones. */
	cr_assert_eq(CTL(&r, "rm", "w"), 0, "%s", r.err);
	h_free(&r);
	cr_assert_eq(CTL(&r, "set", "w", "max=64K"), 0, "%s", r.err);
	h_free(&r);
	screen = screen_with(sock, "WATCH-EXIT=", 15000);
	tmux(&r, sock, (const char *const[]){"kill-server", NULL});
	h_free(&r);
	cr_assert(strstr(screen, "WATCH-EXIT=0"), "%s", screen);
	free(screen);
	f = fopen(log, "r");
	cr_assert(f, "no pane log");
	while (fgets(line, sizeof(line), f))
		cr_assert_null(strstr(line, "+1844"), "a counter reset shown as a delta: %s", line);
	fclose(f);
}

/* The width of the bar on the screen line holding `row`; -1 if that line has
 * no whole bar (wrapped, or no such line). */
static int bar_len(const char *screen, const char *row)
{
	const char *p = strstr(screen, row), *end, *open, *close;

	if (!p)
		return -1;
	end = strchr(p, '\n');
	open = strchr(p, '[');
	close = strchr(p, ']');
	if (!end || !open || !close || open > end || close > end)
		return -1;
	return (int)(close - open - 1);
}

/* The bars follow the terminal: narrowed, the rows still fit on one line. */
Test(watch, bars_follow_a_resized_terminal)
{
	const char *cmd =
		h_fmt("%s watch --interval 100 --count 80; sleep 60", h_build("sockmemctl"));
	pid_t pid = pressured_member("tenant/web", "5242880");
	struct timespec ts = {0, 100 * 1000000L};
	struct h_out r;
	char sock[64], *screen = NULL;
	int wide, narrow = -1;

	snprintf(sock, sizeof(sock), "ctl-%d", (int)getpid());
	start_session(sock, cmd);
	screen = screen_with(sock, "  web ", 10000);
	wide = bar_len(screen, "  web ");
	free(screen);
	screen = NULL;
	tmux(&r, sock,
	     (const char *const[]){"resize-window", "-t", "s", "-x", "90", "-y", "30", NULL});
	cr_assert_eq(r.status, 0, "tmux resize-window: %s", r.err);
	h_free(&r);
	/* A few refreshes at the new size (100 ms apart). */
	for (int t = 0; t < 50 && narrow != 20; t++) {
		nanosleep(&ts, NULL);
		free(screen);
		screen = screen_with(sock, "sockmem watch", 5000);
		narrow = bar_len(screen, "  web ");
	}
	tmux(&r, sock, (const char *const[]){"kill-server", NULL});
	h_free(&r);
	kill(pid, SIGTERM);
	h_wait(pid, 5000);
	/* 150 columns: 80 for the bar; 90 columns: 20. */
	cr_assert_eq(wide, 80, "bar at 150 columns:\n%s", screen);
	cr_assert_eq(narrow, 20, "bar after narrowing to 90 columns (-1: the row wrapped):\n%s",
		     screen);
	free(screen);
}
