/*
 * sockmem-bench: lockstep turns between concurrently running instances.
 *
 * The driver (bench/benchlib.py, lockstep) gives each instance a pipe in
 * and a pipe back. Each instance sets up, warms up, then says it is ready
 * (one byte back); once all are, the driver hands one byte around: the
 * instance holding it measures one batch and hands it back, and the driver
 * gives it to the next one, in a new order every round. Only one instance
 * measures at a time, none is still setting up or warming up meanwhile,
 * and consecutive batches of different configurations are milliseconds
 * apart.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "loadgen.h"

#define TURN_TIMEOUT_MS 60000 /* a partner that died must not hang us */

void sm_lg_turn_wait(const struct sm_lg_opts *o)
{
	struct pollfd p = {.fd = o->turn_in, .events = POLLIN};
	char b;
	ssize_t n;
	int rc;

	if (o->turn_in < 0)
		return;
	do
		rc = poll(&p, 1, TURN_TIMEOUT_MS);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		sm_lg_die("--turns: poll: %s", strerror(errno));
	if (rc == 0)
		sm_lg_die("--turns: no turn for %d s (a partner instance died?)",
			  TURN_TIMEOUT_MS / 1000);
	do
		n = read(o->turn_in, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		sm_lg_die("--turns: read: %s", strerror(errno));
	if (n == 0)
		sm_lg_die("--turns: the ring was closed before our turn");
}

static void turn_write(const struct sm_lg_opts *o, char b)
{
	ssize_t n;

	do
		n = write(o->turn_out, &b, 1);
	while (n < 0 && errno == EINTR);
	/* EPIPE: the driver is gone (it was killed, or gave up on us). */
	if (n < 0 && errno != EPIPE)
		sm_lg_die("--turns: write: %s", strerror(errno));
}

void sm_lg_turn_ready(const struct sm_lg_opts *o)
{
	if (o->turn_out >= 0)
		turn_write(o, 'r');
}

void sm_lg_turn_pass(const struct sm_lg_opts *o)
{
	if (o->turn_out >= 0)
		turn_write(o, 't');
}
