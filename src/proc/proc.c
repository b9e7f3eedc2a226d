/* proc: the one process runner.
 *
 * How limits are enforced, and why this way (docs/design.md §3):
 *   - wall / no-output timeouts: the poll loop below.
 *   - CPU and file size: setrlimit in the child (SIGXCPU/SIGXFSZ are mapped back to a class).
 *   - memory and process count: a watchdog in the poll loop (every PROC_TICK_S) that walks /proc,
 *     sums the RSS and counts the processes of the task's tree, and kills the tree past the limit.
 *     It works everywhere: this host has no delegated cgroup v2 controllers (and the v1 memory
 *     hierarchy belongs to someone else), host root ignores RLIMIT_NPROC, and RLIMIT_AS measures
 *     address space rather than memory (it turns a big allocation into a MemoryError with no class,
 *     and breaks programs that reserve large mappings), so it is deliberately not used.
 *     The RSS sum overcounts pages shared between forked processes, so when it crosses the limit the
 *     PSS (/proc/<pid>/smaps_rollup) decides. Overshoot is bounded by allocation speed × tick.
 *     What the task put on the tmpfs mounts named in lim.tmpfs_paths (their growth since it
 *     started, by statfs) is memory too: RAM that no process's RSS shows.
 *   - the tree: the child's process group, every process whose ppid chain reaches the child, and,
 *     when this process is a subreaper or PID 1, every descendant of this process (daemons that
 *     setsid() and double-fork are re-parented to us and stay visible).
 *
 * When the main child exits, whatever it left behind is killed: a task is over when its command is.
 * When this process is a subreaper or PID 1, orphans are reaped here and their rusage is folded in;
 * such a process must not run two proc_run() at once (they would reap each other's orphans).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "proc-int.h"

#define PROC_DEFAULT_KEEP (32u * 1024u)
#define PROC_READ_CHUNK (64u * 1024u)
#define PROC_DRAIN_S 2.0 /* after the child exits: how long to wait for EOF from stray writers */

extern char **environ;
struct proc_exec_fail {
	int stage; /* 0 chdir, 1 exec, 2 setsid/dup/setup, 3 dropping privileges */
	int errnum;
};

static void set_rlimit(int res, rlim_t cur, rlim_t max)
{
	struct rlimit rl = {cur, max};
	setrlimit(res, &rl);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static __attribute__((noreturn)) void proc_child(const struct proc_spec *spec, int out_fd,
						   int null_fd, int err_fd, pid_t parent)
{
	struct proc_exec_fail f = {2, 0};
	/* A new session: no controlling terminal (a task's open("/dev/tty") fails, TIOCSTI into
	 * the caller's terminal has no tty to work on) and a process group of its own for killpg.
	 * The parent does not setpgid() us: that would make us a group leader, which setsid()
	 * refuses; it waits for our exec (the error pipe) before it signals the group. */
	if (setsid() < 0)
		goto fail;
	if (spec->drop_privs) {
		f.stage = 3;
		for (int cap = 0; cap <= 63; cap++)
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
				goto fail;
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			goto fail;
		/* Leaving uid 0 clears the permitted and effective sets; the bounding set is
		 * empty, so exec gives nothing back. */
		if (spec->set_ids && (setgroups(0, NULL) < 0 || setresgid(spec->gid, spec->gid, spec->gid) < 0 ||
				      setresuid(spec->uid, spec->uid, spec->uid) < 0))
			goto fail;
		f.stage = 2;
	}
	/* After the credential change, which resets it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL); /* ignored signals would stay ignored across exec */
	if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		goto fail;
	/* Nothing else of ours may leak into the task (the error pipe is already close-on-exec). */
	if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0)
		for (int fd = 3; fd < 4096; fd++)
			if (fd != err_fd)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
	set_rlimit(RLIMIT_CORE, 0, 0);
	const struct proc_limits *lim = &spec->lim;
	if (lim->memory_bytes) {
		/* Should the kernel run out of memory before the watchdog acts, the task goes first. */
		int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)!write(fd, "1000", 4);
			close(fd);
		}
	}
	if (lim->fsize_bytes)
		set_rlimit(RLIMIT_FSIZE, lim->fsize_bytes, lim->fsize_bytes);
	if (lim->cpu_s > 0) {
		rlim_t c = (rlim_t)ceil(lim->cpu_s);
		set_rlimit(RLIMIT_CPU, c, c + 1); /* SIGXCPU, then SIGKILL a second later */
	}
	if (spec->cwd && chdir(spec->cwd) < 0) {
		f.stage = 0;
		goto fail;
	}
	if (spec->envp)
		environ = (char **)spec->envp; /* so that execvp searches the task's PATH */
	f.stage = 1;
	execvp(spec->argv[0], spec->argv);
