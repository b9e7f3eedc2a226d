/* Files and paths. Paths that come from outside (archives, job files, disk images) go through
 * path_is_safe_rel() before they are joined to anything. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "core.h"

bool path_is_safe_rel(const char *rel)
{
	if (!rel || !*rel || rel[0] == '/')
		return false;
	const char *p = rel;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 && e) /* "a//b" */
			return false;
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!e)
			break;
		p = e + 1;
	}
	return strlen(rel) < PATH_MAX;
}

int path_join_safe(const char *root, const char *rel, char **out, struct pyti_err *err)
{
	/* A trailing slash (directory entries in archives) is allowed; strip it. */
	_cleanup_free_ char *r = xstrdup(rel);
	size_t n = strlen(r);
	while (n > 1 && r[n - 1] == '/')
		r[--n] = '\0';
	if (!path_is_safe_rel(r))
		return pyti_err_set(err, 0, "unsafe path '%s' (absolute, empty or with '..')", rel);
	*out = xasprintf("%s/%s", root, r);
	return 0;
}

int mkdir_p(const char *path, unsigned mode, struct pyti_err *err)
{
	_cleanup_free_ char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return pyti_err_set(err, errno, "mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return pyti_err_set(err, errno, "mkdir %s", p);
	if (!path_is_dir(p))
		return pyti_err_set(err, ENOTDIR, "%s", p);
	return 0;
}

static int rm_one(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)ftw;
	/* A directory we could not read (mode 000 left by a test suite): nftw skipped its contents,
	 * so make it ours to read and remove it with a walk of its own. */
	if (type == FTW_DNR)
		return chmod(fpath, 0700) == 0 && rm_rf(fpath, NULL) == 0 ? 0 : -1;
	int r = (type == FTW_DP || type == FTW_DNR || (S_ISDIR(sb->st_mode) && type != FTW_SL))
			? rmdir(fpath)
			: unlink(fpath);
	return (r < 0 && errno != ENOENT) ? -1 : 0;
}

int rm_rf(const char *path, struct pyti_err *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : pyti_err_set(err, errno, "stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return pyti_err_set(err, errno, "unlink %s", path);
		return 0;
	}
	if (nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return pyti_err_set(err, errno, "remove %s", path);
	return 0;
}

int read_file(const char *path, struct buf *b, struct pyti_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", path);
	return safe_read_fd(fd, path, b, err);
}

int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) { /* cannot happen for len > 0 on a file or pipe: never loop on it */
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, struct pyti_err *err)
{
	/* The directory may be shared with code we do not trust (a sandbox's out/): a guessable name
	 * opened without O_EXCL would let it pre-create the name (a directory, a link, a file it keeps
	 * open) and swap what we rename into place. So the name is unpredictable, made with O_EXCL and
	 * never followed; rename() replaces a link at path itself rather than writing through it. */
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	for (int tries = 0; fd < 0; tries++) {
		uint64_t r = 0;
		if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
			r = ((uint64_t)getpid() << 32) ^ (uint64_t)(now_wall() * 1e6) ^ (uint64_t)tries;
		free(tmp);
		tmp = xasprintf("%s.tmp.%ld.%016llx", path, (long)getpid(), (unsigned long long)r);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && (errno != EEXIST || tries >= 16))
			return pyti_err_set(err, errno, "create %s", tmp);
	}
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return pyti_err_set(err, e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return pyti_err_set(err, e, "rename %s", path);
	}
	return 0;
}

/* in → out until end of file; names for the messages. */
static int copy_stream(int in, const char *name, int out, const char *dst, struct pyti_err *err)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(in, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pyti_err_set(err, errno, "read %s", name);
		if (n == 0)
			break;
		if (write_all(out, chunk, (size_t)n) < 0)
			return pyti_err_set(err, errno, "write %s", dst);
	}
	return 0;
}

int copy_file(const char *src, const char *dst, unsigned mode, struct pyti_err *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return pyti_err_set(err, errno, "open %s", src);
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (out < 0)
		return pyti_err_set(err, errno, "create %s", dst);
	return copy_stream(in, src, out, dst, err);
}

