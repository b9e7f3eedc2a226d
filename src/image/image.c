/* image: build, find, list and remove guest images under <state>/images/.
 *
 * Layout (docs/contracts.md): images/<suite>/{rootfs/, vmlinuz, manifest.json, build.log}; the vm
 * module adds initrd.img and base.qcow2 beside them. A build happens in images/<suite>.tmp.<pid>/
 * and is renamed into place only when complete; manifest.json is written last inside it, so
 * "manifest present" means "complete". One build per suite at a time (flock on images/.<suite>.lock).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "image.h"
#include "proc.h"

#define DEFAULT_SUITE "bookworm"
/* Everything the sandboxes need from the guest. busybox-static is there for the vm module's tiny
 * initrd (docs/design.md §3), so that the initrd matches the guest rather than the host. The build
 * tools are what sdist builds (C extensions: gcc, the Python headers, pkg-config, libffi) and
 * common test suites (git, a pager, gettext's msgfmt, locales) need, so that a C extension really
 * builds instead of falling back to pure Python without a word (issue 10, point 5). */
#define INCLUDE_MINIMAL "python3,python3-pip,python3-venv,python3-pytest,linux-image-cloud-amd64,busybox-static"
#define INCLUDE_PKGS INCLUDE_MINIMAL ",build-essential,python3-dev,git,less,gettext,locales,pkg-config,libffi-dev"
/* `--profile minimal` images (without the build tools: 321 against 733 MiB here) are named
 * <suite>-minimal, so that `pyti run --suite bookworm-minimal` picks one. */
#define MINIMAL_SUFFIX "-minimal"
#define BOOTSTRAP_TIMEOUT_S 3600.0
#define MMDEBSTRAP_MERGED_USR_HOOK "/usr/share/mmdebstrap/hooks/maybe-merged-usr"

void image_info_free(struct image_info *info)
{
	if (!info)
		return;
	free(info->suite);
	free(info->dir);
	free(info->rootfs);
	free(info->kernel);
	free(info->manifest);
	free(info->python);
	free(info->display);
	free(info->hash);
	free(info->created);
	*info = (struct image_info){0};
}

void image_list_free(struct image_info *list, size_t n)
{
	for (size_t i = 0; i < n && list; i++)
		image_info_free(&list[i]);
	free(list);
}

static char *images_dir(const char *state_dir)
{
	return xasprintf("%s/images", state_dir);
}

/* ---- reading an image ---- */

static int info_load(const char *state_dir, const char *suite, struct image_info *out, struct pyti_err *err)
{
	*out = (struct image_info){0};
	out->suite = xstrdup(suite);
	/* Absolute paths: the sandbox and vm modules hand them to mounts and to libvirt. */
	_cleanup_free_ char *rel = xasprintf("%s/images/%s", state_dir, suite);
	out->dir = realpath(rel, NULL);
	if (!out->dir) {
		int e = errno;
		image_info_free(out);
		return pyti_err_set(err, e, "%s", rel);
	}
	out->rootfs = xasprintf("%s/rootfs", out->dir);
	out->manifest = xasprintf("%s/manifest.json", out->dir);
	_cleanup_json_ json_t *m = pj_load_file(out->manifest, err);
	if (!m) {
		image_info_free(out);
		return -1;
	}
	if (strcmp(pj_str(m, "suite", ""), suite) != 0) {
		pyti_err_set(err, 0, "%s: suite is not '%s'", out->manifest, suite);
		image_info_free(out);
		return -1;
	}
	out->kernel = xasprintf("%s/%s", out->dir, pj_str(m, "kernel", "vmlinuz"));
	out->python = xstrdup(pj_str(m, "python", "?"));
	out->display = xasprintf("%s (Python %s)", suite, out->python);
	out->hash = xstrdup(pj_str(m, "hash", ""));
	out->created = xstrdup(pj_str(m, "created", ""));
	out->size_bytes = pj_int(m, "size_bytes", 0);
	json_t *pk = json_object_get(m, "packages");
	out->n_packages = json_is_array(pk) ? json_array_size(pk) : 0;
	return 0;
}

