/*
 * Fuzz target: segment validation on arbitrary bytes.
 *
 * Input: a whole segment image (its length is the "file size"). The owner
 * passed as the file's uid is the header's own owner_uid field, so the
 * fuzzer is not stopped by a uid it cannot know; fz_check_accepted then
 * proves that any other uid is refused.
 *
 * Validation runs on the fuzzer's own buffer of exactly `size` bytes (ASan
 * catches any read past it). An accepted image is copied to an aligned buffer
 * and driven through the core's lock-free readers, the counter and the slow
 * paths (caches, drain, reap, group creation).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "segfuzz.h"

#define MAX_IMAGE (1u << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sockmem_seg_t seg;
	uint32_t uid = 0;
	void *img;

	if (size > MAX_IMAGE)
		return 0;
	sm_log_level = -1; /* fuzzed images make reaps and underflows log */
	if (size >= offsetof(struct sockmem_header, owner_uid) + sizeof(uid))
		memcpy(&uid, data + offsetof(struct sockmem_header, owner_uid), sizeof(uid));
	if (fz_validate(data, size, uid) != 0)
		return 0;
	img = fz_aligned_copy(data, size);
	fz_seg_wrap(&seg, img, size);
	fz_check_accepted(&seg, uid);
	fz_exercise(&seg);
	fz_exercise_slow(&seg);
	free(img);
	return 0;
}
