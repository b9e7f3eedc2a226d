/* disk: opening images, errors, guest path resolution, inode helpers shared by the operations. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>

#include <et/com_err.h>

#include "disk-int.h"

bool dsk_is_nospace(errcode_t rc)
{
	return rc == EXT2_ET_BLOCK_ALLOC_FAIL || rc == EXT2_ET_INODE_ALLOC_FAIL || rc == ENOSPC ||
	       rc == EXT2_ET_DIR_NO_SPACE || rc == EXT2_ET_EA_NO_SPACE;
}

int dsk_err(struct pyti_err *err, errcode_t rc, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (dsk_is_nospace(rc))
		return pyti_err_class(err, PYTI_FC_NOSPACE, "%s: image is full (%s)", what,
				      rc == EXT2_ET_INODE_ALLOC_FAIL ? "no free inodes" : "no free blocks");
	return pyti_err_set(err, 0, "%s: %s", what, error_message(rc));
}

void dsk_init(void)
{
	static bool done;
	if (!done) { /* error_message() needs the tables; libext2fs registers them only on some paths */
		initialize_ext2_error_table();
		done = true;
	}
}

/* Two writers (or a writer and a reader) at once would corrupt the image or read half-written
 * metadata: pyti processes take a flock on the image (exclusive to write, shared to read), and a
 * writer also refuses an image that another program holds a byte-range lock on — QEMU locks the
 * disk images of a running VM that way, and writing under a running guest's feet corrupts it. */
static int lock_image(struct dsk *d, struct pyti_err *err)
{
	int fd = open(d->image, (d->rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return pyti_err_set(err, errno, "image %s", d->image);
	struct stat st;
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return pyti_err_set(err, 0, "%s is not an ext2/3/4 file system image (not a regular file)", d->image);
	}
	int op = (d->rw ? LOCK_EX : LOCK_SH) | LOCK_NB;
	for (int i = 0; flock(fd, op) < 0; i++) {
		if (errno != EWOULDBLOCK || i >= 600) {
			int e = errno;
			close(fd);
			return pyti_err_set(err, e == EWOULDBLOCK ? 0 : e, "%s is in use by another pyti process%s",
					    d->image, e == EWOULDBLOCK ? " (waited 60 s)" : "");
		}
		usleep(100000);
	}
	if (d->rw && !d->vm_not_reading) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
		if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
			close(fd);
			return pyti_err_set(err, EBUSY,
					    "%s is locked by another program (a running VM?); refusing to write to it",
					    d->image);
		}
	}
	d->lock_fd = fd;
	return 0;
}

static void unlock_image(struct dsk *d)
{
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
}

int dsk_open(struct dsk *d, const char *image, bool rw, struct pyti_err *err)
{
	return dsk_open_flags(d, image, rw, 0, err);
}

