/* store: the SQLite engine. WAL (readers never block the writer), synchronous=NORMAL (durable
 * against a killed process, which is what a master or a pyti run meets; a power cut may lose the last
 * transactions), a busy timeout so that several processes on one file wait rather than fail, and
 * write transactions that take the lock at BEGIN (BEGIN IMMEDIATE), so a claim's read and write are
 * one atomic step. Prepared statements are cached by their SQL text: the ingest path runs the same
 * few statements thousands of times a second. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store-int.h"

#define BUSY_MS 15000
#define CACHE_N 48

struct sq {
	sqlite3 *db;
	struct {
		char *own; /* the statement's SQL text: a hit is the same text */
		sqlite3_stmt *stmt;
	} cache[CACHE_N];
	unsigned next;
};

static int sq_err(struct store *st, struct pyti_err *err, int code, const char *what)
{
	struct sq *q = st->db;
	int rc = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? STORE_E_UNAVAILABLE
		 : (code == SQLITE_TOOBIG)			? STORE_E_TOOBIG
								: STORE_E_INTERNAL;
	return st_fail(err, rc, "%s: %s: %s", st->describe, what,
		       q && q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(code));
}

static void sq_disconnect(struct store *st)
{
	struct sq *q = st->db;
	if (!q)
		return;
	for (unsigned i = 0; i < CACHE_N; i++) {
		sqlite3_finalize(q->cache[i].stmt);
		free(q->cache[i].own);
	}
	sqlite3_close_v2(q->db);
	free(q);
	st->db = NULL;
}

static bool sq_connected(struct store *st)
{
	return st->db != NULL;
}

static int sq_connect(struct store *st, struct pyti_err *err)
{
	if (st->no_create && access(st->path, F_OK) < 0)
		return st_fail(err, STORE_E_NOTFOUND, "%s: no such store (%s)", st->describe, strerror(errno));
	_cleanup_free_ char *dir = xstrdup(st->path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir && !st->no_create) {
		*slash = '\0';
		if (mkdir_p(dir, 0755, err) < 0)
			return STORE_E_INTERNAL;
	}
	struct sq *q = xcalloc(1, sizeof *q);
	st->db = q;
	int rc = sqlite3_open_v2(st->path, &q->db,
				 SQLITE_OPEN_READWRITE | (st->no_create ? 0 : SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		rc = sq_err(st, err, rc, "open");
		sq_disconnect(st);
		return rc;
	}
	sqlite3_extended_result_codes(q->db, 0);
	sqlite3_busy_timeout(q->db, BUSY_MS);
	static const char *const pragmas[] = {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL",
					      "PRAGMA foreign_keys = ON"};
	for (size_t i = 0; i < ARRAY_SIZE(pragmas); i++) {
		rc = sqlite3_exec(q->db, pragmas[i], NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			rc = sq_err(st, err, rc, pragmas[i]);
			sq_disconnect(st);
			return rc;
		}
	}
	return 0;
}

static sqlite3_stmt *sq_prepare(struct store *st, const char *sql, int *code)
{
	struct sq *q = st->db;
	for (unsigned i = 0; i < CACHE_N; i++) {
		if (q->cache[i].stmt && strcmp(q->cache[i].own, sql) == 0) {
			sqlite3_reset(q->cache[i].stmt);
			sqlite3_clear_bindings(q->cache[i].stmt);
			return q->cache[i].stmt;
		}
	}
	sqlite3_stmt *s = NULL;
	*code = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
	if (*code != SQLITE_OK)
		return NULL;
	unsigned i = q->next++ % CACHE_N;
	sqlite3_finalize(q->cache[i].stmt);
	free(q->cache[i].own);
	q->cache[i].stmt = s;
	q->cache[i].own = xstrdup(sql);
	return s;
}

static int sq_exec(struct store *st, const char *sql, const struct sparam *p, size_t np, struct sres *out,
		   struct pyti_err *err)
{
	int code = SQLITE_OK;
	sqlite3_stmt *s = sq_prepare(st, sql, &code);
	if (!s)
		return sq_err(st, err, code, "prepare");
	for (size_t i = 0; i < np; i++) {
		int b = (int)i + 1;
		switch (p[i].t) {
		case SP_NULL:
			code = sqlite3_bind_null(s, b);
			break;
		case SP_TEXT:
			code = sqlite3_bind_text(s, b, p[i].s, -1, SQLITE_STATIC);
			break;
		case SP_INT:
			code = sqlite3_bind_int64(s, b, p[i].i);
			break;
		case SP_REAL:
			code = sqlite3_bind_double(s, b, p[i].d);
			break;
		case SP_BLOB:
			code = sqlite3_bind_blob64(s, b, p[i].s, p[i].len, SQLITE_STATIC);
			break;
		}
		if (code != SQLITE_OK) {
			sqlite3_reset(s);
			return sq_err(st, err, code, "bind");
		}
	}
	size_t ncol = (size_t)sqlite3_column_count(s), cap = 0;
	if (out)
		out->ncol = ncol;
	for (;;) {
		code = sqlite3_step(s);
		if (code == SQLITE_DONE)
			break;
		if (code != SQLITE_ROW) {
			int rc = sq_err(st, err, code, "step");
			sqlite3_reset(s);
			sres_free(out);
			return rc;
		}
		if (!out)
			continue;
		if (out->nrow == cap) {
			cap = cap ? cap * 2 : 8;
			out->v = xrealloc(out->v, cap * ncol * sizeof *out->v);
			out->len = xrealloc(out->len, cap * ncol * sizeof *out->len);
		}
		for (size_t c = 0; c < ncol; c++) {
			size_t k = out->nrow * ncol + c;
			int ty = sqlite3_column_type(s, (int)c);
			if (ty == SQLITE_NULL) {
				out->v[k] = NULL;
				out->len[k] = 0;
				continue;
			}
			const void *d = ty == SQLITE_BLOB ? sqlite3_column_blob(s, (int)c)
							  : (const void *)sqlite3_column_text(s, (int)c);
			size_t n = (size_t)sqlite3_column_bytes(s, (int)c);
			char *v = xmalloc(n + 1);
			if (n)
				memcpy(v, d, n);
			v[n] = '\0';
			out->v[k] = v;
			out->len[k] = n;
		}
		out->nrow++;
	}
	sqlite3_reset(s);
	return 0;
}

static int sq_begin(struct store *st, struct pyti_err *err)
{
	return sq_exec(st, "BEGIN IMMEDIATE", NULL, 0, NULL, err);
}

const struct store_engine_ops store_sqlite_ops = {
	.connect = sq_connect,
	.disconnect = sq_disconnect,
	.connected = sq_connected,
	.exec = sq_exec,
	.begin = sq_begin,
	.blob_type = "BLOB",
	.for_update = "",
	.skip_locked = "",
	.random_lease = "lower(hex(randomblob(16)))",
};
