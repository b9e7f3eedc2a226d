/* Unit tests for the archive module: real archives written with libarchive's writer, hostile ones
 * included, unpacked for real into a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "pyti_archive.h"

enum fmt { TGZ, TBZ2, TXZ, ZIP };

struct ent {
	const char *path;
	mode_t type; /* AE_IFREG (0 means AE_IFREG), AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO */
	const char *data;
	const char *link;  /* symlink target */
	const char *hard;  /* hard link target */
	mode_t perm;
	size_t zeros;      /* data: this many zero bytes instead */
};

static char tmp[64];
static char arch_dir[128], dest[128];

static void make_archive(const char *path, enum fmt f, const struct ent *ents, size_t n)
{
	struct archive *a = archive_write_new();
	switch (f) {
	case TGZ:
		archive_write_add_filter_gzip(a);
		archive_write_set_filter_option(a, "gzip", "compression-level", "1");
		archive_write_set_format_pax_restricted(a);
		break;
	case TBZ2:
		archive_write_add_filter_bzip2(a);
		archive_write_set_format_pax_restricted(a);
		break;
	case TXZ:
		archive_write_add_filter_xz(a);
		archive_write_set_format_pax_restricted(a);
		break;
	case ZIP:
		archive_write_set_format_zip(a);
		break;
	}
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *e = &ents[i];
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e->path);
		mode_t type = e->type ? e->type : AE_IFREG;
		archive_entry_set_filetype(ae, type);
		archive_entry_set_perm(ae, e->perm ? e->perm : (type == AE_IFDIR ? 0755 : 0644));
		size_t size = e->zeros ? e->zeros : e->data ? strlen(e->data) : 0;
		if (e->link)
			archive_entry_set_symlink(ae, e->link);
		if (e->hard) {
			archive_entry_set_hardlink(ae, e->hard);
			size = 0;
		}
		if (type == AE_IFCHR)
			archive_entry_set_rdev(ae, makedev(1, 3));
		archive_entry_set_size(ae, type == AE_IFREG ? (la_int64_t)size : 0);
		archive_entry_set_mtime(ae, 1700000000, 0);
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (type == AE_IFREG && !e->hard) {
			if (e->zeros) {
				static char zero[1 << 20];
				for (size_t left = e->zeros; left;) {
					size_t k = left < sizeof zero ? left : sizeof zero;
					assert_int_equal(archive_write_data(a, zero, k), (la_ssize_t)k);
					left -= k;
				}
			} else if (size) {
				assert_int_equal(archive_write_data(a, e->data, size), (la_ssize_t)size);
			}
		}
		archive_entry_free(ae);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static size_t count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static char *slurp(const char *path)
{
	struct buf b = BUF_INIT(1 << 20);
	struct pyti_err err = {0};
	if (read_file(path, &b, &err) < 0)
		return NULL;
	return buf_steal(&b);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof tmp, "/tmp/pyti-test-archive-XXXXXX");
	assert_non_null(mkdtemp(tmp));
	snprintf(arch_dir, sizeof arch_dir, "%s/arch", tmp);
	snprintf(dest, sizeof dest, "%s/dest", tmp);
	assert_int_equal(mkdir(arch_dir, 0755), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	assert_int_equal(rm_rf(tmp, &err), 0);
	return 0;
}

/* Unpacks a hostile archive and checks it is refused with a message containing want, and that
 * nothing at all was written: dest does not exist or is empty, and tmp holds only arch/ and dest/. */
static void expect_refused(const char *name, enum fmt f, const struct ent *ents, size_t n,
			   const struct arch_opts *o, const char *want)
{
	struct pyti_err err = {0};
	char path[256];
	snprintf(path, sizeof path, "%s/%s", arch_dir, name);
	make_archive(path, f, ents, n);
	assert_int_equal(rm_rf(dest, &err), 0);
	int rc = arch_unpack(path, dest, o, &err);
	if (rc == 0)
		fail_msg("%s: unpacked, expected refusal containing '%s'", name, want);
	if (!strstr(err.msg, want))
		fail_msg("%s: message '%s' lacks '%s'", name, err.msg, want);
	assert_int_equal(count_dir(dest), 0);
	size_t in_tmp = count_dir(tmp);
	if (in_tmp > 2)
		fail_msg("%s: something was written next to dest (%zu entries in %s)", name, in_tmp, tmp);
	assert_false(path_exists("/tmp/pyti-archive-evil"));
}

