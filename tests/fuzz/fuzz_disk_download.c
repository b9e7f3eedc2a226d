/* libFuzzer: disk_download of a guest-written ext4 image, the vm backend's I/O disk after the
 * tested package's tasks had write access to it (the collect step: /out, unsafe links skipped).
 * Whatever the image holds, the download never crashes, writes nothing beside its destination and
 * leaves no absolute link there. The input is the image file; its "needs journal recovery" bit is
 * cleared so that no e2fsck is started under the fuzzer (the replay is e2fsck's code, not ours). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/pyti-fuzz-disk-XXXXXX";

#define SB_OFF 1024
#define SB_FEATURE_INCOMPAT 0x60
#define INCOMPAT_RECOVER 0x4u

static int no_abs_link(void *arg, const struct tree_entry *e)
{
	(void)arg;
	if (S_ISLNK(e->st->st_mode)) {
		char l[4096];
		ssize_t n = readlinkat(e->dirfd, e->name, l, sizeof l - 1);
		if (n > 0 && l[0] == '/')
			__builtin_trap();
	}
	return TREE_WALK_NEXT;
}

static int only_img_and_out(void *arg, const struct tree_entry *e)
{
	(void)arg;
	if (strcmp(e->name, "img") != 0 && strcmp(e->name, "out") != 0)
		__builtin_trap(); /* something was written beside the destination */
	return TREE_WALK_SKIP;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		if (!mkdtemp(dir))
			abort();
		init = true;
		pyti_log_level = PYTI_LOG_ERROR; /* a warning per skipped link would flood the log */
	}
	struct pyti_err err = {0};
	_cleanup_free_ char *img = xasprintf("%s/img", dir), *out = xasprintf("%s/out", dir);
	_cleanup_free_ uint8_t *copy = xmalloc(size ? size : 1);
	memcpy(copy, data, size);
	if (size >= SB_OFF + SB_FEATURE_INCOMPAT + 4)
		copy[SB_OFF + SB_FEATURE_INCOMPAT] &= (uint8_t)~INCOMPAT_RECOVER;
	if (write_file_atomic(img, copy, size, 0644, &err) < 0)
		abort();
	if (rm_rf(out, &err) < 0 || mkdir(out, 0755) < 0)
		abort();
	disk_download_flags(img, "/out", out, DISK_DL_SKIP_UNSAFE_LINKS, &err);
	_cleanup_close_ int top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int od = open(out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0 || od < 0)
		__builtin_trap(); /* out/ itself replaced (by a link?) */
	tree_walk(top, 0, only_img_and_out, NULL, NULL);
	tree_walk(od, 64, no_abs_link, NULL, NULL);
	return 0;
}
