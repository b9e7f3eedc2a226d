/* vm: the VM artefacts of an image (docs/design.md §3): a tiny initrd and the qcow2 system-disk base.
 *
 * Debian's own initramfs (MODULES=most, 18 MB) took ≈ 7.9 s to a Python prompt under TCG; this one
 * (busybox-static, the handful of modules the cloud kernel lacks for virtio-blk, a 20-line /init)
 * takes ≈ 5 s to the agent's "ready". The agent travels in the initrd, as a second cpio archive
 * appended to the image's agentless one (the kernel unpacks concatenated archives in order), so
 * that a new agent costs a 1 MB append instead of a rebuilt system disk; /init copies it onto the
 * system disk (a throwaway qcow2 overlay, mounted read-write) and switch_roots into it. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <archive.h>
#include <archive_entry.h>

#include "proc.h"
#include "vm-int.h"

/* Modules the system disk needs; their dependencies come from modules.dep. Built-in ones are skipped. */
static const char *const vm_wanted_modules[] = {"virtio_pci", "virtio_blk", "ext4"};

void vm_image_free(struct vm_image *img)
{
	if (!img)
		return;
	free(img->kernel);
	free(img->initrd);
	free(img->base);
	*img = (struct vm_image){0};
}

/* ---- cpio (newc) writing through libarchive ---- */

/* Put a finished artefact under its real name, unless a concurrent pyti got there first: then its
 * (identical) file stays and ours goes, so that the file others already named by its stat
 * signature (vm_image.key, the warm snapshot keys) is not replaced under them. */
static int vm_publish(const char *tmp, const char *out, struct pyti_err *err)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST) {
		unlink(tmp);
		return 0;
	}
	return pyti_err_set(err, errno, "rename %s", tmp);
}

static int vm_ar_err(struct archive *a, const char *what, struct pyti_err *err)
{
	return pyti_err_set(err, archive_errno(a) > 0 ? archive_errno(a) : 0, "initrd: %s: %s", what,
			    archive_error_string(a) ? archive_error_string(a) : "libarchive error");
}

static int vm_ar_node(struct archive *a, const char *name, unsigned mode, const void *data, size_t len,
		      unsigned rdev_major, unsigned rdev_minor, struct pyti_err *err)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, mode);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_mtime(e, 0, 0);
	archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
	if (S_ISCHR(mode))
		archive_entry_set_rdev(e, makedev(rdev_major, rdev_minor));
	archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t)len : 0);
	int r = archive_write_header(a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return vm_ar_err(a, name, err);
	if (S_ISREG(mode) && len && archive_write_data(a, data, len) != (la_ssize_t)len)
		return vm_ar_err(a, name, err);
	return 0;
}

static int vm_ar_file(struct archive *a, const char *name, const char *host_path, unsigned perm,
		      struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(256u << 20);
	if (read_file(host_path, &b, err) < 0)
		return pyti_err_prefix(err, "initrd");
	return vm_ar_node(a, name, S_IFREG | perm, b.data, b.len, 0, 0, err);
}

static struct archive *vm_ar_open(const char *path, struct pyti_err *err)
{
	struct archive *a = archive_write_new();
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK || archive_write_open_filename(a, path) != ARCHIVE_OK) {
		vm_ar_err(a, path, err);
		archive_write_free(a);
		return NULL;
	}
	return a;
}

static int vm_ar_close(struct archive *a, const char *path, struct pyti_err *err)
{
	int r = archive_write_close(a) == ARCHIVE_OK ? 0 : vm_ar_err(a, path, err);
	archive_write_free(a);
	return r;
}

/* ---- kernel modules ---- */

struct vm_mods {
	char *dep;           /* modules.dep content */
	char **load;         /* relative paths, in load order */
	size_t n;
};

