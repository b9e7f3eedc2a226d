/* agent: the in-guest task manager (built as the static executable pyti-agent).
 *
 * It reads <io>/job.json (docs/contracts.md), runs the tasks in order with `/bin/sh -c RUN` under
 * proc_run() with each task's limits, and writes <io>/out/logs/<task>.log and <io>/out/results.json,
 * printing one `@pyti {json}` event line per state change, and after each results.json it writes the
 * file's sha256 (event "results"): the host believes only the results.json the agent announced.
 * The same agent runs as PID 1 of a pid namespace (ns backend), as PID 1 of the VM guest (--vm, see
 * vm.c) and as an ordinary process (tests). This header is the agent's internal interface, public only so that tests can reach the
 * pure logic (parsing, needs, result and event building).
 */
#ifndef PYTI_AGENT_H
#define PYTI_AGENT_H

#include "core.h"
#include "proc.h"

#define AGENT_DEFAULT_OUTPUT_LIMIT (16u * 1024u * 1024u) /* when job.json omits output_limit */
#define AGENT_DEFAULT_PIDS 4096u                      /* when a task says pids: 0 */
/* The sandbox's tmpfs mounts (ns: sandbox_ns.c; vm: vm.c), bounded to job.json's "tmpfs" bytes
 * each (default AGENT_DEFAULT_TMPFS, as the host's SANDBOX_TMPFS_DEFAULT); what a task writes
 * there counts against its memory limit (proc_limits.tmpfs_paths). */
#define AGENT_DEFAULT_TMPFS (1ULL << 30)
extern const char *const agent_tmpfs_paths[];
#define AGENT_DEFAULT_IO_LIMIT (4ULL << 30)
/* The uid (and gid) tasks run as in the VM guest, and in the ns sandbox of a root caller (mapped
 * there to a host uid of its own); the sandbox's passwd and group name it "pyti". */
#define AGENT_TASK_UID 1000u
#define AGENT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct agent_task {
	const char *name, *run, *cwd, *junit; /* borrowed from agent_job.root; cwd/junit may be NULL */
	const json_t *env;                     /* object of strings, or NULL */
	const char **needs;
	size_t n_needs;
	size_t *need_idx; /* index of each need in agent_job.tasks (all earlier than this task) */
	struct proc_limits lim;
};

struct agent_job {
	json_t *root; /* owned */
	const char *job, *dist, *recipe, *backend, *image; /* NULL when absent */
	const json_t *env;
	struct agent_task *tasks;
	size_t n_tasks;
	double heartbeat_s;
	uint64_t io_limit; /* ns: bytes each task may add under /io ("io_limit", default below); 0 = none */
};

/* Validate and index a parsed job.json (takes a new reference to root). Usage errors (exit 2) for
 * anything malformed, including a task that needs an unknown or later task. */
int agent_job_parse(json_t *root, struct agent_job *job, struct pyti_err *err);
int agent_job_load(const char *path, struct agent_job *job, struct pyti_err *err);
void agent_job_free(struct agent_job *job);

enum agent_status { AGENT_PENDING = 0, AGENT_PASSED, AGENT_FAILED, AGENT_SKIPPED };
const char *agent_status_name(enum agent_status st);

/* The first need of task i that did not pass, or NULL when all passed. */
const char *agent_needs_unmet(const struct agent_job *job, size_t i, const enum agent_status *status);

/* Job env overlaid with task env, PATH defaulted; NULL-terminated "K=V" array; free with
 * agent_envp_free(). */
char **agent_envp(const json_t *job_env, const json_t *task_env);
void agent_envp_free(char **envp);
/* Value of key in envp, or NULL. */
const char *agent_envp_get(char *const *envp, const char *key);

/* Status of a task that ran. */
enum agent_status agent_task_status(const struct proc_result *res);

/* One task's object of results.json. res NULL: the task did not run (skipped, or failed to start
 * with message in infra_msg when infra_msg is non-NULL). log_rel: "out/logs/<task>.log" or NULL. */
json_t *agent_task_result(const char *name, enum agent_status st, enum pyti_fclass fc,
			  const struct proc_result *res, const char *infra_msg, double started_epoch,
			  const char *log_rel);
/* The whole results.json object; takes a reference to tasks. */
json_t *agent_results(const struct agent_job *job, json_t *tasks, const char *status, double wall_s,
		      double started_epoch);

/* "@pyti {compact json}\n" (malloc'd). */
char *agent_event_line(const json_t *ev);

struct agent_opts {
	const char *io_dir;
	int event_fd;       /* where @pyti lines go */
	bool emit_job_end;  /* false in --vm mode: job_end is printed after /io is unmounted */
	bool pid1;          /* PID 1 of a pid namespace or of the guest: sweep everything after a task */
	/* Tasks run with no capabilities and no_new_privs (the agent needs CAP_SETPCAP), and with
	 * task_ids as uid/gid task_uid (the agent needs CAP_SETUID/SETGID, CAP_CHOWN, CAP_KILL and
	 * CAP_SYS_PTRACE to prepare their directories and to watch and stop them): the agent's own
	 * results, logs and console are then out of their reach. */
	bool confine;
	bool task_ids;
	uid_t task_uid;
};

/* Run the job in io_dir. 0 when results.json was written (whatever the tasks did), with the job's
 * status in *passed; -1 with err otherwise (err->status tells usage from infrastructure). */
int agent_run_job(const struct agent_opts *opts, bool *passed, struct pyti_err *err);

/* confine.c, for opts->task_ids: hand the job's working directories to the task uid (0 or -1
 * with err); make a task's HOME under /tmp its own; close /io and /io/out again after the last
 * task. */
int agent_confine_io(const struct agent_opts *opts, struct pyti_err *err);
void agent_confine_home(const struct agent_opts *opts, const char *home);
void agent_confine_end(const struct agent_opts *opts);
/* vm: name AGENT_TASK_UID "pyti" in /etc/passwd and /etc/group (the guest's throwaway disk). */
void agent_confine_name_user(void);

/* Emit one event on fd (ignores write errors: the host may have gone away). */
void agent_emit(int fd, const json_t *ev);

/* The VM guest's PID 1 (vm.c). Never returns. */
__attribute__((noreturn)) void agent_vm_main(const char *io_dev, const char *console);

#endif
