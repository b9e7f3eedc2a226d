/* store: the leased side of the queue — workers' hello, claim, heartbeat, report, finish, lease
 * expiry and cancel (docs/rpc.md, design.md §6). queue.c makes runs and jobs and stores task records.
 *
 * Every function is one transaction. Fencing: a call naming an attempt first reads the job's row
 * FOR UPDATE (PostgreSQL; SQLite holds the write lock from BEGIN IMMEDIATE) and refuses the call
 * unless attempt and lease are the job's current ones, so a worker presumed dead cannot write into
 * the attempt that replaced it. Idempotency rests on primary keys (job, attempt, task) with
 * INSERT … ON CONFLICT DO NOTHING, which holds across masters, not on anything in memory. */
#include <string.h>

#include "store-int.h"

#define MAX_CAPS (64u << 10) /* a worker's capabilities */

/* ---- workers ---- */
int store_worker_hello(struct store *st, const char *name, const json_t *capabilities, char worker_id[STORE_ID_SIZE],
		       struct pyti_err *err)
{
	if (!q_ok_name(name) || strlen(name) > 256)
		return st_fail(err, STORE_E_INVALID, "hello: a worker needs a name of 1 to 256 bytes");
	if (capabilities && !json_is_object(capabilities))
		return st_fail(err, STORE_E_INVALID, "hello: capabilities must be an object");
	_cleanup_free_ char *caps = capabilities ? q_dump(capabilities) : xstrdup("{}");
	if (!caps || strlen(caps) > MAX_CAPS)
		return st_fail(err, STORE_E_INVALID, "hello: capabilities over %u bytes", MAX_CAPS);
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	store_id_new('w', worker_id);
	double now = now_wall();
	struct sparam p[] = {P_T(worker_id), P_T(name), P_T(caps), P_D(now), P_D(now)};
	rc = st_exec(st, "INSERT INTO workers (id, name, capabilities, created, last_seen) VALUES (?, ?, ?, ?, ?)", p,
		     NP(p), err);
	store_unlock(st);
	return rc;
}

int store_workers(struct store *st, json_t **out, struct pyti_err *err)
{
	*out = NULL;
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	rc = st_query(
		st,
		"SELECT id, name, capabilities, created, last_seen FROM workers ORDER BY created DESC, id LIMIT 1000",
		NULL, 0, &r, err);
	store_unlock(st);
	if (rc < 0)
		return rc;
	json_t *a = json_array();
	for (size_t i = 0; i < r.nrow; i++)
		json_array_append_new(a, json_pack("{s:o, s:o, s:o, s:f, s:f}", "worker_id", sres_jstr(&r, i, 0),
						   "name", sres_jstr(&r, i, 1), "capabilities", sres_json(&r, i, 2),
						   "created", sres_d(&r, i, 3), "last_seen", sres_d(&r, i, 4)));
	*out = json_pack("{s:o}", "workers", a);
	return 0;
}