/* The modules.dep line of module `name` ("kernel/…/name.ko[.xz]: deps…"), or NULL. */
static const char *vm_dep_line(const char *dep, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	for (const char *p = dep; *p;) {
		const char *e = strchr(p, '\n');
		size_t ll = e ? (size_t)(e - p) : strlen(p);
		const char *colon = memchr(p, ':', ll);
		if (colon) {
			const char *base = colon;
			while (base > p && base[-1] != '/')
				base--;
			/* name.ko, name.ko.xz, …; modules.dep spells dashes as in the file name */
			if ((size_t)(colon - base) >= nl + 3 && memcmp(base, name, nl) == 0 &&
			    memcmp(base + nl, ".ko", 3) == 0) {
				*len = ll;
				return p;
			}
		}
		p = e ? e + 1 : p + ll;
	}
	return NULL;
}

static void vm_mods_add(struct vm_mods *m, const char *path, size_t len, int depth)
{
	if (depth > 16)
		return;
	for (size_t i = 0; i < m->n; i++)
		if (strlen(m->load[i]) == len && memcmp(m->load[i], path, len) == 0)
			return;
	/* Find this module's own line to load its dependencies first. */
	for (const char *p = m->dep; *p;) {
		const char *e = strchr(p, '\n');
		size_t ll = e ? (size_t)(e - p) : strlen(p);
		if (ll > len && memcmp(p, path, len) == 0 && p[len] == ':') {
			/* deps are listed nearest first; load them from the last (most basic) on */
			const char *d = p + len + 1, *end = p + ll;
			const char *toks[64];
			size_t tl[64], nt = 0;
			while (d < end && nt < 64) {
				while (d < end && *d == ' ')
					d++;
				const char *s = d;
				while (d < end && *d != ' ')
					d++;
				if (d > s) {
					toks[nt] = s;
					tl[nt++] = (size_t)(d - s);
				}
			}
			while (nt--)
				vm_mods_add(m, toks[nt], tl[nt], depth + 1);
			break;
		}
		p = e ? e + 1 : p + ll;
	}
	m->load = xrealloc(m->load, (m->n + 1) * sizeof *m->load);
	char *s = xmalloc(len + 1);
	memcpy(s, path, len);
	s[len] = '\0';
	m->load[m->n++] = s;
}

static void vm_mods_free(struct vm_mods *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->load[i]);
	free(m->load);
	free(m->dep);
}

/* ---- the agentless initrd ---- */

static bool vm_elf_static(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr eh;
	if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64)
		return false;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
			return false;
		if (ph.p_type == PT_INTERP)
			return false;
	}
	return true;
}

static const char vm_init_head[] =
	"#!/bin/busybox sh\n"
	"# pyti's tiny initrd: load the virtio block modules, mount the system disk (a throwaway\n"
	"# qcow2 overlay, so read-write), put the agent there and switch_root into it as PID 1.\n"
	"B=/bin/busybox\n"
	"fail() { echo \"@pyti {\\\"event\\\":\\\"error\\\",\\\"message\\\":\\\"initrd: $1\\\"}\" >/dev/console; "
	"$B sync; $B poweroff -f; while :; do $B sleep 60; done; }\n"
	"$B mount -t devtmpfs dev /dev\n"
	"$B mount -t proc proc /proc\n";

static const char vm_init_tail[] =
	"i=0\n"
	"while [ ! -b /dev/vda ]; do i=$((i+1)); [ $i -gt 1000 ] && fail 'no /dev/vda'; $B usleep 10000; done\n"
	"$B mount -t ext4 -o rw,noatime /dev/vda /newroot || fail 'cannot mount /dev/vda'\n"
	"$B mkdir -p /newroot/usr/local/sbin\n"
	"$B cp /pyti-agent /newroot/usr/local/sbin/pyti-agent || fail 'no agent'\n"
	"$B umount /proc\n"
	"$B umount /dev\n"
	"exec $B switch_root /newroot /usr/local/sbin/pyti-agent --vm --console /dev/ttyS0\n";

