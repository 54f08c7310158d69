/*
 * Helpers shared by the fuzz targets (linked into each of them).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

char *fz_cstr(const uint8_t *data, size_t size, char *buf, size_t cap)
{
	size_t n = 0;

	while (n < size && n + 1 < cap && data[n] != '\0') {
		buf[n] = (char)data[n];
		n++;
	}
	buf[n] = '\0';
	return buf;
}

bool fz_known(const char *id)
{
	const char *list = getenv("SOCKMEM_FUZZ_KNOWN");
	size_t n = strlen(id);

	if (!list)
		return false;
	if (strcmp(list, "all") == 0)
		return true;
	for (const char *p = list; (p = strstr(p, id)) != NULL; p += n)
		if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
			return true;
	return false;
}
