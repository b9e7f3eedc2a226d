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
#include <dirent.h>
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
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "proc.h"

#define PROC_TICK_S 0.03
#define PROC_DEFAULT_KEEP (32u * 1024u)
#define PROC_LINE_MAX (64u * 1024u)
#define PROC_READ_CHUNK (64u * 1024u)
#define PROC_DRAIN_S 2.0 /* after the child exits: how long to wait for EOF from stray writers */
#define PROC_KILL_WAIT_S 5.0

extern char **environ;

/* ---------------------------------------------------------------------------------------------
 * Output: head + tail ring in memory, capped log file, line splitting.
 * ------------------------------------------------------------------------------------------- */
struct proc_out {
	char *head;
	size_t head_cap, head_len;
	char *tail; /* ring */
	size_t tail_cap, tail_len, tail_pos;
	uint64_t total;
	int log_fd;
	uint64_t log_limit, log_written;
	bool log_failed;
	char *line;
	size_t line_len;
	const struct proc_spec *spec;
};

static void out_ring_put(struct proc_out *o, const char *p, size_t n)
{
	if (!o->tail_cap)
		return;
	if (n >= o->tail_cap) {
		memcpy(o->tail, p + n - o->tail_cap, o->tail_cap);
		o->tail_pos = 0;
		o->tail_len = o->tail_cap;
		return;
	}
	size_t first = o->tail_cap - o->tail_pos;
	if (first > n)
		first = n;
	memcpy(o->tail + o->tail_pos, p, first);
	memcpy(o->tail, p + first, n - first);
	o->tail_pos = (o->tail_pos + n) % o->tail_cap;
	o->tail_len = o->tail_len + n > o->tail_cap ? o->tail_cap : o->tail_len + n;
}

/* Copy the ring's content in stream order into dst (tail_len bytes). */
static void out_ring_linear(const struct proc_out *o, char *dst)
{
	if (o->tail_len < o->tail_cap) {
		memcpy(dst, o->tail, o->tail_len);
		return;
	}
	size_t first = o->tail_cap - o->tail_pos;
	memcpy(dst, o->tail + o->tail_pos, first);
	memcpy(dst + first, o->tail, o->tail_pos);
}

static ssize_t out_write_all(int fd, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return (ssize_t)done;
}

static void out_lines(struct proc_out *o, const char *p, size_t n)
{
	const struct proc_spec *s = o->spec;
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		size_t room = PROC_LINE_MAX - o->line_len;
		if (take > room)
			take = room;
		memcpy(o->line + o->line_len, p, take);
		o->line_len += take;
		p += take;
		n -= take;
		bool end = n && *p == '\n';
		if (end) {
			p++;
			n--;
		}
		if (end || o->line_len == PROC_LINE_MAX) {
			s->on_line(s->arg, o->line, o->line_len);
			o->line_len = 0;
		}
	}
}

static void out_feed(struct proc_out *o, const char *p, size_t n)
{
	o->total += n;
	if (o->log_fd >= 0 && !o->log_failed && (!o->log_limit || o->log_written < o->log_limit)) {
		size_t w = n;
		if (o->log_limit && o->log_limit - o->log_written < w)
			w = (size_t)(o->log_limit - o->log_written);
		if (out_write_all(o->log_fd, p, w) < 0)
			o->log_failed = true; /* e.g. ENOSPC: keep running, the memory copy remains */
		else
			o->log_written += w;
	}
	if (o->spec->on_line)
		out_lines(o, p, n);
	if (o->head_len < o->head_cap) {
		size_t h = o->head_cap - o->head_len;
		if (h > n)
			h = n;
		memcpy(o->head + o->head_len, p, h);
		o->head_len += h;
		p += h;
		n -= h;
	}
	out_ring_put(o, p, n);
}

