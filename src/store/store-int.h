/* store: internals shared by the store's files (not part of the public API).
 *
 *   store.c        ids, names, verdict rule, opening, limits, the engine-neutral query helpers
 *   schema.c       the schema and its migrations
 *   store_sqlite.c the SQLite engine     store_pg.c  the PostgreSQL engine
 *   queue.c        submit, rerun, runs for local records, a task's record and its test cases
 *   lease.c        hello and workers, claim, heartbeat, report, finish, expire, cancel
 *   record.c       jobs recorded by a local `pyti run`
 *   read.c         status, results, runs, show
 *   blob.c         blobs (zstd) and copy
 *
 * SQL is written once with '?' placeholders; the PostgreSQL engine numbers them ($1, $2, …). Where
 * the dialects differ (column types, FOR UPDATE SKIP LOCKED) the caller picks by st->engine. */
#ifndef PYTI_STORE_INT_H
#define PYTI_STORE_INT_H

#include <pthread.h>

#include "store.h"

enum sp_type {
	SP_NULL,
	SP_TEXT,
	SP_INT,
	SP_REAL,
	SP_BLOB
};
struct sparam {
	enum sp_type t;
	const char *s; /* TEXT (NUL-terminated) or BLOB (len bytes) */
	size_t len;
	long long i;
	double d;
};
static inline struct sparam P_T(const char *s) /* NULL is SQL NULL */
{
	return (struct sparam){.t = s ? SP_TEXT : SP_NULL, .s = s};
} static inline struct sparam P_I(long long i) {
	return (struct sparam){.t = SP_INT, .i = i};
} static inline struct sparam P_D(double d) {
	return (struct sparam){.t = SP_REAL, .d = d};
} static inline struct sparam P_B(const void *p, size_t n) {
	return (struct sparam){.t = SP_BLOB, .s = (const char *)p, .len = n};
}
#define P_N ((struct sparam){.t = SP_NULL})

/* A query's rows, copied out: cell (r, c) is v[r * ncol + c], NULL for SQL NULL, else NUL-terminated
 * with len[] bytes (BLOB/BYTEA columns hold the raw bytes). */
struct sres {
	size_t nrow, ncol;
	char **v;
	size_t *len;
};
void sres_free(struct sres *r);
static inline void sres_freep(struct sres *r)
{
	sres_free(r);
}
#define _cleanup_sres_ _cleanup_(sres_freep)
const char *sres_s(const struct sres *r, size_t row, size_t col); /* NULL for NULL */
long long sres_i(const struct sres *r, size_t row, size_t col);	  /* 0 for NULL */
double sres_d(const struct sres *r, size_t row, size_t col);	  /* 0 for NULL */
json_t *sres_json(const struct sres *r, size_t row, size_t col);  /* parsed TEXT, or json null */
json_t *sres_jstr(const struct sres *r, size_t row, size_t col);  /* a string, or json null */

struct store_engine_ops {
	/* (re)connect; STORE_E_UNAVAILABLE when the server cannot be reached */
	int (*connect)(struct store *st, struct pyti_err *err);
	void (*disconnect)(struct store *st);
	bool (*connected)(struct store *st);
	/* run one statement; rows into out when out is not NULL (out is zeroed first) */
	int (*exec)(struct store *st, const char *sql, const struct sparam *p, size_t np, struct sres *out,
		    struct pyti_err *err);
	/* a write transaction (SQLite: BEGIN IMMEDIATE, which takes the write lock now) */
	int (*begin)(struct store *st, struct pyti_err *err);
	const char *blob_type;	  /* "BLOB" | "BYTEA" */
	const char *for_update;	  /* "" | " FOR UPDATE" */
	const char *skip_locked;  /* "" | " FOR UPDATE SKIP LOCKED" */
	const char *random_lease; /* SQL expression: 32 random hex digits */
};
extern const struct store_engine_ops store_sqlite_ops, store_pg_ops;

struct store {
	enum store_engine engine;
	const struct store_engine_ops *ops;
	char *url;	/* as given (PostgreSQL: the conninfo, may hold a password: never printed) */
	char *path;	/* SQLite file */
	char *describe; /* for messages */
	void *db;	/* sqlite3 * | PGconn * */
	bool in_tx;
	bool no_create; /* SQLite: open an existing file only */
	struct store_limits lim;
	pthread_mutex_t mu;
};

/* Statements (st->mu held by the caller: every public function takes it with store_lock). */
int st_exec(struct store *st, const char *sql, const struct sparam *p, size_t np, struct pyti_err *err);
int st_query(struct store *st, const char *sql, const struct sparam *p, size_t np, struct sres *out,
	     struct pyti_err *err);
int st_begin(struct store *st, struct pyti_err *err);
int st_commit(struct store *st, struct pyti_err *err);
void st_rollback(struct store *st);
/* Lock the handle and make sure it is connected. */
int store_lock(struct store *st, struct pyti_err *err);
void store_unlock(struct store *st);
/* Set err to a store error code's message; returns rc. */
int st_fail(struct pyti_err *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define NP(a) (sizeof(a) / sizeof((a)[0]))

/* schema.c */
int schema_migrate(struct store *st, int target, struct pyti_err *err);
int schema_version(struct store *st, int *version, struct pyti_err *err);

/* queue.c: store one task's result (idempotent) and its test cases; seq < 0: the attempt's next */
int q_store_task(struct store *st, const char *job_id, int attempt, int seq, const char *task, const json_t *result,
		 struct pyti_err *err);
#define MAX_JSON (8u << 20) /* one task result or a whole results.json */

/* queue.c: shared by record.c */
char *q_dump(const json_t *j); /* compact JSON text (caller frees), NULL for NULL */
bool q_ok_name(const char *s);
/* The job's verdict: the results' own "verdict" when it is one (manager_verdict's, as pyti run and
 * the worker add it), else store_verdict_of's. */
const char *q_verdict(const json_t *res); /* a non-empty name of at most 4096 bytes */
int q_store_tasks(struct store *st, const char *job_id, int attempt, const json_t *results, struct pyti_err *err);
/* blob.c: put inside the caller's transaction/lock */
int blob_put_locked(struct store *st, const void *data, size_t len, const char *sha, struct pyti_err *err);
/* read.c: JSON of a run header (counts, verdicts) */
int read_run_header(struct store *st, const char *run_id, json_t **out, struct pyti_err *err);

#endif
