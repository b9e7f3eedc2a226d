/* store: the schema and its migrations (docs/contracts.md "Store").
 *
 * One list of steps; step N takes a database from version N-1 to N. The version lives in
 * meta(schema_version). A migration is one transaction (PostgreSQL also takes an advisory lock, so
 * masters starting together migrate once); a database newer than this pyti is refused rather than
 * written by code that does not know its shape. Column types are the common subset of SQLite and
 * PostgreSQL; @BLOB@ is BLOB or BYTEA. Times are seconds since the epoch (DOUBLE PRECISION); JSON
 * is kept as TEXT (the store never queries inside it). */
#include <string.h>

#include "store-int.h"

static const char *const v1[] = {
	"CREATE TABLE runs (id TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL, origin TEXT NOT NULL,"
	" recipe TEXT, recipe_name TEXT, backend TEXT, env TEXT, posargs TEXT, priority INTEGER NOT NULL DEFAULT 0)",
	"CREATE INDEX runs_created ON runs (created)",
	/* state ∈ queued leased done failed cancelled; attempt = the last attempt started (0 = none);
	 * lease/lease_expires/worker_id name the current attempt while leased */
	"CREATE TABLE jobs (id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,"
	" dist TEXT NOT NULL, suite TEXT NOT NULL, backend TEXT, recipe_name TEXT,"
	" priority INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),"
	" attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
	" lease TEXT, lease_expires DOUBLE PRECISION, worker_id TEXT, progress TEXT,"
	" status TEXT, failure_class TEXT, verdict TEXT, error TEXT, results TEXT, finished DOUBLE PRECISION,"
	" UNIQUE (run_id, seq))",
	"CREATE INDEX jobs_queue ON jobs (state, priority, created, seq)",
	"CREATE INDEX jobs_dist ON jobs (dist)",
	/* outcome: done failed retry lease-lost cancelled (NULL while it runs) */
	"CREATE TABLE attempts (job_id TEXT NOT NULL REFERENCES jobs (id), attempt INTEGER NOT NULL,"
	" lease TEXT NOT NULL, worker_id TEXT, started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION,"
	" outcome TEXT, failure_class TEXT, PRIMARY KEY (job_id, attempt))",
	"CREATE TABLE task_results (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, task TEXT NOT NULL,"
	" seq INTEGER NOT NULL, status TEXT, failure_class TEXT, wall_s DOUBLE PRECISION, result TEXT NOT NULL,"
	" PRIMARY KEY (job_id, attempt, task), FOREIGN KEY (job_id, attempt) REFERENCES attempts (job_id, attempt))",
	"CREATE TABLE testcases (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, task TEXT NOT NULL,"
	" seq INTEGER NOT NULL, case_id TEXT NOT NULL, outcome TEXT NOT NULL, message TEXT,"
	" PRIMARY KEY (job_id, attempt, task, seq),"
	" FOREIGN KEY (job_id, attempt, task) REFERENCES task_results (job_id, attempt, task))",
	/* codec: zstd | none; size = uncompressed bytes (what sha256 is of) */
	"CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, stored BIGINT NOT NULL,"
	" codec TEXT NOT NULL, data @BLOB@ NOT NULL, created DOUBLE PRECISION NOT NULL)",
	"CREATE TABLE artefacts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, name TEXT NOT NULL,"
	" sha256 TEXT NOT NULL REFERENCES blobs (sha256), size BIGINT NOT NULL,"
	" PRIMARY KEY (job_id, attempt, name), FOREIGN KEY (job_id, attempt) REFERENCES attempts (job_id, attempt))",
	NULL,
};

/* v2: workers (hello, capabilities, last heartbeat) and the index the lease reaper reads */
static const char *const v2[] = {
	"CREATE TABLE workers (id TEXT PRIMARY KEY, name TEXT NOT NULL, capabilities TEXT NOT NULL,"
	" created DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL)",
	"CREATE INDEX jobs_lease ON jobs (state, lease_expires)",
	NULL,
};

/* v3: a run made again from another (`pyti rerun`, `pyti compare --confirm`) names it; plain text, not a
 * foreign key, so that a store copy may bring a child without its parent */
static const char *const v3[] = {
	"ALTER TABLE runs ADD COLUMN parent TEXT",
	"CREATE INDEX runs_parent ON runs (parent)",
	NULL,
};

static const char *const *const steps[STORE_SCHEMA_VERSION + 1] = {NULL, v1, v2, v3};

static int read_version(struct store *st, int *version, struct pyti_err *err)
{
	_cleanup_sres_ struct sres r = {0};
	int rc = st_query(st, "SELECT value FROM meta WHERE key = 'schema_version'", NULL, 0, &r, err);
	if (rc < 0)
		return rc;
	*version = r.nrow ? (int)sres_i(&r, 0, 0) : 0;
	return 0;
}

int schema_version(struct store *st, int *version, struct pyti_err *err)
{
	return read_version(st, version, err);
}

int schema_migrate(struct store *st, int target, struct pyti_err *err)
{
	int rc = st_begin(st, err);
	if (rc < 0)
		return rc;
	if (st->engine == STORE_POSTGRES &&
	    (rc = st_exec(st, "SELECT pg_advisory_xact_lock(7270111)", NULL, 0, err)) < 0)
		goto fail;
	rc = st_exec(st, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", NULL, 0, err);
	int have = 0;
	if (rc < 0 || (rc = read_version(st, &have, err)) < 0)
		goto fail;
	if (have > STORE_SCHEMA_VERSION) {
		rc = st_fail(err, STORE_E_INVALID,
			     "the database's schema is version %d, newer than this pyti knows (%d): upgrade pyti", have,
			     STORE_SCHEMA_VERSION);
		goto fail;
	}
	for (int v = have + 1; v <= target; v++) {
		for (const char *const *s = steps[v]; *s; s++) {
			_cleanup_buf_ struct buf sql = BUF_INIT(0);
			const char *at = strstr(*s, "@BLOB@");
			if (at) {
				buf_append(&sql, *s, (size_t)(at - *s));
				buf_puts(&sql, st->ops->blob_type);
				buf_puts(&sql, at + 6);
			} else {
				buf_puts(&sql, *s);
			}
			if ((rc = st_exec(st, sql.data, NULL, 0, err)) < 0) {
				pyti_err_prefix(err, "schema version %d", v);
				goto fail;
			}
		}
		char vs[16];
		snprintf(vs, sizeof vs, "%d", v);
		struct sparam p[] = {P_T(vs)};
		rc = st_exec(st,
			     "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
			     " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			     p, NP(p), err);
		if (rc < 0)
			goto fail;
	}
	return st_commit(st, err);
fail:
	st_rollback(st);
	return rc;
}
