/* Unit tests for src/image: apt sources parsing, dpkg status, the build/no-op decision, stale
 * build directories, find/list/rm on a hand-made state directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "image.h"

static char *mktemp_dir(void)
{
	char tmpl[] = "/tmp/pyti-test-image-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return xstrdup(d);
}

static void write_text(const char *path, const char *text)
{
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644, &err), 0);
}

static void mkdirs(const char *path)
{
	struct pyti_err err = {0};
	assert_int_equal(mkdir_p(path, 0755, &err), 0);
}

static void rmtree(const char *path)
{
	struct pyti_err err = {0};
	assert_int_equal(rm_rf(path, &err), 0);
}

/* ---- apt sources ---- */

static void test_apt_one_line(void **state)
{
	(void)state;
	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *p = xasprintf("%s/sources.list", d);
	write_text(p, "# a comment\n"
		      "deb-src http://src.example/debian bookworm main\n"
		      "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main contrib # c\n"
		      "   deb http://two.example/debian-security bookworm-security main\n"
		      "deb cdrom:[Debian]/ bookworm main\n"
		      "deb http://three.example/x stable non-free\n"
		      "garbage line\n"
		      "deb http://incomplete.example\n");
	struct image_apt_entry *e = NULL;
	size_t n = 0;
	struct pyti_err err = {0};
	assert_int_equal(image_apt_parse_file(p, &e, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(e[0].uri, "http://one.example/debian"); /* trailing slash dropped */
	assert_int_equal(e[0].n_suites, 1);
	assert_string_equal(e[0].suites[0], "bookworm");
	assert_true(e[0].main);
	assert_string_equal(e[1].uri, "http://two.example/debian-security");
	assert_string_equal(e[1].suites[0], "bookworm-security");
	assert_string_equal(e[2].uri, "cdrom:[Debian]");
	assert_false(e[3].main);
	image_apt_entries_free(e, n);
	rmtree(d);
}

static void test_apt_deb822(void **state)
{
	(void)state;
	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *p = xasprintf("%s/debian.sources", d);
	write_text(p, "Types: deb deb-src\n"
		      "# comment inside a stanza\n"
		      "URIs: http://a.example/debian\n"
		      "Suites: bookworm bookworm-updates\n"
		      "Components: contrib\n"
		      " main\n"
		      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
		      "\n"
		      "Types: deb-src\n"
		      "URIs: http://srconly.example/debian\n"
		      "Suites: trixie\n"
		      "Components: main\n"
		      "\n\n"
		      "types: deb\n"
		      "uris: http://b.example/debian http://c.example/debian\n"
		      "suites: trixie\n"
		      "components: main\n"
		      "\n"
		      "Types: deb\n"
		      "Enabled: no\n"
		      "URIs: http://off.example/debian\n"
		      "Suites: bookworm\n"
		      "Components: main\n");
	struct image_apt_entry *e = NULL;
	size_t n = 0;
	struct pyti_err err = {0};
	assert_int_equal(image_apt_parse_file(p, &e, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(e[0].uri, "http://a.example/debian");
	assert_int_equal(e[0].n_suites, 2);
	assert_string_equal(e[0].suites[1], "bookworm-updates");
	assert_true(e[0].main); /* from the continuation line */
	assert_string_equal(e[1].uri, "http://b.example/debian");
	assert_string_equal(e[2].uri, "http://c.example/debian");
	assert_string_equal(e[2].suites[0], "trixie");
	image_apt_entries_free(e, n);
	rmtree(d);
}

static void test_apt_mirror_pick(void **state)
{
	(void)state;
	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *ld = xasprintf("%s/sources.list.d", d);
	mkdirs(ld);
	_cleanup_free_ char *p1 = xasprintf("%s/10-security.sources", ld);
	_cleanup_free_ char *p2 = xasprintf("%s/20-debian.sources", ld);
	_cleanup_free_ char *p3 = xasprintf("%s/30-other.list", ld);
	_cleanup_free_ char *p4 = xasprintf("%s/40-ignored.list.disabled", ld);
	write_text(p1, "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n"
		       "Components: main\n");
	write_text(p2, "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
		       "Components: main\n");
	write_text(p3, "deb https://thirdparty.example/apt cloud-sdk-bookworm main\n");
	write_text(p4, "deb http://disabled.example/debian trixie main\n");

	struct pyti_err err = {0};
	char *m = NULL;
	assert_int_equal(image_apt_mirror(d, "bookworm", &m, &err), 0);
	assert_string_equal(m, "http://mirror.example/debian");
	free(m);
	/* No trixie entry: the mirror that serves a plain Debian suite serves trixie too. */
	assert_int_equal(image_apt_mirror(d, "trixie", &m, &err), 0);
	assert_string_equal(m, "http://mirror.example/debian");
	free(m);

	/* An exact suite match wins over the fallback, even when listed later. */
	_cleanup_free_ char *main_list = xasprintf("%s/sources.list", d);
	write_text(main_list, "deb http://first.example/debian bullseye main\n");
	_cleanup_free_ char *p5 = xasprintf("%s/50-trixie.list", ld);
	write_text(p5, "deb http://trixie.example/debian trixie main\n");
	assert_int_equal(image_apt_mirror(d, "trixie", &m, &err), 0);
	assert_string_equal(m, "http://trixie.example/debian");
	free(m);
	assert_int_equal(image_apt_mirror(d, "bookworm", &m, &err), 0);
	assert_string_equal(m, "http://mirror.example/debian");
	free(m);
	rmtree(d);

	/* Nothing usable: a usage error that names --mirror. */
	d = (free(d), mktemp_dir());
	_cleanup_free_ char *only = xasprintf("%s/sources.list", d);
	write_text(only, "deb https://thirdparty.example/apt cloud-sdk-bookworm main\n");
	pyti_err_clear(&err);
	m = NULL;
	assert_int_equal(image_apt_mirror(d, "bookworm", &m, &err), -1);
	assert_null(m);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "--mirror"));
	rmtree(d);
}

/* ---- dpkg status ---- */

static const char status_text[] =
	"Package: zlib1g\n"
	"Status: install ok installed\n"
	"Version: 1:1.2.13.dfsg-1\n"
	"Description: compression library\n"
	" continuation line with Package: fake\n"
	"\n"
	"Package: python3\n"
	"Status: install ok installed\n"
	"Priority: optional\n"
	"Source: python3-defaults (3.11.2-1)\n"
	"Version: 3.11.2-1+b1\n"
	"\n"
	"Package: oldconf\n"
	"Status: deinstall ok config-files\n"
	"Version: 1.0\n"
	"\n"
	"Package: apt\n"
	"Status: install ok installed\n"
	"Version: 2.6.1\n";

static void test_dpkg_status(void **state)
{
	(void)state;
	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *p = xasprintf("%s/status", d);
	write_text(p, status_text);
	struct image_pkgs pk;
	struct pyti_err err = {0};
	assert_int_equal(image_dpkg_status(p, &pk, &err), 0);
	assert_int_equal(pk.n, 3);
	assert_string_equal(pk.names[0], "apt=2.6.1");
	assert_string_equal(pk.names[1], "python3=3.11.2-1+b1");
	assert_string_equal(pk.names[2], "zlib1g=1:1.2.13.dfsg-1");
	assert_string_equal(pk.python, "3.11.2");

	char h1[65], h2[65], h3[65];
	image_pkgs_hash(&pk, "bookworm", h1);
	image_pkgs_hash(&pk, "bookworm", h2);
	image_pkgs_hash(&pk, "trixie", h3);
	assert_int_equal(strlen(h1), 64);
	assert_string_equal(h1, h2);
	assert_string_not_equal(h1, h3);
	image_pkgs_free(&pk);
	image_pkgs_free(NULL);

	/* An epoch and no python3 */
	write_text(p, "Package: python3\nStatus: install ok installed\nVersion: 2:3.13.5-1\n\n"
		      "Package: python3-pip\nStatus: install ok installed\nVersion: 23.0.1+dfsg-1\n");
	assert_int_equal(image_dpkg_status(p, &pk, &err), 0);
	assert_string_equal(pk.python, "3.13.5");
	image_pkgs_free(&pk);
	write_text(p, "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n");
	assert_int_equal(image_dpkg_status(p, &pk, &err), 0);
	assert_null(pk.python);
	image_pkgs_free(&pk);

	write_text(p, "\n\n");
	assert_int_equal(image_dpkg_status(p, &pk, &err), -1);
	_cleanup_free_ char *missing = xasprintf("%s/nope", d);
	assert_int_equal(image_dpkg_status(missing, &pk, &err), -1);
	rmtree(d);
}

/* ---- a hand-made state directory ---- */

static void fake_image(const char *state, const char *suite, const char *python)
{
	_cleanup_free_ char *rootfs = xasprintf("%s/images/%s/rootfs/usr/bin", state, suite);
	mkdirs(rootfs);
	_cleanup_free_ char *m = xasprintf("%s/images/%s/manifest.json", state, suite);
	_cleanup_free_ char *j = xasprintf("{\"suite\":\"%s\",\"python\":\"%s\",\"packages\":[\"a=1\",\"b=2\"],"
					   "\"hash\":\"abc\",\"kernel\":\"vmlinuz\",\"created\":"
					   "\"2026-11-23T10:00:00Z\",\"size_bytes\":1234,\"include\":\"%s\",\"uv\":null}",
					   suite, python, image_include_packages());
	write_text(m, j);
}

static void test_up_to_date(void **state)
{
	(void)state;
	_cleanup_free_ char *s = mktemp_dir();
	assert_false(image_up_to_date(s, "bookworm"));

	/* rootfs without manifest: a half image, not up to date */
	_cleanup_free_ char *rootfs = xasprintf("%s/images/bookworm/rootfs", s);
	mkdirs(rootfs);
	assert_false(image_up_to_date(s, "bookworm"));

	fake_image(s, "bookworm", "3.11.2");
	assert_true(image_up_to_date(s, "bookworm"));
	assert_false(image_up_to_date(s, "trixie"));

	/* A second build without force is a no-op: returns 1 before it looks for a mirror or a tool. */
	struct image_build_opts o = {.suite = "bookworm", .mirror = "http://unreachable.invalid/debian"};
	struct pyti_err err = {0};
	assert_int_equal(image_build(s, &o, &err), 1);
	o.suite = NULL; /* default suite is bookworm */
	assert_int_equal(image_build(s, &o, &err), 1);

	/* An image built with an older package list (no "include", or another one) is outdated: not
	 * up to date, so a build without --force rebuilds it, but image_find still hands it out. */
	_cleanup_free_ char *m = xasprintf("%s/images/bookworm/manifest.json", s);
	assert_false(image_outdated(s, "bookworm"));
	assert_false(image_outdated(s, "trixie")); /* none at all is missing, not outdated */
	write_text(m, "{\"suite\":\"bookworm\",\"python\":\"3.11.2\",\"include\":\"python3,python3-pip\"}");
	assert_true(image_outdated(s, "bookworm"));
	assert_false(image_up_to_date(s, "bookworm"));
	write_text(m, "{\"suite\":\"bookworm\",\"python\":\"3.11.2\"}");
	assert_true(image_outdated(s, "bookworm"));
	assert_false(image_up_to_date(s, "bookworm"));
	/* the current list but no "uv" key: from before uv (rebuilt); "uv": null is current (uv could
	 * not be fetched: the install task uses pip) */
	_cleanup_free_ char *no_uv = xasprintf("{\"suite\":\"bookworm\",\"python\":\"3.11.2\",\"include\":\"%s\"}",
					       image_include_packages());
	_cleanup_free_ char *uv_null = xasprintf(
		"{\"suite\":\"bookworm\",\"python\":\"3.11.2\",\"include\":\"%s\",\"uv\":null}", image_include_packages());
	write_text(m, no_uv);
	assert_true(image_outdated(s, "bookworm"));
	write_text(m, uv_null);
	assert_false(image_outdated(s, "bookworm"));
	{
		struct image_info info;
		assert_int_equal(image_find(s, "bookworm", &info, &err), 0);
		image_info_free(&info);
	}
	assert_non_null(strstr(image_include_packages(), "build-essential"));
	assert_non_null(strstr(image_include_packages(), "python3-dev"));
	fake_image(s, "bookworm", "3.11.2");
	assert_true(image_up_to_date(s, "bookworm"));
	/* --profile minimal: an image named bookworm-minimal, whose list is the one without the build
	 * tools; the full list there is another profile's (outdated). An unknown profile is usage. */
	fake_image(s, "bookworm-minimal", "3.11.2");
	assert_true(image_outdated(s, "bookworm-minimal"));
	{
		struct image_build_opts po = {.suite = "bookworm", .profile = "huge"};
		assert_int_equal(image_build(s, &po, &err), -1);
		assert_int_equal(err.status, PYTI_EXIT_USAGE);
		assert_non_null(strstr(err.msg, "profile"));
		pyti_err_clear(&err);
		struct image_info info;
		assert_int_equal(image_find(s, "trixie-minimal", &info, &err), -1);
		assert_non_null(strstr(err.msg, "--profile minimal"));
		pyti_err_clear(&err);
	}

	/* A manifest that names another suite is not this image. */
	write_text(m, "{\"suite\":\"trixie\"}");
	assert_false(image_up_to_date(s, "bookworm"));
	/* Neither is a broken manifest or a missing rootfs. */
	write_text(m, "{not json");
	assert_false(image_up_to_date(s, "bookworm"));
	fake_image(s, "bookworm", "3.11.2");
	rmtree(rootfs);
	assert_false(image_up_to_date(s, "bookworm"));

	/* Suites pyti does not build, and a mirror that is no URL, are usage errors. */
	o.suite = "../etc";
	assert_int_equal(image_build(s, &o, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	pyti_err_clear(&err);
	o.suite = "trixie";
	o.mirror = "not-a-url";
	assert_int_equal(image_build(s, &o, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_true(image_suite_valid("trixie"));
	assert_false(image_suite_valid("jessie"));
	assert_false(image_suite_valid(NULL));
	rmtree(s);
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return pid;
}

static void test_clean_stale(void **state)
{
	(void)state;
	_cleanup_free_ char *s = mktemp_dir();
	struct pyti_err err = {0};
	assert_int_equal(image_clean_stale(s, "bookworm", &err), 0); /* no images dir at all */

	pid_t dead = dead_pid();
	_cleanup_free_ char *stale = xasprintf("%s/images/bookworm.tmp.%d/rootfs/etc", s, (int)dead);
	_cleanup_free_ char *stale_old = xasprintf("%s/images/bookworm.old.%d", s, (int)dead);
	_cleanup_free_ char *live = xasprintf("%s/images/bookworm.tmp.%d", s, (int)getppid());
	_cleanup_free_ char *other = xasprintf("%s/images/trixie.tmp.%d", s, (int)dead);
	_cleanup_free_ char *junk = xasprintf("%s/images/bookworm.tmp.notapid", s);
	mkdirs(stale);
	mkdirs(stale_old);
	mkdirs(live);
	mkdirs(other);
	mkdirs(junk);
	fake_image(s, "bookworm", "3.11.2");

	assert_int_equal(image_clean_stale(s, "bookworm", &err), 2);
	_cleanup_free_ char *stale_top = xasprintf("%s/images/bookworm.tmp.%d", s, (int)dead);
	assert_false(path_exists(stale_top));
	assert_false(path_exists(stale_old));
	assert_true(path_exists(live));  /* its builder is alive */
	assert_true(path_exists(other)); /* another suite's */
	assert_true(path_exists(junk));
	assert_true(image_up_to_date(s, "bookworm")); /* the real image is untouched */
	rmtree(s);
}

static void test_find_list_rm(void **state)
{
	(void)state;
	_cleanup_free_ char *s = mktemp_dir();
	struct pyti_err err = {0};
	struct image_info *list;
	size_t n;
	assert_int_equal(image_list(s, &list, &n, &err), 0); /* no images dir */
	assert_int_equal(n, 0);
	image_list_free(list, n);

	struct image_info info;
	assert_int_equal(image_find(s, "trixie", &info, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "image build --suite trixie"));

	fake_image(s, "trixie", "3.13.5");
	fake_image(s, "bookworm", "3.11.2");
	_cleanup_free_ char *tmp = xasprintf("%s/images/bookworm.tmp.1/rootfs", s);
	mkdirs(tmp);
	_cleanup_free_ char *half = xasprintf("%s/images/half/rootfs", s);
	mkdirs(half);

	pyti_err_clear(&err);
	assert_int_equal(image_find(s, NULL, &info, &err), 0);
	assert_string_equal(info.display, "bookworm (Python 3.11.2)");
	assert_string_equal(info.python, "3.11.2");
	_cleanup_free_ char *want_rootfs = xasprintf("%s/images/bookworm/rootfs", s);
	_cleanup_free_ char *want_kernel = xasprintf("%s/images/bookworm/vmlinuz", s);
	assert_string_equal(info.rootfs, want_rootfs);
	assert_string_equal(info.kernel, want_kernel);
	assert_int_equal(info.n_packages, 2);
	assert_int_equal(info.size_bytes, 1234);
	image_info_free(&info);
	image_info_free(NULL);

	assert_int_equal(image_list(s, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].suite, "bookworm");
	assert_string_equal(list[1].suite, "trixie");
	assert_string_equal(list[1].display, "trixie (Python 3.13.5)");
	image_list_free(list, n);

	assert_int_equal(image_rm(s, "trixie", &err), 0);
	assert_int_equal(image_find(s, "trixie", &info, &err), -1);
	assert_int_equal(image_rm(s, "trixie", &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	pyti_err_clear(&err);
	assert_int_equal(image_rm(s, "../x", &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_int_equal(image_list(s, &list, &n, &err), 0);
	assert_int_equal(n, 1);
	image_list_free(list, n);
	rmtree(s);
}

/* ---- unpacking mmdebstrap's tarball ---- */

static void tar_add(struct archive *a, const char *path, mode_t type, unsigned perm, const char *data,
		    const char *link, bool hard)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_size(e, data ? (la_int64_t)strlen(data) : 0);
	if (link && hard)
		archive_entry_set_hardlink(e, link);
	else if (link)
		archive_entry_set_symlink(e, link);
	if (type == AE_IFCHR)
		archive_entry_set_rdev(e, makedev(1, 3));
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (data)
		assert_int_equal(archive_write_data(a, data, strlen(data)), (la_ssize_t)strlen(data));
	archive_entry_free(e);
}

static char *make_tar(const char *dir, const char *name, bool evil)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	tar_add(a, "./", AE_IFDIR, 0755, NULL, NULL, false);
	tar_add(a, "./usr/", AE_IFDIR, 0755, NULL, NULL, false);
	tar_add(a, "./usr/bin/", AE_IFDIR, 0755, NULL, NULL, false);
	tar_add(a, "./usr/bin/python3.11", AE_IFREG, 04755, "#!elf\n", NULL, false);
	tar_add(a, "./usr/bin/python3", AE_IFLNK, 0777, NULL, "python3.11", false);
	tar_add(a, "./usr/bin/hard", AE_IFREG, 0644, NULL, "./usr/bin/python3.11", true);
	tar_add(a, "./bin", AE_IFLNK, 0777, NULL, "/usr/bin", false); /* absolute target: fine */
	tar_add(a, "./dev/", AE_IFDIR, 0755, NULL, NULL, false);
	tar_add(a, "./dev/null", AE_IFCHR, 0666, NULL, NULL, false);
	tar_add(a, "./proc/", AE_IFDIR, 0555, NULL, NULL, false);
	tar_add(a, "./root/", AE_IFDIR, 0700, NULL, NULL, false);
	if (evil)
		tar_add(a, "./bin/escape", AE_IFREG, 0644, "through a symlink\n", NULL, false);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return path;
}

static void test_unpack_rootfs(void **state)
{
	(void)state;
	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *tar = make_tar(d, "rootfs.tar", false);
	_cleanup_free_ char *dest = xasprintf("%s/rootfs", d);
	struct pyti_err err = {0};
	size_t skipped = 99;
	assert_int_equal(image_unpack_rootfs(tar, dest, &skipped, &err), 0);
	assert_int_equal(skipped, 1); /* /dev/null */

	struct stat st;
	_cleanup_free_ char *py = xasprintf("%s/usr/bin/python3.11", dest);
	assert_int_equal(stat(py, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 6);
	assert_int_equal(st.st_nlink, 2); /* the hard link */
	if (geteuid() != 0)
		assert_int_equal(st.st_mode & 06000, 0);
	_cleanup_free_ char *link = xasprintf("%s/usr/bin/python3", dest);
	char target[64] = {0};
	assert_int_equal(readlink(link, target, sizeof target - 1), 10);
	assert_string_equal(target, "python3.11");
	_cleanup_free_ char *bin = xasprintf("%s/bin", dest);
	assert_int_equal(lstat(bin, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	_cleanup_free_ char *devnull = xasprintf("%s/dev/null", dest);
	assert_false(path_exists(devnull));
	_cleanup_free_ char *proc = xasprintf("%s/proc", dest);
	assert_int_equal(stat(proc, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0555);

	/* An entry that goes through the archive's own absolute symlink (/bin -> /usr/bin) is refused,
	 * and nothing lands on the host. */
	_cleanup_free_ char *evil = make_tar(d, "evil.tar", true);
	_cleanup_free_ char *dest2 = xasprintf("%s/rootfs2", d);
	pyti_err_clear(&err);
	assert_int_equal(image_unpack_rootfs(evil, dest2, NULL, &err), -1);
	assert_false(path_exists("/usr/bin/escape"));

	_cleanup_free_ char *missing = xasprintf("%s/nope.tar", d);
	assert_int_equal(image_unpack_rootfs(missing, dest2, NULL, &err), -1);
	chmod(proc, 0755);
	rmtree(d);
}

/* A zip as pip downloads uv's wheel: the executable under uv-VERSION.data/scripts/, plus members
 * that must not be written (another path, a "../" escape). */
static char *make_uv_wheel(const char *dir, const char *version)
{
	char *path = xasprintf("%s/uv-%s-py3-none-manylinux_2_17_x86_64.whl", dir, version);
	struct archive *a = archive_write_new();
	assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	_cleanup_free_ char *exe = xasprintf("uv-%s.data/scripts/uv", version);
	const char *names[] = {"uv/__init__.py", "../uv", exe};
	const char *bodies[] = {"x = 1\n", "escape\n", "#!/bin/sh\necho uv\n"};
	for (size_t i = 0; i < 3; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, names[i]);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)strlen(bodies[i]));
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		assert_int_equal(archive_write_data(a, bodies[i], strlen(bodies[i])), (la_ssize_t)strlen(bodies[i]));
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	return path;
}

static void test_uv(void **state)
{
	(void)state;
	_cleanup_free_ char *v = image_uv_wheel_version("uv-0.13.9-py3-none-manylinux_2_17_x86_64.whl");
	assert_string_equal(v, "0.13.9");
	assert_null(image_uv_wheel_version("uvicorn-0.30.0-py3-none-any.whl"));
	assert_null(image_uv_wheel_version("uv-0.13.9.tar.gz"));
	assert_null(image_uv_wheel_version("uv-0.1/x-py3-none-any.whl"));
	assert_null(image_uv_wheel_version("uv--py3-none-any.whl"));

	_cleanup_free_ char *d = mktemp_dir();
	_cleanup_free_ char *whl = make_uv_wheel(d, "1.2.3");
	_cleanup_free_ char *bin = xasprintf("%s/bin", d);
	mkdirs(bin);
	struct pyti_err err = {0};
	assert_int_equal(image_uv_extract(whl, "1.2.3", bin, &err), 0);
	_cleanup_free_ char *uv = xasprintf("%s/uv", bin);
	struct stat st;
	assert_int_equal(lstat(uv, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0755);
	assert_int_equal(st.st_size, (off_t)strlen("#!/bin/sh\necho uv\n"));
	_cleanup_free_ char *escape = xasprintf("%s/uv", d);
	assert_false(path_exists(escape)); /* "../uv" was not written */

	/* an existing uv (or a link planted there) is not written through */
	assert_int_equal(image_uv_extract(whl, "1.2.3", bin, &err), -1);
	unlink(uv);
	assert_int_equal(symlink("/tmp/pyti-test-uv-target", uv), 0);
	pyti_err_clear(&err);
	assert_int_equal(image_uv_extract(whl, "1.2.3", bin, &err), -1);
	assert_false(path_exists("/tmp/pyti-test-uv-target"));
	/* the wrong version: no such member */
	unlink(uv);
	pyti_err_clear(&err);
	assert_int_equal(image_uv_extract(whl, "9.9.9", bin, &err), -1);
	assert_false(path_exists(uv));
	rmtree(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apt_one_line),   cmocka_unit_test(test_apt_deb822),
		cmocka_unit_test(test_apt_mirror_pick), cmocka_unit_test(test_dpkg_status),
		cmocka_unit_test(test_up_to_date),     cmocka_unit_test(test_clean_stale),
		cmocka_unit_test(test_find_list_rm),   cmocka_unit_test(test_unpack_rootfs),
		cmocka_unit_test(test_uv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