int dsk_open_flags(struct dsk *d, const char *image, bool rw, unsigned flags, struct pyti_err *err)
{
	dsk_init();
	d->fs = NULL;
	d->image = image;
	d->rw = rw;
	d->lock_fd = -1;
	d->needs_recovery = false;
	d->vm_not_reading = (flags & DSK_VM_NOT_READING) != 0;
	if (lock_image(d, err) < 0)
		return -1;
	int xflags = EXT2_FLAG_64BITS | (rw ? EXT2_FLAG_RW : 0);
	errcode_t rc = ext2fs_open(image, xflags, 0, 0, unix_io_manager, &d->fs);
	if (rc) {
		d->fs = NULL;
		unlock_image(d);
		if (rc == EXT2_ET_BAD_MAGIC || rc == EXT2_ET_SHORT_READ || rc == EXT2_ET_SB_CSUM_INVALID ||
		    rc == EXT2_ET_CORRUPT_SUPERBLOCK)
			return pyti_err_set(err, 0, "%s is not an ext2/3/4 file system image (%s)", image,
					    error_message(rc));
		if (rc == EXT2_ET_UNSUPP_FEATURE || rc == EXT2_ET_RO_UNSUPP_FEATURE)
			return pyti_err_set(err, 0, "%s uses ext4 features this libext2fs cannot %s (%s)",
					    image, rw ? "write" : "read", error_message(rc));
		return dsk_err(err, rc, "open %s", image);
	}
	/* A journal that still needs replaying (the guest died with the file system mounted):
	 * writing beside it would be undone or corrupted by the replay, so refuse; reading shows
	 * the state before the unreplayed transactions, which is what the guest had committed to
	 * the main area, so allow it with a warning. */
	if (ext2fs_has_feature_journal_needs_recovery(d->fs->super)) {
		if (rw) {
			ext2fs_close_free(&d->fs);
			unlock_image(d);
			return pyti_err_set(err, 0,
					    "%s: the journal needs recovery (guest not shut down cleanly); "
					    "run 'e2fsck -fy %s' first",
					    image, image);
		}
		d->needs_recovery = true;
	}
	if (rw) {
		rc = ext2fs_read_bitmaps(d->fs);
		if (rc) {
			ext2fs_close_free(&d->fs);
			unlock_image(d);
			return dsk_err(err, rc, "%s: read bitmaps", image);
		}
	}
	return 0;
}

int dsk_close(struct dsk *d, struct pyti_err *err)
{
	if (!d->fs) {
		unlock_image(d);
		return 0;
	}
	/* No fsync: the image is a scratch disk that is rebuilt for every job, so surviving a host
	 * crash buys nothing, while an fsync costs tens of milliseconds per call here. Everything is
	 * written to the page cache before close returns, which is all that readers on this host
	 * (e2fsck, QEMU, the kernel's loop driver, even with O_DIRECT) need to see it. */
	errcode_t rc = ext2fs_close2(d->fs, EXT2_FLAG_FLUSH_NO_SYNC); /* frees fs on success */
	if (rc)
		ext2fs_free(d->fs);
	d->fs = NULL;
	unlock_image(d); /* after the flush: the next writer sees everything */
	if (rc) {
		return err ? dsk_err(err, rc, "%s: flush", d->image) : -1;
	}
	return 0;
}

int dsk_split(const char *path, char ***comps, size_t *n, struct pyti_err *err)
{
	*comps = NULL;
	*n = 0;
	if (!path || path[0] != '/')
		return pyti_err_usage(err, "guest path '%s' must be absolute", path ? path : "(null)");
	size_t len = strlen(path), max = len / 2 + 2;
	/* one block: the pointer array, then a copy of the path cut into components */
	char **v = xmalloc(max * sizeof(char *) + len + 1);
	char *s = (char *)(v + max);
	memcpy(s, path, len + 1);
	size_t k = 0;
	for (char *tok = strtok(s, "/"); tok; tok = strtok(NULL, "/")) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0 || strlen(tok) > EXT2_NAME_LEN) {
			const char *why = strcmp(tok, "..") == 0 ? "'..' is not allowed" : "name too long";
			free(v);
			return pyti_err_usage(err, "guest path '%s': %s", path, why);
		}
		v[k++] = tok;
	}
	*comps = v;
	*n = k;
	return 0;
}

int dsk_lookup(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t *ino, struct pyti_err *err)
{
	errcode_t rc = ext2fs_lookup(d->fs, dir, name, (int)strlen(name), NULL, ino);
	if (rc == EXT2_ET_FILE_NOT_FOUND)
		return 0;
	if (rc)
		return dsk_err(err, rc, "%s: look up '%s'", d->image, name);
	return 1;
}