const char *image_include_packages(void) { return INCLUDE_PKGS; }

static bool is_minimal_name(const char *name)
{
	return str_has_suffix(name, MINIMAL_SUFFIX) && strlen(name) > strlen(MINIMAL_SUFFIX);
}

/* What an image lacks that this pyti's recipes expect: its manifest records another package list
 * than its profile's (or none: images from before the list was recorded), e.g. the build tools; or
 * no "uv" key (its version, or null when the build could not get it: images from before uv). */
enum image_lack {
	IMAGE_LACK_NONE,
	IMAGE_LACK_PACKAGES,
	IMAGE_LACK_UV
};

static enum image_lack image_lacks(const char *manifest, bool minimal)
{
	_cleanup_json_ json_t *m = pj_load_file(manifest, NULL);
	if (!m || strcmp(pj_str(m, "include", ""), minimal ? INCLUDE_MINIMAL : INCLUDE_PKGS) != 0)
		return IMAGE_LACK_PACKAGES;
	return json_object_get(m, "uv") ? IMAGE_LACK_NONE : IMAGE_LACK_UV;
}

static enum image_lack lacks_of(const char *state_dir, const char *suite)
{
	_cleanup_free_ char *m = xasprintf("%s/images/%s/manifest.json", state_dir, suite);
	return path_exists(m) ? image_lacks(m, is_minimal_name(suite)) : IMAGE_LACK_NONE;
}

bool image_outdated(const char *state_dir, const char *suite) { return lacks_of(state_dir, suite) != IMAGE_LACK_NONE; }

/* Complete: a manifest and a root file system. */
static bool image_complete(const char *state_dir, const char *suite)
{
	struct image_info info;
	struct pyti_err e = {0};
	if (info_load(state_dir, suite, &info, &e) < 0)
		return false;
	bool ok = path_is_dir(info.rootfs);
	image_info_free(&info);
	return ok;
}

bool image_up_to_date(const char *state_dir, const char *suite)
{
	return image_complete(state_dir, suite) && !image_outdated(state_dir, suite);
}

static bool safe_suite_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

int image_find(const char *state_dir, const char *suite, struct image_info *out, struct pyti_err *err)
{
	if (!suite)
		suite = DEFAULT_SUITE;
	*out = (struct image_info){0};
	if (!safe_suite_name(suite))
		return pyti_err_usage(err, "invalid image suite '%s'", suite);
	/* Missing or half-built: a configuration problem the user fixes with one command (exit 2). */
	if (!image_complete(state_dir, suite)) {
		if (is_minimal_name(suite))
			return pyti_err_usage(err,
					      "no %s image in %s/images: build it with `pyti image build --suite %.*s "
					      "--profile minimal`",
					      suite, state_dir, (int)(strlen(suite) - strlen(MINIMAL_SUFFIX)), suite);
		return pyti_err_usage(err,
				      "no %s image in %s/images: build it with `pyti image build --suite %s`",
				      suite, state_dir, suite);
	}
	/* Usable, but without what this pyti installs into images (the build tools): say so once per
	 * use rather than refuse, so that a dev machine keeps working until it rebuilds. */
	enum image_lack lack = lacks_of(state_dir, suite);
	if (lack != IMAGE_LACK_NONE) {
		bool min = is_minimal_name(suite);
		const char *what = lack == IMAGE_LACK_UV ? " was built before images carried uv (the install task uses pip)"
			: min ? " was built with another package list than this pyti's"
			      : " was built with another package list than this pyti's (without the build tools, C "
				"extensions may not build)";
		log_warn("the %s image in %s/images%s; `pyti image build --suite %.*s%s` rebuilds it", suite, state_dir,
			 what, (int)(strlen(suite) - (min ? strlen(MINIMAL_SUFFIX) : 0)), suite,
			 min ? " --profile minimal" : "");
	}
	return info_load(state_dir, suite, out, err);
}

