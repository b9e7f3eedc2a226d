/* The "ns" sandbox backend, the parent's side: check the spec, hand the I/O directory to the
 * sandbox's uid, clone the child (sandbox_ns_child.c, whose header gives the order of its set-up)
 * into fresh namespaces and write its uid/gid maps, start the fetch sandbox's network
 * (sandbox_ns_net.c), watch the agent's streams and exit against the backstop, classify the outcome
 * and take the I/O directory back. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox-ns-int.h"

/* Sandbox uids for root callers are drawn from here, a pair per run (the agent's, even, and the
 * tasks', the next one), so RLIMIT_NPROC and signals never reach across runs or into host users. */
#define NS_UID_BASE 0x50000000u
#define NS_UID_SPAN 0x01000000u

#define NS_LINE_MAX (1u << 20)   /* an event line longer than this is dropped */
#define NS_STDERR_TAIL 4096

static int ns_write_file(const char *path, const char *data, struct pyti_err *err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", path);
	size_t n = strlen(data);
	if (write(fd, data, n) != (ssize_t)n)
		return pyti_err_set(err, errno, "write %s", path);
	return 0;
}

static int ns_write_maps(pid_t pid, uid_t uid, gid_t gid, bool privileged, struct pyti_err *err)
{
	char path[64], map[64];
	if (!privileged) {
		snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
		if (ns_write_file(path, "deny", err) < 0)
			return -1;
	}
	/* Root callers map a second uid, uid + 1, for the tasks (NS_TASK_UID inside): a task then
	 * cannot signal, ptrace or write the files of the agent. Without privilege only the
	 * caller's own uid can be mapped; tasks share the agent's uid there and rely on the agent
	 * being non-dumpable and on having no capabilities. */
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
	if (privileged)
		snprintf(map, sizeof map, "0 %u 1\n%u %u 1\n", (unsigned)uid, NS_TASK_UID, (unsigned)uid + 1);
	else
		snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
	if (ns_write_file(path, map, err) < 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
	if (privileged)
		snprintf(map, sizeof map, "0 %u 1\n%u %u 1\n", (unsigned)gid, NS_TASK_UID, (unsigned)gid + 1);
	else
		snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
	return ns_write_file(path, map, err);
}

/* Hand the I/O directory to the sandbox uid (restore = false) or back to the caller (restore =
 * true), a directory after its contents (tree_walk: no link followed). Files with more than one
 * link are left alone: they are hard links into pyti's shared cache and must stay read-only for
 * the sandbox. On the way back set-id bits are cleared. */
struct ns_chown {
	uid_t from, uid;
	gid_t gid;
	bool restore;
	struct pyti_err *err;
};

#define NS_CHOWN_DEPTH_MAX 256

static int ns_chown_entry(void *arg, const struct tree_entry *e)
{
	const struct ns_chown *h = arg;
	const struct stat *st = e->st;
	/* from + 1: the tasks' uid, when one was mapped (root callers) */
	if (h->restore ? st->st_uid != h->from && st->st_uid != h->from + 1 : (S_ISREG(st->st_mode) && st->st_nlink > 1))
		return 0;
	if (fchownat(e->dirfd, e->name, h->uid, h->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (h->restore && !S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
	    fchmodat(e->dirfd, e->name, st->st_mode & 0777, 0) < 0) /* never hand back a set-id file */
		return pyti_err_set(h->err, errno, "clear the set-id bits of %s", e->name);
	/* /io/out is sticky and world-writable while tasks run (the agent closes it again at the end;
	 * not when it was killed) */
	if (h->restore && S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) &&
	    fchmodat(e->dirfd, e->name, st->st_mode & 0755, 0) < 0)
		return pyti_err_set(h->err, errno, "close the sticky directory %s", e->name);
	return 0;
}

static int ns_chown_pre(void *arg, const struct tree_entry *e)
{
	const struct ns_chown *h = arg;
	if (!S_ISDIR(e->st->st_mode))
		return ns_chown_entry(arg, e);
	if (e->depth >= NS_CHOWN_DEPTH_MAX)
		return pyti_err_set(h->err, 0, "I/O directory nested too deeply");
	return TREE_WALK_NEXT; /* handed over after its contents (ns_chown_entry as post) */
}

static int ns_chown_io(const char *io_dir, uid_t from, uid_t uid, gid_t gid, bool restore,
		       struct pyti_err *err)
{
	_cleanup_close_ int fd = open(io_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", io_dir);
	struct ns_chown h = {from, uid, gid, restore, err};
	if (tree_walk(fd, NS_CHOWN_DEPTH_MAX, ns_chown_pre, ns_chown_entry, &h) < 0)
		return -1;
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		return pyti_err_set(err, errno, "chown %s", io_dir);
	struct stat st;
	if (restore && fstat(fd, &st) == 0 && (st.st_mode & S_ISVTX) && chmod(io_dir, st.st_mode & 0755) < 0)
		return pyti_err_set(err, errno, "chmod %s", io_dir);
	return 0;
}

static long ns_read_long(const char *path)
{
	char b[32] = "";
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, b, sizeof b - 1) <= 0)
		return -1;
	return strtol(b, NULL, 10);
}

/* Name the switch that forbids user namespaces and how to turn it, as far as we can tell. */
static void ns_userns_hint(char *out, size_t n)
{
	if (ns_read_long("/proc/sys/user/max_user_namespaces") == 0)
		snprintf(out, n, "user.max_user_namespaces is 0; enable with `sysctl -w user.max_user_namespaces=10000`");
	else if (geteuid() != 0 && ns_read_long("/proc/sys/kernel/unprivileged_userns_clone") == 0)
		snprintf(out, n, "kernel.unprivileged_userns_clone is 0; enable with "
				 "`sysctl -w kernel.unprivileged_userns_clone=1`");
	else if (geteuid() != 0 && ns_read_long("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1)
		snprintf(out, n, "AppArmor restricts unprivileged user namespaces "
				 "(kernel.apparmor_restrict_unprivileged_userns=1); set it to 0 or give pyti an AppArmor "
				 "profile with `userns,`");
	else
		snprintf(out, n, "probably a seccomp or container policy (running inside a container? allow "
				 "clone/unshare of user namespaces, or use --backend vm)");
}

struct ns_stream {
	int fd;
	struct buf b;
};

static void ns_tail_keep(struct buf *tail, const char *p, size_t n)
{
	if (n >= NS_STDERR_TAIL) {
		buf_reset(tail);
		buf_append(tail, p + n - NS_STDERR_TAIL, NS_STDERR_TAIL);
		return;
	}
	if (tail->len + n > NS_STDERR_TAIL) {
		size_t drop = tail->len + n - NS_STDERR_TAIL;
		memmove(tail->data, tail->data + drop, tail->len - drop);
		tail->len -= drop;
	}
	buf_append(tail, p, n);
}

static uid_t ns_pick_uid(void)
{
	uint32_t r = 0;
	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint32_t)getpid() * 2654435761u ^ (uint32_t)(now_mono() * 1e6);
	return (uid_t)(NS_UID_BASE + (r % (NS_UID_SPAN / 2)) * 2);
}

static void ns_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* What one run holds while the parent watches it. */
struct ns_run {
	const struct sandbox_spec *spec;
	double t0;
	pid_t pid;
	int errfd; /* the child's set-up errors (closed on exec: EOF = the agent runs) */
	struct ns_stream out, eo; /* the agent's stdout (events) and stderr (its last words) */
	struct buf setup_err, tail;
	bool timed_out;
	int status;
};

/* Watch the child's three streams and its exit until all are done, killing it at the backstop. */
static void ns_watch(struct ns_run *r, struct sandbox_result *res)
{
	const struct sandbox_spec *spec = r->spec;
	pid_t pid = r->pid;
	double deadline = spec->timeout_s > 0 ? r->t0 + spec->timeout_s : 0;
	/* The agent may close its stdout/stderr and go on: its exit is watched through a pidfd (or,
	 * without one, by polling), so the backstop holds whatever it does with its streams. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	bool reaped = false;
	while (!reaped || r->errfd >= 0 || r->out.fd >= 0 || r->eo.fd >= 0) {
		struct pollfd pf[4] = {{r->errfd, POLLIN, 0}, {r->out.fd, POLLIN, 0}, {r->eo.fd, POLLIN, 0},
				       {reaped ? -1 : pidfd, POLLIN, 0}};
		int wait_ms = -1;
		if (!reaped && pidfd < 0)
			wait_ms = 50;
		if (deadline && !r->timed_out && !reaped) {
			double left = deadline - now_mono();
			if (left <= 0) {
				r->timed_out = true;
				kill(pid, SIGKILL); /* PID 1 of the pid namespace: takes everything with it */
				continue;
			}
			int ms = (int)(left * 1000) + 1;
			if (wait_ms < 0 || ms < wait_ms)
				wait_ms = ms;
		}
		int n = poll(pf, 4, wait_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kill(pid, SIGKILL); /* cannot watch it any more: stop it */
			break;
		}
		if (!reaped && (pidfd < 0 || pf[3].revents)) {
			pid_t w = waitpid(pid, &r->status, WNOHANG);
			if (w == pid || (w < 0 && errno == ECHILD))
				reaped = true;
		}
		char chunk[65536];
		if (r->errfd >= 0 && pf[0].revents) {
			ssize_t k = read(r->errfd, chunk, sizeof chunk);
			if (k > 0) {
				buf_append(&r->setup_err, chunk, (size_t)k);
			} else if (k == 0 || errno != EINTR) {
				ns_close(&r->errfd);
				if (!r->setup_err.len)
					res->setup_s = now_mono() - r->t0;
			}
		}
		if (r->out.fd >= 0 && pf[1].revents) {
			ssize_t k = read(r->out.fd, chunk, sizeof chunk);
			if (k > 0) {
				sandbox_feed_events(&r->out.b, NS_LINE_MAX, chunk, (size_t)k, false, spec->on_event,
						    spec->arg);
			} else if (k == 0 || errno != EINTR) {
				sandbox_feed_events(&r->out.b, NS_LINE_MAX, "", 0, true, spec->on_event, spec->arg);
				ns_close(&r->out.fd);
			}
		}
		if (r->eo.fd >= 0 && pf[2].revents) {
			ssize_t k = read(r->eo.fd, chunk, sizeof chunk);
			if (k > 0) {
				ns_tail_keep(&r->tail, chunk, (size_t)k);
				if (pyti_log_level >= PYTI_LOG_DEBUG && fwrite(chunk, 1, (size_t)k, stderr) == 0)
					clearerr(stderr);
			} else if (k == 0 || errno != EINTR) {
				ns_close(&r->eo.fd);
			}
		}
	}
	if (!reaped)
		while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
			;
	ns_close(&pidfd);
}