int dsk_resolve(struct dsk *d, const char *path, ext2_ino_t *ino, struct pyti_err *err)
{
	_cleanup_free_ char **c = NULL;
	size_t n;
	if (dsk_split(path, &c, &n, err) < 0)
		return -1;
	ext2_ino_t cur = EXT2_ROOT_INO;
	for (size_t i = 0; i < n; i++) {
		struct ext2_inode inode;
		errcode_t rc = ext2fs_read_inode(d->fs, cur, &inode);
		if (rc)
			return dsk_err(err, rc, "%s: read inode %u", d->image, cur);
		if (!LINUX_S_ISDIR(inode.i_mode))
			return pyti_err_set(err, ENOTDIR, "%s: %s: a component is not a directory (symlinks are not followed)",
					    d->image, path);
		int r = dsk_lookup(d, cur, c[i], &cur, err);
		if (r < 0)
			return -1;
		if (r == 0)
			return pyti_err_set(err, ENOENT, "%s: %s: no such file or directory in the image",
					    d->image, path);
	}
	*ino = cur;
	return 0;
}

/* ---- inodes with their extra fields ---- */

void dsk_inode_new(struct dsk *d, struct dsk_inode *in)
{
	size_t isz = EXT2_INODE_SIZE(d->fs->super);
	in->size = isz;
	in->i = xcalloc(1, isz > sizeof(struct ext2_inode_large) ? isz : sizeof(struct ext2_inode_large));
	if (isz > EXT2_GOOD_OLD_INODE_SIZE)
		in->i->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
}

void dsk_inode_free(struct dsk_inode *in)
{
	free(in->i);
	in->i = NULL;
}

int dsk_read_inode(struct dsk *d, ext2_ino_t ino, struct dsk_inode *in, struct pyti_err *err)
{
	size_t isz = EXT2_INODE_SIZE(d->fs->super);
	in->size = isz;
	in->i = xcalloc(1, isz > sizeof(struct ext2_inode_large) ? isz : sizeof(struct ext2_inode_large));
	errcode_t rc = ext2fs_read_inode_full(d->fs, ino, (struct ext2_inode *)in->i, (int)isz);
	if (rc) {
		dsk_inode_free(in);
		return dsk_err(err, rc, "%s: read inode %u", d->image, ino);
	}
	return 0;
}

int dsk_write_inode(struct dsk *d, ext2_ino_t ino, struct dsk_inode *in, struct pyti_err *err)
{
	errcode_t rc = ext2fs_write_inode_full(d->fs, ino, (struct ext2_inode *)in->i, (int)in->size);
	if (rc)
		return dsk_err(err, rc, "%s: write inode %u", d->image, ino);
	return 0;
}

/* Does the inode's extra area reach the end of the field at byte offset off? */
static bool fits(const struct dsk_inode *in, size_t off)
{
	return in->size > EXT2_GOOD_OLD_INODE_SIZE &&
	       EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i->i_extra_isize >= off + sizeof(__u32);
}

/* ext4 keeps seconds in 32 bits plus 2 "epoch" bits in the extra field, nanoseconds above them. */
static void put_time(struct dsk_inode *in, __u32 *lo, __u32 *extra, size_t extra_off, int64_t sec, long nsec)
{
	*lo = (__u32)sec;
	if (extra && fits(in, extra_off))
		*extra = ((__u32)nsec << EXT4_EPOCH_BITS) |
			 (__u32)(((sec - (int64_t)(int32_t)sec) >> 32) & EXT4_EPOCH_MASK);
}

static void get_time(const struct dsk_inode *in, __u32 lo, __u32 extra, size_t extra_off, int64_t *sec, long *nsec)
{
	*sec = (int32_t)lo;
	*nsec = 0;
	if (fits(in, extra_off)) {
		*sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
		*nsec = (long)(extra >> EXT4_EPOCH_BITS);
		if (*nsec > 999999999)
			*nsec = 0;
	}
}