static int cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct image_info *)a)->suite, ((const struct image_info *)b)->suite);
}

int image_list(const char *state_dir, struct image_info **out, size_t *n, struct pyti_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_free_ char *dir = images_dir(state_dir);
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return pyti_err_set(err, errno, "open %s", dir);
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		/* build and lock names carry a '.', suites never do */
		if (!safe_suite_name(de->d_name))
			continue;
		struct image_info info;
		struct pyti_err e = {0};
		if (info_load(state_dir, de->d_name, &info, &e) < 0)
			continue; /* half-removed or foreign: not an image */
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		(*out)[(*n)++] = info;
	}
	closedir(d);
	if (*n)
		qsort(*out, *n, sizeof **out, cmp_info);
	return 0;
}

/* ---- locking and stale build directories ---- */

static int lock_suite(const char *state_dir, const char *suite, struct pyti_err *err)
{
	_cleanup_free_ char *dir = images_dir(state_dir);
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *p = xasprintf("%s/.%s.lock", dir, suite);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", p);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return pyti_err_usage(err, "another pyti is building or removing the %s image (%s is locked)",
					      suite, p);
		return pyti_err_set(err, e, "lock %s", p);
	}
	return fd;
}

int image_clean_stale(const char *state_dir, const char *suite, struct pyti_err *err)
{
	_cleanup_free_ char *dir = images_dir(state_dir);
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : pyti_err_set(err, errno, "open %s", dir);
	_cleanup_free_ char *prefix = xasprintf("%s.tmp.", suite);
	_cleanup_free_ char *oprefix = xasprintf("%s.old.", suite);
	size_t pl = strlen(prefix), ol = strlen(oprefix);
	int removed = 0, r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *rest;
		if (strncmp(de->d_name, prefix, pl) == 0)
			rest = de->d_name + pl;
		else if (strncmp(de->d_name, oprefix, ol) == 0)
			rest = de->d_name + ol;
		else
			continue;
		char *end;
		errno = 0;
		long pid = strtol(rest, &end, 10);
		if (*end || end == rest || pid <= 0)
			continue;
		/* A live builder still owns its directory (it also holds the lock, but a directory left
		 * by a process that died must not wait for that pid to be reused). */
		if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
		if (rm_rf(p, err) < 0) {
			r = -1;
			break;
		}
		removed++;
	}
	closedir(d);
	return r < 0 ? -1 : removed;
}

int image_rm(const char *state_dir, const char *suite, struct pyti_err *err)
{
	if (!safe_suite_name(suite))
		return pyti_err_usage(err, "invalid image suite '%s'", suite);
	_cleanup_free_ char *dir = xasprintf("%s/images/%s", state_dir, suite);
	if (!path_exists(dir))
		return pyti_err_usage(err, "no %s image in %s/images", suite, state_dir);
	_cleanup_close_ int lock = lock_suite(state_dir, suite, err);
	if (lock < 0)
		return -1;
	/* Rename first so that a crash half-way leaves no half image under the real name. */
	_cleanup_free_ char *gone = xasprintf("%s/images/%s.old.%ld", state_dir, suite, (long)getpid());
	if (rename(dir, gone) < 0)
		return pyti_err_set(err, errno, "rename %s", dir);
	if (rm_rf(gone, err) < 0)
		return -1;
	return image_clean_stale(state_dir, suite, err) < 0 ? -1 : 0;
}

/* ---- building ---- */

struct build {
	const struct image_build_opts *o;
	const char *phase;
	double t0;
};

static void progress(struct build *b, const char *phase, const char *line)
{
	b->phase = phase;
	if (b->o->progress)
		b->o->progress(b->o->arg, phase, line);
}