/* Stream positions: head holds [0, H), the ring [T-R, T), the log [0, L) while it was not capped. */
static void out_finish(struct proc_out *o, struct proc_result *res)
{
	const struct proc_spec *s = o->spec;
	if (s->on_line && o->line_len) {
		s->on_line(s->arg, o->line, o->line_len);
		o->line_len = 0;
	}
	uint64_t T = o->total, H = o->head_len, R = o->tail_len;
	uint64_t omitted = T - H - R;
	char *lin = xmalloc(R ? R : 1);
	out_ring_linear(o, lin);
	struct buf b = BUF_INIT(0);
	buf_append(&b, o->head, o->head_len);
	if (omitted)
		buf_printf(&b, "\n[\u2026 %llu bytes omitted \u2026]\n", (unsigned long long)omitted);
	buf_append(&b, lin, R);
	/* Complete a capped log with what memory still holds, so that it keeps head and tail. */
	if (o->log_fd >= 0 && !o->log_failed && o->log_written < T) {
		uint64_t covered = o->log_written;
		if (H > covered) {
			out_write_all(o->log_fd, o->head + covered, (size_t)(H - covered));
			covered = H;
		}
		if (T - R > covered) {
			char mark[96];
			int m = snprintf(mark, sizeof mark, "\n[\u2026 pyti: %llu bytes omitted from this log \u2026]\n",
					 (unsigned long long)(T - R - covered));
			out_write_all(o->log_fd, mark, (size_t)m);
			covered = T - R;
		}
		if (T > covered)
			out_write_all(o->log_fd, lin + (covered - (T - R)), (size_t)(T - covered));
	}
	free(lin);
	uint64_t front = H;
	if (o->log_fd >= 0 && o->log_written > front)
		front = o->log_written;
	res->output_len = b.len;
	res->output = buf_steal(&b);
	res->output_bytes = T;
	res->output_truncated = T - R > front;
}

/* ---------------------------------------------------------------------------------------------
 * The process tree, from /proc.
 * ------------------------------------------------------------------------------------------- */
struct proc_ent {
	pid_t pid, ppid, pgrp;
	long rss_pages;
	char state;
	signed char member; /* -1 unknown, 0 no, 1 yes */
};

struct proc_tree {
	pid_t child; /* the direct child (also its process group id) */
	pid_t self;
	bool reaper; /* descendants of self count as well */
	bool procfs_ok;
	struct proc_ent *ents;
	size_t n, cap;
};

static int proc_ent_cmp(const void *a, const void *b)
{
	pid_t x = ((const struct proc_ent *)a)->pid, y = ((const struct proc_ent *)b)->pid;
	return (x > y) - (x < y);
}

static bool proc_read_stat(pid_t pid, struct proc_ent *e)
{
	char path[64], data[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, data, sizeof data - 1);
	close(fd);
	if (n <= 0)
		return false;
	data[n] = '\0';
	const char *p = strrchr(data, ')'); /* comm may contain anything, even ')' */
	if (!p)
		return false;
	int ppid = 0, pgrp = 0;
	long rss = 0;
	if (sscanf(p + 1,
		   " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %*u %*u %ld",
		   &e->state, &ppid, &pgrp, &rss) != 4)
		return false;
	e->pid = pid;
	e->ppid = ppid;
	e->pgrp = pgrp;
	e->rss_pages = rss;
	e->member = -1;
	return true;
}

/* /proc must show our own pid namespace: with another namespace's /proc (a sandbox that forgot to
 * mount its own), pids would name unrelated processes, and the tree walk would kill strangers. */
static bool proc_procfs_ours(void)
{
	char link[32];
	ssize_t n = readlink("/proc/self", link, sizeof link - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	return strtol(link, NULL, 10) == (long)getpid();
}

static void proc_tree_scan(struct proc_tree *t)
{
	t->n = 0;
	if (!t->procfs_ok)
		return;
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 512;
			t->ents = xrealloc(t->ents, t->cap * sizeof *t->ents);
		}
		if (proc_read_stat(pid, &t->ents[t->n]))
			t->n++;
	}
	closedir(d);
	qsort(t->ents, t->n, sizeof *t->ents, proc_ent_cmp);
}

