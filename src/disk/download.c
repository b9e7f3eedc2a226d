/* disk: image -> host, for collecting /out. The image is untrusted (the package's tests ran with
 * write access to it), so every name is checked, every host file is created relative to a
 * directory fd we opened ourselves with O_NOFOLLOW, and symlinks are judged before they are
 * recreated (see disk.h for the exact rules).
 *
 * It must not be able to fill the host's disk either: holes stay holes on the host, a file with
 * several links is written once and hard-linked after that, a directory inode reached twice (a
 * loop or a crafted cross-link) is an error, and the data written in total may not exceed the
 * image file's own size — more than that can only come from a crafted image. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "disk-int.h"
#include "proc.h"

#define DL_BUF (1u << 20)
#define DL_MAX_DEPTH 256

/* Files with more than one link already written: inode -> path relative to the root fd. */
struct dl_link {
	ext2_ino_t ino;
	char *rel;
};

struct dl {
	struct dsk d;
	unsigned flags;
	char *buf;
	int rootfd;            /* the download root (for hard links), -1 for a single file */
	size_t root_len;       /* strlen of the root's display path */
	ext2fs_inode_bitmap dirs_seen;
	struct dl_link *links; /* open addressing, nlinks_cap a power of two */
	size_t nlinks, nlinks_cap;
	uint64_t written, max_written;
};

static struct dl_link *link_slot(struct dl *x, ext2_ino_t ino)
{
	if (!x->nlinks_cap)
		return NULL;
	for (size_t i = (ino * 2654435761u) & (x->nlinks_cap - 1);; i = (i + 1) & (x->nlinks_cap - 1))
		if (x->links[i].ino == ino || x->links[i].ino == 0)
			return &x->links[i];
}

static void link_add(struct dl *x, ext2_ino_t ino, const char *rel)
{
	if (2 * (x->nlinks + 1) > x->nlinks_cap) {
		struct dl_link *old = x->links;
		size_t oldcap = x->nlinks_cap;
		x->nlinks_cap = oldcap ? oldcap * 2 : 64;
		x->links = xcalloc(x->nlinks_cap, sizeof *x->links);
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].ino)
				*link_slot(x, old[i].ino) = old[i];
		free(old);
	}
	struct dl_link *l = link_slot(x, ino);
	if (l->ino == 0) {
		l->ino = ino;
		l->rel = xstrdup(rel);
		x->nlinks++;
	}
}

static void links_free(struct dl *x)
{
	for (size_t i = 0; i < x->nlinks_cap; i++)
		free(x->links[i].rel);
	free(x->links);
}