static void on_line(void *arg, const char *line, size_t n)
{
	struct build *b = arg;
	if (!b->o->progress)
		return;
	char tmp[512];
	if (n >= sizeof tmp)
		n = sizeof tmp - 1;
	memcpy(tmp, line, n);
	tmp[n] = '\0';
	while (n && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r'))
		tmp[--n] = '\0';
	b->o->progress(b->o->arg, b->phase, tmp);
}

static void on_heartbeat(void *arg, double wall_s, uint64_t bytes, const char *tail, size_t tail_len)
{
	(void)wall_s;
	(void)bytes;
	(void)tail;
	(void)tail_len;
	struct build *b = arg;
	if (b->o->progress)
		b->o->progress(b->o->arg, b->phase, NULL);
}

/* Find a program in PATH (plus the sbin directories an ordinary user's PATH often lacks). */
static bool have_program(const char *name)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *all = xasprintf("%s:/usr/sbin:/sbin", path && *path ? path : "/usr/bin:/bin");
	char *save = NULL;
	for (char *d = strtok_r(all, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *p = xasprintf("%s/%s", d, name);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

/* Say what to install before anything starts. */
static int check_tools(struct pyti_err *err)
{
	if (geteuid() == 0) {
		if (!have_program("debootstrap"))
			return pyti_err_usage(err, "debootstrap is not installed: apt-get install debootstrap");
		return 0;
	}
	if (!have_program("mmdebstrap"))
		return pyti_err_usage(err, "building an image as an ordinary user needs mmdebstrap: "
					   "`sudo apt-get install mmdebstrap uidmap` and subordinate ids for "
					   "you in /etc/subuid and /etc/subgid (or run `pyti image build` as "
					   "root, which uses debootstrap)");
	return 0;
}

static int run_bootstrap(struct build *b, const char *suite, bool minimal, const char *mirror, const char *rootfs,
			 const char *tarball, const char *log, struct pyti_err *err)
{
	char *argv[16];
	size_t k = 0;
	bool root = geteuid() == 0;
	if (root) {
		argv[k++] = "debootstrap";
		argv[k++] = "--variant=minbase";
		argv[k++] = minimal ? "--include=" INCLUDE_MINIMAL : "--include=" INCLUDE_PKGS;
	} else {
		argv[k++] = "mmdebstrap";
		argv[k++] = "--mode=unshare";
		argv[k++] = "--variant=minbase";
		argv[k++] = minimal ? "--include=" INCLUDE_MINIMAL : "--include=" INCLUDE_PKGS;
		/* Merged /usr the way debootstrap does it: without this hook apt pulls in usrmerge and
		 * perl (≈ 50 MB) to convert a tree that is already merged. */
		if (path_is_dir(MMDEBSTRAP_MERGED_USR_HOOK))
			argv[k++] = "--hook-dir=" MMDEBSTRAP_MERGED_USR_HOOK;
	}
	argv[k++] = (char *)suite;
	/* As a user, a tarball: a directory from mmdebstrap --mode=unshare would belong to subuids. */
	argv[k++] = (char *)(root ? rootfs : tarball);
	argv[k++] = (char *)mirror;
	argv[k] = NULL;

	/* debootstrap lives in /usr/sbin, which an ordinary PATH may lack. */
	const char *path = getenv("PATH");
	_cleanup_free_ char *pathenv = xasprintf("PATH=%s:/usr/sbin:/sbin", path && *path ? path : "/usr/bin:/bin");
	extern char **environ;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	_cleanup_free_ char **envp = xcalloc(ne + 2, sizeof *envp);
	size_t j = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "PATH=", 5) != 0)
			envp[j++] = environ[i];
	envp[j++] = pathenv;
	envp[j] = NULL;

	struct proc_spec spec = {
		.argv = argv,
		.envp = envp,
		.lim = {.timeout_s = BOOTSTRAP_TIMEOUT_S, .output_limit = 16u << 20},
		.log_path = log,
		.keep_tail = 4096,
		.keep_head = 1024,
		.on_line = on_line,
		.on_heartbeat = on_heartbeat,
		.heartbeat_s = 1.0,
		.arg = b,
	};
	struct proc_result res = {0};
	if (proc_run(&spec, &res, err) < 0)
		return pyti_err_prefix(err, "%s", argv[0]);
	int r = 0;
	if (res.exit_code != 0) {
		/* The tail of the output says what went wrong (a missing package, an unreachable mirror). */
		const char *tail = res.output ? res.output : "";
		size_t tl = strlen(tail);
		if (tl > 1500)
			tail += tl - 1500;
		if (res.signal)
			r = pyti_err_set(err, 0, "%s %s from %s was killed by signal %d%s (log: %s)\n%s", argv[0],
					 suite, mirror, res.signal,
					 res.fclass == PYTI_FC_TIMEOUT ? " (timeout)" : "", log, tail);
		else
			r = pyti_err_set(err, 0, "%s %s from %s failed with exit status %d (log: %s)\n%s", argv[0],
					 suite, mirror, res.exit_code, log, tail);
	}
	proc_result_free(&res);
	return r;
}

/* Paths inside the rootfs that a tested package never needs; measured on bookworm: ≈ 180 MB of
 * 490 MB (apt lists and caches alone ≈ 125 MB). /boot and /usr/lib/modules stay: the vm backend
 * boots vmlinuz and its initrd takes virtio modules from there. */
static const char *const trim_paths[] = {
	"var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info",
	"usr/share/locale", "usr/share/lintian", "usr/share/linda", "var/cache/debconf/templates.dat-old",
	"var/log/bootstrap.log",
};

static int trim_rootfs(const char *rootfs, struct pyti_err *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(trim_paths); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", rootfs, trim_paths[i]);
		struct stat st;
		bool dir = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
		if (rm_rf(p, err) < 0)
			return -1;
		/* apt expects its directories to exist (var/lib/apt/lists/partial); keep them, empty. */
		if (dir && (strncmp(trim_paths[i], "var/", 4) == 0 || strcmp(trim_paths[i], "usr/share/locale") == 0))
			if (mkdir_p(p, 0755, err) < 0)
				return -1;
	}
	_cleanup_free_ char *partial = xasprintf("%s/var/lib/apt/lists/partial", rootfs);
	_cleanup_free_ char *archives = xasprintf("%s/var/cache/apt/archives/partial", rootfs);
	if (mkdir_p(partial, 0755, err) < 0 || mkdir_p(archives, 0755, err) < 0)
		return -1;
	return 0;
}

