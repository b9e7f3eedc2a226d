/* manager: one job end to end (the seed's Manager).
 *
 *   image → recipe → I/O directory → (local sdist/dir: stage src first, refusing hostile archives
 *   before anything runs) → fetch in the fetch sandbox → wheel metadata (name, version, extras,
 *   top-level modules; read, never executed) → job.json → sandbox run → results.json + test counts →
 *   logs kept under runs/<job>/ → I/O directory removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fetch.h"
#include "image.h"
#include "manager.h"
#include "pyti_archive.h"
#include "recipe.h"
#include "sandbox.h"

#define VENV "/tmp/pyti-venv"
#define RESULTS_MAX (64u << 20) /* results.json keeps at most head+tail of each task's output */

static void progress(const struct manager_opts *o, const char *phase, const json_t *ev)
{
	if (o->on_progress)
		o->on_progress(o->arg, phase, ev);
}

char *manager_new_job_id(void)
{
	char ts[32];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof ts, "%Y%m%dT%H%M%S", &tm);
	unsigned r = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &r, sizeof r) != sizeof r)
			r = (unsigned)getpid();
		close(fd);
	}
	return xasprintf("%s-%06x", ts, r & 0xffffff);
}

/* Unpack an sdist into src/ with the archive module's checks. */
static int stage_sdist(const char *sdist, const char *src_dir, struct pyti_err *err)
{
	struct arch_opts ao = ARCH_OPTS_SDIST;
	if (arch_unpack(sdist, src_dir, &ao, err) < 0)
		return pyti_err_prefix(err, "refusing sdist %s", sdist);
	return 0;
}

