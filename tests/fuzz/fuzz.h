/*
 * Shared declarations of the fuzz targets.
 *
 * Every target defines the two libFuzzer entry points below. The same object
 * is linked either with libFuzzer (-fsanitize=fuzzer, SOCKMEM_FUZZ=ON) or with
 * replay.c, a plain main() that feeds files and directories of inputs through
 * the entry point, so the default gcc build replays the seed corpus and the
 * fixed crashes as CTest regression tests.
 */
#ifndef SOCKMEM_FUZZ_H
#define SOCKMEM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property that must hold for every input. abort() is what libFuzzer and
 * the replay driver both treat as a crash; the message says which property. */
#define FZ_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz property violated at %s:%d: %s\n", __FILE__,         \
				__LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Copy data[0..size) into a NUL-terminated string in buf (cap bytes),
 * stopping at the first NUL of the input. Returns buf. */
char *fz_cstr(const uint8_t *data, size_t size, char *buf, size_t cap);

/*
 * Known, reported findings that are not fixed yet. Setting
 * SOCKMEM_FUZZ_KNOWN to a comma-separated list of their ids (or "all") makes
 * the targets step around them, so that a long run explores past them
 * instead of stopping at the first, already known, crash. Unset (the
 * default, and in the CTest replays) nothing is masked. Ids: see README.md.
 */
bool fz_known(const char *id);

#endif /* SOCKMEM_FUZZ_H */