/* Mount points the ns backend binds over a read-only root: /io (the job), /run/pyti, /tmp. */
static int make_mount_points(const char *rootfs, struct pyti_err *err)
{
	static const struct {
		const char *path;
		unsigned mode;
	} dirs[] = {{"io", 0755}, {"run", 0755}, {"run/pyti", 0755}, {"tmp", 01777}};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", rootfs, dirs[i].path);
		if (mkdir(p, dirs[i].mode) < 0 && errno != EEXIST)
			return pyti_err_set(err, errno, "mkdir %s", p);
		if (chmod(p, dirs[i].mode) < 0)
			return pyti_err_set(err, errno, "chmod %s", p);
	}
	return 0;
}

/* The newest /boot/vmlinuz-* (one kernel is installed; pick by name if there are several). */
static int find_kernel(const char *rootfs, char **out, struct pyti_err *err)
{
	_cleanup_free_ char *boot = xasprintf("%s/boot", rootfs);
	DIR *d = opendir(boot);
	if (!d)
		return pyti_err_set(err, errno, "open %s", boot);
	char *best = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "vmlinuz-", 8) != 0)
			continue;
		if (!best || strverscmp(de->d_name, best) > 0) {
			free(best);
			best = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (!best)
		return pyti_err_set(err, 0, "no kernel (vmlinuz-*) in %s", boot);
	*out = best;
	return 0;
}

