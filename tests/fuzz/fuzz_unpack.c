/* libFuzzer: arch_unpack() of arbitrary bytes into a temporary directory, then checks that
 * what was written obeys the rules (nothing outside dest, no absolute or escaping symlinks, no
 * special files, no setuid bits), then removes it. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "pyti_archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char work[64], in_path[128], dest[128];
static size_t dest_len;

static void setup_once(void)
{
	if (work[0])
		return;
	snprintf(work, sizeof work, "/tmp/pyti-fuzz-unpack-XXXXXX");
	if (!mkdtemp(work))
		abort();
	snprintf(in_path, sizeof in_path, "%s/in.bin", work);
	snprintf(dest, sizeof dest, "%s/dest", work);
	dest_len = strlen(dest);
}

static int check_one(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)ftw;
	if (strncmp(fpath, dest, dest_len) != 0)
		__builtin_trap();
	if (type == FTW_SL) {
		char t[PATH_MAX];
		ssize_t n = readlink(fpath, t, sizeof t - 1);
		if (n <= 0)
			__builtin_trap();
		if (t[0] == '/')
			__builtin_trap();
		return 0;
	}
	if (!S_ISREG(sb->st_mode) && !S_ISDIR(sb->st_mode))
		__builtin_trap();
	if (sb->st_mode & 07000)
		__builtin_trap();
	return 0;
}

static size_t count_work(void)
{
	size_t n = 0;
	DIR *d = opendir(work);
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup_once();
	struct pyti_err err = {0};
	/* a plain write: write_file_atomic's fsync would dominate the run time */
	FILE *f = fopen(in_path, "wb");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
		abort();
	for (int strip = 0; strip < 2; strip++) {
		struct arch_opts o = {.strip_top = strip, .max_bytes = 4u << 20, .max_entries = 2000};
		if (arch_unpack(in_path, dest, &o, &err) == 0) {
			if (nftw(dest, check_one, 16, FTW_PHYS) < 0)
				__builtin_trap();
		}
		/* only in.bin and dest/ may exist next to each other */
		if (count_work() > 2)
			__builtin_trap();
		if (rm_rf(dest, &err) < 0)
			abort();
	}
	return 0;
}