/* The outcome, once the agent is gone: 0 when it exited 0 beside an out/results.json of its own;
 * otherwise -1 with the class (set-up failure, timeout, agent failure or crash). */
static int ns_classify(struct ns_run *r, struct sandbox_result *res, struct pyti_err *err)
{
	const struct sandbox_spec *spec = r->spec;
	int status = r->status;
	struct buf *tail = &r->tail;
	if (r->setup_err.len) {
		pyti_err_set(err, 0, "ns sandbox set-up failed: %s", r->setup_err.data);
		res->fclass = PYTI_FC_INFRA;
		return -1;
	}
	if (r->timed_out) {
		pyti_err_class(err, PYTI_FC_TIMEOUT, "ns sandbox: still running after %.0f s; killed",
			       spec->timeout_s);
		res->fclass = PYTI_FC_TIMEOUT;
		return -1;
	}
	char results[4096];
	snprintf(results, sizeof results, "%s/out/results.json", spec->io_dir);
	struct stat rs;
	bool have = lstat(results, &rs) == 0 && S_ISREG(rs.st_mode);
	if (have && res->agent_status == 0)
		return 0;
	if (tail->len)
		buf_append(tail, "", 1);
	if (have) {
		/* The agent's own status is the verdict's first witness: a results.json beside an agent
		 * that failed is a partial one (or not the agent's at all), never a job's end. */
		pyti_err_class(err, PYTI_FC_INFRA, "ns sandbox: the agent failed (%s %d)%s%s",
			       WIFEXITED(status) ? "status" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			       tail->len ? "; its last words: " : "", tail->len ? tail->data : "");
		res->fclass = PYTI_FC_INFRA;
	} else {
		pyti_err_class(err, PYTI_FC_CRASH,
			       "ns sandbox: the agent exited (%s %d) without writing out/results.json%s%s",
			       WIFEXITED(status) ? "status" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			       tail->len ? "; its last words: " : "", tail->len ? tail->data : "");
		res->fclass = PYTI_FC_CRASH;
	}
	return -1;
}