/* ---- leases ---- */
static int expire_locked(struct store *st, int *n, struct pyti_err *err)
{
	double now = now_wall();
	int rc = st_begin(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	_cleanup_free_ char *sql = xasprintf("SELECT id, attempt, max_attempts FROM jobs WHERE state = 'leased'"
					     " AND lease_expires < ? ORDER BY id LIMIT 1000%s",
					     st->ops->skip_locked);
	struct sparam p[] = {P_D(now)};
	if ((rc = st_query(st, sql, p, NP(p), &r, err)) < 0)
		goto fail;
	for (size_t i = 0; i < r.nrow; i++) {
		const char *id = sres_s(&r, i, 0);
		long long attempt = sres_i(&r, i, 1), max = sres_i(&r, i, 2);
		_cleanup_free_ char *msg = xasprintf("lease lost (attempt %lld of %lld)", attempt, max);
		struct sparam q[] = {P_T(msg), P_T(id), P_I(attempt)},
			      qf[] = {P_T(msg), P_D(now), P_T(id), P_I(attempt)};
		if (attempt < max)
			rc = st_exec(st,
				     "UPDATE jobs SET state = 'queued', lease = NULL, lease_expires = NULL,"
				     " worker_id = NULL, failure_class = 'Infra', error = ?, progress = NULL"
				     " WHERE id = ? AND attempt = ? AND state = 'leased'",
				     q, NP(q), err);
		else
			rc = st_exec(st,
				     "UPDATE jobs SET state = 'failed', failure_class = 'Infra', verdict = 'infra',"
				     " error = ?, finished = ? WHERE id = ? AND attempt = ? AND state = 'leased'",
				     qf, NP(qf), err);
		struct sparam a[] = {P_D(now), P_T(id), P_I(attempt)};
		if (rc < 0 ||
		    (rc = st_exec(st,
				  "UPDATE attempts SET ended = ?, outcome = 'lease-lost', failure_class = 'Infra'"
				  " WHERE job_id = ? AND attempt = ?",
				  a, NP(a), err)) < 0)
			goto fail;
	}
	if (n)
		*n = (int)r.nrow;
	return st_commit(st, err);
fail:
	st_rollback(st);
	return rc;
}

int store_expire(struct store *st, int *n, struct pyti_err *err)
{
	if (n)
		*n = 0;
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	rc = expire_locked(st, n, err);
	store_unlock(st);
	return rc;
}

/* The worker's suites and backends from its hello as "?, ?, …" lists with their parameters. */
struct caps {
	struct sparam p[160];
	size_t np, nsuites, nbackends;
	json_t *caps;
};

static void caps_list(struct buf *sql, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_puts(sql, i ? ", ?" : "?");
}

static void caps_read(struct caps *c, json_t *caps)
{
	c->caps = caps;
	const json_t *images = json_object_get(caps, "images"), *v;
	size_t i;
	json_array_foreach(images, i, v) {
		const char *s = json_is_string(v) ? json_string_value(v) : pj_str(v, "suite", NULL);
		if (s && c->nsuites < 64)
			c->p[c->np++] = P_T(s), c->nsuites++;
	}
	const json_t *be = json_object_get(caps, "backends");
	json_array_foreach(be, i, v) {
		if (json_is_string(v) && c->nbackends < 8)
			c->p[c->np++] = P_T(json_string_value(v)), c->nbackends++;
	}
}

int store_claim(struct store *st, const char *worker_id, int max, json_t **jobs, struct pyti_err *err)
{
	*jobs = NULL;
	if (store_id_kind(worker_id) != 'w')
		return st_fail(err, STORE_E_INVALID, "claim: '%s' is not a worker id", worker_id ? worker_id : "");
	if (max < 1 || max > 100)
		return st_fail(err, STORE_E_INVALID, "claim: max must be 1 to 100, not %d", max);
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_json_ json_t *out = json_array(), *caps = NULL;
	_cleanup_buf_ struct buf sql = BUF_INIT(0);
	_cleanup_sres_ struct sres r = {0};
	if ((rc = expire_locked(st, NULL, err)) < 0 || (rc = st_begin(st, err)) < 0)
		goto out;
	double now = now_wall(), exp = now + st->lim.lease_s;
	{
		_cleanup_sres_ struct sres w = {0};
		struct sparam p[] = {P_D(now), P_T(worker_id)};
		rc = st_query(st, "UPDATE workers SET last_seen = ? WHERE id = ? RETURNING capabilities", p, NP(p), &w,
			      err);
		if (rc < 0)
			goto out;
		if (w.nrow == 0) {
			rc = st_fail(err, STORE_E_NOTFOUND, "claim: no worker %s (say hello first)", worker_id);
			goto out;
		}
		caps = sres_json(&w, 0, 0);
	}
	struct caps c = {0};
	caps_read(&c, caps);
	if (c.nsuites == 0) /* a worker without images can run nothing */
		goto commit;
	/* The candidates are picked once, in a materialised CTE: PostgreSQL may otherwise rescan an
	 * IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) and lease more than n (seen here: 3 of max 2). */
	buf_puts(&sql, "WITH c AS MATERIALIZED (SELECT id FROM jobs WHERE state = 'queued' AND suite IN (");
	caps_list(&sql, c.nsuites);
	buf_puts(&sql, ")");
	if (c.nbackends) {
		buf_puts(&sql, " AND (backend IS NULL OR backend IN (");
		caps_list(&sql, c.nbackends);
		buf_puts(&sql, "))");
	}
	buf_printf(&sql,
		   " ORDER BY priority, created, seq LIMIT ?%s)"
		   " UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease = %s, lease_expires = ?,"
		   " worker_id = ?, progress = NULL WHERE state = 'queued' AND id IN (SELECT id FROM c)"
		   " RETURNING id, attempt, lease, dist, suite, backend, run_id",
		   st->ops->skip_locked, st->ops->random_lease);
	c.p[c.np++] = P_I(max);
	c.p[c.np++] = P_D(exp);
	c.p[c.np++] = P_T(worker_id);
	if ((rc = st_query(st, sql.data, c.p, c.np, &r, err)) < 0)
		goto out;
	for (size_t i = 0; i < r.nrow; i++) {
		const char *id = sres_s(&r, i, 0), *lease = sres_s(&r, i, 2), *run = sres_s(&r, i, 6);
		long long attempt = sres_i(&r, i, 1);
		struct sparam a[] = {P_T(id), P_I(attempt), P_T(lease), P_T(worker_id), P_D(now)};
		rc = st_exec(st,
			     "INSERT INTO attempts (job_id, attempt, lease, worker_id, started) VALUES (?, ?, ?, ?, ?)",
			     a, NP(a), err);
		_cleanup_sres_ struct sres rr = {0};
		struct sparam q[] = {P_T(run)};
		if (rc < 0 ||
		    (rc = st_query(st, "SELECT recipe, env, posargs FROM runs WHERE id = ?", q, NP(q), &rr, err)) < 0)
			goto out;
		json_t *env = sres_json(&rr, 0, 1), *posargs = sres_json(&rr, 0, 2);
		if (!json_is_object(env))
			json_decref(env), env = json_object();
		if (!json_is_array(posargs))
			json_decref(posargs), posargs = json_array();
		json_t *config = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "dist", sres_jstr(&r, i, 3), "suite",
					   sres_jstr(&r, i, 4), "backend", sres_jstr(&r, i, 5), "recipe",
					   sres_jstr(&rr, 0, 0), "env", env, "posargs", posargs);
		json_array_append_new(out, json_pack("{s:s, s:s, s:I, s:s, s:i, s:o}", "job_id", id, "run_id", run,
						     "attempt", attempt, "lease", lease, "lease_expires_in_s",
						     st->lim.lease_s, "config", config));
	}
commit:
	if ((rc = st_commit(st, err)) == 0)
		*jobs = steal_pointer(&out);
out:
	store_unlock(st);
	return rc;
}