static struct proc_ent *proc_tree_find(struct proc_tree *t, pid_t pid)
{
	struct proc_ent key = {.pid = pid};
	return bsearch(&key, t->ents, t->n, sizeof *t->ents, proc_ent_cmp);
}

/* Mark members: walk each ppid chain up to a known answer; cycles are impossible but depth is
 * bounded anyway. */
static void proc_tree_mark(struct proc_tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct proc_ent *e = &t->ents[i];
		if (e->member >= 0)
			continue;
		struct proc_ent *cur = e;
		int ans = 0;
		for (size_t depth = 0; depth <= t->n; depth++) {
			if (cur->pid == t->self) {
				ans = 0;
				break;
			}
			if (cur->member >= 0) {
				ans = cur->member;
				break;
			}
			if (cur->pid == t->child || (t->child > 0 && cur->pgrp == t->child) ||
			    (t->reaper && cur->ppid == t->self)) {
				ans = 1;
				break;
			}
			struct proc_ent *up = proc_tree_find(t, cur->ppid);
			if (!up) {
				ans = 0;
				break;
			}
			cur = up;
		}
		/* Write the answer along the chain, up to the node that decided it. */
		struct proc_ent *last = cur;
		for (cur = e; cur; cur = proc_tree_find(t, cur->ppid)) {
			if (cur->member < 0)
				cur->member = (signed char)(cur->pid == t->self ? 0 : ans);
			if (cur == last)
				break;
		}
	}
}

/* PSS in kB from smaps_rollup, or -1. */
static long proc_pss_kb(pid_t pid)
{
	char path[64], data[4096];
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, data, sizeof data - 1);
	close(fd);
	if (n <= 0)
		return -1;
	data[n] = '\0';
	const char *p = strstr(data, "\nPss:");
	return p ? strtol(p + 5, NULL, 10) : -1;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---------------------------------------------------------------------------------------------
 * The run.
 * ------------------------------------------------------------------------------------------- */
#define PROC_TMPFS_MAGIC 0x01021994 /* linux/magic.h's TMPFS_MAGIC */
#define PROC_TMPFS_MAX 16

/* Use of each distinct tmpfs among lim.tmpfs_paths when the task started. */
struct proc_tmpfs {
	size_t n;
	dev_t dev[PROC_TMPFS_MAX];
	uint64_t base[PROC_TMPFS_MAX];
};

/* True when the file system holding path has (almost) no room left (see below). */
static bool proc_fs_full(const char *path)
{
	struct statfs sf;
	if (statfs(path, &sf) < 0 || !sf.f_blocks)
		return false;
	uint64_t bs = (uint64_t)sf.f_bsize, avail = (uint64_t)sf.f_bavail * bs;
	return avail < (1u << 20) || avail < (uint64_t)sf.f_blocks * bs / 256;
}

/* With init, record what each tmpfs among paths holds now and return 0; else return the sum of
 * what each grew since (one that shrank gives the task no credit on another). *full when one has
 * (almost) no room left: less than 1 MiB or 1/256 of its size, so that a writer that stopped at
 * ENOSPC with a partial block unwritten still counts. */
