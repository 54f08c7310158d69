/*
 * ELF symbol lookup for sockmemctl traces (see ctl_symbols.h).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_symbols.h"

#define MAX_OBJS 32
#define PATH_LEN 256

struct symtab {
	const Elf64_Sym *syms;
	size_t n;
	const char *str;
	size_t strsz;
};

struct obj {
	char path[PATH_LEN];
	int err; /* 0, or why it cannot be used */
	const uint8_t *map;
	size_t len;
	struct symtab tabs[2]; /* .symtab, .dynsym (either may be empty) */
};

static struct obj objs[MAX_OBJS];
static int nobjs;

/* Is [off, off + size) inside the file? */
static bool in_file(const struct obj *o, uint64_t off, uint64_t size)
{
	return off <= o->len && size <= o->len - off;
}

static void load_table(struct obj *o, const Elf64_Shdr *sh, uint16_t shnum, uint16_t i,
		       struct symtab *t)
{
	const Elf64_Shdr *s = &sh[i], *str;

	if (s->sh_entsize != sizeof(Elf64_Sym) || s->sh_link >= shnum ||
	    !in_file(o, s->sh_offset, s->sh_size))
		return;
	str = &sh[s->sh_link];
	if (str->sh_type != SHT_STRTAB || !in_file(o, str->sh_offset, str->sh_size))
		return;
	t->syms = (const Elf64_Sym *)(o->map + s->sh_offset);
	t->n = s->sh_size / sizeof(Elf64_Sym);
	t->str = (const char *)(o->map + str->sh_offset);
	t->strsz = str->sh_size;
}

static int parse(struct obj *o)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)o->map;
	const Elf64_Shdr *sh;

	if (o->len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    !in_file(o, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)) ||
	    eh->e_shoff % _Alignof(Elf64_Shdr))
		return -ENOEXEC;
	sh = (const Elf64_Shdr *)(o->map + eh->e_shoff);
	for (uint16_t i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type == SHT_SYMTAB)
			load_table(o, sh, eh->e_shnum, i, &o->tabs[0]);
		else if (sh[i].sh_type == SHT_DYNSYM)
			load_table(o, sh, eh->e_shnum, i, &o->tabs[1]);
	}
	for (int t = 0; t < 2; t++) /* symbols must be aligned to be read in place */
		if ((uintptr_t)o->tabs[t].syms % _Alignof(Elf64_Sym))
			o->tabs[t] = (struct symtab){0};
	return o->tabs[0].n || o->tabs[1].n ? 0 : -ENOENT;
}

static void open_obj(struct obj *o)
{
	struct stat st;
	int fd = open(o->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		o->err = -errno;
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
		o->err = -ENOEXEC;
	} else {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (m == MAP_FAILED) {
			o->err = -errno;
		} else {
			o->map = m;
			o->len = (size_t)st.st_size;
			o->err = parse(o);
		}
	}
	close(fd);
}

static struct obj *get_obj(const char *path)
{
	struct obj *o;

	for (int i = 0; i < nobjs; i++)
		if (strcmp(objs[i].path, path) == 0)
			return &objs[i];
	if (nobjs == MAX_OBJS || strlen(path) >= PATH_LEN)
		return NULL;
	o = &objs[nobjs++];
	memset(o, 0, sizeof(*o));
	strcpy(o->path, path);
	open_obj(o);
	return o;
}

/* The name of symbol s, if it lies NUL-terminated inside the string table. */
static const char *sym_name(const struct symtab *t, const Elf64_Sym *s)
{
	if (s->st_name == 0 || s->st_name >= t->strsz ||
	    !memchr(t->str + s->st_name, '\0', t->strsz - s->st_name))
		return NULL;
	return t->str + s->st_name;
}

/* Best function symbol covering `addr`: the one starting closest below it
 * whose size covers it (a size-0 symbol counts only as a last resort). */
static const Elf64_Sym *lookup(const struct symtab *t, uint64_t addr, const char **name)
{
	const Elf64_Sym *best = NULL, *loose = NULL;

	for (size_t i = 0; i < t->n; i++) {
		const Elf64_Sym *s = &t->syms[i];
		int type = ELF64_ST_TYPE(s->st_info);

		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
		    s->st_value > addr || !sym_name(t, s))
			continue;
		if (s->st_size && addr - s->st_value < s->st_size) {
			if (!best || s->st_value > best->st_value)
				best = s;
		} else if (!s->st_size && (!loose || s->st_value > loose->st_value)) {
			loose = s;
		}
	}
	if (!best)
		best = loose;
	if (best)
		*name = sym_name(t, best);
	return best;
}

int ctl_symbolize(const char *path, uint64_t addr, int ret, struct ctl_sym *out)
{
	struct obj *o = get_obj(path);
	uint64_t key = ret && addr ? addr - 1 : addr;

	out->name = NULL;
	out->offset = 0;
	if (!o)
		return -ENOMEM;
	if (o->err)
		return o->err;
	for (int t = 0; t < 2; t++) {
		const char *name = NULL;
		const Elf64_Sym *s = lookup(&o->tabs[t], key, &name);

		if (s) {
			out->name = name;
			out->offset = addr - s->st_value;
			return 0;
		}
	}
	return -ENOENT;
}

void ctl_symbols_release(void)
{
	for (int i = 0; i < nobjs; i++)
		if (objs[i].map)
			munmap((void *)objs[i].map, objs[i].len);
	nobjs = 0;
}