static bool all_zero(const char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* A relative target whose leading ".." components do not climb above the download root (the
 * link sits depth directories below it) and which has no ".." after a normal component: such a
 * link resolves inside the root, also through other links that pass the same test. */
static bool link_target_safe(const char *t, int depth)
{
	if (!*t || t[0] == '/')
		return false;
	int ups = 0;
	bool named = false;
	for (const char *p = t; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (named)
				return false;
			ups++;
		} else if (n && !(n == 1 && p[0] == '.')) {
			named = true;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	return ups <= depth;
}

static bool name_safe(const struct dsk_dirent *e)
{
	if (e->len == 0 || e->len > EXT2_NAME_LEN || strlen(e->name) != e->len || strchr(e->name, '/'))
		return false;
	return strcmp(e->name, ".") != 0 && strcmp(e->name, "..") != 0;
}

static void inode_times(struct dl *x, const struct dsk_inode *in, struct timespec ts[2])
{
	int64_t s;
	long ns;
	dsk_get_atime(&x->d, in, &s, &ns);
	ts[0] = (struct timespec){(time_t)s, ns};
	dsk_get_mtime(&x->d, in, &s, &ns);
	ts[1] = (struct timespec){(time_t)s, ns};
}

/* Make room for a new non-directory `name` in dirfd: an existing non-directory (a symlink
 * included: it is removed, never followed) goes, a directory is an error. */
static int make_room(int dirfd, const char *name, const char *disp, struct pyti_err *err)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : pyti_err_set(err, errno, "stat %s", disp);
	if (S_ISDIR(st.st_mode))
		return pyti_err_set(err, EISDIR, "%s exists on the host as a directory", disp);
	if (unlinkat(dirfd, name, 0) < 0)
		return pyti_err_set(err, errno, "remove %s", disp);
	return 0;
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int dl_file(struct dl *x, ext2_ino_t ino, struct dsk_inode *in, int dirfd, const char *name,
		   const char *disp, struct pyti_err *err)
{
	if (make_room(dirfd, name, disp, err) < 0)
		return -1;
	const char *rel = x->rootfd >= 0 && strlen(disp) > x->root_len + 1 ? disp + x->root_len + 1 : NULL;
	if (rel && rel[0] == '/')
		rel = NULL;
	bool multi = in->i->i_links_count > 1 && rel;
	if (multi) {
		struct dl_link *l = link_slot(x, ino);
		/* the same inode again: a hard link to the copy already written */
		if (l && l->ino == ino && linkat(x->rootfd, l->rel, dirfd, name, 0) == 0)
			return 0;
	}
	_cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pyti_err_set(err, errno, "create %s", disp);
	ext2_file_t f;
	errcode_t rc = ext2fs_file_open2(x->d.fs, ino, (struct ext2_inode *)in->i, 0, &f);
	if (rc)
		return dsk_err(err, rc, "%s: open inode %u for %s", x->d.image, ino, disp);
	uint64_t size = EXT2_I_SIZE(in->i), left = size, off = 0;
	size_t bs = x->d.fs->blocksize;
	bool holes = false;
	while (left) {
		unsigned got = 0;
		unsigned want = left > DL_BUF ? DL_BUF : (unsigned)left;
		rc = ext2fs_file_read(f, x->buf, want, &got);
		if (rc || got == 0)
			break;
		left -= got;
		/* write the runs of blocks that hold data; all-zero blocks stay holes on the host */
		for (size_t i = 0; i < got;) {
			size_t n = got - i < bs ? got - i : bs;
			if (all_zero(x->buf + i, n)) {
				holes = true;
				i += n;
				continue;
			}
			size_t j = i + n;
			while (j < got) {
				size_t m = got - j < bs ? got - j : bs;
				if (all_zero(x->buf + j, m))
					break;
				j += m;
			}
			x->written += j - i;
			if (x->written > x->max_written) {
				ext2fs_file_close(f);
				return pyti_err_set(err, EFBIG,
						    "%s: download stopped at %s: more data than the image holds "
						    "(%llu bytes; a crafted image?)",
						    x->d.image, disp, (unsigned long long)x->max_written);
			}
			if (pwrite_all(fd, x->buf + i, j - i, off + i) < 0) {
				int e = errno;
				ext2fs_file_close(f);
				return pyti_err_class(err, e == ENOSPC || e == EDQUOT || e == EFBIG ? PYTI_FC_NOSPACE
												    : PYTI_FC_NONE,
						      "write %s: %s", disp, strerror(e));
			}
			i = j;
		}
		off += got;
	}
	ext2fs_file_close(f);
	if (rc)
		return dsk_err(err, rc, "%s: read %s", x->d.image, disp);
	if (left)
		return pyti_err_set(err, EIO, "%s: %s: short read (%llu bytes missing)", x->d.image, disp,
				    (unsigned long long)left);
	if (holes && ftruncate(fd, (off_t)size) < 0)
		return pyti_err_set(err, errno, "truncate %s", disp);
	struct timespec ts[2];
	inode_times(x, in, ts);
	/* setuid/setgid bits are dropped: the file now belongs to whoever runs pyti */
	if (fchmod(fd, in->i->i_mode & 0777) < 0 || futimens(fd, ts) < 0)
		return pyti_err_set(err, errno, "set mode/times of %s", disp);
	if (multi)
		link_add(x, ino, rel);
	return 0;
}

static int dl_symlink(struct dl *x, ext2_ino_t ino, struct dsk_inode *in, int dirfd, const char *name,
		      int depth, const char *disp, struct pyti_err *err)
{
	_cleanup_free_ char *t = NULL;
	if (dsk_readlink(&x->d, ino, (struct ext2_inode *)in->i, &t, err) < 0)
		return -1;
	if (strlen(t) != EXT2_I_SIZE(in->i) || !link_target_safe(t, depth)) {
		if (x->flags & DISK_DL_SKIP_UNSAFE_LINKS) {
			log_warn("skipped symlink %s -> %s: its target is absolute or leaves the download directory",
				 disp, t);
			return 0;
		}
		return pyti_err_set(err, 0,
				    "refusing to download symlink %s -> %s: its target is absolute or leaves the "
				    "download directory",
				    disp, t);
	}
	if (make_room(dirfd, name, disp, err) < 0)
		return -1;
	if (symlinkat(t, dirfd, name) < 0)
		return pyti_err_set(err, errno, "symlink %s", disp);
	struct timespec ts[2];
	inode_times(x, in, ts);
	if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return pyti_err_set(err, errno, "set times of %s", disp);
	return 0;
}

static int dl_entry(struct dl *x, ext2_ino_t ino, int dirfd, const char *name, int depth, const char *disp,
		    struct pyti_err *err);

/* Download the entries of guest directory ino into host directory fd (depth levels below the
 * root). */
static int dl_contents(struct dl *x, ext2_ino_t ino, int fd, int depth, const char *disp, struct pyti_err *err)
{
	if (depth > DL_MAX_DEPTH)
		return pyti_err_set(err, ELOOP, "%s: deeper than %d levels (a directory loop in the image?)", disp,
				    DL_MAX_DEPTH);
	struct dsk_dirent *e = NULL;
	size_t n = 0;
	if (dsk_list_dir(&x->d, ino, &e, &n, err) < 0)
		return -1;
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (!name_safe(&e[i])) {
			r = pyti_err_set(err, 0, "%s: refusing unsafe name in the image under %s", x->d.image, disp);
			break;
		}
		_cleanup_free_ char *child = xasprintf("%s/%s", disp, e[i].name);
		r = dl_entry(x, e[i].ino, fd, e[i].name, depth, child, err);
	}
	dsk_dirents_free(e, n);
	return r;
}

static int dl_entry(struct dl *x, ext2_ino_t ino, int dirfd, const char *name, int depth, const char *disp,
		    struct pyti_err *err)
{
	struct dsk_inode in;
	if (dsk_read_inode(&x->d, ino, &in, err) < 0)
		return -1;
	int r = 0;
	__u16 mode = in.i->i_mode;
	if (LINUX_S_ISREG(mode)) {
		r = dl_file(x, ino, &in, dirfd, name, disp, err);
	} else if (LINUX_S_ISLNK(mode)) {
		r = dl_symlink(x, ino, &in, dirfd, name, depth, disp, err);
	} else if (LINUX_S_ISDIR(mode)) {
		if (ext2fs_test_inode_bitmap2(x->dirs_seen, ino)) {
			r = pyti_err_set(err, 0, "%s: %s: directory inode %u reached twice (a loop or a crafted image)",
					 x->d.image, disp, ino);
			goto out;
		}
		ext2fs_mark_inode_bitmap2(x->dirs_seen, ino);
		bool made = mkdirat(dirfd, name, 0700) == 0;
		if (!made && errno != EEXIST) {
			r = pyti_err_set(err, errno, "mkdir %s", disp);
			goto out;
		}
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = pyti_err_set(err, errno, "%s exists on the host and is not a directory (symlinks are never "
					 "followed)", disp);
			goto out;
		}
		r = dl_contents(x, ino, fd, depth + 1, disp, err);
		if (r == 0 && made) {
			struct timespec ts[2];
			inode_times(x, &in, ts);
			if (fchmod(fd, mode & 01777) < 0 || futimens(fd, ts) < 0)
				r = pyti_err_set(err, errno, "set mode/times of %s", disp);
		}
	} else {
		log_warn("%s: not a regular file, directory or symlink in the image; skipped", disp);
	}
out:
	dsk_inode_free(&in);
	return r;
}