static int vm_kernel_version(const char *image_dir, const char *rootfs, char **out, struct pyti_err *err)
{
	_cleanup_free_ char *mpath = xasprintf("%s/manifest.json", image_dir);
	_cleanup_json_ json_t *m = path_exists(mpath) ? pj_load_file(mpath, NULL) : NULL;
	const char *kv = m ? pj_str(m, "kernel_version", NULL) : NULL;
	if (kv) {
		*out = xstrdup(kv);
		return 0;
	}
	/* No manifest (a bare rootfs): the one directory under lib/modules. */
	_cleanup_free_ char *md = xasprintf("%s/lib/modules", rootfs);
	DIR *d = opendir(md);
	if (!d)
		return pyti_err_set(err, errno, "no kernel modules in %s", md);
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			free(*out);
			*out = xstrdup(de->d_name);
		}
	closedir(d);
	if (!*out)
		return pyti_err_set(err, 0, "no kernel modules in %s", md);
	return 0;
}

static int vm_build_initrd(const char *image_dir, const char *rootfs, const char *out, struct pyti_err *err)
{
	_cleanup_free_ char *kver = NULL;
	if (vm_kernel_version(image_dir, rootfs, &kver, err) < 0)
		return -1;
	_cleanup_free_ char *moddir = xasprintf("%s/lib/modules/%s", rootfs, kver);
	_cleanup_free_ char *deppath = xasprintf("%s/modules.dep", moddir);
	_cleanup_buf_ struct buf dep = BUF_INIT(64u << 20);
	if (read_file(deppath, &dep, err) < 0)
		return pyti_err_prefix(err, "initrd: kernel %s", kver);
	struct vm_mods mods = {.dep = buf_steal(&dep)};
	for (size_t i = 0; i < ARRAY_SIZE(vm_wanted_modules); i++) {
		size_t len;
		const char *line = vm_dep_line(mods.dep, vm_wanted_modules[i], &len);
		if (line) /* else built into the kernel */
			vm_mods_add(&mods, line, (size_t)(strchr(line, ':') - line), 0);
	}

	const char *bb = NULL;
	static const char *const bbs[] = {"bin/busybox", "usr/bin/busybox"};
	_cleanup_free_ char *cand = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(bbs) && !bb; i++) {
		free(cand);
		cand = xasprintf("%s/%s", rootfs, bbs[i]);
		if (vm_elf_static(cand))
			bb = cand;
	}
	if (!bb && vm_elf_static("/bin/busybox"))
		bb = "/bin/busybox"; /* the host's busybox-static */
	if (!bb) {
		vm_mods_free(&mods);
		return pyti_err_usage(err, "initrd: no static busybox in %s or on the host (install busybox-static)",
				      rootfs);
	}

	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", out, (int)getpid());
	struct archive *a = vm_ar_open(tmp, err);
	int r = a ? 0 : -1;
	static const char *const dirs[] = {"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"};
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(dirs); i++)
		r = vm_ar_node(a, dirs[i], S_IFDIR | 0755, NULL, 0, 0, 0, err);
	if (r == 0) /* the kernel opens it for init's stdin/stdout before /init runs */
		r = vm_ar_node(a, "dev/console", S_IFCHR | 0600, NULL, 0, 5, 1, err);
	if (r == 0)
		r = vm_ar_file(a, "bin/busybox", bb, 0755, err);
	_cleanup_buf_ struct buf init = BUF_INIT(0);
	buf_puts(&init, vm_init_head);
	for (size_t i = 0; r == 0 && i < mods.n; i++) {
		const char *base = strrchr(mods.load[i], '/');
		base = base ? base + 1 : mods.load[i];
		_cleanup_free_ char *src = xasprintf("%s/%s", moddir, mods.load[i]);
		_cleanup_free_ char *dst = xasprintf("lib/modules/%s", base);
		r = vm_ar_file(a, dst, src, 0644, err);
		buf_printf(&init, "$B insmod /lib/modules/%s\n", base);
	}
	buf_puts(&init, vm_init_tail);
	if (r == 0)
		r = vm_ar_node(a, "init", S_IFREG | 0755, init.data, init.len, 0, 0, err);
	vm_mods_free(&mods);
	if (a && vm_ar_close(a, tmp, r == 0 ? err : NULL) < 0)
		r = -1;
	if (r == 0)
		r = vm_publish(tmp, out, err);
	if (r < 0)
		unlink(tmp);
	return r;
}

