/*
 * Call-site tracing: see trace.h. (Capture lands in the next commit.)
 */
#include "trace.h"

#include "state.h"

void sm_trace_hit(int64_t bytes, int kind)
{
	if (__builtin_expect(!sm_cfg.trace, 1))
		return;
	(void)bytes;
	(void)kind;
}
