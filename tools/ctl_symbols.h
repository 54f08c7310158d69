/*
 * sockmemctl traces: resolve (object path, ELF address) to function+offset by
 * reading the object's ELF symbol tables (.symtab, else .dynsym) ourselves:
 * no libbfd, no child process. Robust against any file: every offset and
 * index read from the file is bounds-checked.
 *
 * Not thread-safe (sockmemctl is single-threaded): one cache per process.
 */
#ifndef SOCKMEM_CTL_SYMBOLS_H
#define SOCKMEM_CTL_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

struct ctl_sym {
	const char *name; /* valid until ctl_symbols_release(); NULL if unknown */
	uint64_t offset;  /* addr - the symbol's start */
};

/*
 * Look `addr` up in `path`. `ret`: addr is a return address (the call is the
 * instruction before it), so the symbol containing addr - 1 is wanted.
 * Returns 0, -ENOENT (no symbol covers it), or -errno / -ENOEXEC when the
 * object cannot be read. Objects are opened once and cached.
 */
int ctl_symbolize(const char *path, uint64_t addr, int ret, struct ctl_sym *out);
/* Unmap every cached object. */
void ctl_symbols_release(void);

#endif /* SOCKMEM_CTL_SYMBOLS_H */