/* ---- the system disk base ---- */

static long long vm_tree_bytes;
static int vm_tree_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)p;
	(void)flag;
	(void)f;
	vm_tree_bytes += (long long)st->st_blocks * 512 + 4096; /* + an inode's worth */
	return 0;
}

static int vm_build_base(const char *rootfs, const char *out, struct pyti_err *err)
{
	vm_tree_bytes = 0;
	if (nftw(rootfs, vm_tree_cb, 64, FTW_PHYS) < 0)
		return pyti_err_set(err, errno, "measure %s", rootfs);
	/* Room for what the jobs install (venvs, wheels unpacked): sparse, and qcow2 stores only
	 * what is written, so free space costs nothing until used. */
	unsigned long long mib = (unsigned long long)(vm_tree_bytes * 13 / 10) / (1 << 20) + 2048;
	_cleanup_free_ char *raw = xasprintf("%s.ext4.tmp.%d", out, (int)getpid());
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", out, (int)getpid());
	_cleanup_free_ char *size = xasprintf("%lluM", mib);
	char *mkfs[] = {"mke2fs", "-q", "-F", "-t", "ext4", "-L", "pyti-root", "-m", "0", "-d", (char *)rootfs,
			raw, size, NULL};
	char *conv[] = {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, tmp, NULL};
	int r = proc_run_simple(mkfs, NULL, 1800, err);
	if (r == 0)
		r = proc_run_simple(conv, NULL, 1800, err);
	unlink(raw);
	if (r == 0 && chmod(tmp, 0644) < 0)
		r = pyti_err_set(err, errno, "chmod %s", tmp);
	if (r == 0)
		r = vm_publish(tmp, out, err);
	if (r < 0) {
		unlink(tmp);
		return pyti_err_prefix(err, "system disk base %s", out);
	}
	return 0;
}

/* ---- all of it ---- */

static int vm_stat_sig(const char *path, struct buf *b, struct pyti_err *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return pyti_err_set(err, errno, "%s", path);
	buf_printf(b, "%s %lld %lld.%09ld\n", path, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		   st.st_mtim.tv_nsec);
	return 0;
}

/* sha256 of a file, remembered in cache_dir under its stat signature (inode, size, mtime to the
 * nanosecond): every vm job names its initrd by the agent's and the base initrd's contents, and
 * hashing them each time cost more than the standby's whole reset. */
