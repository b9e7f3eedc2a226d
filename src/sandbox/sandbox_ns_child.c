/* The "ns" sandbox backend, the child's side (sandbox_ns.c is the parent's): the guest agent as PID 1 of its own user, mount, pid, ipc, uts and
 * cgroup namespaces and a network namespace (holding only "lo", or for a fetch also slirp4netns's
 * tap0 to the outside: ns_net_start), on the image's root file system mounted read-only.
 *
 * Order of set-up (the child, after clone):
 *   1. wait until the parent has written uid_map/gid_map;
 *   2. open every host path it will bind (image root, /io, agent, devices, ro_binds) while its
 *      credentials are still the caller's: for root that lets it traverse 0700 state directories
 *      such as /root/.cache, which the unprivileged sandbox uid could not;
 *   3. become uid/gid 0 of the new user namespace (the mapped, unprivileged host uid);
 *   4. make "/" private, mount an empty tmpfs as the new root and pivot_root into it, keeping the
 *      old root at /.old only for as long as the binds below need it;
 *   5. fill the new root: one read-only bind per top-level entry of the image (a bind of the image
 *      root itself would leave no place for /io), tmpfs on /tmp /run /var/tmp /dev/shm, a new
 *      /proc, a minimal /dev of bound host device nodes, /io read-write, the agent read-only;
 *   6. detach the old root, make the root tmpfs read-only, bring "lo" up, drop every capability,
 *      set no_new_privs, exec the agent.
 * Binds use open_tree(OPEN_TREE_CLONE) + mount_setattr + move_mount on the fds from step 2, so no
 * host path is looked up after step 3. Everything lives in the private mount namespace: when the
 * agent (PID 1) exits, the kernel kills what is left in its pid namespace and the mounts vanish. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox-ns-int.h"

#define NS_MAX_RO_BINDS 64
#define NS_NPROC_MAX 4096       /* processes in one sandbox, all told */
/* The fetch sandbox's network: slirp4netns's defaults (10.0.2.0/24, DNS forwarder at .3). */
#define NS_NET_DNS "10.0.2.3"

/* No "tty": the sandbox has no controlling terminal (the agent calls setsid(), so does every
 * task), and a bind of the host's /dev/tty would hand it pyti's. */
static const char *const ns_devices[] = {"null", "zero", "full", "random", "urandom"};

__attribute__((noreturn, format(printf, 3, 4))) static void child_die(const struct ns_ctx *c, int errnum,
								       const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	if (errnum)
		n += snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(errnum));
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	if (write(c->err_fd, msg, (size_t)n) < 0) {
		/* nothing more we can do */
	}
	_exit(127);
}

/* Clone the mount at dirfd/name (or dirfd itself when name is "") and attach it at target. */
static int ns_bind_at(int dirfd, const char *name, const char *target, uint64_t attrs)
{
	unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW;
	if (!*name)
		flags |= AT_EMPTY_PATH;
	int tree = open_tree(dirfd, name, flags);
	if (tree < 0)
		return -1;
	if (attrs) {
		struct mount_attr a = {.attr_set = attrs};
		if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0) {
			int e = errno;
			close(tree);
			errno = e;
			return -1;
		}
	}
	int r = move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
	int e = errno;
	close(tree);
	errno = e;
	return r;
}

#define NS_RO (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)

static void ns_make_file(const struct ns_ctx *c, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno != EEXIST)
		child_die(c, errno, "create mount point %s", path);
	if (fd >= 0)
		close(fd);
}

static void ns_mkdir(const struct ns_ctx *c, const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		child_die(c, errno, "mkdir %s", path);
}

static void ns_tmpfs(const struct ns_ctx *c, const char *path, const char *opts, unsigned long flags)
{
	if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | flags, opts) < 0)
		child_die(c, errno, "mount tmpfs on %s", path);
}

static bool ns_skip(const char *name, const char *const *skip)
{
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return true;
	for (; skip && *skip; skip++)
		if (!strcmp(name, *skip))
			return true;
	return false;
}

/* Recreate the entries of the directory srcfd under dst (a writable tmpfs): directories and files
 * as read-only binds, symlinks as copies; anything else (device nodes, sockets) is left out. */
