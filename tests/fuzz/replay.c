/*
 * Replay driver: runs files (or every regular file of directories) through
 * a fuzz target's LLVMFuzzerTestOneInput without libFuzzer, so any compiler
 * can run the seed corpus and the fixed crashes as regression tests.
 *
 * Usage: <target>-replay PATH...   (files or directories)
 * Exits 0 when every input ran (a violated property aborts), 2 on a usage or
 * I/O error, 3 when no input was found at all: an empty or misplaced corpus
 * must fail the test instead of passing silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_MAX (1u << 20)

/* Provided when a target has nothing to set up. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

static int run_file(const char *path)
{
	static uint8_t buf[REPLAY_MAX];
	FILE *f = fopen(path, "rb");
	uint8_t *in;
	size_t n;

	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (ferror(f) || !feof(f)) {
		fprintf(stderr, "replay: %s: read error or larger than %u bytes\n", path,
			REPLAY_MAX);
		fclose(f);
		return -1;
	}
	fclose(f);
	/* A private copy of exactly n bytes, so ASan sees reads past the end. */
	in = malloc(n ? n : 1);
	if (!in)
		return -1;
	memcpy(in, buf, n);
	LLVMFuzzerTestOneInput(in, n);
	free(in);
	return 1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files of a directory, in name order (README files skipped). */
static int run_dir(const char *dir)
{
	char *names[4096], path[4096];
	struct dirent *e;
	int n = 0, ran = 0;
	DIR *d = opendir(dir);

	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) && n < 4096)
		if (e->d_name[0] != '.' && strncmp(e->d_name, "README", 6) != 0)
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
	for (int i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	return ran;
}

int main(int argc, char **argv)
{
	int total = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		int r;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 2;
		}
		r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
		if (r < 0)
			return 2;
		total += r;
	}
	printf("%s: replayed %d input(s) without a violation\n", argv[0], total);
	return total > 0 ? 0 : 3;
}
