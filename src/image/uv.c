/* image: put uv (a fast installer, from PyPI) into the image's /usr/local/bin, so that the default
 * recipe's install task can use it instead of pip (issue 10, point 8: bench/install measures both).
 *
 * The host's pip downloads the wheel, as configured by the user (pip.conf, PIP_*: the index is
 * theirs), binary only and without dependencies, so that nothing of the package runs on the host:
 * uv is a static executable that runs only inside the sandboxes. The wheel is a zip read with
 * libarchive; only its one member `uv-VERSION.data/scripts/uv` is written, through a descriptor of
 * the destination directory, never following a link, at most UV_MAX bytes.
 *
 * uv is an optimisation: when it cannot be downloaded (no index, an index without it) the image is
 * built without it, the manifest says `"uv": null` and the install task uses pip. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "proc.h"

#define UV_MAX (256u << 20)
#define UV_DOWNLOAD_TIMEOUT_S 600.0

/* "uv-0.13.9-py3-none-manylinux….whl" -> "0.13.9"; NULL when the name is not a uv wheel. */
char *image_uv_wheel_version(const char *name)
{
	if (strncmp(name, "uv-", 3) != 0 || !str_has_suffix(name, ".whl"))
		return NULL;
	const char *v = name + 3, *e = strchr(v, '-');
	if (!e || e == v || e - v > 32)
		return NULL;
	for (const char *p = v; p < e; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.' || (*p >= 'a' && *p <= 'z')))
			return NULL;
	return xasprintf("%.*s", (int)(e - v), v);
}

static int pip_download(const char *dest, const char *log, struct pyti_err *err)
{
	char *argv[] = {"python3", "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-q",
			"--only-binary=:all:", "--no-deps", "-d", (char *)dest, "uv", NULL};
	struct proc_spec spec = {
		.argv = argv,
		.lim = {.timeout_s = UV_DOWNLOAD_TIMEOUT_S, .output_limit = 1u << 20},
		.log_path = log,
		.keep_tail = 2048,
	};
	struct proc_result res = {0};
	if (proc_run(&spec, &res, err) < 0)
		return -1;
	int r = 0;
	if (res.exit_code != 0 || res.signal)
		r = pyti_err_set(err, 0, "pip download uv failed (exit %d): %s", res.exit_code,
				 res.output ? res.output : "");
	proc_result_free(&res);
	return r;
}

/* The one uv wheel pip wrote into dir, and its version. */
static char *find_wheel(const char *dir, char **version, struct pyti_err *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d) {
		pyti_err_set(err, errno, "%s", dir);
		return NULL;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		char *v = image_uv_wheel_version(de->d_name);
		if (v) {
			*version = v;
			return xasprintf("%s/%s", dir, de->d_name);
		}
	}
	pyti_err_set(err, ENOENT, "pip download left no uv wheel in %s", dir);
	return NULL;
}

/* The member that is the executable: "uv-<version>.data/scripts/uv". */
static bool is_uv_member(const char *path, const char *version)
{
	_cleanup_free_ char *want = xasprintf("uv-%s.data/scripts/uv", version);
	return strcmp(path, want) == 0;
}

static int copy_member(struct archive *a, int dirfd, struct pyti_err *err)
{
	_cleanup_close_ int fd = openat(dirfd, "uv", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
	if (fd < 0)
		return pyti_err_set(err, errno, "/usr/local/bin/uv");
	size_t total = 0;
	char buf[1 << 16];
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf, sizeof buf);
		if (n == 0)
			break;
		if (n < 0)
			return pyti_err_set(err, 0, "uv wheel: %s", archive_error_string(a));
		total += (size_t)n;
		if (total > UV_MAX)
			return pyti_err_set(err, E2BIG, "uv wheel: the executable is larger than %u bytes", UV_MAX);
		if (write_all(fd, buf, (size_t)n) < 0)
			return pyti_err_set(err, errno, "/usr/local/bin/uv");
	}
	if (fchmod(fd, 0755) < 0)
		return pyti_err_set(err, errno, "/usr/local/bin/uv");
	return 0;
}

int image_uv_extract(const char *wheel, const char *version, const char *bindir, struct pyti_err *err)
{
	_cleanup_close_ int dirfd = open(bindir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return pyti_err_set(err, errno, "%s", bindir);
	struct archive *a = archive_read_new();
	archive_read_support_format_zip(a);
	int r = -1;
	if (archive_read_open_filename(a, wheel, 1 << 16) != ARCHIVE_OK) {
		pyti_err_set(err, 0, "%s: %s", wheel, archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int st;
	while ((st = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *p = archive_entry_pathname(e);
		if (p && archive_entry_filetype(e) == AE_IFREG && is_uv_member(p, version)) {
			r = copy_member(a, dirfd, err);
			goto out;
		}
	}
	if (st != ARCHIVE_EOF)
		pyti_err_set(err, 0, "%s: %s", wheel, archive_error_string(a));
	else
		pyti_err_set(err, ENOENT, "%s has no uv-%s.data/scripts/uv", wheel, version);
out:
	archive_read_free(a);
	return r;
}

int image_add_uv(const char *rootfs, const char *tmp, char **version, struct pyti_err *err)
{
	*version = NULL;
	_cleanup_free_ char *dl = xasprintf("%s/uv-download", tmp);
	_cleanup_free_ char *log = xasprintf("%s/uv-download.log", tmp);
	_cleanup_free_ char *bindir = xasprintf("%s/usr/local/bin", rootfs);
	if (mkdir_p(dl, 0755, err) < 0 || mkdir_p(bindir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *v = NULL;
	_cleanup_free_ char *wheel = NULL;
	if (pip_download(dl, log, err) < 0 || !(wheel = find_wheel(dl, &v, err)) ||
	    image_uv_extract(wheel, v, bindir, err) < 0) {
		struct pyti_err e2 = {0};
		rm_rf(dl, &e2);
		return -1;
	}
	*version = steal_pointer(&v);
	return rm_rf(dl, err);
}