static const struct ent good_sdist[] = {
	{.path = "pkg-1.0/", .type = AE_IFDIR},
	{.path = "pkg-1.0/setup.py", .data = "print('setup')\n", .perm = 0664},
	{.path = "pkg-1.0/bin/run", .data = "#!/bin/sh\n", .perm = 04775},
	{.path = "pkg-1.0/pkg/__init__.py", .data = "X = 1\n"},
	{.path = "pkg-1.0/a/b/c/deep.txt", .data = "deep\n"},
	{.path = "pkg-1.0/link", .type = AE_IFLNK, .link = "pkg/__init__.py"},
	{.path = "pkg-1.0/pkg/up", .type = AE_IFLNK, .link = "../a/b"},
	{.path = "pkg-1.0/dangling", .type = AE_IFLNK, .link = "nowhere/at/all"},
	{.path = "pkg-1.0/hard", .hard = "pkg-1.0/setup.py"},
	{.path = "pkg-1.0/PKG-INFO", .data = "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"
					     "Provides-Extra: test\n\nlong text\nName: nope\n"},
};

static void test_good_sdist(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof path, "%s/pkg-1.0.tar.gz", arch_dir);
	make_archive(path, TGZ, good_sdist, ARRAY_SIZE(good_sdist));
	struct pyti_err err = {0};
	struct arch_opts o = {.strip_top = true};
	if (arch_unpack(path, dest, &o, &err) < 0)
		fail_msg("%s", err.msg);

	char p[512];
	struct stat st;
	snprintf(p, sizeof p, "%s/setup.py", dest);
	_cleanup_free_ char *s = slurp(p);
	assert_string_equal(s, "print('setup')\n");
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	ino_t ino = st.st_ino;
	snprintf(p, sizeof p, "%s/bin/run", dest);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755); /* x kept, setuid and group write dropped */
	snprintf(p, sizeof p, "%s/a/b/c/deep.txt", dest);
	assert_true(path_exists(p));
	snprintf(p, sizeof p, "%s/link", dest);
	char lt[256] = {0};
	assert_true(readlink(p, lt, sizeof lt - 1) > 0);
	assert_string_equal(lt, "pkg/__init__.py");
	snprintf(p, sizeof p, "%s/hard", dest);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_ino, ino);
	snprintf(p, sizeof p, "%s/pkg-1.0", dest);
	assert_false(path_exists(p));

	/* metadata straight from the sdist: the top-level PKG-INFO, headers only */
	struct wheel_meta m;
	assert_int_equal(sdist_read_meta(path, &m, &err), 0);
	assert_string_equal(m.name, "pkg");
	assert_string_equal(m.version, "1.0");
	assert_int_equal(m.n_extras, 1);
	assert_string_equal(m.extras[0], "test");
	wheel_meta_free(&m);
	assert_int_equal(rm_rf(dest, &err), 0);
}

static void test_formats(void **state)
{
	(void)state;
	const struct ent ents[] = {
		{.path = "p-2/", .type = AE_IFDIR},
		{.path = "p-2/m.py", .data = "m = 2\n"},
		{.path = "p-2/tool", .data = "x", .perm = 0700},
	};
	const enum fmt fmts[] = {TBZ2, TXZ, ZIP};
	const char *names[] = {"p-2.tar.bz2", "p-2.tar.xz", "p-2.zip"};
	for (size_t i = 0; i < 3; i++) {
		char path[256], p[512];
		snprintf(path, sizeof path, "%s/%s", arch_dir, names[i]);
		make_archive(path, fmts[i], ents, ARRAY_SIZE(ents));
		struct pyti_err err = {0};
		struct arch_opts o = {.strip_top = true};
		if (arch_unpack(path, dest, &o, &err) < 0)
			fail_msg("%s: %s", names[i], err.msg);
		snprintf(p, sizeof p, "%s/m.py", dest);
		_cleanup_free_ char *s = slurp(p);
		assert_non_null(s);
		assert_string_equal(s, "m = 2\n");
		struct stat st;
		snprintf(p, sizeof p, "%s/tool", dest);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0755);
		assert_int_equal(rm_rf(dest, &err), 0);
	}
}