/* The job's row, locked, checked against the lease. Columns: state, attempt, lease, worker_id,
 * max_attempts. STORE_E_STALE unless the lease names the current attempt of a leased or cancelled job. */
static int fence(struct store *st, const struct store_lease *l, struct sres *r, struct pyti_err *err)
{
	if (store_id_kind(l->job_id) != 'j')
		return st_fail(err, STORE_E_INVALID, "'%s' is not a job id", l->job_id ? l->job_id : "");
	if (!l->lease || strlen(l->lease) != STORE_LEASE_SIZE - 1 || l->attempt < 1)
		return st_fail(err, STORE_E_INVALID, "a lease is 32 hex digits and an attempt from 1");
	_cleanup_free_ char *sql = xasprintf(
		"SELECT state, attempt, lease, worker_id, max_attempts FROM jobs WHERE id = ?%s", st->ops->for_update);
	struct sparam p[] = {P_T(l->job_id)};
	int rc = st_query(st, sql, p, NP(p), r, err);
	if (rc < 0)
		return rc;
	if (r->nrow == 0)
		return st_fail(err, STORE_E_NOTFOUND, "no job %s", l->job_id);
	const char *state = sres_s(r, 0, 0), *lease = sres_s(r, 0, 2);
	if ((strcmp(state, "leased") && strcmp(state, "cancelled")) || sres_i(r, 0, 1) != l->attempt || !lease ||
	    strcmp(lease, l->lease))
		return st_fail(err, STORE_E_STALE,
			       "job %s: attempt %d's lease is not the current one (the job is %s, attempt %lld)",
			       l->job_id, l->attempt, state, sres_i(r, 0, 1));
	return 0;
}

