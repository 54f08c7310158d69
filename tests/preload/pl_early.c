/*
 * Preloaded helper: prints "early <ok>" for the calls made by
 * pl_early_lib.c's constructor (before the shim's constructor) and exits 0
 * if they worked.
 */
#include <stdio.h>

extern int pl_early_ok;

int main(void)
{
	printf("early %d\n", pl_early_ok);
	return pl_early_ok ? 0 : 1;
}