static void test_hostile_paths(void **state)
{
	(void)state;
	char abs_path[256];
	snprintf(abs_path, sizeof abs_path, "%s/evil-abs", tmp);
	const struct ent dotdot[] = {{.path = "ok.txt", .data = "fine"}, {.path = "../pyti-archive-evil", .data = "x"}};
	expect_refused("dotdot.tar.gz", TGZ, dotdot, 2, NULL, "refusing entry '../pyti-archive-evil': '..' in path");
	const struct ent inner[] = {{.path = "pkg/a/../../../pyti-archive-evil", .data = "x"}};
	expect_refused("inner.tar.gz", TGZ, inner, 1, NULL, "'..' in path");
	const struct ent zipdot[] = {{.path = "../pyti-archive-evil", .data = "x"}};
	expect_refused("dotdot.zip", ZIP, zipdot, 1, NULL, "'..' in path");
	const struct ent absolute[] = {{.path = abs_path, .data = "x"}};
	expect_refused("abs.tar.gz", TGZ, absolute, 1, NULL, "absolute path");
	assert_false(path_exists(abs_path));
}

static void test_hostile_links(void **state)
{
	(void)state;
	const struct ent sym_etc[] = {{.path = "pkg/", .type = AE_IFDIR},
				      {.path = "pkg/etc", .type = AE_IFLNK, .link = "/etc"}};
	expect_refused("sym-etc.tar.gz", TGZ, sym_etc, 2, NULL, "refusing symlink 'pkg/etc' -> '/etc': absolute target");
	const struct ent sym_up[] = {{.path = "pkg/x/l", .type = AE_IFLNK, .link = "../../../etc"}};
	expect_refused("sym-up.tar.gz", TGZ, sym_up, 1, NULL,
		       "refusing symlink 'pkg/x/l' -> '../../../etc': it points outside the archive");
	/* lexically inside, but l1 is itself ".." */
	const struct ent chain[] = {{.path = "x/l1", .type = AE_IFLNK, .link = ".."},
				    {.path = "x/l2", .type = AE_IFLNK, .link = "l1/.."}};
	expect_refused("sym-chain.tar.gz", TGZ, chain, 2, NULL, "refusing symlink 'x/l2' -> 'l1/..'");
	const struct ent loop[] = {{.path = "a", .type = AE_IFLNK, .link = "b"}, {.path = "b", .type = AE_IFLNK, .link = "a"}};
	expect_refused("sym-loop.tar.gz", TGZ, loop, 2, NULL, "(or loops)");
	/* a symlink inside the tree, then a file written through it */
	const struct ent through[] = {{.path = "pkg/sub/", .type = AE_IFDIR},
				      {.path = "pkg/l", .type = AE_IFLNK, .link = "sub"},
				      {.path = "pkg/l/f", .data = "x"}};
	expect_refused("sym-through.tar.gz", TGZ, through, 3, NULL, "refusing entry 'pkg/l/f': its parent 'pkg/l' is a symlink");
	const struct ent zipsym[] = {{.path = "w/l", .type = AE_IFLNK, .link = "/etc/passwd"}};
	expect_refused("sym.zip", ZIP, zipsym, 1, NULL, "absolute target");

	const struct ent hard_abs[] = {{.path = "pkg/h", .hard = "/etc/passwd"}};
	expect_refused("hard-abs.tar.gz", TGZ, hard_abs, 1, NULL, "refusing hard link 'pkg/h' -> '/etc/passwd'");
	const struct ent hard_up[] = {{.path = "pkg/h", .hard = "../../etc/passwd"}};
	expect_refused("hard-up.tar.gz", TGZ, hard_up, 1, NULL, "refusing hard link 'pkg/h' -> '../../etc/passwd'");
	const struct ent hard_missing[] = {{.path = "pkg/f", .data = "x"}, {.path = "pkg/h", .hard = "pkg/nope"}};
	expect_refused("hard-missing.tar.gz", TGZ, hard_missing, 2, NULL,
		       "refusing hard link 'pkg/h' -> 'pkg/nope': target is not a regular file of this archive");
	const struct ent hard_early[] = {{.path = "pkg/h", .hard = "pkg/f"}, {.path = "pkg/f", .data = "x"}};
	expect_refused("hard-early.tar.gz", TGZ, hard_early, 2, NULL,
		       "refusing hard link 'pkg/h' -> 'pkg/f': target is not a regular file of this archive "
		       "(written before the link)");
	const struct ent hard_dir[] = {{.path = "pkg/d/", .type = AE_IFDIR}, {.path = "pkg/h", .hard = "pkg/d"}};
	expect_refused("hard-dir.tar.gz", TGZ, hard_dir, 2, NULL, "target is not a regular file of this archive");
}