fail:
	f.errnum = errno;
	(void)!write(err_fd, &f, sizeof f);
	_exit(127);
}

/* The kernel's count of OOM kills (system-wide), or -1. */
static long long proc_oom_kills(void)
{
	char data[16384];
	int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	ssize_t n;
	while (len < sizeof data - 1 && (n = read(fd, data + len, sizeof data - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	data[len] = '\0';
	const char *p = strstr(data, "\noom_kill ");
	return p ? strtoll(p + 10, NULL, 10) : -1;
}

static void proc_classify(const struct proc_limits *lim, struct proc_result *res, long long oom_before)
{
	if (res->fclass != PYTI_FC_NONE)
		return;
	int sig = res->signal, code = res->exit_code;
	/* Killed by the kernel's OOM killer (the guest ran out before the watchdog saw it). */
	if ((sig == SIGKILL || code == 128 + SIGKILL) && oom_before >= 0 && proc_oom_kills() > oom_before) {
		res->fclass = PYTI_FC_OOM;
		return;
	}
	if (lim->cpu_s > 0 &&
	    (sig == SIGXCPU || code == 128 + SIGXCPU ||
	     (sig == SIGKILL && res->cpu_user_s + res->cpu_sys_s >= lim->cpu_s)))
		res->fclass = PYTI_FC_TIMEOUT;
	else if (lim->fsize_bytes && (sig == SIGXFSZ || code == 128 + SIGXFSZ))
		res->fclass = PYTI_FC_NOSPACE;
}

static double min_pos(double a, double b)
{
	return a < b ? a : b;
}

/* The run's poll loop: the tree's output, its exit, the wall and silence timeouts, the watchdog
 * and the I/O directory's budget, heartbeats; until the child is reaped and its output drained
 * (or poll failed: err set, the child maybe still running). */
static void proc_loop(struct proc_run_state *st, struct proc_out *o, int *rfdp, int pidfd, double start,
		      struct pyti_err *err)
{
	const struct proc_spec *spec = st->spec;
	struct proc_result *res = st->res;
	int rfd = *rfdp;
	char *chunk = xmalloc(PROC_READ_CHUNK);
	const struct proc_limits *lim = &spec->lim;
	bool watch = lim->memory_bytes || lim->pids || lim->tmpfs_paths;
	bool killed = false;
	bool watch_io = lim->io_path && lim->io_bytes;
	double last_out = start, next_wd = start, next_io = start + PROC_IO_TICK_S,
	       next_hb = start + spec->heartbeat_s;
	double drain_until = 0;

	while (rfd >= 0 || !st->child_reaped) {
		double now = now_mono();
		if (!killed && !st->child_reaped) {
			if (lim->timeout_s > 0 && now - start >= lim->timeout_s) {
				res->fclass = PYTI_FC_TIMEOUT;
				killed = true;
			} else if (lim->no_output_timeout_s > 0 && now - last_out >= lim->no_output_timeout_s) {
				res->fclass = PYTI_FC_NOOUTPUT;
				killed = true;
			}
			if (killed)
				proc_kill_tree(st);
			else if (watch && now >= next_wd) {
				killed = proc_watchdog(st);
				/* Keep the watchdog's own cost near 5% when /proc is big or the CPU slow
				 * (a TCG guest). */
				double after = now_mono();
				next_wd = after + fmax(PROC_TICK_S, 20 * (after - now));
			}
			if (!killed && watch_io && now >= next_io) {
				double t = now_mono();
				if (proc_io_over(st)) {
					res->fclass = PYTI_FC_NOSPACE;
					proc_kill_tree(st);
					killed = true;
				}
				double after = now_mono();
				next_io = after + fmax(PROC_IO_TICK_S, 20 * (after - t)); /* a big tree: ≤ 5% */
			}
		}
		if (spec->on_heartbeat && spec->heartbeat_s > 0 && now >= next_hb) {
			char tail[PROC_HEARTBEAT_TAIL];
			size_t tn = proc_out_tail(o, tail, sizeof tail);
			spec->on_heartbeat(spec->arg, now - start, o->total, tail, tn);
			next_hb = now + spec->heartbeat_s;
		}
		if (st->child_reaped && rfd >= 0 && drain_until > 0 && now >= drain_until)
			close(pyti_steal_fd(&rfd)); /* a writer escaped the tree: stop waiting for EOF */
		if (rfd < 0 && st->child_reaped)
			break;

		/* How long may poll sleep? Until the next deadline. */
		double wait = 3600;
		if (!st->child_reaped) {
			if (lim->timeout_s > 0)
				wait = min_pos(wait, start + lim->timeout_s - now);
			if (lim->no_output_timeout_s > 0)
				wait = min_pos(wait, last_out + lim->no_output_timeout_s - now);
			if (watch)
				wait = min_pos(wait, next_wd - now);
			if (watch_io)
				wait = min_pos(wait, next_io - now);
			if (pidfd < 0 || st->tree.reaper)
				wait = min_pos(wait, PROC_TICK_S); /* orphans are only seen by polling */
		} else {
			wait = min_pos(wait, drain_until - now);
		}
		if (spec->on_heartbeat && spec->heartbeat_s > 0)
			wait = min_pos(wait, next_hb - now);
		if (wait < 0)
			wait = 0;
		struct pollfd pfd[2];
		nfds_t nfd = 0;
		if (rfd >= 0)
			pfd[nfd++] = (struct pollfd){.fd = rfd, .events = POLLIN};
		if (!st->child_reaped && pidfd >= 0)
			pfd[nfd++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		int pr = poll(pfd, nfd, (int)ceil(wait * 1000));
		if (pr < 0 && errno != EINTR) {
			pyti_err_set(err, errno, "poll");
			break; /* cannot happen in practice; fall through to kill and reap */
		}
		if (rfd >= 0) {
			/* Bounded number of reads per round, so that timers keep running under a flood. */
			for (int i = 0; i < 16; i++) {
				ssize_t got = read(rfd, chunk, PROC_READ_CHUNK);
				if (got > 0) {
					proc_out_feed(o, chunk, (size_t)got);
					last_out = now_mono();
					continue;
				}
				if (got == 0)
					close(pyti_steal_fd(&rfd));
				else if (errno == EINTR)
					continue;
				else if (errno != EAGAIN)
					close(pyti_steal_fd(&rfd));
				break;
			}
		}
		proc_reap(st);
		if (st->child_reaped && drain_until == 0) {
			proc_kill_tree(st); /* leftovers of a finished command */
			drain_until = now_mono() + PROC_DRAIN_S;
		}
	}
	free(chunk);
	*rfdp = rfd;
}

/* After the run: the classes only the end can tell (what it left on a tmpfs or under the I/O
 * directory, a failure beside a full file system). */
static void proc_settle(struct proc_run_state *st)
{
	const struct proc_limits *lim = &st->spec->lim;
	struct proc_result *res = st->res;
	bool watch_io = lim->io_path && lim->io_bytes;
	if (res->fclass == PYTI_FC_NONE && lim->tmpfs_paths && lim->memory_bytes) {
		/* What it left on a tmpfs is memory it still holds, however fast it wrote and left
		 * (between two watchdog ticks): over the limit, it did not pass. */
		if (proc_tmpfs_growth(lim->tmpfs_paths, &st->tmpfs, false, NULL) > lim->memory_bytes)
			res->fclass = PYTI_FC_OOM;
	}
	if (res->fclass == PYTI_FC_NONE && watch_io && proc_io_over(st))
		res->fclass = PYTI_FC_NOSPACE; /* however fast it wrote and left */
	if (res->fclass == PYTI_FC_NONE && lim->tmpfs_paths && (res->exit_code != 0 || res->signal)) {
		/* It failed with a tmpfs full (now, or seen so while it ran): most likely ENOSPC there. */
		bool full = st->tmpfs_full;
		proc_tmpfs_growth(lim->tmpfs_paths, &st->tmpfs, false, &full);
		if (full)
			res->fclass = PYTI_FC_NOSPACE;
	}
	for (const char *const *p = lim->full_paths; p && *p && res->fclass == PYTI_FC_NONE; p++)
		if ((res->exit_code != 0 || res->signal) && proc_fs_full(*p))
			res->fclass = PYTI_FC_NOSPACE;
}

int proc_run(const struct proc_spec *spec, struct proc_result *res, struct pyti_err *err)
{
	memset(res, 0, sizeof *res);
	if (!spec->argv || !spec->argv[0])
		return pyti_err_set(err, EINVAL, "proc_run: empty argv");
	const char *name = spec->argv[0];

	_cleanup_close_ int log_fd = -1;
	if (spec->log_path) {
		log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (log_fd < 0)
			return pyti_err_set(err, errno, "create log %s", spec->log_path);
	}
	_cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0)
		return pyti_err_set(err, errno, "open /dev/null");
	int pp[2], ep[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		return pyti_err_set(err, errno, "pipe");
	_cleanup_close_ int rfd = pp[0], wfd = pp[1];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return pyti_err_set(err, errno, "pipe");
	_cleanup_close_ int erd = ep[0], ewr = ep[1];

	int r = 0;
	bool reaper = getpid() == 1 || (prctl(PR_GET_CHILD_SUBREAPER, &r) == 0 && r);
	bool procfs_ok = proc_procfs_ours();
	if (!procfs_ok && (spec->lim.memory_bytes || spec->lim.pids))
		return pyti_err_set(err, 0,
				    "memory and process limits need /proc of this pid namespace "
				    "(mount proc in the sandbox)");
	pid_t parent = getpid();
	long long oom_before = proc_oom_kills();
	struct proc_tmpfs tmpfs = {0};
	proc_tmpfs_growth(spec->lim.tmpfs_paths, &tmpfs, true, NULL);
	uint64_t io_base = spec->lim.io_bytes ? proc_io_used(spec->lim.io_path) : 0;
	double start = now_mono();
	pid_t child = fork();
	if (child < 0)
		return pyti_err_set(err, errno, "fork for %s", name);
	if (child == 0)
		proc_child(spec, wfd, null_fd, ewr, parent);
	close(pyti_steal_fd(&wfd));
	close(pyti_steal_fd(&ewr));

	struct proc_run_state st = {
		.spec = spec, .res = res, .child = child, .tmpfs = tmpfs, .io_base = io_base,
		.tree = {.child = child, .self = parent, .reaper = reaper, .procfs_ok = procfs_ok},
	};
	struct proc_exec_fail f;
	ssize_t n;
	/* Until this read returns the child may not have called setsid() yet: nothing signals
	 * its group before. */
	do
		n = read(erd, &f, sizeof f);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof f) {
		int status;
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
		if (f.stage == 3)
			return pyti_err_set(err, f.errnum, "drop privileges for %s", name);
		if (f.stage == 2)
			return pyti_err_set(err, f.errnum, "set up the process for %s", name);
		return pyti_err_set(err, f.errnum, "%s %s", f.stage == 0 ? "chdir" : "exec",
				    f.stage == 0 ? spec->cwd : name);
	}

	fcntl(rfd, F_SETFL, O_NONBLOCK);
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, child, 0);

	size_t kh = spec->keep_head ? spec->keep_head : PROC_DEFAULT_KEEP;
	size_t kt = spec->keep_tail ? spec->keep_tail : PROC_DEFAULT_KEEP;
	struct proc_out o = {
		.head = xmalloc(kh), .head_cap = kh, .tail = xmalloc(kt), .tail_cap = kt,
		.log_fd = log_fd, .log_limit = spec->lim.output_limit, .spec = spec,
		.line = spec->on_line ? xmalloc(PROC_LINE_MAX) : NULL,
	};
	proc_loop(&st, &o, &rfd, pidfd, start, err);
	if (!st.child_reaped) {
		/* Only reached when poll failed. */
		proc_kill_tree(&st);
		int status;
		struct rusage ru;
		if (wait4(child, &status, __WALL, &ru) == child) {
			proc_fold_rusage(&st, &ru);
			st.status = status;
		}
		st.reaped_at = now_mono();
	}
	res->wall_s = st.reaped_at - start;
	proc_kill_tree(&st);

	if (WIFSIGNALED(st.status)) {
		res->exit_code = -1;
		res->signal = WTERMSIG(st.status);
	} else {
		res->exit_code = WEXITSTATUS(st.status);
	}
	res->cpu_user_s = st.ru_user;
	res->cpu_sys_s = st.ru_sys;
	res->max_rss_kb = st.ru_maxrss > st.peak_rss_kb ? st.ru_maxrss : st.peak_rss_kb;
	proc_classify(&spec->lim, res, oom_before);
	proc_settle(&st);
	proc_out_finish(&o, res);
	free(o.head);
	free(o.tail);
	free(o.line);
	free(st.tree.ents);
	return 0;
}

void proc_result_free(struct proc_result *res)
{
	if (!res)
		return;
	free(res->output);
	res->output = NULL;
	res->output_len = 0;
}

int proc_run_simple(char *const *argv, const char *cwd, double timeout_s, struct pyti_err *err)
{
	struct proc_spec spec = {
		.argv = argv, .cwd = cwd, .lim = {.timeout_s = timeout_s},
		.keep_head = 512, .keep_tail = 1024,
	};
	struct proc_result res;
	if (proc_run(&spec, &res, err) < 0)
		return -1;
	int rc = 0;
	if (res.exit_code != 0 || res.signal || res.fclass != PYTI_FC_NONE) {
		char cmd[256] = "";
		size_t len = 0;
		for (size_t i = 0; argv[i] && len < sizeof cmd - 1; i++)
			len += (size_t)snprintf(cmd + len, sizeof cmd - len, "%s%s", i ? " " : "", argv[i]);
		const char *out = res.output ? res.output : "";
		size_t olen = strlen(out);
		if (olen > 1200)
			out += olen - 1200;
		char how[64];
		if (res.fclass == PYTI_FC_TIMEOUT)
			snprintf(how, sizeof how, "timed out after %.0f s", timeout_s);
		else if (res.signal)
			snprintf(how, sizeof how, "killed by signal %d", res.signal);
		else
			snprintf(how, sizeof how, "exited with status %d", res.exit_code);
		rc = pyti_err_set(err, 0, "%.256s %s%s%s", cmd, how, *out ? ": " : "", out);
		if (err && res.fclass != PYTI_FC_NONE)
			err->fclass = res.fclass;
	}
	proc_result_free(&res);
	return rc;
}