static void ns_populate(const struct ns_ctx *c, int srcfd, const char *dst, const char *const *skip)
{
	int dfd = openat(srcfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		child_die(c, errno, "open image directory for %s", dst);
	DIR *d = fdopendir(dfd);
	if (!d)
		child_die(c, errno, "fdopendir");
	struct dirent *e;
	char path[4096], link[4096];
	while ((e = readdir(d))) {
		if (ns_skip(e->d_name, skip))
			continue;
		struct stat st;
		if (fstatat(srcfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", strcmp(dst, "/") ? dst : "", e->d_name);
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(srcfd, e->d_name, link, sizeof link - 1);
			if (n < 0)
				continue;
			link[n] = '\0';
			if (symlink(link, path) < 0 && errno != EEXIST)
				child_die(c, errno, "symlink %s", path);
		} else if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
			if (S_ISDIR(st.st_mode))
				ns_mkdir(c, path, 0755);
			else
				ns_make_file(c, path);
			if (ns_bind_at(srcfd, e->d_name, path, NS_RO) < 0)
				child_die(c, errno, "bind image %s", path);
		}
	}
}

/* Make `path` (absolute, inside the new root) exist as a directory or an empty file, so that a
 * host path can be bound there. A missing component under a read-only image directory is made
 * by shadowing that directory: a tmpfs over it holding binds of its original entries. */
static void ns_ensure_target(const struct ns_ctx *c, const char *path, bool dir)
{
	char cur[4096] = "";
	const char *p = path;
	while (*p == '/')
		p++;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		bool last = !slash || !slash[strspn(slash, "/")];
		char parent[4096];
		snprintf(parent, sizeof parent, "%s", *cur ? cur : "/");
		size_t cl = strlen(cur);
		if (cl + 1 + n >= sizeof cur)
			child_die(c, 0, "path too long: %s", path);
		cur[cl] = '/';
		memcpy(cur + cl + 1, p, n);
		cur[cl + 1 + n] = '\0';
		struct stat st;
		if (stat(cur, &st) < 0) {
			for (int attempt = 0;; attempt++) {
				int r;
				if (last && !dir) {
					int fd = open(cur, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
					r = fd < 0 ? -1 : 0;
					if (fd >= 0)
						close(fd);
				} else {
					r = mkdir(cur, 0755);
				}
				if (r == 0 || errno == EEXIST)
					break;
				if (errno != EROFS || attempt > 0)
					child_die(c, errno, "create mount point %s", cur);
				int old = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (old < 0)
					child_die(c, errno, "open %s", parent);
				ns_tmpfs(c, parent, "mode=0755,size=1m", 0);
				ns_populate(c, old, parent, NULL);
				close(old);
			}
		}
		p += n;
		while (*p == '/')
			p++;
	}
}

/* What the agent keeps, within its own user namespace only, to run tasks as another uid and
 * still watch and stop them: become that uid (SETUID, SETGID), hand it the job's directories
 * (CHOWN, FOWNER, DAC_OVERRIDE, DAC_READ_SEARCH), read its /proc/PID/smaps_rollup for the memory
 * limit (SYS_PTRACE), kill it (KILL), and empty the bounding set of each task (SETPCAP). The
 * tasks have none of them (proc_run's drop_privs). */
static const int ns_agent_caps[] = {CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_KILL,
				    CAP_SETGID, CAP_SETUID,       CAP_SETPCAP,         CAP_SYS_PTRACE};

static bool ns_agent_cap(int cap)
{
	for (size_t i = 0; i < ARRAY_SIZE(ns_agent_caps); i++)
		if (ns_agent_caps[i] == cap)
			return true;
	return false;
}

static void ns_drop_caps(const struct ns_ctx *c)
{
	for (int cap = 0; cap <= 63; cap++)
		if (!ns_agent_cap(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			child_die(c, errno, "drop capability %d from the bounding set", cap);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	for (size_t i = 0; i < ARRAY_SIZE(ns_agent_caps); i++) {
		int cap = ns_agent_caps[i];
		data[cap / 32].permitted |= 1u << (cap % 32);
		data[cap / 32].effective |= 1u << (cap % 32);
	}
	/* uid 0 of the namespace execs the agent: with no_new_privs it keeps no more than this. */
	if (syscall(SYS_capset, &hdr, data) < 0)
		child_die(c, errno, "capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_die(c, errno, "no_new_privs");
}

/* A small seccomp filter, as a second wall behind the dropped capabilities: no nested user
 * namespaces (they would hand a task a fresh set of capabilities over the kernel's namespace
 * code), and none of the rarely needed system calls with a long record of kernel bugs (keyrings,
 * BPF, perf, userfaultfd, io_uring, module and kexec loading). They fail with EPERM; clone3
 * fails with ENOSYS so that libc falls back to clone, whose flags the filter can see. Other
 * architectures' entry points (i386, x32) are refused outright. */
#if defined(__x86_64__)
#define NS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef NS_AUDIT_ARCH
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define NS_ARG_LO(n) (offsetof(struct seccomp_data, args[n]) + 4)
#else
#define NS_ARG_LO(n) offsetof(struct seccomp_data, args[n])
#endif
#define NS_DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)

static void ns_seccomp(const struct ns_ctx *c)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NS_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#endif
		NS_DENY(__NR_keyctl), NS_DENY(__NR_add_key), NS_DENY(__NR_request_key),
		NS_DENY(__NR_bpf), NS_DENY(__NR_perf_event_open), NS_DENY(__NR_userfaultfd),
		NS_DENY(__NR_io_uring_setup), NS_DENY(__NR_io_uring_enter), NS_DENY(__NR_io_uring_register),
		NS_DENY(__NR_kexec_load), NS_DENY(__NR_kexec_file_load), NS_DENY(__NR_init_module),
		NS_DENY(__NR_finit_module), NS_DENY(__NR_delete_module), NS_DENY(__NR_open_by_handle_at),
		NS_DENY(__NR_acct), NS_DENY(__NR_swapon), NS_DENY(__NR_swapoff), NS_DENY(__NR_reboot),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* ioctl(fd, TIOCSTI or TIOCLINUX, …): no keystrokes pushed into a terminal's input, on
		 * whatever terminal a descriptor might still reach. The request is an int: compare the
		 * low 32 bits only. */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NS_ARG_LO(1)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* clone(flags, …) and unshare(flags): no CLONE_NEWUSER */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unshare, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = (unsigned short)ARRAY_SIZE(f), .filter = f};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		child_die(c, errno, "install the seccomp filter");
}
#else
static void ns_seccomp(const struct ns_ctx *c)
{
	(void)c; /* no filter written for this architecture yet */
}
#endif

static void ns_lo_up(const struct ns_ctx *c)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		child_die(c, errno, "socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		child_die(c, errno, "get flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		child_die(c, errno, "bring lo up");
	close(s);
}

/* The fetch sandbox's /etc/resolv.conf names slirp4netns's built-in DNS forwarder (it asks the
 * host's resolvers on the sandbox's behalf): the host's own file may name a resolver on the
 * host's loopback, which the sandbox cannot reach. Written on the /run tmpfs, bound read-only. */
static void ns_net_resolv(const struct ns_ctx *c)
{
	static const char text[] = "nameserver " NS_NET_DNS "\n";
	int fd = open("/run/pyti/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
		child_die(c, errno, "write /run/pyti/resolv.conf");
	close(fd);
	ns_ensure_target(c, "/etc/resolv.conf", false);
	int src = open("/run/pyti/resolv.conf", O_PATH | O_CLOEXEC);
	if (src < 0 || ns_bind_at(src, "", "/etc/resolv.conf", NS_RO) < 0)
		child_die(c, errno, "bind /etc/resolv.conf");
	close(src);
}

static int ns_open_path(const struct ns_ctx *c, const char *path, bool must)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0 && must)
		child_die(c, errno, "open %s", path);
	return fd;
}

/* Give the tasks' uid a name: a copy of the image's /etc/passwd (or group) with one more line,
 * made in /run/pyti (the agent's, read-only for tasks) and bound read-only over the original.
 * Test suites ask pwd/getpass who they are (pwd.getpwuid(os.getuid()), `whoami`); without an
 * entry that is a KeyError. An image without the file, or one that names the uid already, is
 * left as it is. */
static void ns_name_task_user(const struct ns_ctx *c, const char *file, const char *line)
{
	char src[64], dst[64];
	snprintf(src, sizeof src, "/etc/%s", file);
	snprintf(dst, sizeof dst, "/run/pyti/%s", file);
	_cleanup_close_ int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return;
	_cleanup_buf_ struct buf b = BUF_INIT(1u << 20);
	if (safe_read_fd(in, src, &b, NULL) < 0)
		return; /* past 1 MiB (or unreadable): not a file to copy */
	char needle[32];
	snprintf(needle, sizeof needle, ":x:%u:", NS_TASK_UID);
	if (!b.data || strstr(b.data, needle))
		return;
	if (b.len && b.data[b.len - 1] != '\n')
		buf_append(&b, "\n", 1);
	buf_append(&b, line, strlen(line));
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0 || write(out, b.data, b.len) != (ssize_t)b.len)
		child_die(c, errno, "write %s", dst);
	if (ns_bind_at(AT_FDCWD, dst, src, NS_RO) < 0)
		child_die(c, errno, "bind %s over %s", dst, src);
}