int store_heartbeat(struct store *st, const struct store_lease *l, const json_t *progress, int *expires_in_s,
		    bool *cancel, struct pyti_err *err)
{
	*expires_in_s = 0;
	*cancel = false;
	_cleanup_free_ char *prog = q_dump(progress);
	if (prog && strlen(prog) > 4096)
		return st_fail(err, STORE_E_INVALID, "heartbeat: progress over 4096 bytes");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	double now = now_wall();
	if ((rc = st_begin(st, err)) < 0 || (rc = fence(st, l, &r, err)) < 0)
		goto out;
	*cancel = strcmp(sres_s(&r, 0, 0), "cancelled") == 0;
	if (!*cancel) {
		struct sparam p[] = {P_D(now + st->lim.lease_s), P_T(prog), P_T(l->job_id)};
		if ((rc = st_exec(st,
				  "UPDATE jobs SET lease_expires = ?, progress = COALESCE(?, progress) WHERE id = ?", p,
				  NP(p), err)) < 0)
			goto out;
	}
	struct sparam w[] = {P_D(now), P_T(sres_s(&r, 0, 3))};
	if ((rc = st_exec(st, "UPDATE workers SET last_seen = ? WHERE id = ?", w, NP(w), err)) < 0)
		goto out;
	if ((rc = st_commit(st, err)) == 0)
		*expires_in_s = *cancel ? 0 : st->lim.lease_s;
out:
	store_unlock(st);
	return rc;
}

int store_report(struct store *st, const struct store_lease *l, const char *task, const json_t *result,
		 struct pyti_err *err)
{
	if (!q_ok_name(task) || strlen(task) > 256)
		return st_fail(err, STORE_E_INVALID, "report: a task name of 1 to 256 bytes");
	if (!json_is_object(result))
		return st_fail(err, STORE_E_INVALID, "report: the result must be an object");
	const char *rt = pj_str(result, "task", NULL);
	if (rt && strcmp(rt, task))
		return st_fail(err, STORE_E_INVALID, "report: the result is task '%s', not '%s'", rt, task);
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres r = {0};
	if ((rc = st_begin(st, err)) < 0 || (rc = fence(st, l, &r, err)) < 0 ||
	    (rc = q_store_task(st, l->job_id, l->attempt, -1, task, result, err)) < 0)
		goto out;
	rc = st_commit(st, err);
out:
	store_unlock(st);
	return rc;
}

static int check_artefacts(const json_t *a, struct pyti_err *err)
{
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > 10000)
		return st_fail(err, STORE_E_INVALID, "finish: artefacts must be an array (at most 10000)");
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		const char *name = pj_str(v, "name", NULL), *sha = pj_str(v, "sha256", NULL);
		if (!q_ok_name(name) || !sha || strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64 ||
		    !json_is_integer(json_object_get(v, "size")) || pj_int(v, "size", -1) < 0)
			return st_fail(err, STORE_E_INVALID, "finish: artefact %zu needs a name, a sha256 and a size",
				       i + 1);
	}
	return 0;
}

/* What a finished attempt's outcome made of the job. */
static enum store_state outcome_state(const char *outcome)
{
	if (!outcome)
		return STORE_LEASED;
	if (strcmp(outcome, "done") == 0)
		return STORE_DONE;
	if (strcmp(outcome, "failed") == 0)
		return STORE_FAILED;
	if (strcmp(outcome, "cancelled") == 0)
		return STORE_CANCELLED;
	return STORE_QUEUED; /* retry, lease-lost */
}

