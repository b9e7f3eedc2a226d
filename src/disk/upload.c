/* disk: host -> image.
 *
 * Speed: the image is opened once per call and the host tree walked with directory fds. File
 * data does not go through ext2fs_file_write (which maps and allocates one block at a time):
 * the file's blocks are allocated in one ext2fs_fallocate call (contiguous extents when the
 * image has room), then the data is written straight to those physical blocks in runs of up to
 * 1 MiB with pwrite on the image file (metadata keeps going through libext2fs' io channel and
 * its cache). Directories created by this call are known to be empty, so their entries are
 * linked without looking names up first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "disk-int.h"

#define UP_BUF (1u << 20)
#define UP_MAX_DEPTH 256

/* Host files with several links already uploaded: (dev, ino) -> guest inode. */
struct up_link {
	dev_t dev;
	ino_t ino;
	ext2_ino_t gino;
};

struct up {
	struct dsk d;
	char *buf;
	struct timespec now;
	struct up_link *links;
	size_t nlinks, cap;
};

static struct up_link *up_link_find(struct up *u, const struct stat *st)
{
	for (size_t i = 0; i < u->nlinks; i++)
		if (u->links[i].ino == st->st_ino && u->links[i].dev == st->st_dev)
			return &u->links[i];
	return NULL;
}

/* A second name for a host file already uploaded in this call: link the same guest inode. */
static int up_hardlink(struct up *u, ext2_ino_t parent, const char *gname, ext2_ino_t gino, struct pyti_err *err)
{
	struct ext2_inode inode;
	errcode_t rc = ext2fs_read_inode(u->d.fs, gino, &inode);
	if (rc)
		return dsk_err(err, rc, "%s: read inode %u", u->d.image, gino);
	if (inode.i_links_count >= EXT2_LINK_MAX)
		return 1; /* too many links: make a copy instead */
	if (dsk_link(&u->d, parent, gname, gino, EXT2_FT_REG_FILE, err) < 0)
		return -1;
	inode.i_links_count++;
	rc = ext2fs_write_inode(u->d.fs, gino, &inode);
	if (rc)
		return dsk_err(err, rc, "%s: update inode %u", u->d.image, gino);
	return 0;
}

static int up_entry(struct up *u, ext2_ino_t parent, bool parent_fresh, int dirfd, const char *hname,
		    bool follow, const struct stat *st, const char *gname, const char *disp, int depth,
		    struct pyti_err *err);

