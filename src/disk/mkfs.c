/* disk: creating an ext4 image with libext2fs itself.
 *
 * Why the library and not `mke2fs -t ext4`: no process to spawn, no dependency on the e2fsprogs
 * binaries at run time, and the image is built from a fresh sparse file, which lets us skip all
 * zeroing (inode tables and journal read back as zeros) — the same "lazy" initialisation mke2fs
 * does after discarding a device. The steps follow mke2fs: initialize the superblock and group
 * layout, allocate the tables, root and lost+found, reserve the special inodes, the bad-block
 * inode, the journal. The features are mke2fs.conf's ext4 set minus resize_inode (an I/O disk is
 * never resized online) and minus the 1.47 additions (orphan_file, metadata_csum_seed) that older
 * guest kernels cannot write to. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "disk-int.h"

#define DSK_BLOCK_LOG 2 /* 1024 << 2 = 4096-byte blocks */
#define DSK_INODE_RATIO 8192
#define DSK_INODE_SIZE 256

static void random_bytes(void *p, size_t n)
{
	unsigned char *b = p;
	while (n) {
		ssize_t r = getrandom(b, n, 0);
		if (r <= 0) { /* never expected; fall back to something unique enough for a UUID */
			for (size_t i = 0; i < n; i++)
				b[i] = (unsigned char)(rand() ^ (int)getpid() ^ (int)time(NULL));
			return;
		}
		b += r;
		n -= (size_t)r;
	}
}

static void random_uuid(__u8 u[16])
{
	random_bytes(u, 16);
	u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80; /* RFC 4122 variant */
}

static int build(const char *path, uint64_t size_bytes, struct pyti_err *err)
{
	struct ext2_super_block param;
	memset(&param, 0, sizeof param);
	uint64_t bsize = 1024u << DSK_BLOCK_LOG;
	ext2fs_blocks_count_set(&param, size_bytes / bsize);
	param.s_log_block_size = DSK_BLOCK_LOG;
	param.s_log_cluster_size = DSK_BLOCK_LOG;
	param.s_rev_level = EXT2_DYNAMIC_REV;
	param.s_inode_size = DSK_INODE_SIZE;
	uint64_t inodes = size_bytes / DSK_INODE_RATIO;
	param.s_inodes_count = inodes < 256 ? 256 : inodes > 0xffff0000u ? 0xffff0000u : (__u32)inodes;
	param.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
	param.s_log_groups_per_flex = 4;
	ext2fs_set_feature_sparse_super(&param);
	ext2fs_set_feature_large_file(&param);
	ext2fs_set_feature_filetype(&param);
	ext2fs_set_feature_dir_index(&param);
	ext2fs_set_feature_xattr(&param);
	ext2fs_set_feature_journal(&param);
	ext2fs_set_feature_extents(&param);
	ext2fs_set_feature_huge_file(&param);
	ext2fs_set_feature_flex_bg(&param);
	ext2fs_set_feature_metadata_csum(&param);
	ext2fs_set_feature_64bit(&param);
	ext2fs_set_feature_dir_nlink(&param);
	ext2fs_set_feature_extra_isize(&param);

	dsk_init();
	ext2_filsys fs = NULL;
	errcode_t rc = ext2fs_initialize(path, EXT2_FLAG_64BITS, &param, unix_io_manager, &fs);
	if (rc)
		return dsk_err(err, rc, "mkfs %s: initialize", path);
	struct dsk d = {.fs = fs, .image = path, .rw = true, .lock_fd = -1};
	struct ext2_super_block *sb = fs->super;

	random_uuid(sb->s_uuid);
	random_uuid((__u8 *)sb->s_hash_seed);
	sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
#if defined(__CHAR_UNSIGNED__)
	sb->s_flags |= EXT2_FLAGS_UNSIGNED_HASH;
#else
	sb->s_flags |= EXT2_FLAGS_SIGNED_HASH;
#endif
	sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
	sb->s_max_mnt_count = (__u16)-1;
	sb->s_mkfs_time = sb->s_lastcheck = (__u32)time(NULL);
	ext2fs_init_csum_seed(fs);
	if (ext2fs_has_feature_extra_isize(sb))
		sb->s_min_extra_isize = sb->s_want_extra_isize =
			sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;

	rc = ext2fs_allocate_tables(fs);
	if (!rc)
		rc = ext2fs_convert_subcluster_bitmap(fs, &fs->block_map);
	if (rc)
		goto fail;
	/* The file is new and sparse: the inode tables are already zero. */
	for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
		ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
		ext2fs_group_desc_csum_set(fs, g);
	}

	rc = ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, 0);
	if (rc)
		goto fail;
	rc = ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, "lost+found");
	if (rc)
		goto fail;
	ext2_ino_t lpf;
	rc = ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &lpf);
	if (rc)
		goto fail;
	/* e2fsck wants room in lost+found without allocating: 16 KiB, as mke2fs makes it */
	for (unsigned sz = fs->blocksize; sz < 16384; sz += fs->blocksize) {
		rc = ext2fs_expand_dir(fs, lpf);
		if (rc)
			goto fail;
	}

	for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(sb); i++)
		ext2fs_inode_alloc_stats2(fs, i, +1, 0);
	ext2fs_mark_ib_dirty(fs);
	ext2fs_mark_inode_bitmap2(fs->inode_map, EXT2_BAD_INO);
	ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
	rc = ext2fs_update_bb_inode(fs, NULL);
	if (rc)
		goto fail;

	struct ext2fs_journal_params jp;
	rc = ext2fs_get_journal_params(&jp, fs);
	if (rc == 0 && jp.num_journal_blocks > 0) {
		rc = ext2fs_add_journal_inode3(fs, &jp, ~0ULL,
					       EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK);
		if (rc)
			goto fail;
	} else {
		/* too small for a journal (under 8 MiB): plain ext4 without one, as mke2fs does */
		ext2fs_clear_feature_journal(sb);
		rc = 0;
	}
	ext2fs_mark_super_dirty(fs);
	return dsk_close(&d, err);

