/* agent: running a job — tasks in order under proc_run, logs, results.json, events. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "agent.h"

void agent_emit(int fd, const json_t *ev)
{
	_cleanup_free_ char *line = agent_event_line(ev);
	size_t n = strlen(line), done = 0;
	while (done < n) {
		ssize_t w = write(fd, line + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		done += (size_t)w;
	}
}

struct agent_hb {
	int fd;
	const char *task;
};

static void agent_on_heartbeat(void *arg, double wall_s, uint64_t output_bytes, const char *tail, size_t tail_len)
{
	struct agent_hb *hb = arg;
	/* the tail: what a user watching the job sees of the running task (valid UTF-8; the host
	 * escapes it for whatever shows it) */
	_cleanup_json_ json_t *ev = json_pack("{s:s, s:s, s:f, s:I, s:o}", "event", "heartbeat", "task", hb->task,
					      "wall_s", (double)(long long)(wall_s * 10) / 10, "output_bytes",
					      (json_int_t)output_bytes, "tail", pj_string_lossy(tail, tail_len));
	agent_emit(hb->fd, ev);
}

/* After a task: nothing it started may survive into the next one. As PID 1 everything else in the
 * namespace (or guest) is the task's; otherwise proc_run already killed our descendants (we are a
 * subreaper) and only zombies may remain. */
static void agent_sweep(bool pid1)
{
	if (pid1)
		kill(-1, SIGKILL);
	double until = now_mono() + 5;
	for (;;) {
		pid_t w = waitpid(-1, NULL, WNOHANG | __WALL);
		if (w > 0)
			continue;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 || !pid1 || now_mono() > until)
			return; /* ECHILD: nobody left */
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
}

/* A directory of out/ the agent writes into: tasks share /io with us and may have replaced it with
 * a link (to make us write elsewhere) or a file. Make it when it is missing; refuse anything but a
 * real directory, loudly, rather than write through it. Tasks never run while we write (each is
 * swept before), so what lstat sees stays true until we are done. */
static int agent_own_dir(const char *path, struct pyti_err *err)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return pyti_err_set(err, errno, "mkdir %s", path);
	struct stat st;
	if (lstat(path, &st) < 0)
		return pyti_err_set(err, errno, "%s", path);
	if (!S_ISDIR(st.st_mode))
		return pyti_err_set(err, 0, "%s is no longer a directory (a task replaced it?); refusing to write "
					    "through it",
				    path);
	return 0;
}

/* Write results.json and announce its digest on the event channel, which no task holds: the host
 * believes a results.json only when its bytes match the last digest we announced (sandbox.c), so a
 * file a task writes over ours is refused, never taken for the verdict. */
