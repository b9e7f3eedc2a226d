/* proc: the process-tree watchdog (see proc.c's header for why limits are enforced this way): the
 * task's tree read from /proc, its RSS/PSS and process count against the limits, tmpfs and I/O
 * directory growth, reaping and killing the whole tree. */
#include <dirent.h> /* the /proc scan */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc-int.h"

/* ---------------------------------------------------------------------------------------------
 * The process tree, from /proc.
 * ------------------------------------------------------------------------------------------- */


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
bool proc_procfs_ours(void)
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
	_cleanup_closedir_ DIR *d = opendir("/proc");
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
 * Full file systems, tmpfs growth, the I/O directory's growth.
 * ------------------------------------------------------------------------------------------- */
#define PROC_TMPFS_MAGIC 0x01021994 /* linux/magic.h's TMPFS_MAGIC */


/* True when the file system holding path has (almost) no room left (see below). */
bool proc_fs_full(const char *path)
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
uint64_t proc_tmpfs_growth(const char *const *paths, struct proc_tmpfs *t, bool init, bool *full)
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


#define PROC_IO_DEPTH_MAX 64

static int proc_dir_bytes(void *arg, const struct tree_entry *e)
{
	*(uint64_t *)arg += (uint64_t)e->st->st_blocks * 512;
	return TREE_WALK_NEXT;
}

/* Bytes allocated to the files under path (tree_walk: links not followed). */
uint64_t proc_io_used(const char *path)
{
	if (!path)
		return 0;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t sum = 0;
	if (fd >= 0)
		tree_walk(fd, PROC_IO_DEPTH_MAX, proc_dir_bytes, NULL, &sum);
	return sum;
}

/* True when the task wrote more than its budget under lim.io_path (growth since it started). */
bool proc_io_over(const struct proc_run_state *st)
{
	const struct proc_limits *lim = &st->spec->lim;
	uint64_t used = proc_io_used(lim->io_path);
	return used > st->io_base && used - st->io_base > lim->io_bytes;
}

void proc_fold_rusage(struct proc_run_state *st, const struct rusage *ru)
{
	st->ru_user += (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6;
	st->ru_sys += (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
	if (ru->ru_maxrss > st->ru_maxrss)
		st->ru_maxrss = ru->ru_maxrss;
}

/* Reap without blocking: the child, and in reaper mode every orphan handed to us. */
void proc_reap(struct proc_run_state *st)
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
		proc_fold_rusage(st, &ru);
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
void proc_kill_tree(struct proc_run_state *st)
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
bool proc_watchdog(struct proc_run_state *st)
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