static void set_times(struct up *u, struct dsk_inode *in, const struct stat *st)
{
	dsk_set_time(&u->d, in, 'a', st->st_atim.tv_sec, st->st_atim.tv_nsec);
	dsk_set_time(&u->d, in, 'm', st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	dsk_set_time(&u->d, in, 'c', u->now.tv_sec, u->now.tv_nsec);
	dsk_set_time(&u->d, in, 'r', u->now.tv_sec, u->now.tv_nsec);
}

/* Undo a half-created inode so that the image stays consistent after a failure. */
static void rollback(struct up *u, ext2_ino_t ino)
{
	struct pyti_err ignore = {0};
	if (dsk_free_inode(&u->d, ino, &ignore) < 0)
		log_warn("%s: could not roll back inode %u: %s", u->d.image, ino, pyti_err_str(&ignore));
}

static int write_data(struct up *u, ext2_ino_t ino, struct dsk_inode *in, int fd, uint64_t size,
		      const char *disp, struct pyti_err *err)
{
	ext2_filsys fs = u->d.fs;
	struct ext2_inode *inode = (struct ext2_inode *)in->i;
	unsigned bs = fs->blocksize;
	blk64_t nblk = (size + bs - 1) / bs;
	/* Refuse up front what cannot fit; a fallocate that still fails (extent tree blocks on a
	 * fragmented image) is rolled back by the caller. */
	if (ext2fs_free_blocks_count(fs->super) < nblk)
		return dsk_err(err, EXT2_ET_BLOCK_ALLOC_FAIL, "%s: %s (%llu bytes)", u->d.image, disp,
			       (unsigned long long)size);
	errcode_t rc = ext2fs_fallocate(fs, EXT2_FALLOCATE_FORCE_INIT | EXT2_FALLOCATE_INIT_BEYOND_EOF, ino,
					inode, ~0ULL, 0, nblk);
	if (rc) {
		/* ext2fs_fallocate leaves what it did allocate recorded only in the in-memory inode:
		 * write it so that the rollback frees those blocks too */
		struct pyti_err ignore = {0};
		dsk_write_inode(&u->d, ino, in, &ignore);
		return dsk_err(err, rc, "%s: %s: allocate %llu blocks", u->d.image, disp, (unsigned long long)nblk);
	}
	blk64_t max_run = UP_BUF / bs;
	for (blk64_t l = 0; l < nblk;) {
		blk64_t p = 0, q = 0, run = 1;
		rc = ext2fs_bmap2(fs, ino, inode, NULL, 0, l, NULL, &p);
		if (!rc && !p)
			rc = EXT2_ET_BAD_BLOCK_NUM;
		while (!rc && l + run < nblk && run < max_run) {
			rc = ext2fs_bmap2(fs, ino, inode, NULL, 0, l + run, NULL, &q);
			if (rc || q != p + run)
				break;
			run++;
		}
		if (rc)
			return dsk_err(err, rc, "%s: %s: map block %llu", u->d.image, disp, (unsigned long long)l);
		size_t want = (size_t)(run * bs), got = 0;
		while (got < want) {
			ssize_t r = pread(fd, u->buf + got, want - got, (off_t)(l * bs + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return pyti_err_set(err, errno, "read %s", disp);
			if (r == 0)
				break; /* the file shrank while we copied it: the rest reads as zeros */
			got += (size_t)r;
		}
		memset(u->buf + got, 0, want - got);
		/* Straight to the image file, not through the io channel: the channel flushes and
		 * drops its whole metadata cache before every write of more than 4 blocks. This is
		 * safe because no block that is file data now can be dirty in that cache (see
		 * dsk_free_inode, which flushes after freeing blocks). */
		for (size_t doff = 0; doff < want;) {
			ssize_t w = pwrite(u->d.lock_fd, u->buf + doff, want - doff, (off_t)(p * bs + doff));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return pyti_err_class(err, errno == ENOSPC ? PYTI_FC_NOSPACE : PYTI_FC_NONE,
						      "%s: %s: write: %s", u->d.image, disp, strerror(errno));
			doff += (size_t)w;
		}
		l += run;
	}
	return 0;
}

static int new_file(struct up *u, ext2_ino_t parent, int dirfd, const char *hname, bool follow,
		    const struct stat *st, const char *gname, const char *disp, struct pyti_err *err)
{
	ext2_filsys fs = u->d.fs;
	_cleanup_close_ int fd = openat(dirfd, hname, O_RDONLY | O_CLOEXEC | O_NOCTTY | (follow ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", disp);
	ext2_ino_t ino;
	errcode_t rc = ext2fs_new_inode(fs, parent, LINUX_S_IFREG | 0644, NULL, &ino);
	if (rc)
		return dsk_err(err, rc, "%s: %s", u->d.image, disp);
	struct dsk_inode in;
	dsk_inode_new(&u->d, &in);
	in.i->i_mode = (__u16)(LINUX_S_IFREG | (st->st_mode & 07777));
	in.i->i_links_count = 1;
	set_times(u, &in, st);
	ext2fs_inode_size_set(fs, (struct ext2_inode *)in.i, (ext2_off64_t)st->st_size);
	if (ext2fs_has_feature_extents(fs->super)) {
		ext2_extent_handle_t h;
		rc = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)in.i, &h);
		if (rc) {
			dsk_inode_free(&in);
			return dsk_err(err, rc, "%s: %s: extent header", u->d.image, disp);
		}
		ext2fs_extent_free(h);
	}
	ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
	int r = dsk_write_inode(&u->d, ino, &in, err);
	if (r == 0 && st->st_size > 0) {
		r = write_data(u, ino, &in, fd, (uint64_t)st->st_size, disp, err);
		/* fallocate updated the small part of in (i_block, i_blocks); keep the extra fields */
		if (r == 0)
			r = dsk_write_inode(&u->d, ino, &in, err);
	}
	dsk_inode_free(&in);
	if (r == 0)
		r = dsk_link(&u->d, parent, gname, ino, EXT2_FT_REG_FILE, err);
	if (r < 0) {
		rollback(u, ino);
		return -1;
	}
	return 0;
}

static int new_symlink(struct up *u, ext2_ino_t parent, int dirfd, const char *hname, const struct stat *st,
		       const char *gname, const char *disp, struct pyti_err *err)
{
	ext2_filsys fs = u->d.fs;
	char target[4096];
	ssize_t n = readlinkat(dirfd, hname, target, sizeof target);
	if (n < 0)
		return pyti_err_set(err, errno, "readlink %s", disp);
	if ((size_t)n >= fs->blocksize || (size_t)n >= sizeof target)
		return pyti_err_set(err, ENAMETOOLONG, "%s: symlink target longer than a block", disp);
	target[n] = '\0';
	ext2_ino_t ino;
	errcode_t rc = ext2fs_new_inode(fs, parent, LINUX_S_IFLNK | 0777, NULL, &ino);
	if (!rc)
		rc = ext2fs_symlink(fs, parent, ino, NULL, target); /* no name: we link it ourselves */
	if (rc)
		return dsk_err(err, rc, "%s: symlink %s", u->d.image, disp);
	struct dsk_inode in;
	int r = dsk_read_inode(&u->d, ino, &in, err);
	if (r == 0) {
		if (in.size > EXT2_GOOD_OLD_INODE_SIZE && in.i->i_extra_isize == 0)
			in.i->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
		set_times(u, &in, st);
		r = dsk_write_inode(&u->d, ino, &in, err);
		dsk_inode_free(&in);
	}
	if (r == 0)
		r = dsk_link(&u->d, parent, gname, ino, EXT2_FT_SYMLINK, err);
	if (r < 0) {
		rollback(u, ino);
		return -1;
	}
	return 0;
}

/* Make an empty directory gname in parent; mode and times are set by the caller afterwards. */
static int new_dir(struct up *u, ext2_ino_t parent, const char *gname, ext2_ino_t *out, struct pyti_err *err)
{
	ext2_filsys fs = u->d.fs;
	ext2_ino_t ino;
	errcode_t rc = ext2fs_new_inode(fs, parent, LINUX_S_IFDIR | 0755, NULL, &ino);
	if (!rc)
		rc = ext2fs_mkdir(fs, parent, ino, NULL); /* no name: accounted, not linked */
	if (rc)
		return dsk_err(err, rc, "%s: mkdir '%s'", u->d.image, gname);
	if (dsk_link(&u->d, parent, gname, ino, EXT2_FT_DIR, err) < 0) {
		struct ext2_inode p;
		if (ext2fs_read_inode(fs, parent, &p) == 0 && p.i_links_count > 2) {
			p.i_links_count--;
			ext2fs_write_inode(fs, parent, &p);
		}
		rollback(u, ino);
		return -1;
	}
	*out = ino;
	return 0;
}

static int set_dir_attrs(struct up *u, ext2_ino_t ino, const struct stat *st, struct pyti_err *err)
{
	struct dsk_inode in;
	if (dsk_read_inode(&u->d, ino, &in, err) < 0)
		return -1;
	if (in.size > EXT2_GOOD_OLD_INODE_SIZE && in.i->i_extra_isize == 0)
		in.i->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
	if (st) {
		in.i->i_mode = (__u16)(LINUX_S_IFDIR | (st->st_mode & 07777));
		set_times(u, &in, st);
	} else {
		struct stat now = {.st_mode = 0755};
		now.st_atim = now.st_mtim = u->now;
		in.i->i_mode = LINUX_S_IFDIR | 0755;
		set_times(u, &in, &now);
	}
	in.i->i_uid = in.i->i_gid = 0;
	in.i->osd2.linux2.l_i_uid_high = in.i->osd2.linux2.l_i_gid_high = 0;
	int r = dsk_write_inode(&u->d, ino, &in, err);
	dsk_inode_free(&in);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Upload the contents of host directory fd into guest directory ino. */
static int up_contents(struct up *u, ext2_ino_t ino, bool fresh, int fd, const char *disp, int depth,
		       struct pyti_err *err)
{
	if (depth > UP_MAX_DEPTH)
		return pyti_err_set(err, ELOOP, "%s: deeper than %d levels", disp, UP_MAX_DEPTH);
	int dfd = dup(fd);
	if (dfd < 0)
		return pyti_err_set(err, errno, "dup %s", disp);
	DIR *dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return pyti_err_set(err, errno, "opendir %s", disp);
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = xstrdup(de->d_name);
	}
	int rerr = errno;
	closedir(dir);
	int r = 0;
	if (rerr)
		r = pyti_err_set(err, rerr, "readdir %s", disp);
	/* sorted: the image's layout does not depend on the host's directory order */
	if (n)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; r == 0 && i < n; i++) {
		_cleanup_free_ char *child = xasprintf("%s/%s", disp, names[i]);
		struct stat st;
		if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = pyti_err_set(err, errno, "stat %s", child);
			break;
		}
		if (strlen(names[i]) > EXT2_NAME_LEN) {
			r = pyti_err_set(err, ENAMETOOLONG, "%s: name longer than %d bytes", child, EXT2_NAME_LEN);
			break;
		}
		r = up_entry(u, ino, fresh, fd, names[i], false, &st, names[i], child, depth + 1, err);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

static int up_entry(struct up *u, ext2_ino_t parent, bool parent_fresh, int dirfd, const char *hname,
		    bool follow, const struct stat *st, const char *gname, const char *disp, int depth,
		    struct pyti_err *err)
{
	ext2_ino_t old = 0;
	if (!parent_fresh) {
		int f = dsk_lookup(&u->d, parent, gname, &old, err);
		if (f < 0)
			return -1;
		if (f) {
			struct ext2_inode oi;
			errcode_t rc = ext2fs_read_inode(u->d.fs, old, &oi);
			if (rc)
				return dsk_err(err, rc, "%s: read inode %u", u->d.image, old);
			if (LINUX_S_ISDIR(oi.i_mode)) {
				if (!S_ISDIR(st->st_mode))
					return pyti_err_set(err, EISDIR,
							    "%s: cannot replace directory '%s' with non-directory %s",
							    u->d.image, gname, disp);
				_cleanup_close_ int fd = openat(dirfd, hname,
								O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
				if (fd < 0)
					return pyti_err_set(err, errno, "open %s", disp);
				return up_contents(u, old, false, fd, disp, depth, err);
			}
			if (dsk_remove(&u->d, parent, gname, old, false, gname, err) < 0)
				return -1;
		}
	}
	if (S_ISREG(st->st_mode)) {
		struct up_link *l = st->st_nlink > 1 ? up_link_find(u, st) : NULL;
		if (l) {
			int h = up_hardlink(u, parent, gname, l->gino, err);
			if (h <= 0)
				return h;
		}
		if (new_file(u, parent, dirfd, hname, follow, st, gname, disp, err) < 0)
			return -1;
		if (st->st_nlink > 1 && !l) {
			ext2_ino_t gino;
			if (dsk_lookup(&u->d, parent, gname, &gino, err) != 1)
				return -1;
			if (u->nlinks == u->cap) {
				u->cap = u->cap ? 2 * u->cap : 16;
				u->links = xrealloc(u->links, u->cap * sizeof *u->links);
			}
			u->links[u->nlinks++] = (struct up_link){st->st_dev, st->st_ino, gino};
		}
		return 0;
	}
	if (S_ISLNK(st->st_mode))
		return new_symlink(u, parent, dirfd, hname, st, gname, disp, err);
	if (S_ISDIR(st->st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, hname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
		if (fd < 0)
			return pyti_err_set(err, errno, "open %s", disp);
		ext2_ino_t ino;
		if (new_dir(u, parent, gname, &ino, err) < 0)
			return pyti_err_prefix(err, "%s", disp);
		if (up_contents(u, ino, true, fd, disp, depth, err) < 0)
			return -1;
		return set_dir_attrs(u, ino, st, err);
	}
	log_warn("%s: not a regular file, directory or symlink; skipped", disp);
	return 0;
}

static const char *host_basename(const char *p, char *buf, size_t bufsz)
{
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		n--;
	size_t s = n;
	while (s > 0 && p[s - 1] != '/')
		s--;
	size_t len = n - s;
	if (len == 0 || len >= bufsz)
		return NULL;
	memcpy(buf, p + s, len);
	buf[len] = '\0';
	if (strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0 || strcmp(buf, "/") == 0)
		return NULL;
	return buf;
}

static int upload_open(struct up *u, const char *host_path, const char *guest_path, struct pyti_err *err)
{
	struct stat st;
	if (stat(host_path, &st) < 0)
		return pyti_err_set(err, errno, "upload: %s", host_path);
	_cleanup_free_ char **c = NULL;
	size_t n;
	if (dsk_split(guest_path, &c, &n, err) < 0)
		return -1;
	char bn[EXT2_NAME_LEN + 1];
	/* walk to the parent, creating what is missing */
	ext2_ino_t cur = EXT2_ROOT_INO;
	bool fresh = false;
	for (size_t i = 0; i + 1 < n; i++) {
		ext2_ino_t next = 0;
		int f = fresh ? 0 : dsk_lookup(&u->d, cur, c[i], &next, err);
		if (f < 0)
			return -1;
		if (f) {
			struct ext2_inode ni;
			errcode_t rc = ext2fs_read_inode(u->d.fs, next, &ni);
			if (rc)
				return dsk_err(err, rc, "%s: read inode %u", u->d.image, next);
			if (!LINUX_S_ISDIR(ni.i_mode))
				return pyti_err_set(err, ENOTDIR, "%s: %s: '%s' exists and is not a directory",
						    u->d.image, guest_path, c[i]);
		} else {
			if (new_dir(u, cur, c[i], &next, err) < 0 || set_dir_attrs(u, next, NULL, err) < 0)
				return -1;
			fresh = true;
		}
		cur = next;
	}
	const char *name;
	if (n == 0) {
		/* "/": a directory merges into the root, anything else goes inside it */
		if (S_ISDIR(st.st_mode)) {
			_cleanup_close_ int fd = open(host_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0)
				return pyti_err_set(err, errno, "open %s", host_path);
			return up_contents(u, EXT2_ROOT_INO, false, fd, host_path, 0, err);
		}
		name = host_basename(host_path, bn, sizeof bn);
	} else {
		name = c[n - 1];
		ext2_ino_t ex = 0;
		int f = fresh ? 0 : dsk_lookup(&u->d, cur, name, &ex, err);
		if (f < 0)
			return -1;
		if (f && !S_ISDIR(st.st_mode)) {
			struct ext2_inode ei;
			errcode_t rc = ext2fs_read_inode(u->d.fs, ex, &ei);
			if (rc)
				return dsk_err(err, rc, "%s: read inode %u", u->d.image, ex);
			if (LINUX_S_ISDIR(ei.i_mode)) {
				cur = ex;
				fresh = false;
				name = host_basename(host_path, bn, sizeof bn);
			}
		}
	}
	if (!name)
		return pyti_err_usage(err, "upload: cannot name %s inside %s", host_path, guest_path);
	return up_entry(u, cur, fresh, AT_FDCWD, host_path, true, &st, name, host_path, 0, err);
}

static int upload(const char *image, const char *host_path, const char *guest_path, unsigned open_flags,
		  struct pyti_err *err)
{
	struct up u = {0};
	clock_gettime(CLOCK_REALTIME, &u.now);
	if (dsk_open_flags(&u.d, image, true, open_flags, err) < 0)
		return -1;
	u.buf = xmalloc(UP_BUF);
	int r = upload_open(&u, host_path, guest_path, err);
	free(u.buf);
	free(u.links);
	/* Always close: every step above leaves the file system consistent, and close writes the
	 * bitmaps and group descriptors that the completed steps changed. */
	if (dsk_close(&u.d, r < 0 ? NULL : err) < 0 && r == 0)
		r = -1;
	return r;
}

int disk_upload(const char *image, const char *host_path, const char *guest_path, struct pyti_err *err)
{
	return upload(image, host_path, guest_path, 0, err);
}

int disk_from_dir(const char *image, const char *dir, uint64_t size_bytes, struct pyti_err *err)
{
	if (!path_is_dir(dir))
		return pyti_err_set(err, ENOTDIR, "disk_from_dir: %s is not a directory", dir);
	if (disk_mkfs(image, size_bytes, err) < 0)
		return -1;
	return disk_upload(image, dir, "/", err);
}

int disk_from_dir_in_place(const char *image, const char *dir, struct pyti_err *err)
{
	if (!path_is_dir(dir))
		return pyti_err_set(err, ENOTDIR, "disk_from_dir: %s is not a directory", dir);
	if (dsk_mkfs_in_place(image, err) < 0)
		return -1;
	return upload(image, dir, "/", DSK_VM_NOT_READING, err);
}