void dsk_set_time(struct dsk *d, struct dsk_inode *in, char which, int64_t sec, long nsec)
{
	(void)d;
	struct ext2_inode_large *i = in->i;
	switch (which) {
	case 'a':
		put_time(in, &i->i_atime, &i->i_atime_extra, offsetof(struct ext2_inode_large, i_atime_extra), sec, nsec);
		break;
	case 'm':
		put_time(in, &i->i_mtime, &i->i_mtime_extra, offsetof(struct ext2_inode_large, i_mtime_extra), sec, nsec);
		break;
	case 'c':
		put_time(in, &i->i_ctime, &i->i_ctime_extra, offsetof(struct ext2_inode_large, i_ctime_extra), sec, nsec);
		break;
	case 'r':
		if (fits(in, offsetof(struct ext2_inode_large, i_crtime)))
			put_time(in, &i->i_crtime, &i->i_crtime_extra,
				 offsetof(struct ext2_inode_large, i_crtime_extra), sec, nsec);
		break;
	}
}

void dsk_get_mtime(struct dsk *d, const struct dsk_inode *in, int64_t *sec, long *nsec)
{
	(void)d;
	get_time(in, in->i->i_mtime, in->i->i_mtime_extra, offsetof(struct ext2_inode_large, i_mtime_extra), sec,
		 nsec);
}

void dsk_get_atime(struct dsk *d, const struct dsk_inode *in, int64_t *sec, long *nsec)
{
	(void)d;
	get_time(in, in->i->i_atime, in->i->i_atime_extra, offsetof(struct ext2_inode_large, i_atime_extra), sec,
		 nsec);
}

/* ---- directories ---- */

int dsk_link(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t ino, int ftype, struct pyti_err *err)
{
	for (int tries = 0;; tries++) {
		errcode_t rc = ext2fs_link(d->fs, dir, name, ino, ftype);
		if (rc != EXT2_ET_DIR_NO_SPACE || tries > 2) {
			if (rc)
				return dsk_err(err, rc, "%s: link '%s'", d->image, name);
			return 0;
		}
		rc = ext2fs_expand_dir(d->fs, dir);
		if (rc)
			return dsk_err(err, rc, "%s: grow directory for '%s'", d->image, name);
	}
}

struct list_ctx {
	struct dsk_dirent *v;
	size_t n, cap;
};

static int list_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize, char *buf,
		   void *priv)
{
	(void)dir, (void)entry, (void)offset, (void)blocksize, (void)buf;
	struct list_ctx *c = priv;
	size_t len = ext2fs_dirent_name_len(de);
	if ((len == 1 && de->name[0] == '.') || (len == 2 && de->name[0] == '.' && de->name[1] == '.'))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = xrealloc(c->v, c->cap * sizeof *c->v);
	}
	char *nm = xmalloc(len + 1);
	memcpy(nm, de->name, len);
	nm[len] = '\0';
	c->v[c->n++] = (struct dsk_dirent){nm, len, de->inode, ext2fs_dirent_file_type(de)};
	return 0;
}

int dsk_list_dir(struct dsk *d, ext2_ino_t dir, struct dsk_dirent **out, size_t *n, struct pyti_err *err)
{
	struct list_ctx c = {0};
	errcode_t rc = ext2fs_dir_iterate2(d->fs, dir, 0, NULL, list_cb, &c);
	if (rc) {
		dsk_dirents_free(c.v, c.n);
		return dsk_err(err, rc, "%s: read directory inode %u", d->image, dir);
	}
	*out = c.v;
	*n = c.n;
	return 0;
}

