/* agent: the pure part — job.json validation, needs, environment, results and event JSON. */
#include <math.h>
#include <string.h>

#include "agent.h"

/* Task names become log file names: keep them boring. */
static bool agent_name_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 128 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static const char *opt_str(const json_t *o, const char *key, bool *bad)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
		*bad = true;
	return json_string_value(v);
}

/* A non-negative number (int or real); dflt when absent or null. */
static int opt_num(const json_t *o, const char *key, double dflt, double *out)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
		return -1;
	*out = json_number_value(v);
	return 0;
}

static int env_ok(const json_t *env)
{
	if (!env || json_is_null(env))
		return 0;
	if (!json_is_object(env))
		return -1;
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)env, k, v)
	{
		if (!*k || strchr(k, '=') || !json_is_string(v))
			return -1;
	}
	return 0;
}

static int parse_task(struct agent_job *job, size_t i, const json_t *t, struct pyti_err *err)
{
	struct agent_task *task = &job->tasks[i];
	if (!json_is_object(t))
		return pyti_err_usage(err, "tasks[%zu] is not an object", i);
	bool bad = false;
	task->name = opt_str(t, "name", &bad);
	if (bad || !agent_name_ok(task->name))
		return pyti_err_usage(err, "tasks[%zu]: missing or invalid name (letters, digits, . _ -)", i);
	for (size_t j = 0; j < i; j++)
		if (strcmp(job->tasks[j].name, task->name) == 0)
			return pyti_err_usage(err, "task %s: listed twice", task->name);
	task->run = opt_str(t, "run", &bad);
	if (bad || !task->run)
		return pyti_err_usage(err, "task %s: missing run command", task->name);
	task->cwd = opt_str(t, "cwd", &bad);
	task->junit = opt_str(t, "junit", &bad);
	if (bad)
		return pyti_err_usage(err, "task %s: cwd and junit must be strings", task->name);
	task->env = json_object_get(t, "env");
	if (env_ok(task->env) < 0)
		return pyti_err_usage(err, "task %s: env must map names to strings", task->name);
	const json_t *needs = json_object_get(t, "needs");
	if (needs && !json_is_null(needs)) {
		if (!json_is_array(needs))
			return pyti_err_usage(err, "task %s: needs must be a list", task->name);
		task->n_needs = json_array_size(needs);
		task->needs = xcalloc(task->n_needs, sizeof *task->needs);
		task->need_idx = xcalloc(task->n_needs, sizeof *task->need_idx);
		for (size_t k = 0; k < task->n_needs; k++) {
			const char *n = json_string_value(json_array_get(needs, k));
			if (!n)
				return pyti_err_usage(err, "task %s: needs[%zu] is not a string", task->name, k);
			size_t j = 0;
			while (j < i && strcmp(job->tasks[j].name, n) != 0)
				j++;
			if (j == i)
				return pyti_err_usage(err, "task %s needs unknown task %s (needs must be listed earlier)",
						      task->name, n);
			task->needs[k] = n;
			task->need_idx[k] = j;
		}
	}
	double timeout, noout, memory, pids, olim;
	if (opt_num(t, "timeout", 0, &timeout) < 0 || opt_num(t, "no_output_timeout", 0, &noout) < 0 ||
	    opt_num(t, "memory", 0, &memory) < 0 || opt_num(t, "pids", 0, &pids) < 0 ||
	    opt_num(t, "output_limit", AGENT_DEFAULT_OUTPUT_LIMIT, &olim) < 0)
		return pyti_err_usage(err,
				      "task %s: timeout, no_output_timeout, memory, pids and output_limit must be "
				      "non-negative numbers",
				      task->name);
	task->lim = (struct proc_limits){
		.timeout_s = timeout,
		.no_output_timeout_s = noout,
		.memory_bytes = (uint64_t)fmin(memory, 1.8e19), /* beyond uint64_t would be undefined */
		.pids = pids > 0 ? (unsigned)fmin(pids, 4e9) : AGENT_DEFAULT_PIDS,
		.output_limit = (uint64_t)fmin(olim, 1.8e19),
		.tmpfs_paths = agent_tmpfs_paths,
	};
	/* ns: /io is a directory on the host's disk, bounded by nothing else (the vm's I/O disk has
	 * its own size). A single file is stopped at once by RLIMIT_FSIZE; many by the walk. Not a
	 * size-capped mount: a loop-mounted image needs real root, and a tmpfs would put /io in RAM
	 * and lose out/ with the sandbox's mount namespace. */
	/* vm: the I/O disk has a fixed size (the host's choice); a task that fails with it full is
	 * NoSpace. */
	static const char *const vm_full[] = {"/io", NULL};
	if (job->backend && !strcmp(job->backend, "vm"))
		task->lim.full_paths = vm_full;
	if (job->backend && !strcmp(job->backend, "ns") && job->io_limit) {
		task->lim.io_path = "/io";
		task->lim.io_bytes = job->io_limit;
		task->lim.fsize_bytes = job->io_limit;
	}
	return 0;
}

