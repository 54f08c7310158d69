/*
 * A library whose constructor uses intercepted functions before the shim's
 * own constructor has run (ld.so runs it first: it is a dependency of the
 * program, the shim only a preload). The shim's real-symbol trampolines
 * must make these calls work.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int pl_early_ok;
int pl_early_calls(void);

int pl_early_calls(void)
{
	int sv[2], d, ok;
	char c = 'x';

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	ok = send(sv[0], &c, 1, 0) == 1 && recv(sv[1], &c, 1, 0) == 1 && write(sv[1], &c, 1) == 1 &&
	     read(sv[0], &c, 1) == 1 && fcntl(sv[0], F_GETFL) >= 0;
	d = dup(sv[0]);
	ok = ok && d >= 0 && close(d) == 0 && close(sv[0]) == 0 && close(sv[1]) == 0;
	return ok;
}

__attribute__((constructor)) static void early(void)
{
	pl_early_ok = pl_early_calls();
}