void dsk_dirents_free(struct dsk_dirent *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

int dsk_readlink(struct dsk *d, ext2_ino_t ino, struct ext2_inode *inode, char **out, struct pyti_err *err)
{
	size_t len = EXT2_I_SIZE(inode);
	if (len > d->fs->blocksize || len > 65536)
		return pyti_err_set(err, 0, "%s: symlink inode %u: target too long", d->image, ino);
	char *t = xcalloc(1, len + 1);
	errcode_t rc = 0;
	if (inode->i_flags & EXT4_INLINE_DATA_FL) {
		size_t sz = 0;
		rc = ext2fs_inline_data_size(d->fs, ino, &sz);
		if (!rc && sz > len) {
			char *big = xcalloc(1, sz + 1);
			rc = ext2fs_inline_data_get(d->fs, ino, inode, big, &sz);
			if (!rc)
				memcpy(t, big, len);
			free(big);
		} else if (!rc) {
			rc = ext2fs_inline_data_get(d->fs, ino, inode, t, &sz);
		}
	} else if (ext2fs_is_fast_symlink(inode)) {
		memcpy(t, (char *)inode->i_block, len);
	} else {
		ext2_file_t f;
		rc = ext2fs_file_open2(d->fs, ino, inode, 0, &f);
		if (!rc) {
			unsigned int got = 0;
			rc = ext2fs_file_read(f, t, (unsigned)len, &got);
			ext2fs_file_close(f);
			if (!rc && got != len)
				rc = EXT2_ET_SHORT_READ;
		}
	}
	if (rc) {
		free(t);
		return dsk_err(err, rc, "%s: read symlink inode %u", d->image, ino);
	}
	t[len] = '\0';
	*out = t;
	return 0;
}

/* ---- removal ---- */

/* Free every block of an extent-mapped inode that is going away, tree blocks included, and leave
 * it with an empty extent tree. Not ext2fs_punch: libext2fs 1.47.0's punch fails with "Illegal
 * block number" for an extent that ends on the file system's last block, after it has already
 * dropped the extent, leaving blocks marked in use that nothing owns (e2fsck complains). Files
 * end there whenever an image is filled up, which is exactly when rollbacks happen. */
static errcode_t free_extent_blocks(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode *inode)
{
	ext2_extent_handle_t h;
	errcode_t rc = ext2fs_extent_open2(fs, ino, inode, &h);
	if (rc)
		return rc;
	blk64_t total = ext2fs_blocks_count(fs->super);
	struct ext2fs_extent ex;
	rc = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &ex);
	while (rc == 0) {
		if (!(ex.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)) {
			/* a leaf maps e_len data blocks; an index entry points at one tree block */
			blk64_t n = (ex.e_flags & EXT2_EXTENT_FLAGS_LEAF) ? ex.e_len : 1;
			if (ex.e_pblk < fs->super->s_first_data_block || ex.e_pblk + n > total) {
				rc = EXT2_ET_BAD_BLOCK_NUM;
				break;
			}
			for (blk64_t b = 0; b < n; b++)
				ext2fs_block_alloc_stats2(fs, ex.e_pblk + b, -1);
		}
		rc = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &ex);
	}
	ext2fs_extent_free(h);
	if (rc != EXT2_ET_EXTENT_NO_NEXT && rc != EXT2_ET_NO_CURRENT_NODE && rc != 0)
		return rc;
	memset(inode->i_block, 0, sizeof inode->i_block);
	struct ext3_extent_header *eh = (struct ext3_extent_header *)inode->i_block;
	eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
	eh->eh_max = ext2fs_cpu_to_le16((sizeof inode->i_block - sizeof *eh) / sizeof(struct ext3_extent));
	ext2fs_iblk_set(fs, inode, 0);
	return ext2fs_write_inode(fs, ino, inode);
}