/* Files the sandbox reads through a uid that is not root's: everything but secrets must be
 * world-readable (Debian installs /boot/vmlinuz-* as 0600). */
static const char *walk_root;
static size_t walk_root_len;
static long long walk_bytes;
static struct {
	dev_t dev;
	ino_t ino;
} *walk_links;
static size_t walk_nlinks;

static bool secret(const char *rel)
{
	static const char *const s[] = {"etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-",
					"etc/security/opasswd", "etc/ssl/private", "root",
					"var/cache/debconf/passwords.dat"};
	for (size_t i = 0; i < ARRAY_SIZE(s); i++)
		if (strcmp(rel, s[i]) == 0)
			return true;
	return false;
}

static int walk_fix(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)ftw;
	const char *rel = fpath + walk_root_len;
	while (*rel == '/')
		rel++;
	if (type == FTW_F || type == FTW_D) {
		mode_t want = sb->st_mode | S_IROTH | ((type == FTW_D) ? S_IXOTH : 0);
		if (type == FTW_D && rel[0] && secret(rel))
			return FTW_SKIP_SUBTREE;
		if (want != sb->st_mode && !secret(rel))
			chmod(fpath, want & 07777);
	}
	return FTW_CONTINUE;
}

static int walk_size(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)fpath;
	(void)type;
	(void)ftw;
	if (sb->st_nlink > 1 && !S_ISDIR(sb->st_mode)) {
		for (size_t i = 0; i < walk_nlinks; i++)
			if (walk_links[i].dev == sb->st_dev && walk_links[i].ino == sb->st_ino)
				return 0;
		walk_links = xrealloc(walk_links, (walk_nlinks + 1) * sizeof *walk_links);
		walk_links[walk_nlinks].dev = sb->st_dev;
		walk_links[walk_nlinks++].ino = sb->st_ino;
	}
	walk_bytes += (long long)sb->st_blocks * 512;
	return 0;
}

static int make_readable(const char *rootfs, struct pyti_err *err)
{
	walk_root = rootfs;
	walk_root_len = strlen(rootfs);
	if (nftw(rootfs, walk_fix, 64, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL) < 0)
		return pyti_err_set(err, errno, "chmod under %s", rootfs);
	return 0;
}

static int tree_size(const char *dir, long long *out, struct pyti_err *err)
{
	walk_bytes = 0;
	walk_nlinks = 0;
	int r = nftw(dir, walk_size, 64, FTW_PHYS | FTW_MOUNT);
	free(walk_links);
	walk_links = NULL;
	walk_nlinks = 0;
	if (r < 0)
		return pyti_err_set(err, errno, "size of %s", dir);
	*out = walk_bytes;
	return 0;
}

/* When dpkg has no python3 entry (a hand-made root), the interpreter's file name still tells the
 * minor version: usr/bin/python3.N. */
static char *python_from_binary(const char *rootfs)
{
	_cleanup_free_ char *bin = xasprintf("%s/usr/bin", rootfs);
	DIR *d = opendir(bin);
	if (!d)
		return NULL;
	char *best = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (strncmp(n, "python3.", 8) != 0 || !n[8] || strspn(n + 8, "0123456789") != strlen(n + 8))
			continue;
		if (!best || strverscmp(n + 6, best) > 0) {
			free(best);
			best = xstrdup(n + 6);
		}
	}
	closedir(d);
	return best;
}

