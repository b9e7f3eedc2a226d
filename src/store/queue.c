/* store: what makes runs and jobs — submit, rerun, runs for local records — and the storing of a
 * task's record with its test cases (reports, finishes, local records); the leased side (claim,
 * heartbeat, report, finish, expiry, cancel, workers) is lease.c (docs/rpc.md, design.md §6).
 *
 * Every function is one transaction. Fencing: a call naming an attempt first reads the job's row
 * FOR UPDATE (PostgreSQL; SQLite holds the write lock from BEGIN IMMEDIATE) and refuses the call
 * unless attempt and lease are the job's current ones, so a worker presumed dead cannot write into
 * the attempt that replaced it. Idempotency rests on primary keys (job, attempt, task) with
 * INSERT … ON CONFLICT DO NOTHING, which holds across masters, not on anything in memory. */
#include <string.h>

#include "store-int.h"

#define MAX_CASES 1000	     /* test cases kept per task (results' failures are capped alike) */
#define MAX_TEXT 4096	     /* a dist, suite, task or worker name */

char *q_dump(const json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

const char *q_verdict(const json_t *res)
{
	const char *v = pj_str(res, "verdict", NULL);
	return store_verdict_parse(v) > 0 ? v : store_verdict_name(store_verdict_of(res));
}

bool q_ok_name(const char *s)
{
	return s && *s && strlen(s) <= MAX_TEXT;
}

static bool ok_str_array(const json_t *a)
{
	if (!a)
		return true;
	if (!json_is_array(a))
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
		if (!json_is_string(v))
			return false;
	return true;
}

static bool ok_str_object(const json_t *o)
{
	if (!o)
		return true;
	if (!json_is_object(o))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
		if (!json_is_string(v))
			return false;
	return true;
}

static int new_run(struct store *st, const struct store_run_spec *spec, const char *id, double now,
		   struct pyti_err *err)
{
	_cleanup_free_ char *env = q_dump(spec->env), *posargs = q_dump(spec->posargs);
	struct sparam p[] = {P_T(id),
			     P_D(now),
			     P_T(spec->origin ? spec->origin : "submit"),
			     P_T(spec->recipe),
			     P_T(spec->recipe_name),
			     P_T(spec->backend),
			     P_T(env),
			     P_T(posargs),
			     P_I(spec->priority),
			     P_T(spec->parent)};
	/* the parent column only when there is one: a handle opened at an older schema (tests) has none */
	if (!spec->parent)
		return st_exec(st,
			       "INSERT INTO runs (id, created, origin, recipe, recipe_name, backend, env, posargs,"
			       " priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       p, NP(p) - 1, err);
	return st_exec(st,
		       "INSERT INTO runs (id, created, origin, recipe, recipe_name, backend, env, posargs, priority,"
		       " parent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		       p, NP(p), err);
}

static int check_spec(const struct store_run_spec *spec, bool need_dists, struct pyti_err *err)
{
	if (need_dists && (spec->n_dists == 0 || spec->n_dists > 100000))
		return st_fail(err, STORE_E_INVALID, "submit: %zu distributions (1 to 100000)", spec->n_dists);
	for (size_t i = 0; need_dists && i < spec->n_dists; i++)
		if (!q_ok_name(spec->dists[i]))
			return st_fail(err, STORE_E_INVALID, "submit: distribution %zu is empty or too long", i + 1);
	if (spec->parent && store_id_kind(spec->parent) != 'r')
		return st_fail(err, STORE_E_INVALID, "submit: parent '%s' is not a run id", spec->parent);
	if (spec->n_suites > 64)
		return st_fail(err, STORE_E_INVALID, "submit: more than 64 images");
	for (size_t i = 0; i < spec->n_suites; i++)
		if (!q_ok_name(spec->suites[i]))
			return st_fail(err, STORE_E_INVALID, "submit: image %zu is empty or too long", i + 1);
	if (spec->recipe && strlen(spec->recipe) > (1u << 20))
		return st_fail(err, STORE_E_INVALID, "submit: the recipe is over 1 MiB");
	if (!ok_str_object(spec->env))
		return st_fail(err, STORE_E_INVALID, "submit: env must be an object of strings");
	if (!ok_str_array(spec->posargs))
		return st_fail(err, STORE_E_INVALID, "submit: posargs must be an array of strings");
	if (spec->backend && strcmp(spec->backend, "ns") && strcmp(spec->backend, "vm"))
		return st_fail(err, STORE_E_INVALID, "submit: backend must be ns, vm or null");
	return 0;
}

/* One queued job; its id is appended to ids. */
static int insert_job(struct store *st, const char *run_id, long long seq, const char *dist, const char *suite,
		      const struct store_run_spec *spec, double now, json_t *ids, struct pyti_err *err)
{
	char id[STORE_ID_SIZE];
	store_id_new('j', id);
	struct sparam p[] = {P_T(id),
			     P_T(run_id),
			     P_I(seq),
			     P_T(dist),
			     P_T(suite),
			     P_T(spec->backend),
			     P_T(spec->recipe_name),
			     P_I(spec->priority),
			     P_D(now),
			     P_I(st->lim.max_attempts)};
	int rc = st_exec(st,
			 "INSERT INTO jobs (id, run_id, seq, dist, suite, backend, recipe_name, priority,"
			 " created, state, attempt, max_attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
			 p, NP(p), err);
	if (rc == 0)
		json_array_append_new(ids, json_string(id));
	return rc;
}

int store_submit(struct store *st, const struct store_run_spec *spec, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	int rc = check_spec(spec, true, err);
	if (rc < 0 || (rc = store_lock(st, err)) < 0)
		return rc;
	static const char *const dflt[] = {"bookworm"};
	const char *const *suites = spec->n_suites ? spec->suites : dflt;
	size_t n_suites = spec->n_suites ? spec->n_suites : 1;
	char run_id[STORE_ID_SIZE];
	store_id_new('r', run_id);
	double now = now_wall();
	_cleanup_json_ json_t *jobs = json_array();
	if ((rc = st_begin(st, err)) < 0 || (rc = new_run(st, spec, run_id, now, err)) < 0)
		goto out;
	long long seq = 0;
	for (size_t d = 0; d < spec->n_dists; d++) {
		for (size_t s = 0; s < n_suites; s++) {
			if ((rc = insert_job(st, run_id, ++seq, spec->dists[d], suites[s], spec, now, jobs, err)) < 0)
				goto out;
		}
	}
	if ((rc = st_commit(st, err)) == 0)
		*out = json_pack("{s:s, s:O}", "run_id", run_id, "jobs", jobs);
out:
	store_unlock(st);
	return rc;
}

static int rerun(struct store *st, const char *id, bool failed_only, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	char kind = store_id_kind(id);
	if (kind != 'r' && kind != 'j')
		return st_fail(err, STORE_E_INVALID, "rerun: '%s' is not a run or job id", id ? id : "");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres jobs = {0}, run = {0};
	_cleanup_json_ json_t *ids = json_array(), *env = NULL, *posargs = NULL;
	struct sparam p[] = {P_T(id)};
	if ((rc = st_begin(st, err)) < 0 ||
	    (rc = st_query(st,
			   kind == 'j'	  ? "SELECT run_id, dist, suite FROM jobs WHERE id = ?"
			   : failed_only ? "SELECT run_id, dist, suite FROM jobs WHERE run_id = ?"
					   " AND state IN ('done', 'failed', 'cancelled')"
					   " AND (verdict IS NULL OR verdict <> 'passed') ORDER BY seq"
					 : "SELECT run_id, dist, suite FROM jobs WHERE run_id = ? ORDER BY seq",
			   p, NP(p), &jobs, err)) < 0)
		goto out;
	if (jobs.nrow == 0) {
		rc = st_fail(err, STORE_E_NOTFOUND, "rerun: no %s %s (or it has no jobs)", kind == 'r' ? "run" : "job",
			     id);
		goto out;
	}
	struct sparam pr[] = {P_T(sres_s(&jobs, 0, 0))};
	if ((rc = st_query(st, "SELECT recipe, recipe_name, backend, env, posargs, priority FROM runs WHERE id = ?", pr,
			   NP(pr), &run, err)) < 0)
		goto out;
	env = sres_json(&run, 0, 3);
	posargs = sres_json(&run, 0, 4);
	struct store_run_spec spec = {.recipe = sres_s(&run, 0, 0),
				      .recipe_name = sres_s(&run, 0, 1),
				      .backend = sres_s(&run, 0, 2),
				      .env = json_is_object(env) ? env : NULL,
				      .posargs = json_is_array(posargs) ? posargs : NULL,
				      .priority = (int)sres_i(&run, 0, 5),
				      .origin = "submit",
				      .parent = sres_s(&jobs, 0, 0)};
	char run_id[STORE_ID_SIZE];
	store_id_new('r', run_id);
	double now = now_wall();
	if ((rc = new_run(st, &spec, run_id, now, err)) < 0)
		goto out;
	for (size_t i = 0; i < jobs.nrow; i++)
		if ((rc = insert_job(st, run_id, (long long)i + 1, sres_s(&jobs, i, 1), sres_s(&jobs, i, 2), &spec, now,
				     ids, err)) < 0)
			goto out;
	if ((rc = st_commit(st, err)) == 0)
		*out = json_pack("{s:s, s:O}", "run_id", run_id, "jobs", ids);
out:
	store_unlock(st);
	return rc;
}

int store_rerun(struct store *st, const char *id, json_t **out, struct pyti_err *err)
{
	return rerun(st, id, false, out, err);
}

int store_rerun_failed(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	if (store_id_kind(run_id) != 'r') {
		*out = NULL;
		return st_fail(err, STORE_E_INVALID, "rerun: '%s' is not a run id", run_id ? run_id : "");
	}
	return rerun(st, run_id, true, out, err);
}

int store_run_new(struct store *st, const struct store_run_spec *spec, char run_id[STORE_ID_SIZE], struct pyti_err *err)
{
	int rc = check_spec(spec, false, err);
	if (rc < 0 || (rc = store_lock(st, err)) < 0)
		return rc;
	store_id_new('r', run_id);
	if ((rc = st_begin(st, err)) == 0 && (rc = new_run(st, spec, run_id, now_wall(), err)) == 0)
		rc = st_commit(st, err);
	store_unlock(st);
	return rc;
}

/* A task's record sent as the task ended, before the job's collect step made it whole (docs/rpc.md
 * `report`): {"task", "status", "wall_s", "failure_class", "partial": true}. The whole record of the
 * same job + attempt + task replaces it; nothing replaces a whole one. */
static bool q_partial(const json_t *result)
{
	return json_is_true(json_object_get(result, "partial"));
}

/* One task's raw data and its test cases (from tests.failures), once per job + attempt + task (a
 * partial record replaced by the whole one). */

int q_store_task(struct store *st, const char *job_id, int attempt, int seq, const char *task, const json_t *result,
		 struct pyti_err *err)
{
	_cleanup_free_ char *js = q_dump(result);
	if (!js || strlen(js) > MAX_JSON)
		return st_fail(err, STORE_E_TOOBIG, "task '%s': result over %u bytes", task, MAX_JSON);
	const char *fc = pj_str(result, "failure_class", NULL);
	struct sparam wall = json_is_number(json_object_get(result, "wall_s")) ? P_D(pj_num(result, "wall_s", 0)) : P_N;
	_cleanup_sres_ struct sres r = {0};
	int rc;
	if (seq >= 0) {
		struct sparam p[] = {
			P_T(job_id), P_I(attempt), P_T(task), P_I(seq), P_T(pj_str(result, "status", NULL)),
			P_T(fc),     wall,	   P_T(js)};
		rc = st_query(
			st,
			"INSERT INTO task_results (job_id, attempt, task, seq, status, failure_class, wall_s, result)"
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
			p, NP(p), &r, err);
	} else { /* the next seq of the attempt, in the same statement (one round trip less) */
		struct sparam p[] = {P_T(job_id), P_I(attempt), P_T(task),
				     P_T(job_id), P_I(attempt), P_T(pj_str(result, "status", NULL)),
				     P_T(fc),	  wall,		P_T(js)};
		rc = st_query(
			st,
			"INSERT INTO task_results (job_id, attempt, task, seq, status, failure_class, wall_s, result)"
			" VALUES (?, ?, ?, (SELECT COUNT(*) FROM task_results WHERE job_id = ? AND attempt = ?),"
			" ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
			p, NP(p), &r, err);
	}
	if (rc < 0)
		return rc;
	if (r.nrow == 0) { /* a repeat, already stored with its cases, or a whole record after a partial one */
		if (q_partial(result))
			return 0;
		_cleanup_sres_ struct sres old = {0};
		struct sparam pk[] = {P_T(job_id), P_I(attempt), P_T(task)};
		if ((rc = st_query(st, "SELECT result FROM task_results WHERE job_id = ? AND attempt = ? AND task = ?",
				   pk, NP(pk), &old, err)) < 0)
			return rc;
		_cleanup_json_ json_t *was = old.nrow ? sres_json(&old, 0, 0) : NULL;
		if (!q_partial(was))
			return 0; /* the first whole record is kept (idempotent) */
		struct sparam pu[] = {P_T(pj_str(result, "status", NULL)),
				      P_T(fc),
				      wall,
				      P_T(js),
				      P_T(job_id),
				      P_I(attempt),
				      P_T(task)};
		if ((rc = st_exec(st, "DELETE FROM testcases WHERE job_id = ? AND attempt = ? AND task = ?", pk, NP(pk),
				  err)) < 0 ||
		    (rc = st_exec(st,
				  "UPDATE task_results SET status = ?, failure_class = ?, wall_s = ?, result = ?"
				  " WHERE job_id = ? AND attempt = ? AND task = ?",
				  pu, NP(pu), err)) < 0)
			return rc;
	}
	const json_t *fails = json_object_get(json_object_get(result, "tests"), "failures"), *f;
	size_t i;
	json_array_foreach(fails, i, f) {
		if (i >= MAX_CASES)
			break;
		const char *id = pj_str(f, "id", NULL), *outcome = pj_str(f, "outcome", "failed");
		if (!id)
			continue;
		struct sparam q[] = {P_T(job_id),
				     P_I(attempt),
				     P_T(task),
				     P_I((long long)i),
				     P_T(id),
				     P_T(outcome),
				     P_T(pj_str(f, "message", NULL))};
		rc = st_exec(st,
			     "INSERT INTO testcases (job_id, attempt, task, seq, case_id, outcome, message)"
			     " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			     q, NP(q), err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int q_store_tasks(struct store *st, const char *job_id, int attempt, const json_t *results, struct pyti_err *err)
{
	const json_t *tasks = json_object_get(results, "tasks"), *t;
	size_t i;
	json_array_foreach(tasks, i, t) {
		const char *name = pj_str(t, "task", NULL);
		if (!json_is_object(t) || !q_ok_name(name))
			continue;
		int rc = q_store_task(st, job_id, attempt, (int)i, name, t, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