const char *const agent_tmpfs_paths[] = {"/tmp", "/var/tmp", "/dev/shm", "/run", NULL};

int agent_job_parse(json_t *root, struct agent_job *job, struct pyti_err *err)
{
	memset(job, 0, sizeof *job);
	if (!json_is_object(root))
		return pyti_err_usage(err, "job.json: not a JSON object");
	job->root = json_incref(root);
	bool bad = false;
	job->job = opt_str(root, "job", &bad);
	job->dist = opt_str(root, "dist", &bad);
	job->recipe = opt_str(root, "recipe", &bad);
	job->backend = opt_str(root, "backend", &bad);
	job->image = opt_str(root, "image", &bad);
	if (bad)
		return pyti_err_usage(err, "job.json: job, dist, recipe, backend and image must be strings");
	job->env = json_object_get(root, "env");
	if (env_ok(job->env) < 0)
		return pyti_err_usage(err, "job.json: env must map names to strings");
	double io_limit;
	if (opt_num(root, "io_limit", (double)AGENT_DEFAULT_IO_LIMIT, &io_limit) < 0)
		return pyti_err_usage(err, "job.json: io_limit must be a non-negative number");
	job->io_limit = (uint64_t)fmin(io_limit, 1.8e19);
	if (opt_num(root, "heartbeat", 10, &job->heartbeat_s) < 0)
		return pyti_err_usage(err, "job.json: heartbeat must be a non-negative number");
	const json_t *tasks = json_object_get(root, "tasks");
	if (!json_is_array(tasks))
		return pyti_err_usage(err, "job.json: tasks must be a list");
	job->n_tasks = json_array_size(tasks);
	job->tasks = xcalloc(job->n_tasks, sizeof *job->tasks);
	for (size_t i = 0; i < job->n_tasks; i++)
		if (parse_task(job, i, json_array_get(tasks, i), err) < 0)
			return pyti_err_prefix(err, "job.json");
	return 0;
}

int agent_job_load(const char *path, struct agent_job *job, struct pyti_err *err)
{
	memset(job, 0, sizeof *job);
	_cleanup_json_ json_t *root = pj_load_file(path, err);
	if (!root) {
		if (err)
			err->status = PYTI_EXIT_USAGE; /* missing or malformed: the host's mistake */
		return -1;
	}
	return agent_job_parse(root, job, err);
}

void agent_job_free(struct agent_job *job)
{
	if (!job)
		return;
	for (size_t i = 0; i < job->n_tasks; i++) {
		free(job->tasks[i].needs);
		free(job->tasks[i].need_idx);
	}
	free(job->tasks);
	if (job->root)
		json_decref(job->root);
	memset(job, 0, sizeof *job);
}

const char *agent_status_name(enum agent_status st)
{
	switch (st) {
	case AGENT_PASSED:
		return "passed";
	case AGENT_FAILED:
		return "failed";
	case AGENT_SKIPPED:
		return "skipped";
	case AGENT_PENDING:
		break;
	}
	return "pending";
}

const char *agent_needs_unmet(const struct agent_job *job, size_t i, const enum agent_status *status)
{
	const struct agent_task *t = &job->tasks[i];
	for (size_t k = 0; k < t->n_needs; k++)
		if (status[t->need_idx[k]] != AGENT_PASSED)
			return t->needs[k];
	return NULL;
}

static void envp_set(char ***envp, size_t *n, const char *k, const char *v)
{
	size_t kl = strlen(k);
	for (size_t i = 0; i < *n; i++)
		if (strncmp((*envp)[i], k, kl) == 0 && (*envp)[i][kl] == '=') {
			free((*envp)[i]);
			(*envp)[i] = xasprintf("%s=%s", k, v);
			return;
		}
	*envp = xrealloc(*envp, (*n + 2) * sizeof **envp);
	(*envp)[(*n)++] = xasprintf("%s=%s", k, v);
	(*envp)[*n] = NULL;
}

