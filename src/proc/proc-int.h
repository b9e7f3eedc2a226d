/* Internal to the proc module: what proc.c (the runner), proc_out.c (the output ring) and
 * proc_tree.c (the process-tree watchdog) share. */
#ifndef PYTI_PROC_INT_H
#define PYTI_PROC_INT_H

#include <sys/resource.h>
#include <sys/types.h>

#include "proc.h"

#define PROC_TICK_S 0.03
#define PROC_LINE_MAX (64u * 1024u)
#define PROC_KILL_WAIT_S 5.0
#define PROC_TMPFS_MAX 16
#define PROC_IO_TICK_S 1.0

/* ---- proc_out.c: head + tail ring in memory, capped log file, line splitting ---- */
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

/* Take n more bytes of the tree's output. */
void proc_out_feed(struct proc_out *o, const char *p, size_t n);
/* The last (at most max) bytes of the output so far, in order, into dst; returns how many. */
size_t proc_out_tail(const struct proc_out *o, char *dst, size_t max);
/* The last line to on_line, the capped log completed with head and tail, res->output* filled. */
void proc_out_finish(struct proc_out *o, struct proc_result *res);

/* ---- proc_tree.c: the process tree from /proc, its memory and process watchdog ---- */
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

/* Use of each distinct tmpfs among lim.tmpfs_paths when the task started. */
struct proc_tmpfs {
	size_t n;
	dev_t dev[PROC_TMPFS_MAX];
	uint64_t base[PROC_TMPFS_MAX];
};

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

/* /proc is this pid namespace's (the tree can be walked). */
bool proc_procfs_ours(void);
/* The file system holding path has (almost) no room left. */
bool proc_fs_full(const char *path);
/* Growth of the tmpfs mounts among paths since init (init: record their use now); *full (when
 * not NULL) is set when one is (nearly) full. */
uint64_t proc_tmpfs_growth(const char *const *paths, struct proc_tmpfs *t, bool init, bool *full);
/* Bytes allocated to the files under path (0 for NULL), links not followed. */
uint64_t proc_io_used(const char *path);
/* True when the task wrote more than its budget under lim.io_path (growth since it started). */
bool proc_io_over(const struct proc_run_state *st);
void proc_fold_rusage(struct proc_run_state *st, const struct rusage *ru);
/* Reap without blocking: the child, and in reaper mode every orphan handed to us. */
void proc_reap(struct proc_run_state *st);
/* Kill every member of the tree until none is left alive. */
void proc_kill_tree(struct proc_run_state *st);
/* The memory / pids watchdog. Returns true when it killed the tree (res->fclass set). */
bool proc_watchdog(struct proc_run_state *st);

#endif