fail:
	dsk_err(err, rc, "mkfs %s", path);
	ext2fs_free(fs);
	return -1;
}

int disk_mkfs(const char *image, uint64_t size_bytes, struct pyti_err *err)
{
	if (size_bytes < (1u << 20))
		return pyti_err_usage(err, "mkfs %s: size %llu is too small (at least 1M)", image,
				      (unsigned long long)size_bytes);
	if (size_bytes > (1ULL << 44))
		return pyti_err_usage(err, "mkfs %s: size %llu is too large (at most 16T)", image,
				      (unsigned long long)size_bytes);
	size_bytes &= ~(uint64_t)((1024u << DSK_BLOCK_LOG) - 1);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", image, (int)getpid());
	unlink(tmp);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return pyti_err_set(err, errno, "mkfs: create %s", tmp);
	if (ftruncate(fd, (off_t)size_bytes) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return pyti_err_set(err, e, "mkfs: size %s", tmp);
	}
	close(fd);
	if (build(tmp, size_bytes, err) < 0) {
		unlink(tmp);
		return pyti_err_prefix(err, "%s", image);
	}
	if (rename(tmp, image) < 0) {
		int e = errno;
		unlink(tmp);
		return pyti_err_set(err, e, "mkfs: rename %s to %s", tmp, image);
	}
	return 0;
}

int dsk_mkfs_in_place(const char *image, struct pyti_err *err)
{
	_cleanup_close_ int fd = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return pyti_err_set(err, errno, "mkfs: open %s", image);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return pyti_err_set(err, errno, "mkfs: stat %s", image);
	uint64_t size = (uint64_t)st.st_size & ~(uint64_t)((1024u << DSK_BLOCK_LOG) - 1);
	if (!S_ISREG(st.st_mode) || size < (1u << 20))
		return pyti_err_set(err, 0, "mkfs: %s is not a regular file of at least 1 MiB", image);
	/* Drop every old block: the new file system relies on zeroed inode tables. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, st.st_size) < 0)
		return pyti_err_set(err, errno, "mkfs: truncate %s", image);
	if (build(image, size, err) < 0)
		return pyti_err_prefix(err, "%s", image);
	return 0;
}

int disk_parse_size(const char *s, uint64_t *out, struct pyti_err *err)
{
	if (!s || !*s || *s == '-')
		return pyti_err_usage(err, "size '%s': expected a number with an optional K/M/G/T suffix",
				      s ? s : "");
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return pyti_err_usage(err, "size '%s': expected a number with an optional K/M/G/T suffix", s);
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default:
		return pyti_err_usage(err, "size '%s': unknown suffix '%s' (K, M, G or T)", s, end);
	}
	if (*end) {
		end++;
		if ((*end == 'i' && end[1] == 'B') || (*end == 'B' && !end[1]))
			end += (*end == 'i') ? 2 : 1;
		if (*end)
			return pyti_err_usage(err, "size '%s': trailing characters", s);
	}
	if (shift && v > (~0ULL >> shift))
		return pyti_err_usage(err, "size '%s' is too large", s);
	*out = (uint64_t)v << shift;
	return 0;
}
