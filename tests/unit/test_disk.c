/* Unit tests for the disk module: real ext4 images, checked with the real e2fsck. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk.h"

extern char **environ;

static char tmp[256];

/* Assert that a disk call succeeded, showing its error message when it did not. */
#define OK(call)                                                                   \
	do {                                                                       \
		if ((call) != 0)                                                   \
			fail_msg("%s: %s", #call, pyti_err_str(&err));              \
	} while (0)

static char *P(const char *rel) /* path under the test's tmp dir; caller frees */
{
	return xasprintf("%s/%s", tmp, rel);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof tmp, "/tmp/pyti-disk-test.XXXXXX");
	assert_non_null(mkdtemp(tmp));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	rm_rf(tmp, &err);
	return 0;
}

/* Exit status of `e2fsck -fn image` (0 = clean). */
static int fsck(const char *image)
{
	const char *bin = access("/sbin/e2fsck", X_OK) == 0 ? "/sbin/e2fsck" : "/usr/sbin/e2fsck";
	char *argv[] = {(char *)bin, "-fn", (char *)image, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	assert_int_equal(rc, 0);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_bytes(const char *path, size_t n, unsigned seed, unsigned mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	unsigned x = seed * 2654435761u + 1;
	unsigned char chunk[65536];
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
		for (size_t i = 0; i < k; i++) {
			x = x * 1103515245u + 12345u;
			chunk[i] = (unsigned char)(x >> 16);
		}
		assert_int_equal(fwrite(chunk, 1, k, f), k);
		done += k;
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void set_mtime(const char *path, time_t sec, long nsec)
{
	struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
	assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static bool same_content(const char *a, const char *b)
{
	struct buf x = BUF_INIT(0), y = BUF_INIT(0);
	struct pyti_err err = {0};
	assert_int_equal(read_file(a, &x, &err), 0);
	assert_int_equal(read_file(b, &y, &err), 0);
	bool same = x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
	buf_free(&x);
	buf_free(&y);
	return same;
}

/* Compare two host trees: types, modes, mtimes (to the nanosecond), contents, link targets. */
static void compare_trees(const char *a, const char *b, bool check_self)
{
	struct stat sa, sb;
	assert_int_equal(lstat(a, &sa), 0);
	if (lstat(b, &sb) != 0)
		fail_msg("missing %s", b);
	assert_int_equal(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT);
	if (check_self) {
		if ((sa.st_mode & 07777) != (sb.st_mode & 07777))
			fail_msg("%s: mode %o != %o", b, sa.st_mode & 07777, sb.st_mode & 07777);
		if (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)
			fail_msg("%s: mtime %ld.%09ld != %ld.%09ld", b, (long)sa.st_mtim.tv_sec, sa.st_mtim.tv_nsec,
				 (long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
	}
	if (S_ISREG(sa.st_mode)) {
		assert_int_equal(sa.st_size, sb.st_size);
		assert_true(same_content(a, b));
	} else if (S_ISLNK(sa.st_mode)) {
		char ta[4096], tb[4096];
		ssize_t na = readlink(a, ta, sizeof ta), nb = readlink(b, tb, sizeof tb);
		assert_true(na > 0 && na == nb);
		assert_memory_equal(ta, tb, (size_t)na);
	} else if (S_ISDIR(sa.st_mode)) {
		DIR *d = opendir(a);
		assert_non_null(d);
		struct dirent *de;
		size_t na = 0;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			na++;
			char *ca = xasprintf("%s/%s", a, de->d_name), *cb = xasprintf("%s/%s", b, de->d_name);
			compare_trees(ca, cb, true);
			free(ca);
			free(cb);
		}
		closedir(d);
		d = opendir(b);
		size_t nb = 0;
		while ((de = readdir(d)))
			nb += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
		closedir(d);
		assert_int_equal(na, nb);
	}
}

/* The tree used by several tests. Directory mtimes are set last (creating entries changes them). */
static void make_tree(const char *root)
{
	char *p;
	assert_int_equal(mkdir(root, 0755), 0);
	p = xasprintf("%s/sub", root), assert_int_equal(mkdir(p, 0750), 0), free(p);
	p = xasprintf("%s/sub/deeper", root), assert_int_equal(mkdir(p, 0700), 0), free(p);
	p = xasprintf("%s/empty-dir", root), assert_int_equal(mkdir(p, 0755), 0), free(p);
	p = xasprintf("%s/secret", root), write_bytes(p, 100, 1, 0600), set_mtime(p, 1000000000, 123456789), free(p);
	p = xasprintf("%s/tool", root), write_bytes(p, 5000, 2, 0755), set_mtime(p, 1600000000, 5), free(p);
	/* past 2038 (ext4's epoch bits) and before 1970 */
	p = xasprintf("%s/empty", root), write_bytes(p, 0, 0, 0644), set_mtime(p, 4102444800, 1), free(p);
	p = xasprintf("%s/old", root), write_bytes(p, 1, 0, 0444), set_mtime(p, -31536000, 0), free(p);
	p = xasprintf("%s/sub/big.bin", root), write_bytes(p, (5u << 20) + 123, 3, 0644), free(p);
	p = xasprintf("%s/sub/deeper/block", root), write_bytes(p, 4096, 4, 0640), free(p);
	char *q = xasprintf("%s/sub/deeper/hardlink", root);
	p = xasprintf("%s/sub/deeper/block", root), assert_int_equal(link(p, q), 0), free(p), free(q);
	p = xasprintf("%s/sub/link", root), assert_int_equal(symlink("deeper/block", p), 0);
	set_mtime(p, 1500000000, 42), free(p);
	p = xasprintf("%s/uplink", root), assert_int_equal(symlink("sub/link", p), 0), free(p);
	/* a slow symlink: longer than the 60 bytes that fit in the inode */
	char longt[200];
	memset(longt, 'x', sizeof longt - 1);
	longt[sizeof longt - 1] = '\0';
	p = xasprintf("%s/sub/longlink", root), assert_int_equal(symlink(longt, p), 0), free(p);
	p = xasprintf("%s/sub/deeper/up", root), assert_int_equal(symlink("../big.bin", p), 0), free(p);
	p = xasprintf("%s/sub/deeper", root), set_mtime(p, 1234567890, 0), free(p);
	p = xasprintf("%s/sub", root), set_mtime(p, 1234567891, 999), free(p);
	set_mtime(root, 1234567892, 0);
}

static void test_mkfs(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("a.img");
	OK(disk_mkfs(img, 64u << 20, &err));
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(st.st_size, 64 << 20);
	assert_true(st.st_blocks * 512 < (8 << 20)); /* sparse */
	assert_int_equal(fsck(img), 0);
	/* small images have no journal, still valid */
	OK(disk_mkfs(img, 2u << 20, &err));
	assert_int_equal(fsck(img), 0);
	assert_int_equal(disk_mkfs(img, 1000, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("rt.img"), *src = P("src"), *out = P("out"), *out2 = P("out2");
	make_tree(src);
	OK(disk_mkfs(img, 64u << 20, &err));
	if (disk_upload(img, src, "/data/tree", &err) < 0)
		fail_msg("upload: %s", pyti_err_str(&err));
	assert_int_equal(fsck(img), 0);
	if (disk_download(img, "/data/tree", out, &err) < 0)
		fail_msg("download: %s", pyti_err_str(&err));
	compare_trees(src, out, true);
	_cleanup_free_ char *h1 = P("out/sub/deeper/block"), *h2 = P("out/sub/deeper/hardlink");
	struct stat s1, s2;
	assert_int_equal(stat(h1, &s1), 0);
	assert_int_equal(stat(h2, &s2), 0);
	assert_int_equal(s1.st_ino, s2.st_ino); /* a hard link in, a hard link out */
	assert_int_equal(s1.st_nlink, 2);

	/* disk_from_dir puts the contents at / */
	OK(disk_from_dir(img, src, 32u << 20, &err));
	assert_int_equal(fsck(img), 0);
	OK(disk_download(img, "/sub", out2, &err));
	_cleanup_free_ char *srcsub = P("src/sub");
	compare_trees(srcsub, out2, true);

	/* a single file into an existing directory keeps its name; overwriting replaces content */
	_cleanup_free_ char *f = P("src/tool");
	OK(disk_upload(img, f, "/sub", &err));
	write_bytes(f, 10, 9, 0700);
	OK(disk_upload(img, f, "/sub/tool", &err));
	assert_int_equal(fsck(img), 0);
	_cleanup_free_ char *back = P("tool.back");
	OK(disk_download(img, "/sub/tool", back, &err));
	compare_trees(f, back, true);
}

/* The standby guest's I/O disk: a new file system in the same file, while another process holds
 * the byte-range lock QEMU puts on a running VM's images (an ordinary upload refuses that). */
static void test_from_dir_in_place(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("io.img"), *src = P("src"), *out = P("out"), *old = P("old");
	make_tree(src);
	mkdir(old, 0755);
	_cleanup_free_ char *oldf = P("old/stale");
	write_bytes(oldf, 4096, 7, 0644);
	OK(disk_from_dir(img, old, 32u << 20, &err));
	struct stat before, after;
	assert_int_equal(stat(img, &before), 0);

	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t holder = fork();
	if (holder == 0) { /* QEMU's part: an OFD write lock on the image, held until killed */
		int fd = open(img, O_RDWR);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		char c = fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 'y' : 'n';
		(void)!write(pfd[1], &c, 1);
		pause();
		_exit(0);
	}
	char c = 0;
	assert_int_equal(read(pfd[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(disk_upload(img, src, "/x", &err), -1); /* the ordinary path refuses */
	pyti_err_clear(&err);
	OK(disk_from_dir_in_place(img, src, &err));
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(pfd[0]);
	close(pfd[1]);

	assert_int_equal(stat(img, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino); /* the very file a VM has open */
	assert_int_equal(after.st_size, before.st_size);
	assert_int_equal(fsck(img), 0);
	OK(disk_download(img, "/", out, &err));
	_cleanup_free_ char *gone = P("out/stale");
	assert_int_equal(access(gone, F_OK), -1); /* nothing of the old file system */
	_cleanup_free_ char *srcsub = P("src/sub"), *outsub = P("out/sub");
	compare_trees(srcsub, outsub, true);
	/* a missing image is an error, not a new file */
	_cleanup_free_ char *missing = P("missing.img");
	assert_int_equal(disk_from_dir_in_place(missing, src, &err), -1);
	assert_int_equal(access(missing, F_OK), -1);
}

struct names {
	int n;
	bool saw_link;
};

static int count_cb(void *arg, const struct disk_entry *e)
{
	struct names *s = arg;
	s->n++;
	if (e->type == 'l' && strcmp(e->name, "link") == 0) {
		assert_string_equal(e->target, "deeper/block");
		assert_int_equal(e->mtime, 1500000000);
		s->saw_link = true;
	}
	return 0;
}

static void test_ls_rm(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("ls.img"), *src = P("src");
	make_tree(src);
	OK(disk_from_dir(img, src, 32u << 20, &err));
	struct names s = {0};
	OK(disk_ls(img, "/sub", count_cb, &s, &err));
	assert_int_equal(s.n, 4); /* big.bin deeper link longlink */
	assert_true(s.saw_link);
	json_t *j = NULL;
	OK(disk_ls_json(img, "/secret", &j, &err));
	assert_int_equal(json_array_size(j), 1);
	assert_string_equal(pj_str(json_array_get(j, 0), "name", ""), "secret");
	assert_int_equal(pj_int(json_array_get(j, 0), "mode", 0), 0600);
	assert_int_equal(pj_int(json_array_get(j, 0), "size", 0), 100);
	json_decref(j);

	assert_int_equal(disk_rm(img, "/sub", false, &err), -1); /* a directory without recursive */
	assert_int_equal(disk_rm(img, "/", true, &err), -1);
	OK(disk_rm(img, "/secret", false, &err));
	assert_int_equal(disk_rm(img, "/secret", false, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	OK(disk_rm(img, "/sub", true, &err));
	assert_int_equal(fsck(img), 0);
	s = (struct names){0};
	OK(disk_ls(img, "/", count_cb, &s, &err));
	assert_int_equal(s.n, 6); /* lost+found empty-dir empty old tool uplink */

	/* the space of removed files comes back: fill, remove, fill again */
	_cleanup_free_ char *big = P("big"), *small = P("small.img");
	write_bytes(big, 6u << 20, 5, 0644);
	OK(disk_mkfs(small, 16u << 20, &err)); /* 4 MiB of it is the journal */
	OK(disk_upload(small, big, "/one", &err));
	assert_int_equal(disk_upload(small, big, "/two", &err), -1);
	OK(disk_rm(small, "/one", false, &err));
	OK(disk_upload(small, big, "/two", &err));
	assert_int_equal(fsck(small), 0);
}

static void test_many_files(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("many.img"), *src = P("many"), *out = P("many.out");
	assert_int_equal(mkdir(src, 0755), 0);
	for (int i = 0; i < 600; i++) {
		char *f = xasprintf("%s/file-with-a-rather-long-name-%04d.py", src, i);
		write_bytes(f, (size_t)(i * 37) % 9000, (unsigned)i, 0644);
		free(f);
	}
	OK(disk_from_dir(img, src, 32u << 20, &err));
	assert_int_equal(fsck(img), 0);
	/* merge the same tree again: every file is replaced in place */
	OK(disk_upload(img, src, "/", &err));
	assert_int_equal(fsck(img), 0);
	OK(disk_download(img, "/", out, &err));
	_cleanup_free_ char *lf = P("many.out/lost+found");
	assert_int_equal(rmdir(lf), 0);
	compare_trees(src, out, false);
}

static void test_nospace(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("full.img"), *big = P("big"), *dir = P("bigdir");
	write_bytes(big, 12u << 20, 7, 0644);
	OK(disk_mkfs(img, 8u << 20, &err));
	assert_int_equal(disk_upload(img, big, "/big", &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_NOSPACE);
	assert_non_null(strstr(err.msg, "full"));
	assert_int_equal(fsck(img), 0);
	/* the half-written file was rolled back */
	struct names s = {0};
	assert_int_equal(disk_ls(img, "/big", count_cb, &s, &err), -1);
	assert_int_equal(err.errnum, ENOENT);

	/* running out of inodes is NoSpace too */
	assert_int_equal(mkdir(dir, 0755), 0);
	for (int i = 0; i < 400; i++) {
		char *f = xasprintf("%s/f%d", dir, i);
		write_bytes(f, 1, 1, 0644);
		free(f);
	}
	pyti_err_clear(&err);
	OK(disk_mkfs(img, 2u << 20, &err));
	assert_int_equal(disk_upload(img, dir, "/d", &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_NOSPACE);
	assert_int_equal(fsck(img), 0);
}

/* Full images: a file ending on the very last block can be removed (libext2fs 1.47.0's punch
 * cannot), and an allocation that fails half-way on a fragmented image is rolled back. */
static void test_full_and_fragmented(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("frag.img"), *dir = P("frag"), *f = P("exact"), *back = P("exact.back");
	struct disk_usage u;
	OK(disk_mkfs(img, 4u << 20, &err));
	OK(disk_usage(img, &u, &err));
	assert_int_equal(u.block_size, 4096);
	uint64_t free0 = u.free_blocks;
	write_bytes(f, (size_t)(free0 * 4096), 1, 0644);
	OK(disk_upload(img, f, "/exact", &err)); /* fills the image to its last block */
	OK(disk_usage(img, &u, &err));
	assert_int_equal(u.free_blocks, 0);
	assert_int_equal(fsck(img), 0);
	OK(disk_rm(img, "/exact", false, &err));
	OK(disk_usage(img, &u, &err));
	assert_int_equal(u.free_blocks, free0);
	assert_int_equal(fsck(img), 0);

	/* fragment the free space into 2-block holes */
	assert_int_equal(mkdir(dir, 0755), 0);
	int n = (int)(free0 / 2) - 4;
	for (int i = 0; i < n; i++) {
		char *p = xasprintf("%s/f%04d", dir, i);
		write_bytes(p, 8192, (unsigned)i, 0644);
		free(p);
	}
	OK(disk_upload(img, dir, "/frag", &err));
	for (int i = 0; i < n; i += 2) {
		char *p = xasprintf("/frag/f%04d", i);
		OK(disk_rm(img, p, false, &err));
		free(p);
	}
	OK(disk_usage(img, &u, &err));
	uint64_t holes = u.free_blocks;
	/* exactly the free space: the extent tree needs blocks of its own, so this fails ... */
	write_bytes(f, (size_t)(holes * 4096), 2, 0644);
	assert_int_equal(disk_upload(img, f, "/exact", &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_NOSPACE);
	assert_int_equal(fsck(img), 0);
	OK(disk_usage(img, &u, &err));
	assert_int_equal(u.free_blocks, holes); /* ... and gives back what it had taken */
	/* a little less fits, spread over a hundred extents, and reads back intact */
	write_bytes(f, (size_t)((holes - 4) * 4096) - 100, 3, 0644);
	OK(disk_upload(img, f, "/exact", &err));
	assert_int_equal(fsck(img), 0);
	OK(disk_download(img, "/exact", back, &err));
	compare_trees(f, back, true);
}

static void test_errors(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("e.img"), *junk = P("junk"), *out = P("e.out"), *nope = P("nope.img");
	OK(disk_mkfs(img, 8u << 20, &err));
	assert_int_equal(disk_download(img, "/missing/file", out, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_non_null(strstr(err.msg, "/missing/file"));
	assert_int_equal(disk_rm(img, "/missing", false, &err), -1);
	assert_int_equal(disk_upload(img, "/nonexistent/host/path", "/x", &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(disk_upload(img, junk, "relative/path", &err), -1);
	assert_int_equal(disk_ls(img, "/a/../b", count_cb, &(struct names){0}, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);

	write_bytes(junk, 1u << 20, 11, 0644);
	assert_int_equal(disk_ls(junk, "/", count_cb, &(struct names){0}, &err), -1);
	assert_non_null(strstr(err.msg, "not an ext2/3/4"));
	assert_int_equal(disk_upload(junk, junk, "/x", &err), -1);
	assert_non_null(strstr(err.msg, "not an ext2/3/4"));
	assert_int_equal(disk_ls(nope, "/", count_cb, &(struct names){0}, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	/* a file where a directory is needed */
	OK(disk_upload(img, junk, "/f", &err));
	assert_int_equal(disk_upload(img, junk, "/f/g", &err), -1);
	assert_int_equal(err.errnum, ENOTDIR);
	assert_int_equal(fsck(img), 0);

	uint64_t v;
	OK(disk_parse_size("64M", &v, &err));
	assert_int_equal(v, 64u << 20);
	OK(disk_parse_size("2G", &v, &err));
	assert_int_equal(v, 2ULL << 30);
	OK(disk_parse_size("100", &v, &err));
	assert_int_equal(v, 100);
	OK(disk_parse_size("1MiB", &v, &err));
	assert_int_equal(disk_parse_size("12X", &v, &err), -1);
	assert_int_equal(disk_parse_size("-1", &v, &err), -1);
	assert_int_equal(disk_parse_size("", &v, &err), -1);
}

static void test_escape(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *img = P("x.img"), *src = P("evil"), *out = P("x.out"), *victim = P("victim");
	char *p;
	assert_int_equal(mkdir(src, 0755), 0);
	p = xasprintf("%s/d", src), assert_int_equal(mkdir(p, 0755), 0), free(p);
	p = xasprintf("%s/d/ok", src), assert_int_equal(symlink("../file", p), 0), free(p);
	p = xasprintf("%s/file", src), write_bytes(p, 10, 1, 0644), free(p);
	OK(disk_mkfs(img, 16u << 20, &err));
	OK(disk_upload(img, src, "/out", &err));

	/* safe links come back as links */
	OK(disk_download(img, "/out", out, &err));
	compare_trees(src, out, false);

	/* absolute, escaping and ".."-after-a-name targets are refused */
	const char *bad[] = {"/etc/passwd", "../../x", "..", "d/../../x", "./../x"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		_cleanup_free_ char *h = P("evil/link"), *o = xasprintf("%s/bad%zu", tmp, i);
		unlink(h);
		assert_int_equal(symlink(bad[i], h), 0);
		OK(disk_upload(img, src, "/out", &err)); /* a top-level link would be followed */
		pyti_err_clear(&err);
		if (disk_download(img, "/out", o, &err) != -1)
			fail_msg("link to %s was not refused", bad[i]);
		assert_non_null(strstr(err.msg, "refusing"));
		/* skipping instead: everything else arrives, the link does not */
		_cleanup_free_ char *o2 = xasprintf("%s/skip%zu", tmp, i), *l2 = xasprintf("%s/link", o2);
		OK(disk_download_flags(img, "/out", o2, DISK_DL_SKIP_UNSAFE_LINKS, &err));
		struct stat st;
		assert_int_equal(lstat(l2, &st), -1);
	}

	/* a host symlink in the way is replaced, never written through */
	write_bytes(victim, 5, 2, 0644);
	_cleanup_free_ char *trap = P("x.out/file"), *dtrap = P("x.out/d");
	unlink(trap);
	assert_int_equal(symlink(victim, trap), 0);
	_cleanup_free_ char *h = P("evil/link");
	unlink(h);
	assert_int_equal(symlink("file", h), 0);
	OK(disk_upload(img, src, "/out", &err));
	OK(disk_download(img, "/out", out, &err));
	struct stat st;
	assert_int_equal(lstat(trap, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_size, 5);
	/* a host symlink where a directory goes is an error, not followed */
	_cleanup_free_ char *elsewhere = P("elsewhere");
	assert_int_equal(mkdir(elsewhere, 0755), 0);
	assert_int_equal(rm_rf(dtrap, &err), 0);
	assert_int_equal(symlink(elsewhere, dtrap), 0);
	assert_int_equal(disk_download(img, "/out", out, &err), -1);
	_cleanup_free_ char *esc = P("elsewhere/ok");
	assert_int_equal(lstat(esc, &st), -1);
}

int main(void)
{
	pyti_log_level = PYTI_LOG_ERROR; /* the skipped-link warnings are expected */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mkfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_dir_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ls_rm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nospace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_and_fragmented, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escape, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