int store_finish(struct store *st, const struct store_finish *f, enum store_state *state, json_t **missing,
		 struct pyti_err *err)
{
	if (missing)
		*missing = NULL;
	const char *status = f->status ? f->status : "";
	if (strcmp(status, "passed") && strcmp(status, "failed") && strcmp(status, "error"))
		return st_fail(err, STORE_E_INVALID, "finish: status must be passed, failed or error, not '%s'",
			       status);
	int fc = pyti_fclass_parse(f->failure_class);
	if (fc < 0)
		return st_fail(err, STORE_E_INVALID, "finish: unknown failure class '%s'", f->failure_class);
	if (f->results && !json_is_object(f->results))
		return st_fail(err, STORE_E_INVALID, "finish: results must be an object");
	int rc = check_artefacts(f->artefacts, err);
	if (rc < 0)
		return rc;
	_cleanup_json_ json_t *res = f->results ? json_deep_copy(f->results) : json_object();
	if (!f->results || strcmp(status, "error") == 0) { /* the error form of results (docs/contracts.md) */
		json_object_set_new(res, "status", json_string(status));
		json_object_set_new(res, "failure_class", fc ? json_string(pyti_fclass_name(fc)) : json_null());
		if (f->error)
			json_object_set_new(res, "error", pj_string_lossy(f->error, strlen(f->error)));
	}
	_cleanup_free_ char *js = q_dump(res);
	if (!js || strlen(js) > MAX_JSON)
		return st_fail(err, STORE_E_TOOBIG, "finish: results over %u bytes", MAX_JSON);
	if ((rc = store_lock(st, err)) < 0)
		return rc;
	double now = now_wall();
	const struct store_lease *l = &f->lease;
	_cleanup_sres_ struct sres r = {0}, a = {0};
	_cleanup_json_ json_t *miss = json_array();
	if ((rc = st_begin(st, err)) < 0)
		goto out;
	/* a repeat of a finish that was accepted answers what it did */
	struct sparam pa[] = {P_T(l->job_id), P_I(l->attempt)};
	if ((rc = st_query(st, "SELECT lease, outcome FROM attempts WHERE job_id = ? AND attempt = ?", pa, NP(pa), &a,
			   err)) < 0)
		goto out;
	if (a.nrow && l->lease && sres_s(&a, 0, 1) && strcmp(sres_s(&a, 0, 0), l->lease) == 0 &&
	    strcmp(sres_s(&a, 0, 1), "lease-lost")) {
		*state = outcome_state(sres_s(&a, 0, 1));
		rc = st_commit(st, err);
		goto out;
	}
	if ((rc = fence(st, l, &r, err)) < 0)
		goto out;
	bool cancelled = strcmp(sres_s(&r, 0, 0), "cancelled") == 0;
	long long max = sres_i(&r, 0, 4);
	json_t *v;
	size_t i;
	json_array_foreach(f->artefacts, i, v) {
		_cleanup_sres_ struct sres b = {0};
		struct sparam p[] = {P_T(pj_str(v, "sha256", ""))};
		if ((rc = st_query(st, "SELECT 1 FROM blobs WHERE sha256 = ?", p, NP(p), &b, err)) < 0)
			goto out;
		if (!b.nrow)
			json_array_append_new(miss, json_string(pj_str(v, "sha256", "")));
	}
	if (json_array_size(miss)) {
		rc = st_fail(err, STORE_E_MISSING, "finish: %zu artefacts not uploaded", json_array_size(miss));
		if (missing)
			*missing = steal_pointer(&miss);
		goto out;
	}
	if ((rc = q_store_tasks(st, l->job_id, l->attempt, res, err)) < 0)
		goto out;
	json_array_foreach(f->artefacts, i, v) {
		struct sparam p[] = {P_T(l->job_id), P_I(l->attempt), P_T(pj_str(v, "name", "")),
				     P_T(pj_str(v, "sha256", "")), P_I(pj_int(v, "size", 0))};
		if ((rc = st_exec(st,
				  "INSERT INTO artefacts (job_id, attempt, name, sha256, size) VALUES (?, ?, ?, ?, ?)"
				  " ON CONFLICT DO NOTHING",
				  p, NP(p), err)) < 0)
			goto out;
	}
	const char *fcn = fc ? pyti_fclass_name(fc) : NULL, *outcome;
	const char *error = f->error ? f->error : pj_str(res, "error", NULL);
	if (cancelled) {
		*state = STORE_CANCELLED;
		outcome = "cancelled";
		struct sparam p[] = {P_T(status), P_T(fcn), P_T(js), P_T(l->job_id)};
		rc = st_exec(st, "UPDATE jobs SET status = ?, failure_class = ?, results = ? WHERE id = ?", p, NP(p),
			     err);
	} else if (strcmp(status, "passed") && store_fclass_retried(fc) && l->attempt < max) {
		*state = STORE_QUEUED;
		outcome = "retry";
		struct sparam p[] = {P_T(fcn), P_T(error), P_T(l->job_id)};
		rc = st_exec(st,
			     "UPDATE jobs SET state = 'queued', lease = NULL, lease_expires = NULL, worker_id = NULL,"
			     " progress = NULL, failure_class = ?, error = ? WHERE id = ?",
			     p, NP(p), err);
	} else if (strcmp(status, "passed") && store_fclass_retried(fc)) {
		*state = STORE_FAILED;
		outcome = "failed";
		struct sparam p[] = {P_T(status), P_T(fcn), P_T(error), P_T(js), P_D(now), P_T(l->job_id)};
		rc = st_exec(st,
			     "UPDATE jobs SET state = 'failed', verdict = 'infra', status = ?, failure_class = ?,"
			     " error = ?, results = ?, finished = ? WHERE id = ?",
			     p, NP(p), err);
	} else {
		*state = STORE_DONE;
		outcome = "done";
		struct sparam p[] = {P_T(q_verdict(res)), P_T(status), P_T(fcn), P_T(error), P_T(js), P_D(now),
				     P_T(l->job_id)};
		rc = st_exec(st,
			     "UPDATE jobs SET state = 'done', verdict = ?, status = ?, failure_class = ?, error = ?,"
			     " results = ?, finished = ? WHERE id = ?",
			     p, NP(p), err);
	}
	struct sparam pe[] = {P_D(now), P_T(outcome), P_T(fcn), P_T(l->job_id), P_I(l->attempt)};
	if (rc < 0 || (rc = st_exec(st,
				    "UPDATE attempts SET ended = ?, outcome = ?, failure_class = ?"
				    " WHERE job_id = ? AND attempt = ?",
				    pe, NP(pe), err)) < 0)
		goto out;
	rc = st_commit(st, err);
out:
	store_unlock(st);
	return rc;
}

