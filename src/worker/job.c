/* The job process: one claimed job, run by manager_run() exactly as `pyti run` runs it.
 *
 * It is the pyti binary re-executed (`pyti worker --run-job DIR`), so each job has a process of
 * its own: a job that crashes or is killed (a cancel, a lost lease) takes no other job or the
 * worker's state with it, and it dies with the worker (PR_SET_PDEATHSIG), so a worker killed
 * with -9 leaves no job running that nobody will report. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include <sys/stat.h>

#include "fetch.h"
#include "manager.h"
#include "worker.h"

struct job_ctx {
	int fd;
};

/* One event a line on the worker's pipe: {"phase", "event"}. A worker that went away makes the
 * write fail (EPIPE, SIGPIPE ignored): the job goes on; its child dies with it anyway. */
static void on_progress(void *arg, const char *phase, const json_t *ev)
{
	struct job_ctx *j = arg;
	_cleanup_json_ json_t *line = json_pack("{s:s, s:O?}", "phase", phase, "event", (json_t *)ev);
	if (!line)
		return;
	_cleanup_free_ char *s = json_dumps(line, JSON_COMPACT);
	if (!s)
		return;
	size_t n = strlen(s);
	s[n] = '\n'; /* json_dumps' NUL becomes the newline: one write, one line */
	const char *p = s;
	size_t left = n + 1;
	while (left) {
		ssize_t w = write(j->fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		left -= (size_t)w;
	}
}

static int write_outcome(const char *dir, json_t *outcome)
{
	_cleanup_free_ char *p = xasprintf("%s/outcome.json", dir);
	struct pyti_err err = {0};
	if (pj_dump_file(outcome, p, &err) < 0) {
		log_warn("%s", pyti_err_str(&err));
		return PYTI_EXIT_INFRA;
	}
	return 0;
}

static int outcome_error(const char *dir, const struct pyti_err *err)
{
	const char *fc = pyti_fclass_name(err->fclass);
	const char *msg = pyti_err_str(err);
	_cleanup_json_ json_t *o = json_pack("{s:{s:s, s:o, s:o, s:i}}", "error", "status", "error", "failure_class",
					     fc ? json_string(fc) : json_null(), "error",
					     pj_string_lossy(msg, strlen(msg)), "exit_status",
					     err->status ? (int)err->status : PYTI_EXIT_INFRA);
	write_outcome(dir, o);
	return err->status ? (int)err->status : PYTI_EXIT_INFRA;
}

int worker_job_main(const char *state_dir, const char *dir, const char *agent_path, int event_fd)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* set before exec by the worker too; kept across it */
	signal(SIGPIPE, SIG_IGN);
	struct pyti_err err = {0};
	_cleanup_free_ char *cp = xasprintf("%s/claim.json", dir);
	_cleanup_json_ json_t *claim = pj_load_file(cp, &err);
	if (!claim)
		return outcome_error(dir, &err);
	json_t *cfg = json_object_get(claim, "config");
	const char *dist = pj_str(cfg, "dist", NULL);
	if (!dist || !*dist) {
		pyti_err_usage(&err, "the claimed job has no distribution");
		return outcome_error(dir, &err);
	}
	/* A path names a file of this machine: any submitter could have its files copied into the
	 * sandbox and out again in the job's logs. Only a worker told so takes them (its operator's
	 * own trees, the tests'); "backend" and "allow_local" are the worker's words, not the claim's. */
	struct stat st;
	if (!pj_bool(claim, "allow_local", false) &&
	    (fetch_dist_is_local(dist, &st) || dist[0] == '/' || dist[0] == '.' || dist[0] == '~')) {
		pyti_err_usage(&err,
			       "the job's distribution '%s' is a path on the worker; this worker takes "
			       "requirements only (pyti worker --allow-local-dists)",
			       dist);
		return outcome_error(dir, &err);
	}
	/* what the manager cannot do yet must not be dropped silently: the job would pass as
	 * something it is not */
	json_t *env = json_object_get(cfg, "env"), *posargs = json_object_get(cfg, "posargs");
	if (json_object_size(env) || json_array_size(posargs)) {
		pyti_err_usage(&err, "the job asks for %s, which this worker's manager does not support yet",
			       json_object_size(env) ? "environment variables" : "positional arguments");
		return outcome_error(dir, &err);
	}
	struct manager_opts mo = {
		.state_dir = state_dir,
		.dist = dist,
		.suite = pj_str(cfg, "suite", "bookworm"),
		.backend = pj_str(claim, "backend", "ns"), /* the worker's choice, written by the worker */
		.agent_path = agent_path,
	};
	const char *be = pj_str(cfg, "backend", NULL);
	if (be)
		mo.backend = be;
	if (strcmp(mo.backend, "ns") != 0 && strcmp(mo.backend, "vm") != 0) {
		pyti_err_usage(&err, "the job asks for backend '%s' (ns or vm)", mo.backend);
		return outcome_error(dir, &err);
	}
	_cleanup_free_ char *recipe_path = NULL;
	const char *recipe = pj_str(cfg, "recipe", NULL);
	if (recipe) {
		recipe_path = xasprintf("%s/recipe.ini", dir);
		if (write_file_atomic(recipe_path, recipe, strlen(recipe), 0600, &err) < 0)
			return outcome_error(dir, &err);
		mo.recipe_path = recipe_path;
	}
	const char *jm = getenv("PYTI_JOB_MAX_S");
	if (jm && *jm) {
		char *end;
		mo.job_max_s = strtod(jm, &end);
		if (*end || !(mo.job_max_s > 0) || mo.job_max_s > 1e9) {
			pyti_err_usage(&err, "PYTI_JOB_MAX_S must be a number of seconds above 0, not '%s'", jm);
			return outcome_error(dir, &err);
		}
	}
	struct job_ctx jc = {.fd = event_fd};
	mo.on_progress = on_progress;
	mo.arg = &jc;
	_cleanup_json_ json_t *res = NULL;
	if (manager_run(&mo, &res, &err) < 0)
		return outcome_error(dir, &err);
	_cleanup_json_ json_t *o = json_pack("{s:O}", "results", res);
	return write_outcome(dir, o);
}