bool src_tree_skip(const char *name, bool is_dir, int depth, unsigned flags)
{
	static const char *const litter[] = {".tox", ".nox", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache"};
	if (is_dir) {
		for (size_t i = 0; i < ARRAY_SIZE(litter); i++)
			if (strcmp(name, litter[i]) == 0)
				return true;
		if (!(flags & SRC_TREE_KEEP_VCS) && (strcmp(name, ".git") == 0 || strcmp(name, ".hg") == 0))
			return true;
		return depth == 0 && strcmp(name, "build") == 0;
	}
	return str_has_suffix(name, ".pyc");
}

/* A source file keeps its permission bits (a 0600 secret stays 0600, never widened to 0644);
 * set-id bits are dropped and the owner may always read it: the copy is handed to the sandbox
 * uid as its owner (ns: chowned for a root caller; the caller's own uid otherwise; vm: the I/O
 * disk keeps owner and mode), so owner-read is what lets the build and the tests read it. A file
 * the caller itself cannot read is left out, with a warning naming it. */
static int copy_src_file(const char *s, const char *t, mode_t mode, struct pyti_err *err)
{
	_cleanup_close_ int in = open(s, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0 && (errno == EACCES || errno == EPERM)) {
		_cleanup_free_ char *shown = term_safe_dup(s, TERM_ESCAPE_BACKSLASH);
		log_warn("%s: cannot be read (permission denied); left out of the copy", shown);
		return 0;
	}
	if (in < 0)
		return pyti_err_set(err, errno, "open %s", s);
	unsigned m = (unsigned)(mode & 0777) | 0400;
	_cleanup_close_ int out = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, m);
	if (out < 0)
		return pyti_err_set(err, errno, "create %s", t);
	if (fchmod(out, m) < 0) /* the umask would have narrowed what open() set */
		return pyti_err_set(err, errno, "chmod %s", t);
	return copy_stream(in, s, out, t, err);
}

static int copy_src_walk(const char *src, const char *dst, unsigned flags, int depth, struct pyti_err *err)
{
	if (depth > 64)
		return pyti_err_set(err, 0, "%s: directories nested too deeply", src);
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		return pyti_err_set(err, errno, "mkdir %s", dst);
	_cleanup_closedir_ DIR *d = opendir(src);
	if (!d && (errno == EACCES || errno == EPERM) && depth > 0) {
		_cleanup_free_ char *shown = term_safe_dup(src, TERM_ESCAPE_BACKSLASH);
		log_warn("%s: cannot be read (permission denied); left out of the copy", shown);
		rmdir(dst);
		return 0;
	}
	if (!d)
		return pyti_err_set(err, errno, "open %s", src);
	struct stat dst_st;
	if (fstat(dirfd(d), &dst_st) == 0) /* its own mode, as files keep theirs, owner rwx always */
		chmod(dst, (dst_st.st_mode & 0777) | 0700);
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		const char *n = e->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		_cleanup_free_ char *s = xasprintf("%s/%s", src, n);
		_cleanup_free_ char *t = xasprintf("%s/%s", dst, n);
		struct stat st;
		if (lstat(s, &st) < 0 || src_tree_skip(n, S_ISDIR(st.st_mode), depth, flags))
			continue;
		if (S_ISDIR(st.st_mode)) {
			rc = copy_src_walk(s, t, flags, depth + 1, err);
		} else if (S_ISREG(st.st_mode)) {
			rc = copy_src_file(s, t, st.st_mode, err);
		} else if (S_ISLNK(st.st_mode)) {
			char l[4096];
			ssize_t k = readlink(s, l, sizeof l - 1);
			if (k <= 0)
				continue;
			l[k] = '\0';
			if (l[0] == '/' || strstr(l, ".."))
				continue; /* would point outside the copy */
			if (symlink(l, t) < 0 && errno != EEXIST)
				rc = pyti_err_set(err, errno, "symlink %s", t);
		}
	}
	return rc;
}

int copy_src_tree(const char *src, const char *dst, unsigned flags, struct pyti_err *err)
{
	return copy_src_walk(src, dst, flags, 0, err);
}

bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

bool path_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int copy_fd_new(int in, const char *name, const char *dst, unsigned mode, struct pyti_err *err)
{
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (out < 0)
		return pyti_err_set(err, errno, "create %s", dst);
	return copy_stream(in, name, out, dst, err);
}
