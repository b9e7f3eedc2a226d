/* Reading what a sandbox wrote. A sandbox owns its I/O directory while it runs and can leave
 * anything there: a symlink to a host file or directory, a FIFO that would block a reader for ever,
 * a magic link such as /proc/self/fd/0. The host reads such paths only beneath a directory fd it
 * opened itself, never through a link, and only regular files of bounded size. openat2() says so
 * in one call; where the kernel lacks it (before 5.6, or a seccomp policy answering ENOSYS) the
 * path is walked one component at a time with O_NOFOLLOW. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef __has_include
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2_H 1
#endif
#endif

#include "core.h"

/* Tests force the fallback walk with this, so both paths stay covered on a new kernel. */
bool beneath_no_openat2;

static int walk_nofollow(int dirfd, const char *rel, int flags)
{
	_cleanup_free_ char *p = xstrdup(rel);
	int cur = dirfd;
	char *s = p;
	for (;;) {
		char *slash = strchr(s, '/');
		if (!slash)
			break;
		*slash = '\0';
		int next = openat(cur, s, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		if (cur != dirfd)
			close(cur);
		if (next < 0) {
			errno = e == ENOTDIR ? ELOOP : e; /* a symlink where a directory should be */
			return -1;
		}
		cur = next;
		s = slash + 1;
	}
	int fd = openat(cur, s, flags | O_NOFOLLOW);
	int e = errno;
	if (cur != dirfd)
		close(cur);
	errno = e;
	return fd;
}

static int open_beneath(int dirfd, const char *rel, int flags)
{
	if (!path_is_safe_rel(rel)) {
		errno = EINVAL;
		return -1;
	}
#if defined(HAVE_OPENAT2_H) && defined(SYS_openat2)
	if (!beneath_no_openat2) {
		struct open_how how = {
			.flags = (unsigned long long)(flags | O_NOFOLLOW),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return fd;
	}
#endif
	return walk_nofollow(dirfd, rel, flags);
}

static int beneath_errno(int e)
{
	/* openat2 says EXDEV when a component would leave dirfd; all of these mean "a link" */
	return e == EXDEV || e == EMLINK ? ELOOP : e;
}

int safe_open_beneath(int dirfd, const char *rel, uint64_t max, struct pyti_err *err)
{
	/* O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer */
	int fd = open_beneath(dirfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = beneath_errno(errno);
		return pyti_err_set(err, e, "%s%s", rel, e == ELOOP ? " (a link: never followed)" : "");
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return pyti_err_set(err, e, "stat %s", rel);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return pyti_err_set(err, EINVAL, "%s is not a regular file", rel);
	}
	if (max && (uint64_t)st.st_size > max) {
		close(fd);
		return pyti_err_set(err, EFBIG, "%s is larger than %llu bytes", rel, (unsigned long long)max);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

int safe_opendir_beneath(int dirfd, const char *rel, struct pyti_err *err)
{
	int fd = open_beneath(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = beneath_errno(errno);
		/* O_DIRECTORY|O_NOFOLLOW on a symlink is ENOTDIR or ELOOP: both a link here */
		struct stat st;
		if (e == ENOTDIR && fstatat(dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			e = ELOOP;
		return pyti_err_set(err, e, "%s%s", rel, e == ELOOP ? " (a link: never followed)" : "");
	}
	return fd;
}

int safe_opendir_path(const char *path, struct pyti_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
			e = ELOOP;
		return pyti_err_set(err, e, "%s%s", path, e == ELOOP ? " (a link: never followed)" : "");
	}
	return fd;
}

int safe_read_fd(int fd, const char *name, struct buf *b, struct pyti_err *err)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return pyti_err_set(err, errno, "read %s", name);
		}
		if (n == 0)
			break;
		if (buf_append(b, chunk, (size_t)n) < 0)
			return pyti_err_set(err, EFBIG, "read %s: larger than %zu bytes", name, b->max);
	}
	if (!b->data)
		buf_append(b, "", 0);
	return 0;
}

int safe_read_beneath(int dirfd, const char *rel, struct buf *b, struct pyti_err *err)
{
	_cleanup_close_ int fd = safe_open_beneath(dirfd, rel, b->max, err);
	if (fd < 0)
		return -1;
	return safe_read_fd(fd, rel, b, err);
}

int safe_read_under(const char *root, const char *rel, struct buf *b, struct pyti_err *err)
{
	_cleanup_close_ int dfd = safe_opendir_path(root, err);
	if (dfd < 0)
		return -1;
	if (safe_read_beneath(dfd, rel, b, err) < 0)
		return pyti_err_prefix(err, "%s", root);
	return 0;
}

json_t *pj_load_beneath(int dirfd, const char *rel, size_t max, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(max);
	if (safe_read_beneath(dirfd, rel, &b, err) < 0)
		return NULL;
	json_t *j = pj_loads(b.data, b.len, err);
	if (!j)
		pyti_err_prefix(err, "%s", rel);
	return j;
}
