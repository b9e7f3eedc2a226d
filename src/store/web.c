/* store: the reads behind the web UI's tables (docs/rpc.md "Web"): a run's jobs with their duration
 * and test totals, one distribution's history across runs, and the queue. Each is one statement, so
 * a page of a 1,000-job run costs one query, not 1,000. */
#include <string.h>

#include "store-int.h"

/* tests passed / failed of a job's current attempt: from its task records' "tests" totals would
 * mean parsing every record; the testcases table only holds the failing ones, so the passed count
 * is kept from the job's results when it has them (results.json "tests"). */
static void tests_of(json_t *results, long long *passed, long long *failed)
{
	*passed = *failed = 0;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(results, "tasks"), i, t) {
		json_t *tt = json_object_get(t, "tests");
		if (!json_is_object(tt))
			continue;
		*passed += json_integer_value(json_object_get(tt, "passed"));
		*failed += json_integer_value(json_object_get(tt, "failed")) +
			   json_integer_value(json_object_get(tt, "errors"));
	}
}

static json_t *time_of(const struct sres *r, size_t row, size_t col)
{
	if (!sres_s(r, row, col))
		return json_null();
	char when[32];
	iso8601_utc(when, sres_d(r, row, col));
	return json_string(when);
}

/* duration of the current attempt: ended - started, or now - started while it runs */
static json_t *duration_of(const struct sres *r, size_t row, size_t started, size_t ended)
{
	if (!sres_s(r, row, started))
		return json_null();
	double end = sres_s(r, row, ended) ? sres_d(r, row, ended) : now_wall();
	double d = end - sres_d(r, row, started);
	return json_real(d < 0 ? 0 : d);
}

int store_run_jobs(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
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
			      "SELECT j.id, j.dist, j.suite, j.state, j.attempt, j.verdict, j.failure_class, j.worker_id,"
			      " a.started, a.ended, j.results, j.progress"
			      " FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt"
			      " WHERE j.run_id = ? ORDER BY j.seq",
			      p, NP(p), &r, err);
	store_unlock(st);
	if (rc < 0)
		return rc;
	json_t *jobs = json_array();
	for (size_t i = 0; i < r.nrow; i++) {
		_cleanup_json_ json_t *res = sres_json(&r, i, 10);
		long long passed, failed;
		tests_of(res, &passed, &failed);
		json_array_append_new(
			jobs, json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o}", "job_id",
					sres_jstr(&r, i, 0), "dist", sres_jstr(&r, i, 1), "suite", sres_jstr(&r, i, 2),
					"state", sres_jstr(&r, i, 3), "attempt", sres_i(&r, i, 4), "verdict",
					sres_jstr(&r, i, 5), "failure_class", sres_jstr(&r, i, 6), "worker_id",
					sres_jstr(&r, i, 7), "started", time_of(&r, i, 8), "duration_s",
					duration_of(&r, i, 8, 9), "tests_passed", passed, "tests_failed", failed,
					"progress", sres_json(&r, i, 11)));
	}
	*out = json_pack("{s:O, s:o}", "run", run, "jobs", jobs);
	return 0;
}

int store_dist_history(struct store *st, const char *dist, int limit, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	if (!dist || !*dist)
		return st_fail(err, STORE_E_INVALID, "no distribution named");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	/* the name alone also finds its pinned forms ("six" finds "six==1.16.0") */
	_cleanup_buf_ struct buf pat = BUF_INIT(0);
	for (const char *c = dist; *c; c++) {
		if (*c == '%' || *c == '_' || *c == '\\')
			buf_puts(&pat, "\\");
		buf_append(&pat, c, 1);
	}
	buf_puts(&pat, "==%");
	struct sparam p[] = {P_T(dist), P_T(pat.data), P_I(limit > 0 ? limit : 200)};
	rc = st_query(st,
		      "SELECT j.id, j.run_id, r.created, j.suite, j.state, j.verdict, j.failure_class, a.started, a.ended,"
		      " j.results FROM jobs j JOIN runs r ON r.id = j.run_id"
		      " LEFT JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt"
		      " WHERE j.dist = ? OR j.dist LIKE ? ESCAPE '\\' ORDER BY r.created DESC, j.seq LIMIT ?",
		      p, NP(p), &r, err);
	store_unlock(st);
	if (rc < 0)
		return rc;
	json_t *jobs = json_array();
	for (size_t i = 0; i < r.nrow; i++) {
		_cleanup_json_ json_t *res = sres_json(&r, i, 9);
		long long passed, failed;
		tests_of(res, &passed, &failed);
		json_array_append_new(jobs, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "job_id",
						      sres_jstr(&r, i, 0), "run_id", sres_jstr(&r, i, 1), "created",
						      time_of(&r, i, 2), "suite", sres_jstr(&r, i, 3), "state",
						      sres_jstr(&r, i, 4), "verdict", sres_jstr(&r, i, 5), "failure_class",
						      sres_jstr(&r, i, 6), "duration_s", duration_of(&r, i, 7, 8),
						      "tests_passed", passed, "tests_failed", failed));
	}
	*out = json_pack("{s:s, s:o}", "dist", dist, "jobs", jobs);
	return 0;
}

int store_queue(struct store *st, int limit, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	struct sparam p[] = {P_I(limit > 0 ? limit : 500)};
	rc = st_query(st,
		      "SELECT id, run_id, dist, suite, state, priority, attempt, max_attempts, worker_id, created,"
		      " lease_expires, progress FROM jobs WHERE state IN ('queued', 'leased')"
		      " ORDER BY state, priority DESC, created, seq LIMIT ?",
		      p, NP(p), &r, err);
	store_unlock(st);
	if (rc < 0)
		return rc;
	json_t *jobs = json_array();
	for (size_t i = 0; i < r.nrow; i++)
		json_array_append_new(jobs,
				      json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "job_id",
						sres_jstr(&r, i, 0), "run_id", sres_jstr(&r, i, 1), "dist",
						sres_jstr(&r, i, 2), "suite", sres_jstr(&r, i, 3), "state",
						sres_jstr(&r, i, 4), "priority", sres_i(&r, i, 5), "attempt",
						sres_i(&r, i, 6), "max_attempts", sres_i(&r, i, 7), "worker_id",
						sres_jstr(&r, i, 8), "created", time_of(&r, i, 9), "lease_expires",
						time_of(&r, i, 10), "progress", sres_json(&r, i, 11)));
	*out = json_pack("{s:o}", "jobs", jobs);
	return 0;
}

int store_runs_axes(struct store *st, json_t *runs, struct pyti_err *err)
{
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(runs, "runs"), i, r) {
		_cleanup_sres_ struct sres q = {0};
		struct sparam p[] = {P_T(pj_str(r, "run_id", ""))};
		if ((rc = st_query(st, "SELECT COUNT(DISTINCT dist), COUNT(DISTINCT suite) FROM jobs WHERE run_id = ?", p,
				   NP(p), &q, err)) < 0)
			break;
		json_object_set_new(r, "dists", json_integer(q.nrow ? sres_i(&q, 0, 0) : 0));
		json_object_set_new(r, "suites", json_integer(q.nrow ? sres_i(&q, 0, 1) : 0));
	}
	store_unlock(st);
	return rc < 0 ? rc : 0;
}
