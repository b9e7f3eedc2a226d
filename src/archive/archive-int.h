/* archive: pieces shared by unpack.c and meta.c (internal to the module). */
#ifndef PYTI_ARCHIVE_INT_H
#define PYTI_ARCHIVE_INT_H

#include <archive.h>

#include "core.h"

/* A libarchive reader for path: zip always, tar (gzip, bzip2, xz, lzma, zstd, none) when tar_too. */
struct archive *arch_open_read(const char *path, bool tar_too, struct pyti_err *err);
static inline void arch_readp(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}
#define _cleanup_archive_ _cleanup_(arch_readp)

#endif