static int agent_write_results(const struct agent_opts *opts, const char *path, const json_t *results,
			       struct pyti_err *err)
{
	_cleanup_free_ char *s = json_dumps(results, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
	if (!s)
		return pyti_err_set(err, ENOMEM, "serialise %s", path);
	size_t n = strlen(s);
	s[n] = '\n';
	if (write_file_atomic(path, s, n + 1, 0644, err) < 0)
		return -1;
	char digest[65];
	sha256_hex(s, n + 1, digest);
	_cleanup_json_ json_t *ev = json_pack("{s:s, s:s, s:O, s:I}", "event", "results", "sha256", digest,
					      "status", json_object_get(results, "status"), "tasks",
					      (json_int_t)json_array_size(json_object_get(results, "tasks")));
	agent_emit(opts->event_fd, ev);
	return 0;
}

/* Run one task that is allowed to run; returns its result object. */
static json_t *agent_run_task(const struct agent_opts *opts, const struct agent_job *job,
			      const struct agent_task *t, enum agent_status *st, enum pyti_fclass *fc)
{
	double started = now_wall();
	char **envp = agent_envp(job->env, t->env);
	const char *home = agent_envp_get(envp, "HOME");
	if (home && strncmp(home, "/tmp/", 5) == 0 && !path_exists(home))
		mkdir_p(home, 0755, NULL); /* failure shows up in the task itself */
	agent_confine_home(opts, home);
	_cleanup_free_ char *log_rel = xasprintf("out/logs/%s.log", t->name);
	_cleanup_free_ char *log_path = xasprintf("%s/%s", opts->io_dir, log_rel);
	char *argv[] = {"/bin/sh", "-c", (char *)t->run, NULL};
	struct agent_hb hb = {opts->event_fd, t->name};
	struct proc_spec spec = {
		.argv = argv,
		.envp = envp,
		.cwd = t->cwd ? t->cwd : opts->io_dir,
		.lim = t->lim,
		.log_path = log_path,
		.on_heartbeat = agent_on_heartbeat,
		.heartbeat_s = job->heartbeat_s,
		.arg = &hb,
		.drop_privs = opts->confine,
		.set_ids = opts->task_ids,
		.uid = opts->task_uid,
		.gid = (gid_t)opts->task_uid,
	};
	struct proc_result res;
	struct pyti_err err = {0};
	json_t *o;
	if (proc_run(&spec, &res, &err) < 0) {
		*st = AGENT_FAILED;
		*fc = PYTI_FC_INFRA;
		_cleanup_free_ char *msg = xasprintf("pyti-agent: cannot start task %s: %s\n", t->name,
						     pyti_err_str(&err));
		/* Leave the reason in the log as well, where people look first. */
		write_file_atomic(log_path, msg, strlen(msg), 0644, NULL);
		o = agent_task_result(t->name, *st, *fc, NULL, msg, started, log_rel);
	} else {
		*st = agent_task_status(&res);
		*fc = res.fclass;
		o = agent_task_result(t->name, *st, *fc, &res, NULL, started, log_rel);
		proc_result_free(&res);
	}
	agent_envp_free(envp);
	return o;
}

int agent_run_job(const struct agent_opts *opts, bool *passed, struct pyti_err *err)
{
	*passed = false;
	double t0 = now_mono(), started = now_wall();
	_cleanup_free_ char *job_path = xasprintf("%s/job.json", opts->io_dir);
	_cleanup_free_ char *out_dir = xasprintf("%s/out", opts->io_dir);
	_cleanup_free_ char *logs_dir = xasprintf("%s/out/logs", opts->io_dir);
	_cleanup_free_ char *res_path = xasprintf("%s/out/results.json", opts->io_dir);
	struct agent_job job;
	if (agent_job_load(job_path, &job, err) < 0) {
		agent_job_free(&job);
		return -1;
	}
	if (agent_confine_io(opts, err) < 0) {
		agent_job_free(&job);
		return -1;
	}
	_cleanup_free_ enum agent_status *status = xcalloc(job.n_tasks ? job.n_tasks : 1, sizeof *status);
	_cleanup_json_ json_t *tasks = json_array();
	_cleanup_json_ json_t *ev = json_pack("{s:s, s:s?, s:I}", "event", "job_start", "job", job.job, "tasks",
					      (json_int_t)job.n_tasks);
	agent_emit(opts->event_fd, ev);
	bool all = true;
	int rc = 0;
	for (size_t i = 0; i < job.n_tasks; i++) {
		const struct agent_task *t = &job.tasks[i];
		if (agent_own_dir(out_dir, err) < 0 || agent_own_dir(logs_dir, err) < 0) {
			rc = -1;
			break;
		}
		enum pyti_fclass fc = PYTI_FC_NONE;
		json_t *o;
		const char *unmet = agent_needs_unmet(&job, i, status);
		if (unmet) {
			status[i] = AGENT_SKIPPED;
			fc = PYTI_FC_DEPENDSON;
			_cleanup_free_ char *why = xasprintf("skipped: needs %s, which did not pass\n", unmet);
			o = agent_task_result(t->name, status[i], fc, NULL, why, now_wall(), NULL);
		} else {
			json_decref(ev);
			ev = json_pack("{s:s, s:s, s:I, s:I}", "event", "task_start", "task", t->name, "i",
				       (json_int_t)(i + 1), "n", (json_int_t)job.n_tasks);
			agent_emit(opts->event_fd, ev);
			o = agent_run_task(opts, &job, t, &status[i], &fc);
			agent_sweep(opts->pid1);
		}
		if (status[i] != AGENT_PASSED)
			all = false;
		json_array_append_new(tasks, o);
		json_decref(ev);
		ev = json_pack("{s:s, s:s, s:s, s:O, s:O}", "event", "task_end", "task", t->name, "status",
			       agent_status_name(status[i]), "wall_s", json_object_get(o, "wall_s"),
			       "failure_class", json_object_get(o, "failure_class"));
		agent_emit(opts->event_fd, ev);
		/* Partial results after each task: if the guest dies, the host still learns how far it got. */
		if (i + 1 < job.n_tasks && agent_own_dir(out_dir, NULL) == 0) {
			_cleanup_json_ json_t *partial = agent_results(&job, tasks, "running", now_mono() - t0, started);
			agent_write_results(opts, res_path, partial, NULL);
		}
	}
	if (rc == 0 && agent_own_dir(out_dir, err) < 0)
		rc = -1;
	agent_confine_end(opts);
	if (rc == 0) {
		_cleanup_json_ json_t *results =
			agent_results(&job, tasks, all ? "passed" : "failed", now_mono() - t0, started);
		rc = agent_write_results(opts, res_path, results, err);
	}
	if (rc == 0) {
		*passed = all;
		if (opts->emit_job_end) {
			json_decref(ev);
			ev = json_pack("{s:s, s:s}", "event", "job_end", "status", all ? "passed" : "failed");
			agent_emit(opts->event_fd, ev);
		}
	}
	agent_job_free(&job);
	return rc;
}
