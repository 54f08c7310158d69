/*
 * Integration-test harness, the kernel side: socket memory as `ss` reports
 * it (independently of the shim), ports from /proc/net, test files.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- ss ---- */

static bool pid_wanted(long pid, const pid_t *pids, int npids)
{
	for (int i = 0; i < npids; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

/* Does the users:((...)) field of this record name one of the pids? The
 * field lists every process holding an fd on the socket, so a socket shared
 * by two of them is still one record, counted once. */
static bool record_owned(const char *rec, const char *end, const pid_t *pids, int npids)
{
	const char *u = strstr(rec, "users:((");
	const char *eol;

	if (!u || u >= end)
		return false;
	eol = strchr(u, '\n');
	if (!eol || eol > end)
		eol = end;
	for (const char *p = strstr(u, "pid="); p && p < eol; p = strstr(p + 4, "pid="))
		if (pid_wanted(strtol(p + 4, NULL, 10), pids, npids))
			return true;
	return false;
}

/* One socket's figures. */
struct skmem {
	int64_t r, w, rb, tb;
};

static void add_socket(struct h_kmem *out, const struct skmem *m)
{
	out->rmem += m->r;
	out->wqueued += m->w;
	out->rcvbuf += m->rb;
	out->sndbuf += m->tb;
	if (m->rb > out->rcvbuf_max)
		out->rcvbuf_max = m->rb;
	if (m->tb > out->sndbuf_max)
		out->sndbuf_max = m->tb;
	out->nsock++;
}

static void skmem_set(struct skmem *m, const char *key, int64_t v, unsigned *got)
{
	static const char *const keys[] = {"r", "w", "rb", "tb"};
	int64_t *dst[] = {&m->r, &m->w, &m->rb, &m->tb};

	for (int i = 0; i < 4; i++)
		if (!strcmp(key, keys[i])) {
			*dst[i] = v;
			*got |= 1u << i;
		}
}

/* skmem:(r<rmem_alloc>,rb<rcvbuf>,t..,tb<sndbuf>,f..,w<wmem_queued>,o..,bl..,d..) */
static bool record_skmem(const char *rec, const char *end, struct skmem *m)
{
	const char *p = strstr(rec, "skmem:(");
	unsigned got = 0;

	if (!p || p >= end)
		return false;
	p += 7;
	while (*p && *p != ')' && p < end) {
		char key[8];
		int n = 0;
		long long v;
		char *q;

		while (n < 7 && *p >= 'a' && *p <= 'z')
			key[n++] = *p++;
		key[n] = '\0';
		v = strtoll(p, &q, 10);
		if (q == p)
			return false;
		skmem_set(m, key, v, &got);
		p = q;
		if (*p == ',')
			p++;
	}
	return got == 0xf;
}

int h_parse_ss(const char *text, const pid_t *pids, int npids, struct h_kmem *out)
{
	const char *rec = text;

	memset(out, 0, sizeof(*out));
	while (rec && *rec) {
		/* A record is a line starting in column 0 plus its indented
		 * continuation lines. */
		const char *end = rec;
		struct skmem m;

		do {
			end = strchr(end, '\n');
			end = end ? end + 1 : rec + strlen(rec);
		} while (*end == '\t' || *end == ' ');
		if (record_owned(rec, end, pids, npids) && record_skmem(rec, end, &m))
			add_socket(out, &m);
		rec = end;
	}
	out->total = out->rmem + out->wqueued;
	return 0;
}

static char *read_all(int fd, int timeout_ms)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	int64_t deadline = h_now_ms() + timeout_ms;

	while (buf && h_now_ms() < deadline) {
		ssize_t r;

		if (n + 4096 > cap) {
			char *nb = realloc(buf, cap *= 2);

			if (!nb)
				break;
			buf = nb;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r == 0) {
			buf[n] = '\0';
			return buf;
		}
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0)
			n += (size_t)r;
	}
	free(buf);
	return NULL;
}

int h_kernel_sockmem(const pid_t *pids, int npids, struct h_kmem *out)
{
	const char *argv[] = {"ss", "-tuanmpH", NULL};
	struct h_spawn_opts o = {.pipe_out = true};
	struct h_proc ss;
	char *text;
	int rc;

	rc = h_spawn(&ss, argv, &o);
	if (rc < 0)
		return rc;
	text = read_all(ss.out_fd, 5000);
	rc = h_wait(&ss, 5000);
	if (rc == 0 && h_exit_code(&ss) != 0)
		rc = -EIO;
	if (rc == 0 && !text)
		rc = -EIO;
	if (rc == 0)
		rc = h_parse_ss(text, pids, npids, out);
	free(text);
	h_release(&ss);
	return rc;
}