static void test_hostile_types(void **state)
{
	(void)state;
	const struct ent chr[] = {{.path = "pkg/ok", .data = "x"}, {.path = "pkg/null", .type = AE_IFCHR}};
	expect_refused("chr.tar.gz", TGZ, chr, 2, NULL, "refusing entry 'pkg/null': it is a character device");
	const struct ent fifo[] = {{.path = "pkg/fifo", .type = AE_IFIFO}};
	expect_refused("fifo.tar.gz", TGZ, fifo, 1, NULL, "refusing entry 'pkg/fifo': it is a FIFO");
}

static void test_bombs(void **state)
{
	(void)state;
	/* 256 MiB of zeros gzip to ~256 KiB: refused by the default expansion ratio */
	const struct ent bomb[] = {{.path = "pkg/zeros", .zeros = 256u << 20}};
	expect_refused("bomb.tar.gz", TGZ, bomb, 1, NULL,
		       "refusing entry 'pkg/zeros': archive expands more than 200 times its size (decompression bomb?)");
	/* an explicit byte cap */
	const struct ent big[] = {{.path = "pkg/a", .zeros = 1u << 20}, {.path = "pkg/b", .zeros = 1u << 20}};
	struct arch_opts o = {.max_bytes = 1536u << 10};
	expect_refused("big.tar.gz", TGZ, big, 2, &o, "refusing entry 'pkg/b': archive expands to more than 1572864 bytes");
	/* too many entries */
	struct ent many[50];
	char names[50][32];
	for (int i = 0; i < 50; i++) {
		snprintf(names[i], sizeof names[i], "pkg/f%d", i);
		many[i] = (struct ent){.path = names[i], .data = "x"};
	}
	struct arch_opts o2 = {.max_entries = 10};
	expect_refused("many.tar.gz", TGZ, many, 50, &o2, "more than 10 entries");
	/* the same archive is fine with the default limit */
	char path[256];
	snprintf(path, sizeof path, "%s/many.tar.gz", arch_dir);
	struct pyti_err err = {0};
	assert_int_equal(arch_unpack(path, dest, NULL, &err), 0);
	assert_int_equal(count_dir(dest), 1);
	assert_int_equal(rm_rf(dest, &err), 0);
}

static void test_strip_top(void **state)
{
	(void)state;
	struct arch_opts o = {.strip_top = true};
	const struct ent two[] = {{.path = "a/x", .data = "1"}, {.path = "b/y", .data = "2"}};
	expect_refused("two-tops.tar.gz", TGZ, two, 2, &o, "more than one top-level directory ('a' and 'b')");
	const struct ent loose[] = {{.path = "a/x", .data = "1"}, {.path = "setup.py", .data = "2"}};
	expect_refused("loose.tar.gz", TGZ, loose, 2, &o, "'setup.py' is not under a single top-level directory");
	/* "./" prefixes are not a top-level directory of their own */
	const struct ent dotted[] = {{.path = "./", .type = AE_IFDIR}, {.path = "./p-1/m.py", .data = "m"}};
	char path[256];
	snprintf(path, sizeof path, "%s/dotted.tar.gz", arch_dir);
	make_archive(path, TGZ, dotted, 2);
	struct pyti_err err = {0};
	if (arch_unpack(path, dest, &o, &err) < 0)
		fail_msg("%s", err.msg);
	char p[512];
	snprintf(p, sizeof p, "%s/m.py", dest);
	assert_true(path_exists(p));
	assert_int_equal(rm_rf(dest, &err), 0);
}

