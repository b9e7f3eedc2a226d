/* store: jobs that ran outside the queue — a local `pyti run` records each job as done, with its
 * task results, test cases and the files its STATE/runs/<job>/ keeps, in one transaction. */
#include <dirent.h>
#include <string.h>

#include "store-int.h"

/* The host-made runs/<job>/ directory's regular files (logs/ one level down) as artefacts. */
static int record_artefacts(struct store *st, const char *job_id, const char *dir, struct pyti_err *err)
{
	_cleanup_close_ int dfd = safe_opendir_path(dir, err);
	if (dfd < 0)
		return STORE_E_INTERNAL;
	const char *subs[] = {"", "logs"};
	int count = 0;
	for (size_t s = 0; s < ARRAY_SIZE(subs); s++) {
		int fd = *subs[s] ? safe_opendir_beneath(dfd, subs[s], NULL) : dup(dfd);
		if (fd < 0)
			continue;
		DIR *d = fdopendir(fd);
		if (!d) {
			close(fd);
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d)) && count < 1000) {
			if (e->d_type != DT_REG)
				continue;
			_cleanup_free_ char *rel = *subs[s] ? xasprintf("%s/%s", subs[s], e->d_name)
							    : xstrdup(e->d_name);
			_cleanup_buf_ struct buf b = BUF_INIT(st->lim.blob_max);
			struct pyti_err e2 = {0};
			if (safe_read_beneath(dfd, rel, &b, &e2) < 0) {
				log_warn("store: artefact %s/%s left out: %s", dir, rel, pyti_err_str(&e2));
				continue;
			}
			char sha[65];
			sha256_hex(b.data ? b.data : "", b.len, sha);
			int rc = blob_put_locked(st, b.data ? b.data : "", b.len, sha, err);
			if (rc == 0) {
				struct sparam p[] = {P_T(job_id), P_T(rel), P_T(sha), P_I((long long)b.len)};
				rc = st_exec(
					st,
					"INSERT INTO artefacts (job_id, attempt, name, sha256, size) VALUES (?, 1, ?, ?, ?)"
					" ON CONFLICT DO NOTHING",
					p, NP(p), err);
			}
			if (rc < 0) {
				closedir(d);
				return rc;
			}
			count++;
		}
		closedir(d);
	}
	return 0;
}

int store_record_job(struct store *st, const char *run_id, const struct store_job_record *rec,
		     char job_id[STORE_ID_SIZE], struct pyti_err *err)
{
	if (store_id_kind(run_id) != 'r')
		return st_fail(err, STORE_E_INVALID, "record: '%s' is not a run id", run_id ? run_id : "");
	if (!q_ok_name(rec->dist) || !q_ok_name(rec->suite))
		return st_fail(err, STORE_E_INVALID, "record: the job needs a distribution and an image");
	_cleanup_json_ json_t *errform = NULL;
	const json_t *res = rec->results;
	if (!res) {
		const char *fc = pyti_fclass_name(rec->fclass);
		errform = json_pack("{s:s, s:o, s:s}", "status", "error", "failure_class",
				    fc ? json_string(fc) : json_null(), "error", rec->error ? rec->error : "");
		if (!errform) /* the message was not UTF-8 */
			errform = json_pack("{s:s, s:o}", "status", "error", "failure_class",
					    fc ? json_string(fc) : json_null());
		res = errform;
	}
	const char *status = pj_str(res, "status", "error"), *fc = pj_str(res, "failure_class", NULL);
	const char *error = rec->error ? rec->error : pj_str(res, "error", NULL);
	const char *recipe = rec->recipe_name ? rec->recipe_name : pj_str(res, "recipe", NULL);
	const char *verdict = q_verdict(res);
	_cleanup_free_ char *js = q_dump(res);
	if (!js || strlen(js) > MAX_JSON)
		return st_fail(err, STORE_E_TOOBIG, "record: results over %u bytes", MAX_JSON);
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	double now = now_wall(), wall = pj_num(res, "wall_s", 0);
	store_id_new('j', job_id);
	char lease[STORE_LEASE_SIZE];
	char l1[STORE_ID_SIZE], l2[STORE_ID_SIZE];
	store_id_new('l', l1);
	store_id_new('l', l2);
	snprintf(lease, sizeof lease, "%s%s", l1 + 1, l2 + 1);
	if ((rc = st_begin(st, err)) < 0)
		goto out;
	long long seq = 0;
	{
		/* the run's row locked first (PostgreSQL), so that jobs recorded at once into one run
		 * (a batch's processes) take turns for the next seq; the MAX is then a new statement,
		 * with a snapshot that sees the other's job */
		_cleanup_sres_ struct sres e = {0}, r = {0};
		_cleanup_free_ char *lock = xasprintf("SELECT 1 FROM runs WHERE id = ?%s", st->ops->for_update);
		struct sparam p[] = {P_T(run_id)};
		if ((rc = st_query(st, lock, p, NP(p), &e, err)) < 0)
			goto out;
		if (e.nrow == 0) {
			rc = st_fail(err, STORE_E_NOTFOUND, "record: no run %s", run_id);
			goto out;
		}
		if ((rc = st_query(st, "SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs WHERE run_id = ?", p, NP(p), &r,
				   err)) < 0)
			goto out;
		seq = sres_i(&r, 0, 0);
	}
	struct sparam pj[] = {P_T(job_id),	 P_T(run_id), P_I(seq),	       P_T(rec->dist), P_T(rec->suite),
			      P_T(rec->backend), P_T(recipe), P_D(now - wall), P_T(status),    P_T(fc),
			      P_T(verdict),	 P_T(error),  P_T(js),	       P_D(now)};
	rc = st_exec(st,
		     "INSERT INTO jobs (id, run_id, seq, dist, suite, backend, recipe_name, priority, created, state,"
		     " attempt, max_attempts, status, failure_class, verdict, error, results, finished)"
		     " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 'done', 1, 1, ?, ?, ?, ?, ?, ?)",
		     pj, NP(pj), err);
	if (rc < 0)
		goto out;
	struct sparam pa[] = {P_T(job_id), P_T(lease), P_D(now - wall), P_D(now), P_T(fc)};
	rc = st_exec(st,
		     "INSERT INTO attempts (job_id, attempt, lease, started, ended, outcome, failure_class)"
		     " VALUES (?, 1, ?, ?, ?, 'done', ?)",
		     pa, NP(pa), err);
	if (rc < 0 || (rc = q_store_tasks(st, job_id, 1, res, err)) < 0)
		goto out;
	if (rec->artefact_dir && (rc = record_artefacts(st, job_id, rec->artefact_dir, err)) < 0)
		goto out;
	rc = st_commit(st, err);
out:
	store_unlock(st);
	return rc;
}