/* The job's environment: pyti's, then the user's --env NAME=VALUE (which may override it). */
static json_t *task_env(const char *const *user, struct pyti_err *err)
{
	json_t *env = json_object();
	sandbox_env_base(env, VENV "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	json_object_set_new(env, "VIRTUAL_ENV", json_string(VENV));
	json_object_set_new(env, "PYTHONUNBUFFERED", json_string("1"));
	json_object_set_new(env, "PIP_DISABLE_PIP_VERSION_CHECK", json_string("1"));
	for (size_t i = 0; user && user[i]; i++) {
		const char *eq = strchr(user[i], '=');
		json_t *v = eq ? json_string(eq + 1) : NULL;
		if (!v) {
			json_decref(env);
			pyti_err_usage(err, "--env %s: not NAME=VALUE in UTF-8", user[i]);
			return NULL;
		}
		_cleanup_free_ char *name = xasprintf("%.*s", (int)(eq - user[i]), user[i]);
		json_object_set_new(env, name, v);
	}
	return env;
}

/* The host's wall-clock limit on the whole sandbox, which nothing inside can switch off (a task
 * that stops the agent, or keeps it from ending, is killed with it): the tasks' own timeouts
 * with room for set-up, or job_max_s when a task has none. */
static double sandbox_backstop(const json_t *tasks, double job_max_s, bool *untimed)
{
	double total = 0;
	size_t i;
	json_t *t;
	*untimed = false;
	json_array_foreach(tasks, i, t) {
		double to = pj_num(t, "timeout", 0);
		if (to <= 0) {
			*untimed = true;
			return job_max_s > 0 ? job_max_s : MANAGER_JOB_MAX_S;
		}
		total += to + 5;
	}
	return total + 120;
}

struct run_state {
	const struct manager_opts *o;
	const char *phase; /* "fetch" while the fetch sandbox runs, then "sandbox" */
};

static void on_event(void *arg, json_t *ev)
{
	struct run_state *rs = arg;
	progress(rs->o, rs->phase, ev);
}

/* What is kept of out/ is regular files and directories only: a link the sandbox left there
 * (to a host file, to /proc/self/fd/0) or a FIFO would trap whoever opens runs/<job>/ later.
 * fd-based and O_NOFOLLOW, so nothing here is followed either. */
static int prune_kept(void *arg, const struct tree_entry *e)
{
	(void)arg;
	if (!S_ISREG(e->st->st_mode) && !S_ISDIR(e->st->st_mode))
		unlinkat(e->dirfd, e->name, 0);
	return TREE_WALK_NEXT;
}

/* Keep out/ (results, logs, junit) under runs/<job>/ and return that path. outfd is out/ as
 * collect opened it (never through a link): what is renamed must be that very directory, so a
 * sandbox that replaced out/ by a link to a host directory never gets runs/<job> to be that link,
 * and the results written there next land in a directory of the job's own. */
static char *keep_outputs(const char *state_dir, const char *job_id, const char *io_dir, int outfd,
			  struct pyti_err *err)
{
	_cleanup_free_ char *runs = xasprintf("%s/runs", state_dir);
	if (mkdir_p(runs, 0755, err) < 0)
		return NULL;
	_cleanup_free_ char *dst = xasprintf("%s/%s", runs, job_id);
	_cleanup_free_ char *out = xasprintf("%s/out", io_dir);
	if (rename(out, dst) < 0) {
		pyti_err_set(err, errno, "keep %s", dst);
		return NULL;
	}
	struct stat kept, opened;
	if (lstat(dst, &kept) < 0 || fstat(outfd, &opened) < 0 || !S_ISDIR(kept.st_mode) ||
	    kept.st_dev != opened.st_dev || kept.st_ino != opened.st_ino) {
		if (lstat(dst, &kept) == 0 && !S_ISDIR(kept.st_mode))
			unlink(dst); /* a link or a file: never left under runs/ */
		pyti_err_class(err, PYTI_FC_CRASH, "keep %s: the job's out/ changed under pyti", dst);
		return NULL;
	}
	tree_walk(outfd, 32, prune_kept, NULL, NULL);
	return steal_pointer(&dst);
}

/* A local sdist or source tree is staged into src first: a hostile archive is refused before any of
 * its code could run anywhere. *local: the distribution is a local file or directory. */
static int stage_local(const struct manager_opts *o, const char *src, bool *local, struct pyti_err *err)
{
	struct stat st;
	*local = fetch_dist_is_local(o->dist, &st);
	if (*local && S_ISREG(st.st_mode) && is_sdist_name(o->dist)) {
		progress(o, "stage: unpacking sdist", NULL);
		if (stage_sdist(o->dist, src, err) < 0)
			return -1;
	} else if (*local && S_ISDIR(st.st_mode)) {
		progress(o, "stage: copying source tree", NULL);
		if (copy_src_tree(o->dist, src, 0, err) < 0)
			return -1;
	} else if (*local && !(S_ISREG(st.st_mode) && str_has_suffix(o->dist, ".whl"))) {
		return pyti_err_usage(err, "%s: not an sdist (.tar.gz, .zip …), a wheel or a source directory",
				      o->dist);
	}
	return 0;
}

/* The distribution and what the recipe requires, into the job's I/O directory (fetch_dist). What
 * the fetch does is said once it is known: "from the cache", or the fetch sandbox's own steps (pip
 * wheel, pip download) as their events come. */
static int fetch_for_job(const struct manager_opts *o, const struct image_info *img, const struct recipe *recipe,
			 const char *io, struct run_state *rs, struct fetch_result *fr, struct pyti_err *err)
{
	_cleanup_free_ const char **requires = xcalloc(recipe->n_requires + 1, sizeof *requires);
	for (size_t i = 0; i < recipe->n_requires; i++)
		requires[i] = recipe->requires[i];
	struct fetch_req freq = {
		.dist = o->dist,
		.state_dir = o->state_dir,
		.image_dir = img->dir,
		.agent_path = o->agent_path,
		.io_dir = io,
		.requires = requires,
		.refresh = o->refresh,
		.on_event = on_event,
		.arg = rs,
	};
	if (fetch_dist(&freq, fr, err) < 0)
		return -1;
	if (fr->from_cache)
		progress(o, "fetch: from the cache", NULL);
	else
		progress(o, "fetch: done", NULL);
	return 0;
}

/* The test extras (fetch_test_extras, in that order) the wheel declares, into extras[max]; their count. */
static size_t test_extras(const struct wheel_meta *wm, const char **extras, size_t max)
{
	size_t n_extras = 0;
	for (size_t i = 0; fetch_test_extras[i] && n_extras < max; i++)
		for (size_t k = 0; k < wm->n_extras; k++)
			if (strcmp(wm->extras[k], fetch_test_extras[i]) == 0)
				extras[n_extras++] = fetch_test_extras[i];
	return n_extras;
}

/* The recipe's requires (the test runner) and the test requirements the dist's source declares go
 * to the sandbox as one requirements file, which {test_requirements} names: *path is its name in
 * the sandbox, or NULL when there are none. */
static int write_test_reqs(const char *io, const struct recipe *recipe, const struct fetch_result *fr,
			   const char **path, struct pyti_err *err)
{
	*path = NULL;
	if (!recipe->n_requires && !(fr->test_requires && fr->test_requires[0]))
		return 0;
	_cleanup_buf_ struct buf tr = BUF_INIT(0);
	for (size_t i = 0; i < recipe->n_requires; i++)
		buf_printf(&tr, "%s\n", recipe->requires[i]);
	for (size_t i = 0; fr->test_requires && fr->test_requires[i]; i++)
		buf_printf(&tr, "%s\n", fr->test_requires[i]);
	_cleanup_free_ char *trp = xasprintf("%s/test-requirements.txt", io);
	if (write_file_atomic(trp, tr.data, tr.len, 0644, err) < 0)
		return -1;
	*path = "/io/test-requirements.txt";
	return 0;
}

/* The guest's files (the default test runner and its plan: tox.ini's command, read here without
 * running it) and IO/job.json; the job (its "tasks" are what the sandbox runs), or NULL. */
static json_t *write_job(const struct manager_opts *o, const struct image_info *img, const struct recipe *recipe,
			 const struct recipe_vars *vars, const char *job_id, const char *io, struct pyti_err *err)
{
	if (recipe_stage_guest_files(io, recipe, vars, NULL, err) < 0)
		return NULL;
	json_t *env = task_env(o->env, err);
	if (!env)
		return NULL;
	json_t *tasks = recipe_to_job_tasks(recipe, vars, err);
	if (!tasks) {
		json_decref(env);
		return NULL;
	}
	_cleanup_json_ json_t *job = json_pack("{sssssssssssosIsIso}", "job", job_id, "dist", vars->dist, "recipe",
					       recipe->name, "backend", o->backend, "image", img->display,
					       "env", env, "tmpfs", (json_int_t)recipe->tmpfs, "io_limit",
					       (json_int_t)recipe->io_limit, "tasks", tasks);
	_cleanup_free_ char *job_path = xasprintf("%s/job.json", io);
	if (pj_dump_file(job, job_path, err) < 0)
		return NULL;
	return steal_pointer(&job);
}

/* The sandbox, on job's tasks; a job over its backstop says so when no task has a timeout. */
static int run_job_sandbox(const struct manager_opts *o, const struct image_info *img, const struct recipe *recipe,
			   const char *io, json_t *tasks, struct run_state *rs, struct sandbox_result *sr,
			   struct pyti_err *err)
{
	rs->phase = "sandbox";
	progress(o, o->cold ? "sandbox: starting (cold)" : "sandbox: starting", NULL);
	bool untimed;
	struct sandbox_spec spec = {
		.backend = o->backend,
		.image_dir = img->dir,
		.io_dir = io,
		.agent_path = o->agent_path,
		.state_dir = o->state_dir,
		.timeout_s = sandbox_backstop(tasks, o->job_max_s, &untimed),
		.job_tasks = tasks,
		.tmpfs_bytes = recipe->tmpfs,
		.cold = o->cold,
		.vm_uri = o->vm_uri,
		.on_event = on_event,
		.arg = rs,
	};
	if (sandbox_run(&spec, sr, err) < 0) {
		if (untimed && err->fclass == PYTI_FC_TIMEOUT)
			pyti_err_prefix(err, "job over its wall-clock limit of %.0f s (PYTI_JOB_MAX_S; a task has no "
					     "timeout)", spec.timeout_s);
		return -1;
	}
	return 0;
}

/* The sandbox's results.json with what the host adds (test counts, timings, test requirements),
 * out/ capped and kept under runs/<job>/, and the results written there too. */
static int collect(const struct manager_opts *o, const char *job_id, const char *io, const json_t *job,
		   const struct sandbox_result *sr, const struct fetch_result *fr, json_t **results,
		   struct pyti_err *err)
{
	progress(o, "collect", NULL);
	/* Everything under out/ was written by the sandbox: read beneath the I/O directory, never
	 * through a link (out/ itself may have been replaced by one), regular files only. */
	_cleanup_free_ char *outd = xasprintf("%s/out", io);
	_cleanup_close_ int iofd = safe_opendir_path(io, err);
	_cleanup_close_ int outfd = iofd < 0 ? -1 : safe_opendir_beneath(iofd, "out", err);
	_cleanup_json_ json_t *res = outfd < 0 ? NULL : pj_load_beneath(outfd, "results.json", RESULTS_MAX, err);
	if (!res) {
		pyti_err_prefix(err, "the sandbox left no results");
		err->fclass = PYTI_FC_CRASH;
		return -1;
	}
	report_add_test_counts(res, job, iofd);
	json_object_set_new(res, "sandbox_setup_s", json_real(sr->setup_s));
	json_object_set_new(res, "fetch_s", json_real((double)(long long)(fr->wall_s * 1000) / 1000));
	json_t *vmt = sandbox_vm_times_json(sr); /* how the vm job got its guest (docs/contracts.md) */
	if (vmt)
		json_object_set_new(res, "vm", vmt);
	if (fr->test_requirements) /* declared, fetched, dropped (why): fresh and cached runs alike */
		json_object_set(res, "test_requirements", fr->test_requirements);
	if (manager_cap_outputs(outd, MANAGER_KEEP_MAX, res, err) < 0)
		return -1;
	_cleanup_free_ char *kept = keep_outputs(o->state_dir, job_id, io, outfd, err);
	if (!kept)
		return -1;
	json_object_set_new(res, "logs", json_string(kept));
	_cleanup_free_ char *kept_res = xasprintf("%s/results.json", kept);
	if (pj_dump_file(res, kept_res, err) < 0)
		return -1;
	*results = steal_pointer(&res);
	return 0;
}

/* Stage the source, fetch, write job.json, run the sandbox and collect: everything that happens
 * inside the job's I/O directory. */
static int run_job(const struct manager_opts *o, const struct image_info *img, const struct recipe *recipe,
		   const char *job_id, const char *io, json_t **results, struct pyti_err *err)
{
	_cleanup_free_ char *src = xasprintf("%s/src", io), *wheels = xasprintf("%s/wheels", io),
			    *outd = xasprintf("%s/out", io);
	if (mkdir_p(src, 0755, err) < 0 || mkdir_p(wheels, 0755, err) < 0 || mkdir_p(outd, 0755, err) < 0)
		return -1;
	bool local;
	if (stage_local(o, src, &local, err) < 0)
		return -1;

	struct run_state rs = {.o = o, .phase = "fetch"};
	_cleanup_(fetch_result_free) struct fetch_result fr = {0};
	if (fetch_for_job(o, img, recipe, io, &rs, &fr, err) < 0)
		return -1;
	if (!local && fr.sdist) {
		progress(o, "stage: unpacking sdist", NULL);
		if (stage_sdist(fr.sdist, src, err) < 0)
			return -1;
	}

	/* Name, version, extras and importable modules from the dist's own wheel: read, never run. */
	_cleanup_free_ char *whl = xasprintf("%s/%s", fr.wheelhouse, fr.dist_wheel);
	_cleanup_(wheel_meta_free) struct wheel_meta wm = {0};
	if (wheel_read_meta(whl, &wm, err) < 0)
		return pyti_err_prefix(err, "reading the metadata of %s", fr.dist_wheel);
	const char *extras[8];
	size_t n_extras = test_extras(&wm, extras, ARRAY_SIZE(extras));
	const char *test_reqs;
	if (write_test_reqs(io, recipe, &fr, &test_reqs, err) < 0)
		return -1;
	_cleanup_free_ char *dist_pin = xasprintf("%s==%s", wm.name, wm.version);
	struct recipe_vars vars = {
		.dist = dist_pin,
		.name = wm.name,
		.version = wm.version,
		.extras = extras,
		.n_extras = n_extras,
		.modules = (const char *const *)wm.modules,
		.n_modules = wm.n_modules,
		.test_requirements = test_reqs,
		.posargs = o->posargs,
		.n_posargs = o->n_posargs,
	};
	_cleanup_json_ json_t *job = write_job(o, img, recipe, &vars, job_id, io, err);
	if (!job)
		return -1;

	struct sandbox_result sr;
	if (run_job_sandbox(o, img, recipe, io, json_object_get(job, "tasks"), &rs, &sr, err) < 0)
		return -1;
	return collect(o, job_id, io, job, &sr, &fr, results, err);
}

int manager_run(const struct manager_opts *o, json_t **results, struct pyti_err *err)
{
	*results = NULL;
	_cleanup_(image_info_free) struct image_info img = {0};
	_cleanup_recipe_ struct recipe *recipe = NULL;

	if (image_find(o->state_dir, o->suite, &img, err) < 0)
		return -1;
	if (recipe_load(o->recipe_path ? o->recipe_path : "default", &recipe, err) < 0)
		return -1;
	if (access(o->agent_path, X_OK) < 0)
		return pyti_err_set(err, errno, "guest agent %s", o->agent_path);

	_cleanup_free_ char *job_id = o->job_id ? xstrdup(o->job_id) : manager_new_job_id();
	_cleanup_free_ char *jobs = xasprintf("%s/jobs", o->state_dir);
	_cleanup_free_ char *io = xasprintf("%s/%s", jobs, job_id);
	/* The I/O directories of pyti runs that were killed (kill -9, SIGTERM mid-job) go first; this
	 * run's own is recorded as held before it exists, so a sweeper running beside it never takes
	 * it for one of those. */
	if (mkdir_p(jobs, 0755, err) < 0)
		return -1;
	owner_sweep(jobs);
	int owner = owner_claim(jobs, job_id, err);
	if (owner < 0)
		return -1;
	int rc = run_job(o, &img, recipe, job_id, io, results, err);
	if (o->keep) {
		if (*results)
			json_object_set_new(*results, "job_dir", json_string(io));
		else
			log_warn("job directory kept: %s", io);
	} else {
		struct pyti_err e2 = {0};
		if (rm_rf(io, &e2) < 0)
			log_warn("%s", pyti_err_str(&e2));
	}
	owner_release(jobs, job_id, owner);
	return rc;
}

static bool is_test_task(const json_t *t)
{
	return json_object_get(t, "tests") || strncmp(pj_str(t, "task", ""), "test", 4) == 0;
}

const char *manager_verdict(const json_t *r)
{
	const char *status = pj_str(r, "status", "");
	/* the distribution failed to build: the package's result (status "failed", no tasks) */
	if (strcmp(pj_str(r, "failure_class", ""), "BuildFail") == 0)
		return "build-failed";
	if (strcmp(status, "error") == 0) {
		const char *fc = pj_str(r, "failure_class", "");
		static const char *const pkg[] = {"Timeout", "OOM", "NoSpace", "Pids", "NoOutput", "Tampered"};
		if (strcmp(fc, "Fetch") == 0)
			return "build-failed";
		for (size_t i = 0; i < ARRAY_SIZE(pkg); i++)
			if (strcmp(fc, pkg[i]) == 0)
				return "test-failed";
		return "infra";
	}
	const json_t *tasks = json_object_get(r, "tasks");
	size_t i;
	json_t *t;
	json_array_foreach(tasks, i, t) {
		const char *fc = pj_str(t, "failure_class", "");
		if (strcmp(fc, "Infra") == 0 || strcmp(fc, "Crash") == 0)
			return "infra";
	}
	json_array_foreach(tasks, i, t) {
		if (strcmp(pj_str(t, "status", ""), "failed") != 0)
			continue;
		if (!is_test_task(t))
			return "build-failed";
		return json_is_true(json_object_get(json_object_get(t, "tests"), "no_tests")) ? "no-tests"
											   : "test-failed";
	}
	if (strcmp(status, "passed") != 0)
		return json_array_size(tasks) ? "test-failed" : "infra";
	size_t n_test = 0, n_none = 0;
	json_array_foreach(tasks, i, t) {
		if (!is_test_task(t))
			continue;
		n_test++;
		n_none += json_is_true(json_object_get(json_object_get(t, "tests"), "no_tests"));
	}
	return n_test && n_none == n_test ? "no-tests" : "passed";
}

int manager_verdict_exit(const char *v)
{
	if (strcmp(v, "passed") == 0 || strcmp(v, "no-tests") == 0)
		return PYTI_EXIT_OK;
	return strcmp(v, "infra") == 0 ? PYTI_EXIT_INFRA : PYTI_EXIT_FAILED;
}

int manager_salvage(const char *state_dir, const char *job_id, const char *announced_sha256, bool keep,
		    json_t **partial, struct pyti_err *err)
{
	if (partial)
		*partial = NULL;
	_cleanup_free_ char *jobs = xasprintf("%s/jobs", state_dir);
	_cleanup_free_ char *io = xasprintf("%s/%s", jobs, job_id);
	struct stat st;
	if (lstat(io, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0; /* it had not started */
	int rc = 0;
	{
		/* out/ is the (ended) sandbox's: read beneath the I/O directory, never through a link */
		struct pyti_err e2 = {0};
		_cleanup_close_ int iofd = safe_opendir_path(io, &e2);
		_cleanup_close_ int outfd = iofd < 0 ? -1 : safe_opendir_beneath(iofd, "out", &e2);
		_cleanup_buf_ struct buf b = BUF_INIT(RESULTS_MAX);
		_cleanup_json_ json_t *res = NULL;
		if (outfd >= 0 && safe_read_beneath(outfd, "results.json", &b, &e2) == 0 && b.len) {
			char sha[65];
			sha256_hex(b.data, b.len, sha);
			if (announced_sha256 && strcmp(sha, announced_sha256) == 0)
				res = pj_loads(b.data, b.len, &e2);
			if (!res || !json_is_object(res)) {
				json_decref(res);
				res = NULL;
				renameat(outfd, "results.json", outfd, "results.json.refused");
			}
		}
		if (res) {
			_cleanup_free_ char *outd = xasprintf("%s/out", io);
			json_object_set_new(res, "status", json_string("interrupted"));
			_cleanup_free_ char *kept = NULL;
			if (manager_cap_outputs(outd, MANAGER_KEEP_MAX, res, err) < 0 ||
			    !(kept = keep_outputs(state_dir, job_id, io, outfd, err))) {
				rc = -1;
			} else {
				json_object_set_new(res, "logs", json_string(kept));
				_cleanup_free_ char *kept_res = xasprintf("%s/results.json", kept);
				if (pj_dump_file(res, kept_res, err) < 0)
					rc = -1;
				else if (partial)
					*partial = json_incref(res);
			}
		}
	}
	if (!keep) {
		struct pyti_err e2 = {0};
		if (rm_rf(io, &e2) < 0)
			log_warn("%s", pyti_err_str(&e2));
	}
	/* its record, free since its process is gone: taken and dropped, so no sweep takes a kept
	 * directory for a killed run's */
	struct pyti_err e3 = {0};
	int fd = owner_claim(jobs, job_id, &e3);
	owner_release(jobs, job_id, fd);
	return rc;
}