static uint64_t proc_tmpfs_growth(const char *const *paths, struct proc_tmpfs *t, bool init, bool *full)
{
	uint64_t growth = 0;
	dev_t seen[PROC_TMPFS_MAX];
	size_t n = 0;
	for (; paths && *paths && n < PROC_TMPFS_MAX; paths++) {
		struct statfs sf;
		struct stat st;
		if (statfs(*paths, &sf) < 0 || (unsigned long)sf.f_type != PROC_TMPFS_MAGIC || stat(*paths, &st) < 0)
			continue;
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= seen[i] == st.st_dev;
		if (dup)
			continue;
		seen[n++] = st.st_dev;
		uint64_t bs = (uint64_t)sf.f_bsize;
		uint64_t used = (uint64_t)(sf.f_blocks - sf.f_bfree) * bs;
		if (full && proc_fs_full(*paths))
			*full = true;
		if (init) {
			if (t->n < PROC_TMPFS_MAX) {
				t->dev[t->n] = st.st_dev;
				t->base[t->n++] = used;
			}
			continue;
		}
		uint64_t base = 0;
		for (size_t i = 0; i < t->n; i++)
			if (t->dev[i] == st.st_dev)
				base = t->base[i];
		growth += used > base ? used - base : 0;
	}
	return growth;
}

struct proc_run_state {
	const struct proc_spec *spec;
	struct proc_result *res;
	struct proc_tree tree;
	pid_t child;
	bool child_reaped;
	double reaped_at;
	int status;
	double ru_user, ru_sys;
	long ru_maxrss;
	long peak_rss_kb; /* seen by the watchdog */
	struct proc_tmpfs tmpfs;
	bool tmpfs_full;     /* one of them was seen (nearly) full while it ran */
	uint64_t io_base;    /* bytes under lim.io_path when the task started */
};

#define PROC_IO_TICK_S 1.0
#define PROC_IO_DEPTH_MAX 64

/* Bytes allocated to the files under the directory dfd (consumed), links not followed. */
static uint64_t proc_dir_bytes(int dfd, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	uint64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		sum += (uint64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode) && depth < PROC_IO_DEPTH_MAX) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				sum += proc_dir_bytes(sub, depth + 1);
		}
	}
	closedir(d);
	return sum;
}

static uint64_t proc_io_used(const char *path)
{
	if (!path)
		return 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? 0 : proc_dir_bytes(fd, 0);
}

/* True when the task wrote more than its budget under lim.io_path (growth since it started). */
static bool proc_io_over(const struct proc_run_state *st)
{
	const struct proc_limits *lim = &st->spec->lim;
	uint64_t used = proc_io_used(lim->io_path);
	return used > st->io_base && used - st->io_base > lim->io_bytes;
}

