/* disk: the DiskHandler. Reads and writes raw ext4 images from the host with libext2fs: no mount,
 * no root, no FUSE, no appliance.
 *
 * Guest paths are absolute ("/out/results.json"); "." components and repeated slashes are
 * ignored, ".." is refused, and symlinks inside the image are never followed while resolving.
 * Every writing call opens the image, does its work and closes it cleanly, so `e2fsck -fn IMAGE`
 * is clean after each call, also after one that failed (a half-created file is rolled back).
 * Calls on one image serialise on a flock; writing an image that another program holds a
 * byte-range lock on (QEMU running a VM on it) is refused, and so is writing one whose journal
 * needs recovery. Nothing is fsync()ed: these are scratch images (see fs.c).
 * Errors: a missing path, an image that is not ext2/3/4, a full image (err->fclass =
 * PYTI_FC_NOSPACE) all come back with a message naming the image and the path. */
#ifndef PYTI_DISK_H
#define PYTI_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

/* Create a fresh raw ext4 image of size_bytes (a sparse file, >= 1 MiB). The image is built under
 * IMAGE.tmp.<pid> and renamed into place; an existing IMAGE is replaced. */
int disk_mkfs(const char *image, uint64_t size_bytes, struct pyti_err *err);

/* Copy host_path (a file, symlink or directory tree) to guest_path.
 * - guest_path names the destination itself; missing parent directories are created (0755).
 * - An existing guest directory receives a host directory's contents (merge; its own mode and
 *   times stay) and a non-directory as guest_path/basename(host_path); an existing
 *   non-directory is replaced; an existing directory is never replaced by a non-directory.
 * - Regular files, directories and symlinks keep their mode (07777 bits), mtime and atime;
 *   owner and group become 0 (root). Files hard-linked together on the host stay hard-linked
 *   (within one call); fifos, sockets and devices are skipped with a warning. A command-line
 *   host_path that is a symlink is followed (like cp -H); symlinks below it stay symlinks.
 * - Fast path: one open of the image per call; file blocks are allocated in one piece and
 *   written in 1 MiB runs (see upload.c). */
int disk_upload(const char *image, const char *host_path, const char *guest_path, struct pyti_err *err);

/* mkfs + upload dir's contents at "/" (the VM backend's I/O disk). */
int disk_from_dir(const char *image, const char *dir, uint64_t size_bytes, struct pyti_err *err);
/* The same into the existing image file itself: same inode, same size, old contents discarded.
 * For the vm backend's standby guest, whose QEMU opened its I/O disk before the job was known:
 * the caller vouches that the VM has not read the disk since its snapshot and will not before it
 * is told to (the agent drops its block cache before mounting), so QEMU's image lock is no reason
 * to refuse. */
int disk_from_dir_in_place(const char *image, const char *dir, struct pyti_err *err);

/* Copy guest_path (file, symlink or tree) to host_path, the mirror of disk_upload: host_path
 * names the destination; an existing host directory receives a guest directory's contents and
 * a non-directory as host_path/basename. Modes (without setuid/setgid bits: the files now belong
 * to whoever runs pyti) and mtimes are kept. Nothing is ever written outside host_path:
 * - a name in the image holding '/' or being "." / ".." (a crafted image) is an error;
 * - below host_path every file is created with openat(O_NOFOLLOW|O_EXCL) relative to a directory
 *   pyti created or checked with O_NOFOLLOW itself, so no host symlink is ever followed; an
 *   existing host symlink in the way is replaced, never written through;
 * - a symlink in the image whose target is absolute, or climbs out of host_path with "..", or
 *   has ".." after another component (which could escape through a second link) is refused:
 *   the download fails naming the link (DISK_DL_SKIP_UNSAFE_LINKS skips it with a warning
 *   instead). Other links are recreated as links.
 * - the image cannot fill the host's disk: holes stay holes, hard links stay hard links, a
 *   directory inode reached twice (a loop) is an error, and the data written in total may not
 *   exceed the image file's size.
 * An image whose journal still needs replaying (the guest died with it mounted) is replayed first
 * with `e2fsck -E journal_only` when it is writable, so that the guest's last committed writes are
 * seen. Files written before a failure stay. Devices, fifos and sockets are skipped with a warning.
 * For collecting a job's /out, DISK_DL_SKIP_UNSAFE_LINKS keeps one hostile link from hiding all
 * the other results. */
#define DISK_DL_SKIP_UNSAFE_LINKS 0x1u
int disk_download(const char *image, const char *guest_path, const char *host_path, struct pyti_err *err);
int disk_download_flags(const char *image, const char *guest_path, const char *host_path, unsigned flags,
			struct pyti_err *err);

/* One entry of a listing; pointers are valid during the callback only. */
struct disk_entry {
	const char *name;
	char type;        /* 'f' file, 'd' dir, 'l' symlink, 'c' 'b' 'p' 's', '?' */
	uint32_t ino;
	uint32_t mode;    /* full st_mode-style mode, type bits included */
	uint32_t uid, gid;
	uint32_t nlink;
	uint64_t size;
	int64_t mtime;    /* seconds since the epoch */
	uint32_t mtime_ns;
	const char *target; /* symlink target, else NULL */
};
/* A callback returning non-zero stops the listing; disk_ls then returns that value. */
typedef int (*disk_ls_cb)(void *arg, const struct disk_entry *e);

/* List a directory (its entries without "." and "..", in directory order) or a single
 * non-directory (one entry named by its basename). */
int disk_ls(const char *image, const char *guest_path, disk_ls_cb cb, void *arg, struct pyti_err *err);
/* The same as a JSON array of objects {name,type,mode,uid,gid,nlink,size,mtime,ino[,target]};
 * caller decrefs *out. */
int disk_ls_json(const char *image, const char *guest_path, json_t **out, struct pyti_err *err);

/* Remove guest_path; a directory only when recursive. "/" is refused. */
int disk_rm(const char *image, const char *guest_path, bool recursive, struct pyti_err *err);

/* Space in an image (what e2fsprogs' dumpe2fs -h reports as block/inode counts). */
struct disk_usage {
	uint64_t block_size, blocks, free_blocks, inodes, free_inodes;
};
int disk_usage(const char *image, struct disk_usage *u, struct pyti_err *err);

/* "64M", "1G", "512K", "1048576" (K/M/G/T are powers of 1024). Usage error when malformed. */
int disk_parse_size(const char *s, uint64_t *out, struct pyti_err *err);

#endif
