/* Internal to the disk module: shared by fs.c, mkfs.c, upload.c, download.c, ops.c. */
#ifndef PYTI_DISK_INT_H
#define PYTI_DISK_INT_H

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "disk.h"

/* An open image. */
struct dsk {
	ext2_filsys fs;
	const char *image;
	bool rw;
	int lock_fd; /* flock()ed: one pyti writer or several readers per image */
	bool needs_recovery; /* read-only open of an image whose journal was not replayed */
	bool vm_not_reading; /* DSK_VM_NOT_READING: QEMU's image lock is no reason to refuse */
};

/* Register libext2fs' error messages (idempotent). */
void dsk_init(void);

/* Open image (rw: read the bitmaps too). Errors name the image; a file that is not ext2/3/4 gets
 * a message saying so. */
int dsk_open(struct dsk *d, const char *image, bool rw, struct pyti_err *err);
/* The caller vouches that the VM holding the image open has not read it and will not until told
 * to (disk_from_dir_in_place): write despite QEMU's byte-range lock. */
#define DSK_VM_NOT_READING 0x1u
int dsk_open_flags(struct dsk *d, const char *image, bool rw, unsigned flags, struct pyti_err *err);
/* Flush and close; returns -1 (with err when err is not NULL) when the flush fails. Safe to
 * call twice. */
int dsk_close(struct dsk *d, struct pyti_err *err);

/* A fresh file system over the existing regular file image, same inode and size (its old
 * contents are discarded): disk_from_dir_in_place. */
int dsk_mkfs_in_place(const char *image, struct pyti_err *err);

/* Fill err from a libext2fs error code; ENOSPC-like codes set PYTI_FC_NOSPACE. */
int dsk_err(struct pyti_err *err, errcode_t rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool dsk_is_nospace(errcode_t rc);

/* Split an absolute guest path into components ("." and empty removed, ".." refused).
 * *comps is one allocation (free it); *n its length. */
int dsk_split(const char *path, char ***comps, size_t *n, struct pyti_err *err);
/* Resolve a guest path without following symlinks; ENOENT-style error when missing. */
int dsk_resolve(struct dsk *d, const char *path, ext2_ino_t *ino, struct pyti_err *err);
/* Look a name up in a directory: 1 found, 0 missing, -1 error. */
int dsk_lookup(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t *ino, struct pyti_err *err);

/* A full on-disk inode (EXT2_INODE_SIZE bytes) for the extra time fields. */
struct dsk_inode {
	struct ext2_inode_large *i;
	size_t size;
};
int dsk_read_inode(struct dsk *d, ext2_ino_t ino, struct dsk_inode *in, struct pyti_err *err);
int dsk_write_inode(struct dsk *d, ext2_ino_t ino, struct dsk_inode *in, struct pyti_err *err);
void dsk_inode_free(struct dsk_inode *in);
void dsk_inode_new(struct dsk *d, struct dsk_inode *in); /* zeroed, extra_isize set */
void dsk_set_time(struct dsk *d, struct dsk_inode *in, char which, int64_t sec, long nsec); /* 'a' 'm' 'c' 'r' */
void dsk_get_mtime(struct dsk *d, const struct dsk_inode *in, int64_t *sec, long *nsec);
void dsk_get_atime(struct dsk *d, const struct dsk_inode *in, int64_t *sec, long *nsec);

/* Link name -> ino into dir, growing the directory when it is full. */
int dsk_link(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t ino, int ftype, struct pyti_err *err);
/* Release an inode that is no longer linked anywhere: its blocks, xattr block, bitmap bit. */
int dsk_free_inode(struct dsk *d, ext2_ino_t ino, struct pyti_err *err);
/* Unlink name (-> ino) from dir and drop the inode when that was its last link; directories are
 * removed with their contents when recursive, else refused. */
int dsk_remove(struct dsk *d, ext2_ino_t dir, const char *name, ext2_ino_t ino, bool recursive,
	       const char *what, struct pyti_err *err);

/* Read a symlink's target (NUL-terminated, caller frees). */
int dsk_readlink(struct dsk *d, ext2_ino_t ino, struct ext2_inode *inode, char **out, struct pyti_err *err);

/* Entries of a directory, without "." and "..". */
struct dsk_dirent {
	char *name;
	size_t len; /* may contain anything: callers check it */
	ext2_ino_t ino;
	int ftype;
};
int dsk_list_dir(struct dsk *d, ext2_ino_t dir, struct dsk_dirent **out, size_t *n, struct pyti_err *err);
void dsk_dirents_free(struct dsk_dirent *e, size_t n);

#endif
