/* store: blobs and copy.
 *
 * A blob is named by the sha256 of its uncompressed bytes, so one log uploaded by many attempts, or a
 * JUnit file copied twice, is stored once (the primary key; INSERT … ON CONFLICT DO NOTHING holds that
 * across masters). Bytes are zstd-compressed (level 3: logs shrink 5–10×, at hundreds of MB/s) unless
 * that does not make them smaller. The cap applies to the uncompressed size, the one a reader must
 * hold in memory. */
#include <string.h>

#include <zstd.h>

#include "store-int.h"

static bool ok_sha(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static int blob_too_big(const struct store *st, size_t len, struct pyti_err *err)
{
	return st_fail(err, STORE_E_TOOBIG, "blob of %zu bytes is over the cap of %llu", len,
		       (unsigned long long)st->lim.blob_max);
}

int blob_put_locked(struct store *st, const void *data, size_t len, const char *sha, struct pyti_err *err)
{
	if (len > st->lim.blob_max)
		return blob_too_big(st, len, err);
	_cleanup_sres_ struct sres r = {0};
	struct sparam q[] = {P_T(sha)};
	int rc = st_query(st, "SELECT 1 FROM blobs WHERE sha256 = ?", q, NP(q), &r, err);
	if (rc < 0 || r.nrow)
		return rc;
	size_t bound = ZSTD_compressBound(len);
	_cleanup_free_ char *z = xmalloc(bound ? bound : 1);
	size_t zn = ZSTD_compress(z, bound, data, len, 3);
	bool packed = !ZSTD_isError(zn) && zn < len;
	struct sparam p[] = {P_T(sha),
			     P_I((long long)len),
			     P_I((long long)(packed ? zn : len)),
			     P_T(packed ? "zstd" : "none"),
			     packed ? P_B(z, zn) : P_B(data, len),
			     P_D(now_wall())};
	return st_exec(st,
		       "INSERT INTO blobs (sha256, size, stored, codec, data, created) VALUES (?, ?, ?, ?, ?, ?)"
		       " ON CONFLICT DO NOTHING",
		       p, NP(p), err);
}

int store_blob_put(struct store *st, const void *data, size_t len, const char *sha256, char out_sha[65],
		   struct pyti_err *err)
{
	char sha[65];
	if (sha256 && !ok_sha(sha256))
		return st_fail(err, STORE_E_INVALID, "blob: a sha256 is 64 lowercase hex digits");
	if (len > st->lim.blob_max)
		return blob_too_big(st, len, err);
	sha256_hex(data ? data : "", len, sha);
	if (sha256 && strcmp(sha, sha256))
		return st_fail(err, STORE_E_INVALID, "blob: the data's sha256 is %s, not %s", sha, sha256);
	if (out_sha)
		memcpy(out_sha, sha, sizeof sha);
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	rc = blob_put_locked(st, data ? data : "", len, sha, err);
	store_unlock(st);
	return rc;
}

/* The rows of sql (its one parameter: the blob's name, checked first) under the store's lock. */
static int blob_query(struct store *st, const char *sha256, const char *sql, struct sres *r, struct pyti_err *err)
{
	if (!ok_sha(sha256))
		return st_fail(err, STORE_E_INVALID, "blob: a sha256 is 64 lowercase hex digits");
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	struct sparam p[] = {P_T(sha256)};
	rc = st_query(st, sql, p, NP(p), r, err);
	store_unlock(st);
	return rc;
}

int store_blob_has(struct store *st, const char *sha256, bool *has, struct pyti_err *err)
{
	*has = false;
	_cleanup_sres_ struct sres r = {0};
	int rc = blob_query(st, sha256, "SELECT 1 FROM blobs WHERE sha256 = ?", &r, err);
	*has = rc == 0 && r.nrow > 0;
	return rc;
}

int store_blob_get(struct store *st, const char *sha256, struct buf *out, struct pyti_err *err)
{
	_cleanup_sres_ struct sres r = {0};
	int rc = blob_query(st, sha256, "SELECT size, codec, data FROM blobs WHERE sha256 = ?", &r, err);
	if (rc < 0)
		return rc;
	if (!r.nrow)
		return st_fail(err, STORE_E_NOTFOUND, "no blob %s", sha256);
	long long size = sres_i(&r, 0, 0);
	const char *codec = sres_s(&r, 0, 1), *data = r.v[2];
	size_t dn = r.len[2];
	if (size < 0 || (out->max && (uint64_t)size > out->max))
		return st_fail(err, STORE_E_TOOBIG, "blob %s: %lld bytes, over %zu", sha256, size, out->max);
	if (strcmp(codec, "none") == 0) {
		if ((long long)dn != size)
			return st_fail(err, STORE_E_INTERNAL, "blob %s: stored size does not match", sha256);
		buf_append(out, data, dn);
		return 0;
	}
	if (strcmp(codec, "zstd"))
		return st_fail(err, STORE_E_INTERNAL, "blob %s: unknown codec '%s'", sha256, codec);
	_cleanup_free_ char *u = xmalloc((size_t)size + 1);
	size_t un = ZSTD_decompress(u, (size_t)size, data, dn);
	if (ZSTD_isError(un) || un != (size_t)size)
		return st_fail(err, STORE_E_INTERNAL, "blob %s: cannot decompress: %s", sha256,
			       ZSTD_isError(un) ? ZSTD_getErrorName(un) : "wrong size");
	char sha[65];
	sha256_hex(u, un, sha);
	if (strcmp(sha, sha256))
		return st_fail(err, STORE_E_INTERNAL, "blob %s: content does not match its name", sha256);
	buf_append(out, u, un);
	return 0;
}

/* ---- copy ---- */
/* Rows of one SELECT in src into dst's table with the same columns; types: one letter a column
 * (T text, I integer, D double, B blob), for the parameters PostgreSQL wants typed. */
static int copy_rows(struct store *src, struct store *dst, const char *table, const char *cols, const char *types,
		     const char *where, const char *key, long *count, struct pyti_err *err)
{
	_cleanup_free_ char *sel = xasprintf("SELECT %s FROM %s WHERE %s", cols, table, where);
	_cleanup_sres_ struct sres r = {0};
	struct sparam k[] = {P_T(key)};
	int rc = st_query(src, sel, k, NP(k), &r, err);
	if (rc < 0)
		return rc;
	size_t nc = strlen(types);
	if (r.ncol != nc && r.nrow)
		return st_fail(err, STORE_E_INTERNAL, "copy %s: %zu columns, %zu types", table, r.ncol, nc);
	_cleanup_buf_ struct buf ins = BUF_INIT(0);
	buf_printf(&ins, "INSERT INTO %s (%s) VALUES (", table, cols);
	for (size_t c = 0; c < nc; c++)
		buf_puts(&ins, c ? ", ?" : "?");
	buf_puts(&ins, ") ON CONFLICT DO NOTHING");
	_cleanup_free_ struct sparam *p = xcalloc(nc ? nc : 1, sizeof *p);
	for (size_t i = 0; i < r.nrow; i++) {
		for (size_t c = 0; c < nc; c++) {
			const char *v = sres_s(&r, i, c);
			if (!v)
				p[c] = P_N;
			else if (types[c] == 'I')
				p[c] = P_I(sres_i(&r, i, c));
			else if (types[c] == 'D')
				p[c] = P_D(sres_d(&r, i, c));
			else if (types[c] == 'B')
				p[c] = P_B(v, r.len[i * r.ncol + c]);
			else
				p[c] = P_T(v);
		}
		if ((rc = st_exec(dst, ins.data, p, nc, err)) < 0)
			return pyti_err_prefix(err, "copy %s", table), rc;
	}
	if (count)
		*count += (long)r.nrow;
	return 0;
}

#define JOBS_OF "job_id IN (SELECT id FROM jobs WHERE run_id = ?)"

static int copy_run(struct store *src, struct store *dst, const char *run, struct store_copy_stats *s,
		    struct pyti_err *err)
{
	int rc;
	long blobs = 0;
	/* blobs and workers first: the rows below refer to them */
	if ((rc = copy_rows(src, dst, "blobs", "sha256, size, stored, codec, data, created", "TIITBD",
			    "sha256 IN (SELECT sha256 FROM artefacts WHERE " JOBS_OF ")", run, &blobs, err)) < 0 ||
	    (rc = copy_rows(src, dst, "workers", "id, name, capabilities, created, last_seen", "TTTDD",
			    "id IN (SELECT worker_id FROM attempts WHERE " JOBS_OF ")", run, NULL, err)) < 0 ||
	    (rc = copy_rows(src, dst, "runs",
			    "id, created, origin, recipe, recipe_name, backend, env, posargs, priority, parent",
			    "TDTTTTTTIT", "id = ?", run, &s->runs, err)) < 0 ||
	    (rc = copy_rows(
		     src, dst, "jobs",
		     "id, run_id, seq, dist, suite, backend, recipe_name, priority, created, state, attempt,"
		     " max_attempts, lease, lease_expires, worker_id, progress, status, failure_class, verdict, error,"
		     " results, finished",
		     "TTITTTTIDTIITDTTTTTTTD", "run_id = ?", run, &s->jobs, err)) < 0 ||
	    (rc = copy_rows(src, dst, "attempts",
			    "job_id, attempt, lease, worker_id, started, ended, outcome, failure_class", "TITTDDTT",
			    JOBS_OF, run, NULL, err)) < 0 ||
	    (rc = copy_rows(src, dst, "task_results",
			    "job_id, attempt, task, seq, status, failure_class, wall_s, result", "TITITTDT", JOBS_OF,
			    run, NULL, err)) < 0 ||
	    (rc = copy_rows(src, dst, "testcases", "job_id, attempt, task, seq, case_id, outcome, message", "TITITTT",
			    JOBS_OF, run, NULL, err)) < 0 ||
	    (rc = copy_rows(src, dst, "artefacts", "job_id, attempt, name, sha256, size", "TITTI", JOBS_OF, run, NULL,
			    err)) < 0)
		return rc;
	s->blobs += blobs;
	return 0;
}

int store_copy(struct store *src, struct store *dst, struct store_copy_stats *stats, struct pyti_err *err)
{
	*stats = (struct store_copy_stats){0};
	if (src == dst)
		return st_fail(err, STORE_E_INVALID, "copy: source and destination are the same handle");
	int rc = store_lock(src, err);
	if (rc < 0)
		return rc;
	if ((rc = store_lock(dst, err)) < 0) {
		store_unlock(src);
		return rc;
	}
	_cleanup_sres_ struct sres runs = {0};
	if ((rc = st_query(src, "SELECT id FROM runs ORDER BY created, id", NULL, 0, &runs, err)) < 0)
		goto out;
	for (size_t i = 0; i < runs.nrow; i++) {
		const char *run = sres_s(&runs, i, 0);
		_cleanup_sres_ struct sres e = {0};
		struct sparam p[] = {P_T(run)};
		if ((rc = st_query(dst, "SELECT 1 FROM runs WHERE id = ?", p, NP(p), &e, err)) < 0)
			goto out;
		if (e.nrow) {
			stats->runs_skipped++;
			continue;
		}
		/* src is only read: a snapshot per run is enough; dst gets one transaction per run */
		if ((rc = st_begin(dst, err)) < 0)
			goto out;
		if ((rc = copy_run(src, dst, run, stats, err)) < 0 || (rc = st_commit(dst, err)) < 0) {
			pyti_err_prefix(err, "run %s", run);
			goto out;
		}
	}
out:
	store_unlock(dst);
	store_unlock(src);
	return rc;
}
