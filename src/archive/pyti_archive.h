/* archive: safe unpacking of sdists and wheels, and reading their metadata without running them.
 *
 * (Named pyti_archive.h, not archive.h: libarchive's own header is <archive.h>.)
 *
 * Formats: tar (gzip, bzip2, xz, zstd or uncompressed) and zip (wheels, old sdists). Nothing else
 * is enabled, to keep libarchive's attack surface small.
 *
 * arch_unpack() reads the archive twice. The first pass validates every header and counts the
 * bytes that really come out of the decompressor, and refuses — before anything is written — an
 * entry that is absolute or has a ".." component, a symlink whose target is absolute or resolves
 * (through the archive's other symlinks) outside the tree, a hard link to anything but a regular
 * file of the same archive, a device node, FIFO or socket, a path that goes through one of the
 * archive's symlinks, and archives past the size, entry-count or expansion-ratio limits. The
 * second pass writes, re-checking everything (the file may change in between): directories are
 * walked with openat(O_NOFOLLOW|O_DIRECTORY) from dest, files are created with O_NOFOLLOW|O_EXCL,
 * so nothing is ever written through a symlink. Regular files get 0755 if any x bit was set, else
 * 0644; directories 0755; no setuid/setgid/sticky, no ownership, no xattrs. Errors name the entry.
 */
#ifndef PYTI_ARCHIVE_H
#define PYTI_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define ARCH_DEFAULT_MAX_BYTES (2ULL << 30) /* 2 GiB expanded */
#define ARCH_DEFAULT_MAX_ENTRIES 100000
#define ARCH_DEFAULT_MAX_RATIO 200.0
/* The ratio limit applies only once this much has been expanded: tiny archives of repetitive
 * text legitimately compress very well. */
#define ARCH_RATIO_FLOOR (16ULL << 20)

struct arch_opts {
	/* Strip the single top-level directory (an sdist's "name-1.0/"). It is an error if the
	 * archive's entries do not all live under one top-level directory. */
	bool strip_top;
	uint64_t max_bytes;   /* total expanded bytes; 0 = ARCH_DEFAULT_MAX_BYTES */
	uint64_t max_entries; /* 0 = ARCH_DEFAULT_MAX_ENTRIES */
	double max_ratio;     /* expanded / compressed file size; 0 = ARCH_DEFAULT_MAX_RATIO */
};
/* Initialisers: an sdist ("name-1.0/..." stripped) and a wheel (unpacked as it is). */
#define ARCH_OPTS_SDIST {.strip_top = true}
#define ARCH_OPTS_WHEEL {.strip_top = false}

/* Unpack path into dest_dir (created if missing; existing content is left in place, but nothing
 * is written through existing symlinks). opts may be NULL (defaults, no stripping). On a refused
 * archive nothing has been written; on an I/O error midway dest_dir may hold a partial tree. */
int arch_unpack(const char *path, const char *dest_dir, const struct arch_opts *opts,
		   struct pyti_err *err);

/* Metadata of a wheel (or, with fewer fields, an sdist). */
struct wheel_meta {
	char *name;     /* as written in METADATA/PKG-INFO ("Foo_Bar") */
	char *version;
	char **extras;  /* Provides-Extra values, in file order, unique */
	size_t n_extras;
	char **modules; /* top-level importable module names, sorted, unique (wheels only) */
	size_t n_modules;
};
void wheel_meta_free(struct wheel_meta *m); /* frees the fields, not m; m may be NULL */

/* From <name>-<ver>.dist-info/METADATA; modules from top_level.txt when present, else from the
 * RECORD paths (top-level package directories and top-level *.py / extension modules, also under
 * <name>.data/purelib|platlib; without *.dist-info, *.data, __pycache__ and names that are not
 * identifiers). Nothing is unpacked and nothing is run. Errors are pyti_err_set (exit 3) with the
 * wheel's path in the message. */
int wheel_read_meta(const char *wheel_path, struct wheel_meta *out, struct pyti_err *err);
/* From the sdist's top-level PKG-INFO (<top>/PKG-INFO): name, version, extras; no modules. */
int sdist_read_meta(const char *sdist_path, struct wheel_meta *out, struct pyti_err *err);

/* true when s is an ASCII Python identifier (what a top-level module name must be). */
bool arch_is_identifier(const char *s);

#endif