static bool ns_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

static bool ns_bind_allowed(const char *path)
{
	static const char *const own[] = {"/io", "/proc", "/dev", "/run/pyti", "/sys"};
	if (path[strspn(path, "/")] == '\0' || strstr(path, "/../") || strstr(path, "/./"))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(own); i++)
		if (ns_under(path, own[i]))
			return false;
	return true;
}

/* The host descriptors step 2 opens, for the binds of step 5. */
struct ns_host_fds {
	int root, io, agent;
	int dev[ARRAY_SIZE(ns_devices)];
	const char *ro_path[NS_MAX_RO_BINDS + 2];
	int ro[NS_MAX_RO_BINDS + 2];
	size_t nro;
};

/* 1. Nothing of the host process crosses exec: not its other descriptors (a library's socket, a
 * database), not its signal mask or ignored signals (an ignored SIGPIPE would change how every
 * task's pipelines end). Then wait for the parent's uid_map/gid_map. */
static void ns_child_reset(const struct ns_ctx *c)
{
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	char b;
	if (read(c->sync_fd, &b, 1) != 1)
		_exit(127); /* the parent is gone or failed to map us */
	close(c->sync_fd);
}

/* 2. host paths, while we are still the caller */
static void ns_open_host(const struct ns_ctx *c, struct ns_host_fds *h)
{
	const struct sandbox_spec *s = c->spec;
	h->root = ns_open_path(c, c->rootfs, true);
	h->io = ns_open_path(c, s->io_dir, true);
	h->agent = ns_open_path(c, s->agent_path, true);
	for (size_t i = 0; i < ARRAY_SIZE(ns_devices); i++) {
		char p[64];
		snprintf(p, sizeof p, "/dev/%s", ns_devices[i]);
		h->dev[i] = ns_open_path(c, p, false);
	}
	h->nro = 0;
	if (s->network) {
		/* Not resolv.conf: the sandbox's resolver is slirp4netns's (see ns_net_resolv). */
		int fd = ns_open_path(c, "/etc/hosts", false);
		if (fd >= 0) {
			h->ro_path[h->nro] = "/etc/hosts";
			h->ro[h->nro++] = fd;
		}
	}
	for (size_t i = 0; s->ro_binds && s->ro_binds[i]; i++) {
		if (h->nro >= ARRAY_SIZE(h->ro))
			child_die(c, 0, "too many read-only binds");
		if (s->ro_binds[i][0] != '/')
			child_die(c, 0, "read-only bind %s is not an absolute path", s->ro_binds[i]);
		if (!ns_bind_allowed(s->ro_binds[i]))
			child_die(c, 0, "read-only bind %s would cover the sandbox's own /, /io, /proc, /dev or /run/pyti",
				  s->ro_binds[i]);
		h->ro_path[h->nro] = s->ro_binds[i];
		h->ro[h->nro++] = ns_open_path(c, s->ro_binds[i], true);
	}
}