static void test_existing_symlink_in_dest(void **state)
{
	(void)state;
	/* dest already holds a symlink pointing outside: writing through it must fail, not escape */
	char outside[256], link[256], path[256];
	snprintf(outside, sizeof outside, "%s/outside", tmp);
	snprintf(link, sizeof link, "%s/pkg", dest);
	struct pyti_err err = {0};
	assert_int_equal(mkdir(outside, 0755), 0);
	assert_int_equal(mkdir(dest, 0755), 0);
	assert_int_equal(symlink(outside, link), 0);
	const struct ent ents[] = {{.path = "pkg/f", .data = "x"}};
	snprintf(path, sizeof path, "%s/through.tar.gz", arch_dir);
	make_archive(path, TGZ, ents, 1);
	assert_int_equal(arch_unpack(path, dest, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "'pkg' is not a directory"));
	assert_int_equal(count_dir(outside), 0);
	/* a symlink where a file goes is replaced, not written through */
	snprintf(link, sizeof link, "%s/f", dest);
	char target[300];
	snprintf(target, sizeof target, "%s/victim", outside);
	assert_int_equal(symlink(target, link), 0);
	const struct ent ents2[] = {{.path = "f", .data = "x"}};
	snprintf(path, sizeof path, "%s/replace.tar.gz", arch_dir);
	make_archive(path, TGZ, ents2, 1);
	assert_int_equal(arch_unpack(path, dest, NULL, &err), 0);
	assert_false(path_exists(target));
	struct stat st;
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(rm_rf(dest, &err), 0);
	assert_int_equal(rm_rf(outside, &err), 0);
}