int dsk_free_inode(struct dsk *d, ext2_ino_t ino, struct pyti_err *err)
{
	struct dsk_inode in;
	if (dsk_read_inode(d, ino, &in, err) < 0)
		return -1;
	struct ext2_inode *inode = (struct ext2_inode *)in.i;
	errcode_t rc = 0;
	bool isdir = LINUX_S_ISDIR(inode->i_mode);
	if ((inode->i_flags & EXT4_EXTENTS_FL) && EXT2FS_CLUSTER_RATIO(d->fs) == 1)
		rc = free_extent_blocks(d->fs, ino, inode);
	else if (ext2fs_inode_has_valid_blocks2(d->fs, inode) || (inode->i_flags & EXT4_INLINE_DATA_FL))
		rc = ext2fs_punch(d->fs, ino, inode, NULL, 0, ~0ULL);
	if (rc) {
		dsk_inode_free(&in);
		return dsk_err(err, rc, "%s: free blocks of inode %u", d->image, ino);
	}
	/* ext2fs_punch wrote the small inode; refresh the full copy before the final write */
	dsk_inode_free(&in);
	if (dsk_read_inode(d, ino, &in, err) < 0)
		return -1;
	inode = (struct ext2_inode *)in.i;
	blk64_t ea = ext2fs_file_acl_block(d->fs, inode);
	if (ea) {
		__u32 count = 0;
		rc = ext2fs_adjust_ea_refcount3(d->fs, ea, NULL, -1, &count, ino);
		if (!rc && count == 0)
			ext2fs_block_alloc_stats2(d->fs, ea, -1);
		ext2fs_file_acl_block_set(d->fs, inode, 0);
	}
	inode->i_links_count = 0;
	inode->i_dtime = (__u32)time(NULL);
	ext2fs_inode_size_set(d->fs, inode, 0);
	int r = dsk_write_inode(d, ino, &in, err);
	dsk_inode_free(&in);
	if (r < 0)
		return -1;
	ext2fs_inode_alloc_stats2(d->fs, ino, -1, isdir);
	/* Freed blocks may be reused for file data, which upload writes past the io channel: a
	 * dirty cached copy of such a block (a directory or extent block) must reach the disk now,
	 * not at close, where it would overwrite the new data. */
	rc = io_channel_flush(d->fs->io);
	if (rc)
		return dsk_err(err, rc, "%s: flush", d->image);
	return 0;
}

int dsk_remove(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t ino, bool recursive,
	       const char *what, struct pyti_err *err)
{
	struct ext2_inode inode;
	errcode_t rc = ext2fs_read_inode(d->fs, ino, &inode);
	if (rc)
		return dsk_err(err, rc, "%s: read inode %u", d->image, ino);
	bool isdir = LINUX_S_ISDIR(inode.i_mode);
	if (isdir) {
		struct dsk_dirent *e = NULL;
		size_t n = 0;
		if (dsk_list_dir(d, ino, &e, &n, err) < 0)
			return -1;
		if (n && !recursive) {
			dsk_dirents_free(e, n);
			return pyti_err_set(err, EISDIR, "%s: %s is a non-empty directory (remove it recursively)",
					    d->image, what);
		}
		for (size_t i = 0; i < n; i++) {
			if (e[i].ino == ino || e[i].ino == dir || e[i].ino == EXT2_ROOT_INO) {
				dsk_dirents_free(e, n);
				return pyti_err_set(err, 0, "%s: %s: directory loop in the image (run e2fsck)",
						    d->image, what);
			}
			if (dsk_remove(d, ino, e[i].name, e[i].ino, true, what, err) < 0) {
				dsk_dirents_free(e, n);
				return -1;
			}
		}
		dsk_dirents_free(e, n);
	}
	rc = ext2fs_unlink(d->fs, dir, name, ino, 0);
	if (rc)
		return dsk_err(err, rc, "%s: unlink '%s'", d->image, name);
	if (isdir) {
		/* ".." of the removed directory pointed at dir */
		struct ext2_inode p;
		rc = ext2fs_read_inode(d->fs, dir, &p);
		if (!rc && p.i_links_count > 2) {
			p.i_links_count--;
			rc = ext2fs_write_inode(d->fs, dir, &p);
		}
		if (rc)
			return dsk_err(err, rc, "%s: update parent of '%s'", d->image, name);
		return dsk_free_inode(d, ino, err);
	}
	if (inode.i_links_count > 1) {
		inode.i_links_count--;
		rc = ext2fs_write_inode(d->fs, ino, &inode);
		if (rc)
			return dsk_err(err, rc, "%s: update inode %u", d->image, ino);
		return 0;
	}
	return dsk_free_inode(d, ino, err);
}