static int ns_check_spec(const struct sandbox_spec *spec, struct ns_ctx *c, struct pyti_err *err)
{
	if (!spec->image_dir || !spec->io_dir || !spec->agent_path)
		return pyti_err_set(err, 0, "ns sandbox: image_dir, io_dir and agent_path are required");
	snprintf(c->rootfs, sizeof c->rootfs, "%s/rootfs", spec->image_dir);
	if (!path_is_dir(c->rootfs))
		return pyti_err_set(err, 0, "ns sandbox: no image root file system at %s", c->rootfs);
	if (!path_is_dir(spec->io_dir))
		return pyti_err_set(err, 0, "ns sandbox: I/O directory %s does not exist", spec->io_dir);
	if (access(spec->agent_path, X_OK) < 0)
		return pyti_err_set(err, errno, "ns sandbox: agent %s", spec->agent_path);
	return 0;
}

/* After clone: map the child's uids, start its network, let it go. On failure the child is
 * killed and reaped and *sync_w closed. */
static int ns_release_child(const struct sandbox_spec *spec, pid_t pid, uid_t uid, gid_t gid, bool privileged,
			    int *sync_w, struct ns_net *net, struct pyti_err *err)
{
	if (ns_write_maps(pid, uid, gid, privileged, err) < 0)
		pyti_err_prefix(err, "ns sandbox: map uid %u", (unsigned)uid);
	/* The network is up before the agent runs: its first task may need it. */
	else if (spec->network && ns_net_start(pid, spec->net_helper, net, err) < 0)
		pyti_err_prefix(err, "ns sandbox");
	else if (write(*sync_w, "x", 1) != 1)
		pyti_err_set(err, errno, "ns sandbox: start the child");
	else {
		ns_close(sync_w);
		return 0;
	}
	kill(pid, SIGKILL);
	ns_close(sync_w);
	waitpid(pid, NULL, 0);
	return -1;
}