static int vm_sha256_memo(const char *cache_dir, const char *path, char out[65], struct pyti_err *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return pyti_err_set(err, errno, "%s", path);
	_cleanup_free_ char *sig = xasprintf("%s %llu %llu %lld %lld.%09ld", path, (unsigned long long)st.st_dev,
					     (unsigned long long)st.st_ino, (long long)st.st_size,
					     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	char hs[65];
	sha256_hex(sig, strlen(sig), hs);
	hs[16] = '\0';
	_cleanup_free_ char *memo = xasprintf("%s/sha256-%s", cache_dir, hs);
	_cleanup_buf_ struct buf b = BUF_INIT(128);
	if (read_file(memo, &b, NULL) == 0 && b.len == 64) {
		memcpy(out, b.data, 65);
		return 0;
	}
	if (sha256_file(path, out, err) < 0)
		return -1;
	write_file_atomic(memo, out, 64, 0644, NULL); /* a cache: failing to write it costs only time */
	return 0;
}

static int vm_agent_initrd(const char *initrd0, const char *agent_path, const char *out, struct pyti_err *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", out, (int)getpid());
	if (copy_file(initrd0, tmp, 0644, err) < 0)
		return -1;
	/* a second newc archive appended to the first; libarchive writes its own trailer */
	struct archive *a = archive_write_new();
	int fd = open(tmp, O_WRONLY | O_APPEND | O_CLOEXEC);
	int r = fd >= 0 ? 0 : pyti_err_set(err, errno, "open %s", tmp);
	if (r == 0 && (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
		       archive_write_add_filter_none(a) != ARCHIVE_OK ||
		       archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
		       archive_write_open_fd(a, fd) != ARCHIVE_OK))
		r = vm_ar_err(a, tmp, err);
	if (r == 0)
		r = vm_ar_file(a, "pyti-agent", agent_path, 0755, err);
	if (archive_write_close(a) != ARCHIVE_OK && r == 0)
		r = vm_ar_err(a, tmp, err);
	archive_write_free(a);
	if (fd >= 0)
		close(fd);
	if (r == 0)
		r = vm_publish(tmp, out, err);
	if (r < 0)
		unlink(tmp);
	return r;
}

static int vm_image_fill(struct vm_image *img, const char *image_dir, const char *rootfs, const char *agent_path,
			 const char *cache_dir, struct pyti_err *err)
{
	img->kernel = xasprintf("%s/vmlinuz", image_dir);
	if (!path_exists(img->kernel)) {
		_cleanup_free_ char *kv = NULL;
		if (vm_kernel_version(image_dir, rootfs, &kv, err) < 0)
			return -1;
		free(img->kernel);
		img->kernel = xasprintf("%s/boot/vmlinuz-%s", rootfs, kv);
	}
	_cleanup_free_ char *initrd0 = xasprintf("%s/initrd.img", image_dir);
	if (!path_exists(initrd0) && vm_build_initrd(image_dir, rootfs, initrd0, err) < 0)
		return -1;
	img->base = xasprintf("%s/base.qcow2", image_dir);
	if (!path_exists(img->base) && vm_build_base(rootfs, img->base, err) < 0)
		return -1;

	/* initrd + agent, named by both contents */
	char h0[65], ha[65], hk[65];
	if (mkdir_p(cache_dir, 0755, err) < 0 || vm_sha256_memo(cache_dir, initrd0, h0, err) < 0 ||
	    vm_sha256_memo(cache_dir, agent_path, ha, err) < 0)
		return -1;
	_cleanup_free_ char *both = xasprintf("%s %s", h0, ha);
	sha256_hex(both, strlen(both), hk);
	hk[16] = '\0';
	img->initrd = xasprintf("%s/initrd-%s.img", cache_dir, hk);
	if (!path_exists(img->initrd) && vm_agent_initrd(initrd0, agent_path, img->initrd, err) < 0)
		return -1;

	_cleanup_buf_ struct buf sig = BUF_INIT(0);
	if (vm_stat_sig(img->kernel, &sig, err) < 0 || vm_stat_sig(img->initrd, &sig, err) < 0 ||
	    vm_stat_sig(img->base, &sig, err) < 0)
		return -1;
	sha256_hex(sig.data, sig.len, img->key);
	return 0;
}

int vm_image_prepare(const char *image_dir, const char *agent_path, const char *cache_dir, struct vm_image *out,
		     struct pyti_err *err)
{
	*out = (struct vm_image){0};
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", image_dir);
	if (!path_is_dir(rootfs))
		return pyti_err_usage(err, "%s is not an image (no rootfs/): run `pyti image build`", image_dir);
	if (!agent_path || access(agent_path, R_OK) < 0)
		return pyti_err_usage(err, "the guest agent %s is missing (build it, or set PYTI_PYTI_AGENT)",
				      agent_path ? agent_path : "pyti-agent");
	if (vm_image_fill(out, image_dir, rootfs, agent_path, cache_dir, err) < 0) {
		vm_image_free(out);
		return -1;
	}
	return 0;
}