/* 3. root of the new user namespace = the mapped unprivileged uid */
static void ns_become_root(const struct ns_ctx *c)
{
	if (setresgid(0, 0, 0) < 0)
		child_die(c, errno, "setresgid");
	if (c->setgroups_allowed && setgroups(0, NULL) < 0)
		child_die(c, errno, "setgroups");
	if (setresuid(0, 0, 0) < 0)
		child_die(c, errno, "setresuid");
	/* After the credential change, which resets it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}

/* 4. private mounts, empty root */
static void ns_pivot(const struct ns_ctx *c)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_die(c, errno, "make / private");
	ns_tmpfs(c, "/tmp", "mode=0755,size=1m", 0);
	ns_mkdir(c, "/tmp/.old", 0700);
	if (chdir("/tmp") < 0)
		child_die(c, errno, "chdir");
	if (syscall(SYS_pivot_root, ".", ".old") < 0)
		child_die(c, errno, "pivot_root");
	if (chdir("/") < 0)
		child_die(c, errno, "chdir /");
}

/* 5a. the image, read-only, and the writable places (each tmpfs bounded: see sandbox.h) */
static void ns_fill_image(const struct ns_ctx *c, const struct ns_host_fds *h, const char *tmpfs_opts)
{
	const struct sandbox_spec *s = c->spec;
	char run_opts[64];
	unsigned long long tmpfs_size = s->tmpfs_bytes ? s->tmpfs_bytes : SANDBOX_TMPFS_DEFAULT;
	snprintf(run_opts, sizeof run_opts, "mode=0755,size=%llu", tmpfs_size);
	static const char *const own[] = {"proc", "dev", "sys", "tmp", "run", "io", ".old", NULL};
	ns_populate(c, h->root, "/", own);
	ns_mkdir(c, "/tmp", 01777);
	ns_tmpfs(c, "/tmp", tmpfs_opts, 0);
	ns_mkdir(c, "/tmp/home", 0755);
	ns_mkdir(c, "/run", 0755);
	ns_tmpfs(c, "/run", run_opts, 0);
	ns_mkdir(c, "/run/pyti", 0755);
	ns_make_file(c, "/run/pyti/agent");
	if (ns_bind_at(h->agent, "", "/run/pyti/agent", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) < 0)
		child_die(c, errno, "bind the agent %s", s->agent_path);
	if (c->task_uid) {
		char line[128];
		snprintf(line, sizeof line, "pyti:x:%u:%u:pyti task:/tmp/home:/bin/sh\n", NS_TASK_UID, NS_TASK_UID);
		ns_name_task_user(c, "passwd", line);
		snprintf(line, sizeof line, "pyti:x:%u:\n", NS_TASK_UID);
		ns_name_task_user(c, "group", line);
	}
	struct stat st;
	if (stat("/var/tmp", &st) == 0 && S_ISDIR(st.st_mode))
		ns_tmpfs(c, "/var/tmp", tmpfs_opts, 0);
}