static int download_open(struct dl *x, const char *guest_path, const char *host_path, struct pyti_err *err)
{
	ext2_ino_t ino;
	if (dsk_resolve(&x->d, guest_path, &ino, err) < 0)
		return -1;
	struct dsk_inode in;
	if (dsk_read_inode(&x->d, ino, &in, err) < 0)
		return -1;
	bool isdir = LINUX_S_ISDIR(in.i->i_mode);
	struct timespec ts[2];
	inode_times(x, &in, ts);
	__u16 mode = in.i->i_mode;
	dsk_inode_free(&in);

	/* "out/" and "out" alike: the display path doubles as the hard links' source path */
	_cleanup_free_ char *hp = xstrdup(host_path);
	for (size_t n = strlen(hp); n > 1 && hp[n - 1] == '/'; n--)
		hp[n - 1] = '\0';
	host_path = hp;
	struct stat st;
	bool host_exists = stat(host_path, &st) == 0;
	if (isdir) {
		bool made = false;
		if (!host_exists) {
			if (mkdir(host_path, 0700) < 0)
				return pyti_err_set(err, errno, "mkdir %s", host_path);
			made = true;
		} else if (!S_ISDIR(st.st_mode)) {
			return pyti_err_set(err, ENOTDIR, "%s exists and is not a directory", host_path);
		}
		_cleanup_close_ int fd = open(host_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return pyti_err_set(err, errno, "open %s", host_path);
		x->rootfd = fd;
		x->root_len = strlen(host_path);
		ext2fs_mark_inode_bitmap2(x->dirs_seen, ino);
		int r = dl_contents(x, ino, fd, 0, host_path, err);
		x->rootfd = -1;
		if (r < 0)
			return -1;
		if (made && (fchmod(fd, mode & 01777) < 0 || futimens(fd, ts) < 0))
			return pyti_err_set(err, errno, "set mode/times of %s", host_path);
		return 0;
	}
	/* a non-directory: into an existing host directory under its own name, else as host_path */
	_cleanup_free_ char **c = NULL;
	size_t n;
	if (dsk_split(guest_path, &c, &n, err) < 0)
		return -1;
	_cleanup_free_ char *parent = NULL, *base = NULL;
	if (host_exists && S_ISDIR(st.st_mode)) {
		parent = xstrdup(host_path);
		base = xstrdup(c[n - 1]);
	} else {
		const char *slash = strrchr(host_path, '/');
		parent = slash ? (slash == host_path ? xstrdup("/") : strndup(host_path, (size_t)(slash - host_path)))
			       : xstrdup(".");
		base = xstrdup(slash ? slash + 1 : host_path);
		if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
			return pyti_err_usage(err, "download: bad destination %s", host_path);
	}
	_cleanup_close_ int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return pyti_err_set(err, errno, "open %s", parent);
	_cleanup_free_ char *disp = xasprintf("%s/%s", parent, base);
	return dl_entry(x, ino, dfd, base, 0, disp, err);
}

/* A guest that died with the I/O disk mounted (crash, timeout) leaves its last committed writes
 * in the journal — results and logs among them. libext2fs cannot replay a journal, e2fsck can:
 * `e2fsck -E journal_only` replays it and changes nothing else. This writes to the image, which
 * for a job's I/O disk is what we want; a read-only image is read as it is. */
static void replay_journal(const char *image)
{
	if (access(image, W_OK) < 0)
		return;
	const char *bin = "e2fsck";
	if (access("/sbin/e2fsck", X_OK) == 0)
		bin = "/sbin/e2fsck";
	else if (access("/usr/sbin/e2fsck", X_OK) == 0)
		bin = "/usr/sbin/e2fsck";
	char *argv[] = {(char *)bin, "-E", "journal_only", "-y", (char *)image, NULL};
	struct pyti_err e = {0};
	if (proc_run_simple(argv, NULL, 120, &e) < 0)
		log_warn("%s: replaying the journal failed: %s", image, pyti_err_str(&e));
	else
		log_info("%s: replayed the journal the guest left behind", image);
}

int disk_download_flags(const char *image, const char *guest_path, const char *host_path, unsigned flags,
			struct pyti_err *err)
{
	struct dl x = {.flags = flags, .rootfd = -1};
	if (dsk_open(&x.d, image, false, err) < 0)
		return -1;
	if (x.d.needs_recovery) {
		dsk_close(&x.d, NULL);
		replay_journal(image);
		if (dsk_open(&x.d, image, false, err) < 0)
			return -1;
		if (x.d.needs_recovery)
			log_warn("%s: the journal needs recovery and could not be replayed; reading what is outside it",
				 image);
	}
	struct stat ist;
	x.max_written = fstat(x.d.lock_fd, &ist) == 0 && S_ISREG(ist.st_mode) ? (uint64_t)ist.st_size : UINT64_MAX;
	errcode_t rc = ext2fs_allocate_inode_bitmap(x.d.fs, "dirs seen", &x.dirs_seen);
	if (rc) {
		dsk_close(&x.d, NULL);
		return dsk_err(err, rc, "%s: bitmap", image);
	}
	x.buf = xmalloc(DL_BUF);
	int r = download_open(&x, guest_path, host_path, err);
	free(x.buf);
	links_free(&x);
	ext2fs_free_inode_bitmap(x.dirs_seen);
	dsk_close(&x.d, NULL);
	return r;
}

int disk_download(const char *image, const char *guest_path, const char *host_path, struct pyti_err *err)
{
	return disk_download_flags(image, guest_path, host_path, 0, err);
}
