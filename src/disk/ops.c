/* disk: listing and removing. */
#include <errno.h>
#include <string.h>

#include "disk-int.h"

static char type_char(unsigned mode)
{
	switch (mode & LINUX_S_IFMT) {
	case LINUX_S_IFREG: return 'f';
	case LINUX_S_IFDIR: return 'd';
	case LINUX_S_IFLNK: return 'l';
	case LINUX_S_IFCHR: return 'c';
	case LINUX_S_IFBLK: return 'b';
	case LINUX_S_IFIFO: return 'p';
	case LINUX_S_IFSOCK: return 's';
	default: return '?';
	}
}

static int emit(struct dsk *d, ext2_ino_t ino, const char *name, disk_ls_cb cb, void *arg, struct pyti_err *err)
{
	struct dsk_inode in;
	if (dsk_read_inode(d, ino, &in, err) < 0)
		return -1;
	struct ext2_inode_large *i = in.i;
	_cleanup_free_ char *target = NULL;
	struct disk_entry e = {
		.name = name,
		.type = type_char(i->i_mode),
		.ino = ino,
		.mode = i->i_mode,
		.uid = (uint32_t)i->i_uid | ((uint32_t)i->osd2.linux2.l_i_uid_high << 16),
		.gid = (uint32_t)i->i_gid | ((uint32_t)i->osd2.linux2.l_i_gid_high << 16),
		.nlink = i->i_links_count,
		.size = EXT2_I_SIZE(i),
	};
	int64_t s;
	long ns;
	dsk_get_mtime(d, &in, &s, &ns);
	e.mtime = s;
	e.mtime_ns = (uint32_t)ns;
	int r = 0;
	if (e.type == 'l') {
		r = dsk_readlink(d, ino, (struct ext2_inode *)i, &target, err);
		e.target = target;
	}
	dsk_inode_free(&in);
	if (r < 0)
		return -1;
	return cb(arg, &e);
}

int disk_ls(const char *image, const char *guest_path, disk_ls_cb cb, void *arg, struct pyti_err *err)
{
	struct dsk d;
	if (dsk_open(&d, image, false, err) < 0)
		return -1;
	if (d.needs_recovery)
		log_warn("%s: the journal needs recovery (the guest did not unmount); listing without replaying it",
			 image);
	int r = 0;
	ext2_ino_t ino;
	struct ext2_inode inode;
	if (dsk_resolve(&d, guest_path, &ino, err) < 0) {
		r = -1;
		goto out;
	}
	errcode_t rc = ext2fs_read_inode(d.fs, ino, &inode);
	if (rc) {
		r = dsk_err(err, rc, "%s: read inode %u", image, ino);
		goto out;
	}
	if (LINUX_S_ISDIR(inode.i_mode)) {
		struct dsk_dirent *e = NULL;
		size_t n = 0;
		if (dsk_list_dir(&d, ino, &e, &n, err) < 0) {
			r = -1;
			goto out;
		}
		for (size_t k = 0; k < n && r == 0; k++)
			r = emit(&d, e[k].ino, e[k].name, cb, arg, err);
		dsk_dirents_free(e, n);
	} else {
		const char *base = strrchr(guest_path, '/');
		r = emit(&d, ino, base ? base + 1 : guest_path, cb, arg, err);
	}
out:
	dsk_close(&d, NULL);
	return r;
}

static int json_cb(void *arg, const struct disk_entry *e)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", pj_string_lossy(e->name, strlen(e->name)));
	json_object_set_new(o, "type", json_stringn(&e->type, 1));
	json_object_set_new(o, "mode", json_integer(e->mode & 07777));
	json_object_set_new(o, "uid", json_integer(e->uid));
	json_object_set_new(o, "gid", json_integer(e->gid));
	json_object_set_new(o, "nlink", json_integer(e->nlink));
	json_object_set_new(o, "size", json_integer((json_int_t)e->size));
	json_object_set_new(o, "mtime", json_integer(e->mtime));
	json_object_set_new(o, "ino", json_integer(e->ino));
	if (e->target)
		json_object_set_new(o, "target", pj_string_lossy(e->target, strlen(e->target)));
	json_array_append_new(arg, o);
	return 0;
}

int disk_ls_json(const char *image, const char *guest_path, json_t **out, struct pyti_err *err)
{
	json_t *a = json_array();
	if (disk_ls(image, guest_path, json_cb, a, err) != 0) {
		json_decref(a);
		return -1;
	}
	*out = a;
	return 0;
}

int disk_rm(const char *image, const char *guest_path, bool recursive, struct pyti_err *err)
{
	_cleanup_free_ char **c = NULL;
	size_t n;
	if (dsk_split(guest_path, &c, &n, err) < 0)
		return -1;
	if (n == 0)
		return pyti_err_usage(err, "rm: refusing to remove the root directory of %s", image);
	struct dsk d;
	if (dsk_open(&d, image, true, err) < 0)
		return -1;
	int r = 0;
	ext2_ino_t parent = EXT2_ROOT_INO, ino = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct ext2_inode inode;
		errcode_t rc = ext2fs_read_inode(d.fs, parent, &inode);
		if (rc) {
			r = dsk_err(err, rc, "%s: read inode %u", image, parent);
			break;
		}
		if (!LINUX_S_ISDIR(inode.i_mode)) {
			r = pyti_err_set(err, ENOTDIR, "%s: %s: a component is not a directory", image, guest_path);
			break;
		}
		int f = dsk_lookup(&d, parent, c[i], &ino, err);
		if (f == 0)
			r = pyti_err_set(err, ENOENT, "%s: %s: no such file or directory in the image", image, guest_path);
		else if (f < 0)
			r = -1;
		else if (i + 1 < n)
			parent = ino;
	}
	if (r == 0) {
		struct ext2_inode inode;
		errcode_t rc = ext2fs_read_inode(d.fs, ino, &inode);
		if (rc)
			r = dsk_err(err, rc, "%s: read inode %u", image, ino);
		else if (LINUX_S_ISDIR(inode.i_mode) && !recursive)
			r = pyti_err_set(err, EISDIR, "%s: %s is a directory (use recursive removal, rm -r)", image,
					 guest_path);
		else
			r = dsk_remove(&d, parent, c[n - 1], ino, recursive, guest_path, err);
	}
	if (dsk_close(&d, r < 0 ? NULL : err) < 0)
		r = -1;
	return r;
}

int disk_usage(const char *image, struct disk_usage *u, struct pyti_err *err)
{
	struct dsk d;
	if (dsk_open(&d, image, false, err) < 0)
		return -1;
	struct ext2_super_block *sb = d.fs->super;
	*u = (struct disk_usage){
		.block_size = d.fs->blocksize,
		.blocks = ext2fs_blocks_count(sb),
		.free_blocks = ext2fs_free_blocks_count(sb),
		.inodes = sb->s_inodes_count,
		.free_inodes = sb->s_free_inodes_count,
	};
	dsk_close(&d, NULL);
	return 0;
}
