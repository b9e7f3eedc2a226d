/* store: reading — status, results, runs, show (the shapes of docs/rpc.md). Reads take no write
 * lock: SQLite's WAL and PostgreSQL's MVCC give each statement a consistent view, and a status that
 * is a few milliseconds old is what the caller would get anyway. */
#include <string.h>

#include "store-int.h"

int read_run_header(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	_cleanup_sres_ struct sres r = {0}, c = {0}, v = {0};
	struct sparam p[] = {P_T(run_id)};
	*out = NULL;
	int rc = st_query(st, "SELECT id, created, origin, recipe_name, priority, parent FROM runs WHERE id = ?", p,
			  NP(p), &r, err);
	if (rc < 0)
		return rc;
	if (!r.nrow)
		return st_fail(err, STORE_E_NOTFOUND, "no run %s", run_id);
	if ((rc = st_query(st, "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", p, NP(p), &c, err)) <
		    0 ||
	    (rc = st_query(
		     st, "SELECT verdict, COUNT(*) FROM jobs WHERE run_id = ? AND verdict IS NOT NULL GROUP BY verdict",
		     p, NP(p), &v, err)) < 0)
		return rc;
	json_t *counts = json_object(), *verdicts = json_object();
	long long total = 0;
	for (int s = 0; s < STORE_STATE_COUNT; s++)
		json_object_set_new(counts, store_state_name(s), json_integer(0));
	for (int s = 1; s < STORE_VERDICT_COUNT; s++)
		json_object_set_new(verdicts, store_verdict_name(s), json_integer(0));
	for (size_t i = 0; i < c.nrow; i++) {
		json_object_set_new(counts, sres_s(&c, i, 0), json_integer(sres_i(&c, i, 1)));
		total += sres_i(&c, i, 1);
	}
	for (size_t i = 0; i < v.nrow; i++)
		json_object_set_new(verdicts, sres_s(&v, i, 0), json_integer(sres_i(&v, i, 1)));
	char when[32];
	iso8601_utc(when, sres_d(&r, 0, 1));
	*out = json_pack("{s:o, s:s, s:o, s:o, s:o, s:I, s:I, s:o, s:o}", "run_id", sres_jstr(&r, 0, 0), "created",
			 when, "origin", sres_jstr(&r, 0, 2), "parent", sres_jstr(&r, 0, 5), "recipe",
			 sres_jstr(&r, 0, 3), "priority", sres_i(&r, 0, 4), "jobs", total, "counts", counts, "verdicts",
			 verdicts);
	return 0;
}

/* status (with_results false) and results (true) */
static int run_jobs(struct store *st, const char *run_id, bool with_results, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	if (store_id_kind(run_id) != 'r')
		return st_fail(err, STORE_E_INVALID, "'%s' is not a run id", run_id ? run_id : "");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_json_ json_t *run = NULL;
	_cleanup_sres_ struct sres r = {0};
	struct sparam p[] = {P_T(run_id)};
	rc = read_run_header(st, run_id, &run, err);
	if (rc == 0)
		rc = st_query(st,
			      with_results ? "SELECT id, dist, suite, state, attempt, verdict, failure_class, results"
					     " FROM jobs WHERE run_id = ? ORDER BY seq"
					   : "SELECT id, dist, suite, state, attempt, verdict, failure_class"
					     " FROM jobs WHERE run_id = ? ORDER BY seq",
			      p, NP(p), &r, err);
	store_unlock(st);
	if (rc < 0)
		return rc;
	json_t *jobs = json_array();
	for (size_t i = 0; i < r.nrow; i++) {
		json_t *j = json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "job_id", sres_jstr(&r, i, 0), "dist",
				      sres_jstr(&r, i, 1), "suite", sres_jstr(&r, i, 2), "state", sres_jstr(&r, i, 3),
				      "attempt", sres_i(&r, i, 4), "verdict", sres_jstr(&r, i, 5), "failure_class",
				      sres_jstr(&r, i, 6));
		if (with_results)
			json_object_set_new(j, "results", sres_json(&r, i, 7));
		json_array_append_new(jobs, j);
	}
	*out = json_pack("{s:O, s:o}", "run", run, "jobs", jobs);
	return 0;
}

int store_status(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	return run_jobs(st, run_id, false, out, err);
}

int store_results(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	return run_jobs(st, run_id, true, out, err);
}

