/*
 * Preloaded helper for sockets opened before the shim's constructor (F7).
 * pl_adopt_lib.c's constructor opens a loopback TCP connection first.
 *
 *   sockmem-pl-adopt parent
 *     Forks and execs "child" with the connection's two fds (same numbers)
 *     and a pipe; then, on each byte from stdin: 1st: closes its copies of
 *     the connection, prints "closed"; 2nd: tells the child to exit, waits
 *     for it, prints "done" and exits 0.
 *   sockmem-pl-adopt child PIPE CFD SFD
 *     Sends up to 150000 bytes from CFD to SFD (nobody reads them), prints
 *     "held N sent M" with N the kernel's figure for the connection
 *     (wmem_queued of CFD + rmem_alloc of SFD), then waits for a byte on
 *     PIPE and exits 0.
 */
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern int pl_adopt_fd[2];

static char buf[150000];

static long meminfo(int fd, int field)
{
	unsigned mi[SK_MEMINFO_VARS] = {0};
	socklen_t l = sizeof(mi);

	return getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &l) == 0 ? (long)mi[field] : -1;
}

static int child(int pfd, int cfd, int sfd)
{
	size_t sent = 0;
	char c;

	fcntl(cfd, F_SETFL, O_NONBLOCK);
	while (sent < sizeof(buf)) {
		ssize_t r = send(cfd, buf + sent, sizeof(buf) - sent, 0);

		if (r <= 0)
			break;
		sent += (size_t)r;
	}
	usleep(100000); /* loopback: delivered and acknowledged by now */
	printf("held %ld sent %zu\n",
	       meminfo(cfd, SK_MEMINFO_WMEM_QUEUED) + meminfo(sfd, SK_MEMINFO_RMEM_ALLOC), sent);
	fflush(stdout);
	return read(pfd, &c, 1) == 1 ? 0 : 3;
}

static int parent(const char *self)
{
	char a[3][16], c;
	int p[2], status;
	pid_t pid;

	if (pl_adopt_fd[0] < 0 || pipe(p) != 0)
		return 2;
	snprintf(a[0], sizeof(a[0]), "%d", p[0]);
	snprintf(a[1], sizeof(a[1]), "%d", pl_adopt_fd[0]);
	snprintf(a[2], sizeof(a[2]), "%d", pl_adopt_fd[1]);
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		execl(self, self, "child", a[0], a[1], a[2], (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	if (pid < 0 || read(0, &c, 1) != 1)
		return 2;
	close(pl_adopt_fd[0]);
	close(pl_adopt_fd[1]);
	printf("closed\n");
	fflush(stdout);
	if (read(0, &c, 1) != 1 || write(p[1], "x", 1) != 1 || waitpid(pid, &status, 0) != pid)
		return 2;
	printf("done\n");
	fflush(stdout);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 4;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "child") == 0)
		return child(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc == 2 && strcmp(argv[1], "parent") == 0)
		return parent(argv[0]);
	fprintf(stderr, "usage: %s parent | child PIPE CFD SFD\n", argv[0]);
	return 2;
}