/* ---- ports ---- */

int h_free_port(int family, int type)
{
	struct sockaddr_storage ss = {0};
	socklen_t len =
		family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(family, type | SOCK_CLOEXEC, 0);
	int port = 0;

	if (fd < 0)
		return 0;
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	else
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&ss, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	close(fd);
	return port;
}

/* One /proc/net table: is `port` bound in state `st` (0A listen, 07 udp)? */
static bool proc_net_has(const char *file, int port, unsigned st)
{
	FILE *f = fopen(file, "re");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f)) { /* header */
		fclose(f);
		return false;
	}
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned lport, state;

		if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &lport, &state) ==
		    2)
			found = (int)lport == port && state == st;
	}
	fclose(f);
	return found;
}

bool h_wait_bound(int port, int type, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	bool tcp = type == SOCK_STREAM;

	for (;;) {
		if (proc_net_has(tcp ? "/proc/net/tcp" : "/proc/net/udp", port,
				 tcp ? 0x0A : 0x07) ||
		    proc_net_has(tcp ? "/proc/net/tcp6" : "/proc/net/udp6", port,
				 tcp ? 0x0A : 0x07))
			return true;
		if (h_now_ms() >= deadline)
			return false;
		h_sleep_ms(10);
	}
}

/* ---- files ---- */

int h_make_file(const char *path, size_t size, uint64_t seed)
{
	uint64_t x = seed | 1, buf[1024];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0)
		return -errno;
	while (size > 0 && rc == 0) {
		size_t n = size < sizeof(buf) ? size : sizeof(buf);

		for (size_t i = 0; i < 1024; i++) { /* xorshift64 */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, n) != (ssize_t)n)
			rc = -EIO;
		size -= n;
	}
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int h_file_sum(const char *path, int64_t *size, uint64_t *fnv)
{
	unsigned char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	*size = 0;
	*fnv = UINT64_C(0xcbf29ce484222325);
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r; i++)
			*fnv = (*fnv ^ buf[i]) * UINT64_C(0x100000001b3);
		*size += r;
	}
	close(fd);
	return r < 0 ? -EIO : 0;
}

char *h_slurp(const char *path, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = malloc(max + 1);
	n = buf ? read(fd, buf, max) : -1;
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* ---- SO_MEMINFO through pidfd_getfd ---- */

#define H_MAX_INODES 4096

static bool inode_seen(uint64_t *seen, int *nseen, uint64_t ino)
{
	for (int i = 0; i < *nseen; i++)
		if (seen[i] == ino)
			return true;
	if (*nseen < H_MAX_INODES)
		seen[(*nseen)++] = ino;
	return false;
}

/* One duplicated fd: add its queues if it is an inet TCP/UDP socket. */
static void add_meminfo(int fd, struct h_kmem *out)
{
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);
	int dom = 0, proto = 0;
	socklen_t il = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &il) < 0 ||
	    (dom != AF_INET && dom != AF_INET6))
		return;
	il = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &il) < 0 ||
	    (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0)
		return;
	add_socket(out, &(struct skmem){.r = mi[SK_MEMINFO_RMEM_ALLOC],
					.w = mi[SK_MEMINFO_WMEM_QUEUED],
					.rb = mi[SK_MEMINFO_RCVBUF],
					.tb = mi[SK_MEMINFO_SNDBUF]});
}

static int meminfo_pid(pid_t pid, uint64_t *seen, int *nseen, struct h_kmem *out)
{
	char dir[64], target[64];
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct dirent *e;
	DIR *d;

	if (pidfd < 0)
		return -errno;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		unsigned long long ino;
		ssize_t n;
		int fd;

		n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (sscanf(target, "socket:[%llu]", &ino) != 1 || inode_seen(seen, nseen, ino))
			continue;
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
		if (fd < 0)
			continue; /* closed meanwhile */
		add_meminfo(fd, out);
		close(fd);
	}
	if (d)
		closedir(d);
	close(pidfd);
	return d ? 0 : -ESRCH;
}

int h_kernel_meminfo(const pid_t *pids, int npids, struct h_kmem *out)
{
	static uint64_t seen[H_MAX_INODES];
	int nseen = 0, rc = 0;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < npids && rc == 0; i++)
		rc = meminfo_pid(pids[i], seen, &nseen, out);
	out->total = out->rmem + out->wqueued;
	return rc;
}

/* ---- CPU ---- */

int64_t h_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields resume after the last ')' */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -EIO;
	return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}