int store_runs(struct store *st, const struct store_runs_query *q, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	int limit = q && q->limit > 0 ? q->limit : 50;
	if (limit > 10000)
		return st_fail(err, STORE_E_INVALID, "runs: limit is at most 10000");
	const char *dist = q ? q->dist : NULL, *parent = q ? q->parent : NULL;
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	struct sparam pd[] = {P_T(dist), P_I(limit)}, pl[] = {P_I(limit)}, pp[] = {P_T(parent), P_I(limit)};
	rc = parent ? st_query(st, "SELECT id FROM runs WHERE parent = ? ORDER BY created DESC, id DESC LIMIT ?", pp,
			       NP(pp), &r, err)
	     : dist ? st_query(st,
			       "SELECT id FROM runs WHERE id IN (SELECT run_id FROM jobs WHERE dist = ?)"
			       " ORDER BY created DESC, id DESC LIMIT ?",
			       pd, NP(pd), &r, err)
		    : st_query(st, "SELECT id FROM runs ORDER BY created DESC, id DESC LIMIT ?", pl, NP(pl), &r, err);
	json_t *runs = json_array();
	for (size_t i = 0; rc == 0 && i < r.nrow; i++) {
		json_t *h = NULL;
		if ((rc = read_run_header(st, sres_s(&r, i, 0), &h, err)) < 0)
			break;
		/* the first few dists, so that a listing says what a run was */
		_cleanup_sres_ struct sres d = {0};
		struct sparam p[] = {P_T(sres_s(&r, i, 0))};
		if (st_query(st, "SELECT dist FROM jobs WHERE run_id = ? ORDER BY seq LIMIT 3", p, NP(p), &d, err) ==
		    0) {
			json_t *a = json_array();
			for (size_t k = 0; k < d.nrow; k++)
				json_array_append_new(a, sres_jstr(&d, k, 0));
			json_object_set_new(h, "dists", a);
		}
		json_array_append_new(runs, h);
	}
	store_unlock(st);
	if (rc < 0) {
		json_decref(runs);
		return rc;
	}
	*out = json_pack("{s:o}", "runs", runs);
	return 0;
}

/* A full id from an id or a unique prefix of at least 5 characters. */
static int resolve_id(struct store *st, const char *id, char full[STORE_ID_SIZE], struct pyti_err *err)
{
	size_t n = id ? strlen(id) : 0;
	if (n < 5 || n > STORE_ID_SIZE - 1 || (id[0] != 'r' && id[0] != 'j') ||
	    strspn(id + 1, "0123456789abcdef") != n - 1)
		return st_fail(err, STORE_E_INVALID, "'%s' is not a run or job id (r… or j…, at least 5 characters)",
			       id ? id : "");
	if (n == STORE_ID_SIZE - 1) {
		memcpy(full, id, STORE_ID_SIZE);
		return 0;
	}
	_cleanup_free_ char *like = xasprintf("%s%%", id);
	_cleanup_sres_ struct sres r = {0};
	struct sparam p[] = {P_T(like)};
	int rc = st_query(st,
			  id[0] == 'r' ? "SELECT id FROM runs WHERE id LIKE ? LIMIT 2"
				       : "SELECT id FROM jobs WHERE id LIKE ? LIMIT 2",
			  p, NP(p), &r, err);
	if (rc < 0)
		return rc;
	if (r.nrow == 0)
		return st_fail(err, STORE_E_NOTFOUND, "no %s starts with %s", id[0] == 'r' ? "run" : "job", id);
	if (r.nrow > 1)
		return st_fail(err, STORE_E_INVALID, "%s is ambiguous: more than one id starts with it", id);
	snprintf(full, STORE_ID_SIZE, "%s", sres_s(&r, 0, 0));
	return 0;
}

static json_t *time_or_null(const struct sres *r, size_t row, size_t col)
{
	if (!sres_s(r, row, col))
		return json_null();
	char when[32];
	iso8601_utc(when, sres_d(r, row, col));
	return json_string(when);
}

