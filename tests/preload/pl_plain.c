/*
 * Preloaded helper: a plain program that uses TCP and UDP over loopback and
 * prints how many threads it has ("threads N") and "ok". Used for the
 * pass-through and bad-configuration tests: it must work either way.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[100000];

static int threads(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	int n = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

int main(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), a, b;
	size_t got = 0;

	if (lfd < 0 || bind(lfd, (void *)&sa, l) || listen(lfd, 1) ||
	    getsockname(lfd, (void *)&sa, &l))
		return 2;
	a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(a, (void *)&sa, l))
		return 2;
	b = accept(lfd, NULL, NULL);
	if (b < 0 || send(a, buf, 60000, 0) != 60000)
		return 2;
	while (got < 60000) {
		ssize_t r = recv(b, buf, sizeof(buf), 0);

		if (r <= 0)
			return 2;
		got += (size_t)r;
	}
	printf("threads %d\n", threads());
	close(a), close(b), close(lfd);
	printf("ok\n");
	return 0;
}