static void fold_rusage(struct proc_run_state *st, const struct rusage *ru)
{
	st->ru_user += (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6;
	st->ru_sys += (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
	if (ru->ru_maxrss > st->ru_maxrss)
		st->ru_maxrss = ru->ru_maxrss;
}

/* Reap without blocking: the child, and in reaper mode every orphan handed to us. */
static void proc_reap(struct proc_run_state *st)
{
	for (;;) {
		struct rusage ru;
		int status;
		pid_t w = wait4(st->tree.reaper ? -1 : st->child, &status, WNOHANG | __WALL, &ru);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == ECHILD && !st->child_reaped) {
			/* SIGCHLD ignored by our caller: the kernel reaped it, status unknown. */
			st->child_reaped = true;
			st->reaped_at = now_mono();
			st->status = W_EXITCODE(255, 0);
		}
		if (w <= 0)
			return;
		fold_rusage(st, &ru);
		if (w == st->child) {
			st->child_reaped = true;
			st->reaped_at = now_mono();
			st->status = status;
		}
		if (!st->tree.reaper)
			return;
	}
}

/* Kill every member of the tree until none is left alive (killed processes cannot fork any more,
 * so rescanning converges). */
static void proc_kill_tree(struct proc_run_state *st)
{
	double until = now_mono() + PROC_KILL_WAIT_S;
	for (;;) {
		if (!st->child_reaped)
			killpg(st->child, SIGKILL);
		proc_tree_scan(&st->tree);
		proc_tree_mark(&st->tree);
		size_t alive = 0;
		for (size_t i = 0; i < st->tree.n; i++) {
			struct proc_ent *e = &st->tree.ents[i];
			if (e->member == 1 && e->state != 'Z' && e->state != 'X') {
				kill(e->pid, SIGKILL);
				alive++;
			}
		}
		proc_reap(st);
		if (!alive || now_mono() > until)
			return;
		sleep_s(0.002);
	}
}

/* The memory / pids watchdog. Returns true when it killed the tree. */
static bool proc_watchdog(struct proc_run_state *st)
{
	const struct proc_limits *lim = &st->spec->lim;
	struct proc_tree *t = &st->tree;
	proc_tree_scan(t);
	proc_tree_mark(t);
	static long page_kb;
	if (!page_kb)
		page_kb = sysconf(_SC_PAGESIZE) / 1024;
	unsigned count = 0;
	uint64_t rss_sum = 0;
	for (size_t i = 0; i < t->n; i++) {
		struct proc_ent *e = &t->ents[i];
		if (e->member != 1 || e->state == 'Z' || e->state == 'X')
			continue;
		count++;
		long kb = e->rss_pages * page_kb;
		rss_sum += (uint64_t)kb * 1024;
		if (kb > st->peak_rss_kb)
			st->peak_rss_kb = kb;
	}
	if (lim->pids && count > lim->pids) {
		st->res->fclass = PYTI_FC_PIDS;
		proc_kill_tree(st);
		return true;
	}
	uint64_t tmpfs = 0;
	if (lim->tmpfs_paths) {
		tmpfs = proc_tmpfs_growth(lim->tmpfs_paths, &st->tmpfs, false, &st->tmpfs_full);
		rss_sum += tmpfs;
	}
	if (lim->memory_bytes && rss_sum > lim->memory_bytes) {
		static int rollup = -1;
		if (rollup < 0)
			rollup = access("/proc/self/smaps_rollup", R_OK) == 0;
		uint64_t pss_sum = 0;
		for (size_t i = 0; i < t->n; i++) {
			struct proc_ent *e = &t->ents[i];
			if (e->member != 1 || e->state == 'Z')
				continue;
			long pss = proc_pss_kb(e->pid);
			/* Unreadable: the process is exiting (its pages are someone else's now, or
			 * gone), unless this kernel has no smaps_rollup at all (< 4.14). */
			if (pss < 0)
				pss = rollup ? 0 : e->rss_pages * page_kb;
			pss_sum += (uint64_t)pss * 1024;
		}
		if (pss_sum + tmpfs > lim->memory_bytes) {
			st->res->fclass = PYTI_FC_OOM;
			proc_kill_tree(st);
			return true;
		}
	}
	return false;
}

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
	char *chunk = xmalloc(PROC_READ_CHUNK);
	const struct proc_limits *lim = &spec->lim;
	bool watch = lim->memory_bytes || lim->pids || lim->tmpfs_paths;
	bool killed = false;
	bool watch_io = lim->io_path && lim->io_bytes;
	double last_out = start, next_wd = start, next_io = start + PROC_IO_TICK_S,
	       next_hb = start + spec->heartbeat_s;
	double drain_until = 0;

	while (rfd >= 0 || !st.child_reaped) {
		double now = now_mono();
		if (!killed && !st.child_reaped) {
			if (lim->timeout_s > 0 && now - start >= lim->timeout_s) {
				res->fclass = PYTI_FC_TIMEOUT;
				killed = true;
			} else if (lim->no_output_timeout_s > 0 && now - last_out >= lim->no_output_timeout_s) {
				res->fclass = PYTI_FC_NOOUTPUT;
				killed = true;
			}
			if (killed)
				proc_kill_tree(&st);
			else if (watch && now >= next_wd) {
				killed = proc_watchdog(&st);
				/* Keep the watchdog's own cost near 5% when /proc is big or the CPU slow
				 * (a TCG guest). */
				double after = now_mono();
				next_wd = after + fmax(PROC_TICK_S, 20 * (after - now));
			}
			if (!killed && watch_io && now >= next_io) {
				double t = now_mono();
				if (proc_io_over(&st)) {
					res->fclass = PYTI_FC_NOSPACE;
					proc_kill_tree(&st);
					killed = true;
				}
				double after = now_mono();
				next_io = after + fmax(PROC_IO_TICK_S, 20 * (after - t)); /* a big tree: ≤ 5% */
			}
		}
		if (spec->on_heartbeat && spec->heartbeat_s > 0 && now >= next_hb) {
			spec->on_heartbeat(spec->arg, now - start, o.total);
			next_hb = now + spec->heartbeat_s;
		}
		if (st.child_reaped && rfd >= 0 && drain_until > 0 && now >= drain_until)
			close(pyti_steal_fd(&rfd)); /* a writer escaped the tree: stop waiting for EOF */
		if (rfd < 0 && st.child_reaped)
			break;

		/* How long may poll sleep? Until the next deadline. */
		double wait = 3600;
		if (!st.child_reaped) {
			if (lim->timeout_s > 0)
				wait = min_pos(wait, start + lim->timeout_s - now);
			if (lim->no_output_timeout_s > 0)
				wait = min_pos(wait, last_out + lim->no_output_timeout_s - now);
			if (watch)
				wait = min_pos(wait, next_wd - now);
			if (watch_io)
				wait = min_pos(wait, next_io - now);
			if (pidfd < 0 || st.tree.reaper)
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
		if (!st.child_reaped && pidfd >= 0)
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
					out_feed(&o, chunk, (size_t)got);
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
		proc_reap(&st);
		if (st.child_reaped && drain_until == 0) {
			proc_kill_tree(&st); /* leftovers of a finished command */
			drain_until = now_mono() + PROC_DRAIN_S;
		}
	}
	if (!st.child_reaped) {
		/* Only reached when poll failed. */
		proc_kill_tree(&st);
		int status;
		struct rusage ru;
		if (wait4(child, &status, __WALL, &ru) == child) {
			fold_rusage(&st, &ru);
			st.status = status;
		}
		st.reaped_at = now_mono();
	}
	res->wall_s = st.reaped_at - start;
	proc_kill_tree(&st);
	free(chunk);

	if (WIFSIGNALED(st.status)) {
		res->exit_code = -1;
		res->signal = WTERMSIG(st.status);
	} else {
		res->exit_code = WEXITSTATUS(st.status);
	}
	res->cpu_user_s = st.ru_user;
	res->cpu_sys_s = st.ru_sys;
	res->max_rss_kb = st.ru_maxrss > st.peak_rss_kb ? st.ru_maxrss : st.peak_rss_kb;
	proc_classify(lim, res, oom_before);
	if (res->fclass == PYTI_FC_NONE && lim->tmpfs_paths && lim->memory_bytes) {
		/* What it left on a tmpfs is memory it still holds, however fast it wrote and left
		 * (between two watchdog ticks): over the limit, it did not pass. */
		if (proc_tmpfs_growth(lim->tmpfs_paths, &st.tmpfs, false, NULL) > lim->memory_bytes)
			res->fclass = PYTI_FC_OOM;
	}
	if (res->fclass == PYTI_FC_NONE && watch_io && proc_io_over(&st))
		res->fclass = PYTI_FC_NOSPACE; /* however fast it wrote and left */
	if (res->fclass == PYTI_FC_NONE && lim->tmpfs_paths && (res->exit_code != 0 || res->signal)) {
		/* It failed with a tmpfs full (now, or seen so while it ran): most likely ENOSPC there. */
		bool full = st.tmpfs_full;
		proc_tmpfs_growth(lim->tmpfs_paths, &st.tmpfs, false, &full);
		if (full)
			res->fclass = PYTI_FC_NOSPACE;
	}
	for (const char *const *p = lim->full_paths; p && *p && res->fclass == PYTI_FC_NONE; p++)
		if ((res->exit_code != 0 || res->signal) && proc_fs_full(*p))
			res->fclass = PYTI_FC_NOSPACE;
	out_finish(&o, res);
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