static int write_manifest(const char *dir, const char *rootfs, const char *suite, bool minimal, const char *mirror,
			  const char *kernel_file, const char *uv, double t0, struct pyti_err *err)
{
	_cleanup_free_ char *status = xasprintf("%s/var/lib/dpkg/status", rootfs);
	struct image_pkgs pk;
	if (image_dpkg_status(status, &pk, err) < 0)
		return -1;
	if (!pk.python)
		pk.python = python_from_binary(rootfs);
	if (!pk.python) {
		image_pkgs_free(&pk);
		return pyti_err_set(err, 0, "no python3 in %s", rootfs);
	}
	char hash[65];
	image_pkgs_hash(&pk, suite, hash);
	long long size = 0;
	if (tree_size(dir, &size, err) < 0) {
		image_pkgs_free(&pk);
		return -1;
	}
	char created[32];
	iso8601_utc(created, now_wall());

	_cleanup_json_ json_t *m = json_object();
	json_t *pkgs = json_array();
	for (size_t i = 0; i < pk.n; i++)
		json_array_append_new(pkgs, json_string(pk.names[i]));
	const char *kver = strncmp(kernel_file, "vmlinuz-", 8) == 0 ? kernel_file + 8 : kernel_file;
	json_object_set_new(m, "suite", json_string(suite));
	json_object_set_new(m, "python", json_string(pk.python));
	json_object_set_new(m, "packages", pkgs);
	json_object_set_new(m, "include", json_string(minimal ? INCLUDE_MINIMAL : INCLUDE_PKGS));
	json_object_set_new(m, "profile", json_string(minimal ? "minimal" : "full"));
	json_object_set_new(m, "uv", uv ? json_string(uv) : json_null());
	json_object_set_new(m, "hash", json_string(hash));
	json_object_set_new(m, "kernel", json_string("vmlinuz"));
	json_object_set_new(m, "kernel_version", json_string(kver));
	json_object_set_new(m, "mirror", json_string(mirror));
	json_object_set_new(m, "created", json_string(created));
	json_object_set_new(m, "size_bytes", json_integer(size));
	json_object_set_new(m, "build_s", json_real((double)(long long)((now_mono() - t0) * 10) / 10));
	image_pkgs_free(&pk);
	_cleanup_free_ char *mpath = xasprintf("%s/manifest.json", dir);
	return pj_dump_file(m, mpath, err);
}

static int build_in(struct build *b, const char *tmp, const char *suite, const char *release, bool minimal,
		    const char *mirror,
		    struct pyti_err *err)
{
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", tmp);
	_cleanup_free_ char *log = xasprintf("%s/build.log", tmp);
	if (mkdir_p(tmp, 0755, err) < 0)
		return -1;
	chmod(tmp, 0755);

	progress(b, "bootstrap", NULL);
	_cleanup_free_ char *tarball = xasprintf("%s/rootfs.tar", tmp);
	if (run_bootstrap(b, release, minimal, mirror, rootfs, tarball, log, err) < 0)
		return -1;
	if (path_exists(tarball)) {
		progress(b, "unpack", NULL);
		size_t skipped = 0;
		if (image_unpack_rootfs(tarball, rootfs, &skipped, err) < 0 || rm_rf(tarball, err) < 0)
			return -1;
		char note[96];
		snprintf(note, sizeof note, "%zu device nodes, FIFOs or sockets skipped", skipped);
		progress(b, "unpack", note);
	}
	chmod(rootfs, 0755);

	/* uv makes the install task ~10x faster (bench/install); without it the task uses pip */
	progress(b, "uv", NULL);
	_cleanup_free_ char *uv = NULL;
	struct pyti_err uverr = {0};
	if (image_add_uv(rootfs, tmp, &uv, &uverr) < 0) {
		_cleanup_free_ char *note = xasprintf("not added (%s); the install task uses pip", pyti_err_str(&uverr));
		progress(b, "uv", note);
	} else {
		progress(b, "uv", uv);
	}