static int show_job(struct store *st, const char *id, json_t **out, struct pyti_err *err)
{
	_cleanup_sres_ struct sres j = {0}, a = {0}, t = {0}, c = {0}, f = {0};
	struct sparam p[] = {P_T(id)};
	int rc = st_query(st,
			  "SELECT id, run_id, dist, suite, backend, recipe_name, state, attempt, max_attempts, verdict,"
			  " failure_class, error, created, finished, worker_id, progress, results, status"
			  " FROM jobs WHERE id = ?",
			  p, NP(p), &j, err);
	if (rc < 0)
		return rc;
	if (!j.nrow)
		return st_fail(err, STORE_E_NOTFOUND, "no job %s", id);
	if ((rc = st_query(st,
			   "SELECT attempt, worker_id, started, ended, outcome, failure_class FROM attempts"
			   " WHERE job_id = ? ORDER BY attempt",
			   p, NP(p), &a, err)) < 0 ||
	    (rc = st_query(st,
			   "SELECT attempt, task, status, failure_class, wall_s, result FROM task_results"
			   " WHERE job_id = ? ORDER BY attempt, seq",
			   p, NP(p), &t, err)) < 0 ||
	    (rc = st_query(st,
			   "SELECT attempt, task, case_id, outcome, message FROM testcases"
			   " WHERE job_id = ? ORDER BY attempt, task, seq",
			   p, NP(p), &c, err)) < 0 ||
	    (rc = st_query(st,
			   "SELECT attempt, name, sha256, size FROM artefacts WHERE job_id = ? ORDER BY attempt, name",
			   p, NP(p), &f, err)) < 0)
		return rc;
	json_t *attempts = json_array();
	for (size_t i = 0; i < a.nrow; i++) {
		long long n = sres_i(&a, i, 0);
		json_t *tasks = json_array(), *cases = json_array(), *arts = json_array();
		for (size_t k = 0; k < t.nrow; k++)
			if (sres_i(&t, k, 0) == n)
				json_array_append_new(
					tasks,
					json_pack("{s:o, s:o, s:o, s:o, s:o}", "task", sres_jstr(&t, k, 1), "status",
						  sres_jstr(&t, k, 2), "failure_class", sres_jstr(&t, k, 3), "wall_s",
						  sres_s(&t, k, 4) ? json_real(sres_d(&t, k, 4)) : json_null(),
						  "result", sres_json(&t, k, 5)));
		for (size_t k = 0; k < c.nrow; k++)
			if (sres_i(&c, k, 0) == n)
				json_array_append_new(cases,
						      json_pack("{s:o, s:o, s:o, s:o}", "task", sres_jstr(&c, k, 1),
								"id", sres_jstr(&c, k, 2), "outcome",
								sres_jstr(&c, k, 3), "message", sres_jstr(&c, k, 4)));
		for (size_t k = 0; k < f.nrow; k++)
			if (sres_i(&f, k, 0) == n)
				json_array_append_new(arts, json_pack("{s:o, s:o, s:I}", "name", sres_jstr(&f, k, 1),
								      "sha256", sres_jstr(&f, k, 2), "size",
								      sres_i(&f, k, 3)));
		json_array_append_new(attempts,
				      json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "attempt", n,
						"worker_id", sres_jstr(&a, i, 1), "started", time_or_null(&a, i, 2),
						"ended", time_or_null(&a, i, 3), "outcome", sres_jstr(&a, i, 4),
						"failure_class", sres_jstr(&a, i, 5), "tasks", tasks, "testcases",
						cases, "artefacts", arts));
	}
	json_t *job = json_pack(
		"{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "job_id",
		sres_jstr(&j, 0, 0), "run_id", sres_jstr(&j, 0, 1), "dist", sres_jstr(&j, 0, 2), "suite",
		sres_jstr(&j, 0, 3), "backend", sres_jstr(&j, 0, 4), "recipe", sres_jstr(&j, 0, 5), "state",
		sres_jstr(&j, 0, 6), "attempt", sres_i(&j, 0, 7), "max_attempts", sres_i(&j, 0, 8), "verdict",
		sres_jstr(&j, 0, 9), "failure_class", sres_jstr(&j, 0, 10), "error", sres_jstr(&j, 0, 11), "created",
		time_or_null(&j, 0, 12), "finished", time_or_null(&j, 0, 13), "worker_id", sres_jstr(&j, 0, 14),
		"progress", sres_json(&j, 0, 15), "results", sres_json(&j, 0, 16), "attempts", attempts);
	json_object_set_new(job, "status", sres_jstr(&j, 0, 17));
	*out = json_pack("{s:o}", "job", job);
	return 0;
}

int store_show(struct store *st, const char *id, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	char full[STORE_ID_SIZE];
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	rc = resolve_id(st, id, full, err);
	if (rc == 0 && full[0] == 'j')
		rc = show_job(st, full, out, err);
	store_unlock(st);
	if (rc == 0 && full[0] == 'r')
		rc = store_results(st, full, out, err);
	return rc;
}