/* 5b. a new /proc and a minimal /dev of bound host device nodes */
static void ns_fill_proc_dev(const struct ns_ctx *c, const struct ns_host_fds *h, const char *tmpfs_opts)
{
	ns_mkdir(c, "/sys", 0755);
	ns_mkdir(c, "/proc", 0555);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		child_die(c, errno, "mount a new /proc (refused when the host's /proc has parts covered, as in "
				    "many containers; run pyti where /proc is not masked, or use --backend vm)");
	ns_mkdir(c, "/dev", 0755);
	ns_tmpfs(c, "/dev", "mode=0755,size=1m", MS_NOEXEC);
	for (size_t i = 0; i < ARRAY_SIZE(ns_devices); i++) {
		if (h->dev[i] < 0)
			continue;
		char p[64];
		snprintf(p, sizeof p, "/dev/%s", ns_devices[i]);
		ns_make_file(c, p);
		if (ns_bind_at(h->dev[i], "", p, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) < 0)
			child_die(c, errno, "bind %s", p);
	}
	static const char *const dev_links[][2] = {
		{"/proc/self/fd", "/dev/fd"},     {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
		if (symlink(dev_links[i][0], dev_links[i][1]) < 0)
			child_die(c, errno, "symlink %s", dev_links[i][1]);
	ns_mkdir(c, "/dev/shm", 01777);
	ns_tmpfs(c, "/dev/shm", tmpfs_opts, 0);
	ns_mkdir(c, "/dev/pts", 0755);
	/* Pseudo-terminals are a nicety (a few test suites open one); go on without them. */
	mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
}

/* 5c. /io read-write, the fetch's resolver, the read-only binds */
static void ns_fill_binds(const struct ns_ctx *c, const struct ns_host_fds *h)
{
	const struct sandbox_spec *s = c->spec;
	ns_mkdir(c, "/io", 0755);
	if (ns_bind_at(h->io, "", "/io", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) < 0)
		child_die(c, errno, "bind %s at /io", s->io_dir);
	if (s->network)
		ns_net_resolv(c);
	for (size_t i = 0; i < h->nro; i++) {
		struct stat hs;
		if (fstat(h->ro[i], &hs) < 0)
			child_die(c, errno, "stat %s", h->ro_path[i]);
		ns_ensure_target(c, h->ro_path[i], S_ISDIR(hs.st_mode));
		if (ns_bind_at(h->ro[i], "", h->ro_path[i], NS_RO) < 0)
			child_die(c, errno, "bind %s read-only", h->ro_path[i]);
	}
}

/* 6. seal: detach the old root, read-only root, lo up, the agent's streams and limits */
static void ns_seal(const struct ns_ctx *c)
{
	if (umount2("/.old", MNT_DETACH) < 0)
		child_die(c, errno, "detach the host root");
	rmdir("/.old");
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	if (mount_setattr(AT_FDCWD, "/", 0, &ro, sizeof ro) < 0)
		child_die(c, errno, "make / read-only");
	ns_lo_up(c);
	if (sethostname("pyti", 4) < 0) /* else the sandbox would show the host's name */
		child_die(c, errno, "set the host name");
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		child_die(c, errno, "open /dev/null");
	if (dup2(null, 0) < 0 || dup2(c->out_fd, 1) < 0 || dup2(c->errout_fd, 2) < 0)
		child_die(c, errno, "dup2");
	/* A sandbox-wide cap on processes, behind the agent's own per-task limit: the sandbox uid
	 * is this run's alone (a per-run uid for root callers; for others the count is kept per
	 * user namespace), so a fork bomb stops here and not at the host's limits. */
	struct rlimit nproc = {NS_NPROC_MAX, NS_NPROC_MAX};
	setrlimit(RLIMIT_NPROC, &nproc);
	/* A session of its own: no controlling terminal for the agent and anything it starts. */
	if (setsid() < 0)
		child_die(c, errno, "setsid");
	ns_drop_caps(c);
	ns_seccomp(c);
}

void ns_child(const struct ns_ctx *c)
{
	struct ns_host_fds h;
	ns_child_reset(c);
	ns_open_host(c, &h);
	ns_become_root(c);
	ns_pivot(c);
	char tmpfs_opts[64];
	snprintf(tmpfs_opts, sizeof tmpfs_opts, "mode=1777,size=%llu",
		 c->spec->tmpfs_bytes ? (unsigned long long)c->spec->tmpfs_bytes : SANDBOX_TMPFS_DEFAULT);
	ns_fill_image(c, &h, tmpfs_opts);
	ns_fill_proc_dev(c, &h, tmpfs_opts);
	ns_fill_binds(c, &h);
	ns_seal(c);
	char task_uid[16];
	snprintf(task_uid, sizeof task_uid, "%u", (unsigned)NS_TASK_UID);
	char *const argv[] = {"/run/pyti/agent", "--io", "/io", "--confine", c->task_uid ? "--task-uid" : NULL,
			      task_uid, NULL};
	char *const envp[] = {"PATH=" SANDBOX_ENV_PATH, "HOME=" SANDBOX_ENV_HOME, "LANG=" SANDBOX_ENV_LANG,
			      "TMPDIR=/tmp", NULL};
	execve(argv[0], argv, envp);
	child_die(c, errno, "exec the agent");
}

bool ns_seccomp_available(void)
{
#ifdef NS_AUDIT_ARCH
	return true;
#else
	return false;
#endif
}