static void ns_warn_no_seccomp(void)
{
	static bool warned;
	if (!ns_seccomp_available() && !warned) {
		log_warn("ns sandbox: no seccomp filter for this architecture yet (x86_64 and aarch64 have one): "
			 "the sandbox rests on its namespaces and dropped capabilities alone");
		warned = true;
	}
}

int sandbox_ns_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	double t0 = now_mono();
	ns_warn_no_seccomp();
	memset(res, 0, sizeof *res);
	res->agent_status = -1;
	struct ns_ctx c = {.spec = spec, .sync_fd = -1, .err_fd = -1, .out_fd = -1, .errout_fd = -1};
	if (ns_check_spec(spec, &c, err) < 0)
		return -1;

	bool privileged = geteuid() == 0;
	uid_t uid = privileged ? ns_pick_uid() : geteuid();
	gid_t gid = privileged ? (gid_t)uid : getegid();
	c.setgroups_allowed = privileged;
	c.task_uid = privileged;
	/* pipes first: nothing below may return before the I/O directory is taken back */
	int pipes[4][2], np = 0;
	for (; np < 4; np++)
		if (pipe2(pipes[np], O_CLOEXEC) < 0) {
			int e = errno;
			while (np-- > 0)
				close(pipes[np][0]), close(pipes[np][1]);
			return pyti_err_set(err, e, "pipe");
		}
	int *syncp = pipes[0], *errp = pipes[1], *outp = pipes[2], *errout = pipes[3];
	if (privileged && ns_chown_io(spec->io_dir, 0, uid, gid, false, err) < 0) {
		ns_chown_io(spec->io_dir, uid, 0, 0, true, NULL); /* what was handed out before it failed */
		for (int i = 0; i < 4; i++)
			close(pipes[i][0]), close(pipes[i][1]);
		return pyti_err_prefix(err, "ns sandbox: hand the I/O directory to the sandbox");
	}
	c.sync_fd = syncp[0];
	c.err_fd = errp[1];
	c.out_fd = outp[1];
	c.errout_fd = errout[1];

	unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
	if (path_exists("/proc/self/ns/cgroup"))
		flags |= CLONE_NEWCGROUP;
	flags |= CLONE_NEWNET; /* a fetch's too: slirp4netns links it to the outside (ns_net_start) */
	fflush(NULL);
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid == 0)
		ns_child(&c);
	int clone_errno = errno;
	close(syncp[0]);
	close(errp[1]);
	close(outp[1]);
	close(errout[1]);
	int sync_w = syncp[1];
	struct ns_run r = {.spec = spec, .t0 = t0, .pid = pid, .errfd = errp[0],
			   .out = {outp[0], BUF_INIT(0)}, .eo = {errout[0], BUF_INIT(0)},
			   .setup_err = BUF_INIT(4096), .tail = BUF_INIT(0)};
	int rc = -1;
	struct ns_net net = {0, -1};

	if (pid < 0) {
		if (clone_errno == EPERM || clone_errno == ENOSPC || clone_errno == EINVAL) {
			char hint[512];
			ns_userns_hint(hint, sizeof hint);
			pyti_err_set(err, clone_errno, "ns sandbox: this host does not let pyti create user namespaces: %s",
				     hint);
		} else
			pyti_err_set(err, clone_errno, "ns sandbox: clone");
	} else if (ns_release_child(spec, pid, uid, gid, privileged, &sync_w, &net, err) == 0) {
		ns_watch(&r, res);
		res->wall_s = now_mono() - t0;
		res->agent_status = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : 128 + WTERMSIG(r.status);
		rc = ns_classify(&r, res, err);
	}

	ns_net_stop(&net);
	if (privileged) {
		struct pyti_err e2 = {0};
		if (ns_chown_io(spec->io_dir, uid, 0, 0, true, &e2) < 0 && rc == 0) {
			*err = e2;
			pyti_err_prefix(err, "ns sandbox: take the I/O directory back");
			rc = -1;
		}
	}
	ns_close(&sync_w);
	ns_close(&r.errfd);
	ns_close(&r.out.fd);
	ns_close(&r.eo.fd);
	buf_free(&r.out.b);
	buf_free(&r.eo.b);
	buf_free(&r.setup_err);
	buf_free(&r.tail);
	return rc;
}
