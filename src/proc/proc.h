/* proc: the one process runner (fork/exec with rusage, limits, timeouts, capped output capture).
 * libc + core only, so the static guest agent uses it as well as the host (debootstrap, qemu-img…).
 *
 * Output (stdout and stderr merged) is untrusted bytes: it is counted, optionally written to a log
 * file up to output_limit, and kept in memory only as head + tail (never unbounded). */
#ifndef PYTI_PROC_H
#define PYTI_PROC_H

#include "core.h"

struct proc_limits {
	double timeout_s;           /* wall clock, 0 = none                    -> PYTI_FC_TIMEOUT */
	double no_output_timeout_s; /* silence, 0 = none                       -> PYTI_FC_NOOUTPUT */
	uint64_t memory_bytes;      /* peak memory of the process tree, 0 = none -> PYTI_FC_OOM */
	unsigned pids;              /* processes in the tree, 0 = none         -> PYTI_FC_PIDS */
	uint64_t output_limit;      /* bytes of output written to log_path, 0 = unlimited (never a failure) */
	uint64_t fsize_bytes;       /* RLIMIT_FSIZE, 0 = none                  -> PYTI_FC_NOSPACE */
	double cpu_s;               /* RLIMIT_CPU, 0 = none                    -> PYTI_FC_TIMEOUT */
	/* Mount points (NULL-terminated; NULL = none) whose tmpfs use counts as the tree's memory:
	 * what grew there since the task started is added to its RSS/PSS (a file in /tmp or
	 * /dev/shm is RAM that outlives its writer). Those that are not tmpfs are ignored. A task
	 * that fails after one of them was (nearly) full is PYTI_FC_NOSPACE. */
	const char *const *tmpfs_paths;
	/* A directory on the host's disk (the ns sandbox's /io): when the bytes of the files under
	 * it grow past io_bytes while the task runs (a walk, about once a second, and once at its
	 * end), the tree is stopped -> PYTI_FC_NOSPACE. NULL = none. */
	const char *io_path;
	uint64_t io_bytes;
	/* Mounts of any kind (NULL-terminated; NULL = none) on which a task that fails while one is
	 * (nearly) full is PYTI_FC_NOSPACE, as for tmpfs_paths: the vm guest's I/O disk. */
	const char *const *full_paths;
};

#define PROC_HEARTBEAT_TAIL 2048

struct proc_spec {
	char *const *argv;    /* argv[0] is searched in PATH */
	char *const *envp;    /* NULL = inherit the caller's environment */
	const char *cwd;      /* NULL = inherit */
	struct proc_limits lim;
	const char *log_path; /* full output (capped at lim.output_limit) also written here; NULL = none */
	size_t keep_head, keep_tail; /* bytes kept in proc_result.output; 0 = 32 KiB each */
	/* Optional callbacks, called from proc_run's own loop. */
	void (*on_line)(void *arg, const char *line, size_t n); /* each complete output line */
	/* every heartbeat_s: the wall time so far, the bytes of output, and the output's last
	 * PROC_HEARTBEAT_TAIL bytes (fewer at the start; raw bytes, not NUL-terminated) */
	void (*on_heartbeat)(void *arg, double wall_s, uint64_t output_bytes, const char *tail, size_t tail_len);
	double heartbeat_s; /* 0 = no heartbeats */
	void *arg;
	/* Untrusted code (the agent's tasks): empty the capability bounding set and set no_new_privs
	 * before exec, and with set_ids also become uid/gid (no supplementary groups). The caller needs
	 * CAP_SETPCAP (and CAP_SETUID/CAP_SETGID for set_ids); a bounding set it cannot empty is an
	 * error, not a task running with privileges. */
	bool drop_privs;
	bool set_ids;
	uid_t uid;
	gid_t gid;
};

struct proc_result {
	int exit_code;            /* -1 when killed by a signal */
	int signal;               /* 0 when it exited */
	enum pyti_fclass fclass;  /* why pyti stopped it (a limit), or PYTI_FC_NONE */
	double wall_s, cpu_user_s, cpu_sys_s; /* CPU of the whole reaped tree */
	long max_rss_kb;          /* peak RSS of the largest process in the tree */
	char *output;             /* head + "\n[… N bytes omitted …]\n" + tail, NUL-terminated */
	size_t output_len;
	uint64_t output_bytes;    /* everything the tree wrote */
	bool output_truncated;    /* output_bytes > what output (and log_path) kept */
};

/* Run to completion (or until a limit stops it; then the whole process tree is killed).
 * The child starts in a new session (setsid): it has no controlling terminal, so nothing it runs
 * can open /dev/tty or push keystrokes into the caller's terminal, and it is the leader of its own
 * process group (pgid = its pid), which is what the tree's killpg relies on.
 * Returns 0 whenever the process could be started, whatever its exit status; -1 with err when it
 * could not be started at all. */
int proc_run(const struct proc_spec *spec, struct proc_result *res, struct pyti_err *err);
void proc_result_free(struct proc_result *res);

/* For host tools: run argv; 0 if it exits 0, else -1 with err naming the command, its status and
 * the tail of its output. */
int proc_run_simple(char *const *argv, const char *cwd, double timeout_s, struct pyti_err *err);

#endif
