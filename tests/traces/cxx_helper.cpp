// C++ helper for tests/traces: hit max with tracing on (so the shim loads
// libunwind), then throw and catch an exception through several frames. The
// exception must unwind through libgcc_s's _Unwind_RaiseException, not
// libunwind's: prints which object the global scope binds it to.
//
//   trace-cxx-helper CHUNK COUNT
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdexcept>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char chunk[65536];

static int connect_pair(int *c, int *s)
{
	sockaddr_in a = {};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (sockaddr *)&a, &len) < 0)
		return -1;
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	*s = accept(l, nullptr, nullptr);
	close(l);
	return *s < 0 ? -1 : 0;
}

extern "C" __attribute__((noinline, visibility("default"))) long sm_test_cxx_sender(int fd, size_t n,
										  long count)
{
	long sent = 0;

	for (long i = 0; i < count; i++) {
		ssize_t r = send(fd, chunk, n, MSG_DONTWAIT);
		if (r > 0)
			sent += r; // EAGAIN (full queue, or at max): keep knocking
	}
	asm volatile("" ::: "memory");
	return sent;
}

__attribute__((noinline)) static void thrower(int depth)
{
	if (depth == 0)
		throw std::runtime_error("through the frames");
	thrower(depth - 1);
	asm volatile("" ::: "memory");
}

static bool libunwind_mapped()
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		found |= strstr(line, "libunwind") != nullptr;
	if (f)
		fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int c, s;
	Dl_info info;
	void *sym;

	if (argc != 3 || connect_pair(&c, &s) < 0) {
		fprintf(stderr, "usage: trace-cxx-helper CHUNK COUNT\n");
		return 1;
	}
	printf("sent %ld\n", sm_test_cxx_sender(c, (size_t)atol(argv[1]), atol(argv[2])));
	printf("libunwind mapped: %s\n", libunwind_mapped() ? "yes" : "no");
	sym = dlsym(RTLD_DEFAULT, "_Unwind_RaiseException");
	printf("_Unwind_RaiseException from: %s\n",
	       sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : "?");
	try {
		thrower(5);
	} catch (const std::exception &e) {
		printf("caught: %s\n", e.what());
	}
	close(c);
	close(s);
	return 0;
}