int store_cancel(struct store *st, const char *id, int *n, struct pyti_err *err)
{
	*n = 0;
	char kind = store_id_kind(id);
	if (kind != 'r' && kind != 'j')
		return st_fail(err, STORE_E_INVALID, "cancel: '%s' is not a run or job id", id ? id : "");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	_cleanup_sres_ struct sres e = {0}, r = {0};
	struct sparam p[] = {P_T(id)}, u[] = {P_D(now_wall()), P_T(id)};
	if ((rc = st_begin(st, err)) < 0 ||
	    (rc = st_query(st, kind == 'r' ? "SELECT 1 FROM runs WHERE id = ?" : "SELECT 1 FROM jobs WHERE id = ?", p,
			   NP(p), &e, err)) < 0)
		goto out;
	if (!e.nrow) {
		rc = st_fail(err, STORE_E_NOTFOUND, "cancel: no %s %s", kind == 'r' ? "run" : "job", id);
		goto out;
	}
	rc = st_query(st,
		      kind == 'r' ? "UPDATE jobs SET state = 'cancelled', finished = ? WHERE run_id = ?"
				    " AND state IN ('queued', 'leased') RETURNING id"
				  : "UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?"
				    " AND state IN ('queued', 'leased') RETURNING id",
		      u, NP(u), &r, err);
	if (rc < 0 || (rc = st_commit(st, err)) < 0)
		goto out;
	*n = (int)r.nrow;
out:
	store_unlock(st);
	return rc;
}