	progress(b, "trim", NULL);
	long long before = 0, after = 0;
	if (tree_size(rootfs, &before, err) < 0 || trim_rootfs(rootfs, err) < 0 ||
	    make_mount_points(rootfs, err) < 0 || make_readable(rootfs, err) < 0 ||
	    tree_size(rootfs, &after, err) < 0)
		return -1;
	char line[128];
	snprintf(line, sizeof line, "root file system %lld MB -> %lld MB", before >> 20, after >> 20);
	progress(b, "trim", line);

	progress(b, "kernel", NULL);
	_cleanup_free_ char *kfile = NULL;
	if (find_kernel(rootfs, &kfile, err) < 0)
		return -1;
	_cleanup_free_ char *ksrc = xasprintf("%s/boot/%s", rootfs, kfile);
	_cleanup_free_ char *kdst = xasprintf("%s/vmlinuz", tmp);
	if (copy_file(ksrc, kdst, 0644, err) < 0)
		return -1;
	progress(b, "kernel", kfile);

	progress(b, "manifest", NULL);
	return write_manifest(tmp, rootfs, suite, minimal, mirror, kfile, uv, b->t0, err);
}

int image_build(const char *state_dir, const struct image_build_opts *o, struct pyti_err *err)
{
	const char *release = o->suite ? o->suite : DEFAULT_SUITE;
	if (!image_suite_valid(release))
		return pyti_err_usage(err, "unknown suite '%s' (pyti builds bookworm or trixie)", release);
	if (o->profile && strcmp(o->profile, "full") != 0 && strcmp(o->profile, "minimal") != 0)
		return pyti_err_usage(err, "unknown profile '%s' (full or minimal)", o->profile);
	bool minimal = o->profile && strcmp(o->profile, "minimal") == 0;
	/* the image's name: its directory, lock and manifest "suite" */
	_cleanup_free_ char *name = minimal ? xasprintf("%s" MINIMAL_SUFFIX, release) : xstrdup(release);
	const char *suite = name;
	if (!o->force && image_up_to_date(state_dir, suite))
		return 1;

	_cleanup_free_ char *mirror = NULL;
	if (o->mirror) {
		if (!strstr(o->mirror, "://"))
			return pyti_err_usage(err, "--mirror '%s' is not a URL", o->mirror);
		mirror = xstrdup(o->mirror);
	} else if (image_apt_mirror("/etc/apt", release, &mirror, err) < 0) {
		return -1;
	}

	if (check_tools(err) < 0)
		return -1;

	_cleanup_close_ int lock = lock_suite(state_dir, suite, err);
	if (lock < 0)
		return -1;
	/* Another build may have completed between the first check and taking the lock. */
	if (!o->force && image_up_to_date(state_dir, suite))
		return 1;
	if (image_clean_stale(state_dir, suite, err) < 0)
		return -1;

	struct build b = {.o = o, .t0 = now_mono()};
	_cleanup_free_ char *tmp = xasprintf("%s/images/%s.tmp.%ld", state_dir, suite, (long)getpid());
	_cleanup_free_ char *dst = xasprintf("%s/images/%s", state_dir, suite);
	if (build_in(&b, tmp, suite, release, minimal, mirror, err) < 0) {
		struct pyti_err e2 = {0};
		rm_rf(tmp, &e2);
		return pyti_err_prefix(err, "build %s image", suite);
	}

	/* Swap in: the old image (if any) goes aside first, so the real name only ever holds a complete
	 * image; the aside copy is removed after. */
	_cleanup_free_ char *old = xasprintf("%s/images/%s.old.%ld", state_dir, suite, (long)getpid());
	bool had_old = path_exists(dst);
	if (had_old && rename(dst, old) < 0)
		return pyti_err_set(err, errno, "rename %s", dst);
	if (rename(tmp, dst) < 0) {
		int e = errno;
		if (had_old)
			rename(old, dst);
		return pyti_err_set(err, e, "rename %s to %s", tmp, dst);
	}
	if (had_old && rm_rf(old, err) < 0)
		return -1;
	return 0;
}