static void test_not_an_archive(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof path, "%s/junk.tar.gz", arch_dir);
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(path, "not an archive at all", 21, 0644, &err), 0);
	assert_int_equal(arch_unpack(path, dest, NULL, &err), -1);
	assert_false(path_exists(dest));
	struct wheel_meta m;
	assert_int_equal(wheel_read_meta(path, &m, &err), -1);
	assert_int_equal(sdist_read_meta(path, &m, &err), -1);
	snprintf(path, sizeof path, "%s/missing.tar.gz", arch_dir);
	assert_int_equal(arch_unpack(path, dest, NULL, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
}

static const char metadata[] = "Metadata-Version: 2.1\n"
			       "Name: Demo_Pkg\n"
			       "Version: 1.0.post1\n"
			       "Summary: a demo\n"
			       "Provides-Extra: test\n"
			       "Requires-Dist: pytest ; extra == 'test'\n"
			       "Provides-Extra: socks\n"
			       "Provides-Extra: test\n"
			       "\n"
			       "Provides-Extra: not-a-header-body-text\n";

static const char record[] = "demo_pkg/__init__.py,sha256=abc,12\n"
			     "demo_pkg/sub/x.py,sha256=abc,12\n"
			     "demo_mod.py,,\n"
			     "_native.cpython-311-x86_64-linux-gnu.so,,\n"
			     "demo_pkg-1.0.post1.dist-info/METADATA,,\n"
			     "demo_pkg-1.0.post1.dist-info/RECORD,,\n"
			     "demo_pkg-1.0.post1.data/purelib/extra_pkg/__init__.py,,\n"
			     "demo_pkg-1.0.post1.data/scripts/tool,,\n"
			     "__pycache__/x.cpython-311.pyc,,\n"
			     "not-ident/x.py,,\n"
			     "setup.py,,\n"
			     "\"quoted,pkg/__init__.py\",,\n"
			     "\"q_pkg/a,b.py\",,\n"
			     "README.txt,,\n";

static void test_wheel_meta(void **state)
{
	(void)state;
	char path[256];
	struct pyti_err err = {0};
	struct wheel_meta m;

	/* without top_level.txt: modules from RECORD */
	const struct ent wheel[] = {
		{.path = "demo_pkg/__init__.py", .data = "\n"},
		{.path = "demo_mod.py", .data = "\n"},
		{.path = "demo_pkg-1.0.post1.dist-info/METADATA", .data = metadata},
		{.path = "demo_pkg-1.0.post1.dist-info/RECORD", .data = record},
		{.path = "demo_pkg-1.0.post1.dist-info/WHEEL", .data = "Wheel-Version: 1.0\n"},
	};
	snprintf(path, sizeof path, "%s/demo_pkg-1.0.post1-py3-none-any.whl", arch_dir);
	make_archive(path, ZIP, wheel, ARRAY_SIZE(wheel));
	if (wheel_read_meta(path, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(m.name, "Demo_Pkg");
	assert_string_equal(m.version, "1.0.post1");
	assert_int_equal(m.n_extras, 2);
	assert_string_equal(m.extras[0], "test");
	assert_string_equal(m.extras[1], "socks");
	const char *want[] = {"_native", "demo_mod", "demo_pkg", "extra_pkg", "q_pkg"};
	assert_int_equal(m.n_modules, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		assert_string_equal(m.modules[i], want[i]);
	wheel_meta_free(&m);
	wheel_meta_free(NULL);

	/* with top_level.txt: it wins */
	const struct ent wheel2[] = {
		{.path = "demo_pkg-1.0.post1.dist-info/top_level.txt", .data = "zeta\nalpha\n\n  beta  \nbad-name\n"},
		{.path = "demo_pkg-1.0.post1.dist-info/METADATA", .data = metadata},
		{.path = "demo_pkg-1.0.post1.dist-info/RECORD", .data = record},
	};
	snprintf(path, sizeof path, "%s/demo2.whl", arch_dir);
	make_archive(path, ZIP, wheel2, ARRAY_SIZE(wheel2));
	assert_int_equal(wheel_read_meta(path, &m, &err), 0);
	assert_int_equal(m.n_modules, 3);
	assert_string_equal(m.modules[0], "alpha");
	assert_string_equal(m.modules[1], "beta");
	assert_string_equal(m.modules[2], "zeta");
	wheel_meta_free(&m);

	/* without RECORD either: from the zip's own entries */
	const struct ent wheel3[] = {
		{.path = "only/__init__.py", .data = "\n"},
		{.path = "demo-1.0.dist-info/METADATA", .data = "Name: demo\nVersion: 1.0\n"},
	};
	snprintf(path, sizeof path, "%s/demo3.whl", arch_dir);
	make_archive(path, ZIP, wheel3, ARRAY_SIZE(wheel3));
	assert_int_equal(wheel_read_meta(path, &m, &err), 0);
	assert_int_equal(m.n_modules, 1);
	assert_string_equal(m.modules[0], "only");
	assert_int_equal(m.n_extras, 0);
	wheel_meta_free(&m);

	/* broken wheels */
	const struct ent nometa[] = {{.path = "x/__init__.py", .data = "\n"}};
	snprintf(path, sizeof path, "%s/nometa.whl", arch_dir);
	make_archive(path, ZIP, nometa, 1);
	assert_int_equal(wheel_read_meta(path, &m, &err), -1);
	assert_non_null(strstr(err.msg, "not a wheel: no *.dist-info/METADATA"));
	const struct ent two[] = {{.path = "a-1.dist-info/METADATA", .data = "Name: a\nVersion: 1\n"},
				  {.path = "b-1.dist-info/METADATA", .data = "Name: b\nVersion: 1\n"}};
	snprintf(path, sizeof path, "%s/two.whl", arch_dir);
	make_archive(path, ZIP, two, 2);
	assert_int_equal(wheel_read_meta(path, &m, &err), -1);
	assert_non_null(strstr(err.msg, "more than one .dist-info directory"));
	const struct ent noversion[] = {{.path = "a-1.dist-info/METADATA", .data = "Name: a\n"}};
	snprintf(path, sizeof path, "%s/nover.whl", arch_dir);
	make_archive(path, ZIP, noversion, 1);
	assert_int_equal(wheel_read_meta(path, &m, &err), -1);
	assert_non_null(strstr(err.msg, "METADATA has no Version"));
}

static void test_names(void **state)
{
	(void)state;
	_cleanup_free_ char *a = pep503_name("Foo__Bar.baz", strlen("Foo__Bar.baz"));
	assert_string_equal(a, "foo-bar-baz");
	_cleanup_free_ char *b = pep503_name("zope.interface", strlen("zope.interface"));
	assert_string_equal(b, "zope-interface");
	_cleanup_free_ char *c = pep503_name("A-_.-B", strlen("A-_.-B"));
	assert_string_equal(c, "a-b");
	assert_true(arch_is_identifier("_x1"));
	assert_false(arch_is_identifier("1x"));
	assert_false(arch_is_identifier("a-b"));
	assert_false(arch_is_identifier(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_sdist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_formats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bombs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strip_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_existing_symlink_in_dest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_an_archive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wheel_meta, setup, teardown),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