char **agent_envp(const json_t *job_env, const json_t *task_env)
{
	char **envp = xcalloc(1, sizeof *envp);
	size_t n = 0;
	const json_t *layers[] = {job_env, task_env};
	for (size_t l = 0; l < ARRAY_SIZE(layers); l++) {
		if (!json_is_object(layers[l]))
			continue;
		const char *k;
		const json_t *v;
		json_object_foreach((json_t *)layers[l], k, v)
		{
			if (json_is_string(v))
				envp_set(&envp, &n, k, json_string_value(v));
		}
	}
	if (!agent_envp_get(envp, "PATH"))
		envp_set(&envp, &n, "PATH", AGENT_DEFAULT_PATH);
	return envp;
}

void agent_envp_free(char **envp)
{
	if (!envp)
		return;
	for (char **p = envp; *p; p++)
		free(*p);
	free(envp);
}

const char *agent_envp_get(char *const *envp, const char *key)
{
	size_t kl = strlen(key);
	for (; envp && *envp; envp++)
		if (strncmp(*envp, key, kl) == 0 && (*envp)[kl] == '=')
			return *envp + kl + 1;
	return NULL;
}

enum agent_status agent_task_status(const struct proc_result *res)
{
	return res->exit_code == 0 && res->signal == 0 && res->fclass == PYTI_FC_NONE ? AGENT_PASSED
										      : AGENT_FAILED;
}

static json_t *fclass_json(enum pyti_fclass fc)
{
	const char *n = pyti_fclass_name(fc);
	return n ? json_string(n) : json_null();
}

static json_t *round_ms(double s)
{
	return json_real(round(s * 1000.0) / 1000.0);
}

json_t *agent_task_result(const char *name, enum agent_status st, enum pyti_fclass fc,
			  const struct proc_result *res, const char *infra_msg, double started_epoch,
			  const char *log_rel)
{
	char when[32];
	iso8601_utc(when, started_epoch);
	json_t *o = json_object();
	json_object_set_new(o, "task", json_string(name));
	json_object_set_new(o, "status", json_string(agent_status_name(st)));
	json_object_set_new(o, "failure_class", fclass_json(fc));
	if (res) {
		json_object_set_new(o, "exit_code", res->signal ? json_null() : json_integer(res->exit_code));
		json_object_set_new(o, "signal", res->signal ? json_integer(res->signal) : json_null());
		json_object_set_new(o, "wall_s", round_ms(res->wall_s));
		json_object_set_new(o, "cpu_user_s", round_ms(res->cpu_user_s));
		json_object_set_new(o, "cpu_sys_s", round_ms(res->cpu_sys_s));
		json_object_set_new(o, "max_rss_kb", json_integer(res->max_rss_kb));
		json_object_set_new(o, "output", pj_string_lossy(res->output ? res->output : "", res->output_len));
		json_object_set_new(o, "output_bytes", json_integer((json_int_t)res->output_bytes));
		json_object_set_new(o, "output_truncated", json_boolean(res->output_truncated));
	} else {
		json_object_set_new(o, "exit_code", json_null());
		json_object_set_new(o, "signal", json_null());
		json_object_set_new(o, "wall_s", json_real(0));
		json_object_set_new(o, "cpu_user_s", json_real(0));
		json_object_set_new(o, "cpu_sys_s", json_real(0));
		json_object_set_new(o, "max_rss_kb", json_integer(0));
		json_object_set_new(o, "output", pj_string_lossy(infra_msg ? infra_msg : "",
								 infra_msg ? strlen(infra_msg) : 0));
		json_object_set_new(o, "output_bytes", json_integer(0));
		json_object_set_new(o, "output_truncated", json_false());
	}
	json_object_set_new(o, "started_at", json_string(when));
	json_object_set_new(o, "log", log_rel ? json_string(log_rel) : json_null());
	return o;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *agent_results(const struct agent_job *job, json_t *tasks, const char *status, double wall_s,
		      double started_epoch)
{
	char when[32];
	iso8601_utc(when, started_epoch);
	json_t *o = json_object();
	json_object_set_new(o, "job", str_or_null(job->job));
	json_object_set_new(o, "dist", str_or_null(job->dist));
	json_object_set_new(o, "image", str_or_null(job->image));
	json_object_set_new(o, "backend", str_or_null(job->backend));
	json_object_set_new(o, "recipe", str_or_null(job->recipe));
	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "wall_s", round_ms(wall_s));
	json_object_set_new(o, "started_at", json_string(when));
	json_object_set(o, "tasks", tasks);
	return o;
}

char *agent_event_line(const json_t *ev)
{
	_cleanup_free_ char *s = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(12) | JSON_ENSURE_ASCII);
	return xasprintf("@pyti %s\n", s ? s : "{}");
}
