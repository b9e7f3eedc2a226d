/* store: the PostgreSQL engine (libpq). One connection per handle; a broken connection makes the
 * call fail with STORE_E_UNAVAILABLE and the next call reconnects, so a master rides out a server
 * restart. Parameters are sent typed (text, int8, float8, bytea in binary) because an untyped NULL
 * or a comparison with a parameter leaves the server guessing. Rows come back as text; bytea
 * columns are unescaped. Serialization failures and deadlocks are "unavailable" too: the caller's
 * retry is the right answer to both. */
#include <string.h>

#include <libpq-fe.h>

#include "store-int.h"

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define OID_FLOAT8 701
#define CACHE_N 64

/* The connection and its prepared statements (named s0, s1, …; one per SQL text and parameter
 * types: parsing and planning were most of a small statement's time). They die with the session. */
struct pg {
	PGconn *c;
	struct {
		char *key; /* types (one letter a parameter), '|', the SQL */
	} cache[CACHE_N];
	unsigned n;
};
#define CONN(st) (((struct pg *)(st)->db)->c)

static void pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	log_debug("postgresql: %s", msg);
}

static void pg_disconnect(struct store *st)
{
	struct pg *g = st->db;
	if (!g)
		return;
	if (g->c)
		PQfinish(g->c);
	for (unsigned i = 0; i < g->n; i++)
		free(g->cache[i].key);
	free(g);
	st->db = NULL;
}

static bool pg_connected(struct store *st)
{
	return st->db && CONN(st) && PQstatus(CONN(st)) == CONNECTION_OK;
}

/* "postgresql (host=…, port=…, dbname=…, user=…)": what a message may say about the server */
static void pg_describe(struct store *st)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(st->url, &msg);
	PQfreemem(msg);
	if (!o)
		return;
	_cleanup_buf_ struct buf b = BUF_INIT(512);
	buf_puts(&b, "postgresql (");
	const char *sep = "";
	for (PQconninfoOption *i = o; i->keyword; i++) {
		if (!i->val || !*i->val)
			continue;
		if (strcmp(i->keyword, "host") && strcmp(i->keyword, "hostaddr") && strcmp(i->keyword, "port") &&
		    strcmp(i->keyword, "dbname") && strcmp(i->keyword, "user"))
			continue;
		buf_printf(&b, "%s%s=%s", sep, i->keyword, i->val);
		sep = ", ";
	}
	buf_puts(&b, ")");
	PQconninfoFree(o);
	free(st->describe);
	st->describe = buf_steal(&b);
}

static int pg_connect(struct store *st, struct pyti_err *err)
{
	if (strcmp(st->describe, "postgresql") == 0)
		pg_describe(st);
	pg_disconnect(st);
	struct pg *g = xcalloc(1, sizeof *g);
	st->db = g;
	g->c = PQconnectdb(st->url);
	if (!g->c || PQstatus(g->c) != CONNECTION_OK) {
		int rc = st_fail(err, STORE_E_UNAVAILABLE, "%s: cannot connect: %s", st->describe,
				 g->c ? PQerrorMessage(g->c) : "out of memory");
		size_t n = err ? strlen(err->msg) : 0;
		while (n && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' '))
			err->msg[--n] = '\0';
		pg_disconnect(st);
		return rc;
	}
	PQsetNoticeProcessor(g->c, pg_quiet, NULL);
	return 0;
}

/* '?' → $1, $2, … outside quoted strings */
static char *pg_sql(const char *sql)
{
	struct buf b = BUF_INIT(0);
	int n = 0;
	bool quoted = false;
	for (const char *p = sql; *p; p++) {
		if (*p == '\'')
			quoted = !quoted;
		if (*p == '?' && !quoted)
			buf_printf(&b, "$%d", ++n);
		else
			buf_append(&b, p, 1);
	}
	return buf_steal(&b);
}

static bool pg_transient(struct store *st, const char *state)
{
	if (PQstatus(CONN(st)) != CONNECTION_OK)
		return true;
	if (!state)
		return false;
	return strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 || strcmp(state, "40001") == 0 ||
	       strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 || strcmp(state, "53300") == 0;
}

/* Run a statement, prepared once per session; transaction control and a full cache run unprepared. */
static PGresult *pg_run(struct store *st, const char *sql, int np, const Oid *types, const char *const *vals,
			const int *lens, const int *fmts)
{
	struct pg *g = st->db;
	if (np == 0 && strncmp(sql, "SELECT", 6) != 0)
		return PQexecParams(g->c, sql, 0, NULL, NULL, NULL, NULL, 0); /* BEGIN, COMMIT, DDL */
	_cleanup_buf_ struct buf key = BUF_INIT(0);
	for (int i = 0; i < np; i++)
		buf_printf(&key, "%u,", types[i]);
	buf_puts(&key, "|");
	buf_puts(&key, sql);
	unsigned i;
	for (i = 0; i < g->n; i++)
		if (strcmp(g->cache[i].key, key.data) == 0)
			break;
	char name[16];
	if (i == g->n) {
		if (g->n == CACHE_N)
			return PQexecParams(g->c, sql, np, types, vals, lens, fmts, 0);
		snprintf(name, sizeof name, "s%u", i);
		PGresult *p = PQprepare(g->c, name, sql, np, types);
		if (!p || PQresultStatus(p) != PGRES_COMMAND_OK)
			return p; /* the error, reported like an execution's */
		PQclear(p);
		g->cache[g->n++].key = buf_steal(&key);
	}
	snprintf(name, sizeof name, "s%u", i);
	return PQexecPrepared(g->c, name, np, vals, lens, fmts, 0);
}

static int pg_exec(struct store *st, const char *sql, const struct sparam *p, size_t np, struct sres *out,
		   struct pyti_err *err)
{
	if (!st->db || !CONN(st))
		return st_fail(err, STORE_E_UNAVAILABLE, "%s: not connected", st->describe);
	_cleanup_free_ char *q = pg_sql(sql);
	size_t na = np ? np : 1;
	_cleanup_free_ Oid *types = xcalloc(na, sizeof *types);
	_cleanup_free_ const char **vals = xcalloc(na, sizeof *vals);
	_cleanup_free_ int *lens = xcalloc(na, sizeof *lens), *fmts = xcalloc(na, sizeof *fmts);
	_cleanup_free_ char(*nums)[32] = xcalloc(na, sizeof *nums);
	for (size_t i = 0; i < np; i++) {
		lens[i] = 0;
		fmts[i] = 0;
		switch (p[i].t) {
		case SP_NULL:
			types[i] = 0;
			vals[i] = NULL;
			break;
		case SP_TEXT:
			types[i] = OID_TEXT;
			vals[i] = p[i].s;
			break;
		case SP_INT:
			types[i] = OID_INT8;
			snprintf(nums[i], sizeof nums[i], "%lld", p[i].i);
			vals[i] = nums[i];
			break;
		case SP_REAL:
			types[i] = OID_FLOAT8;
			snprintf(nums[i], sizeof nums[i], "%.17g", p[i].d);
			vals[i] = nums[i];
			break;
		case SP_BLOB:
			if (p[i].len > 0x7fffffff)
				return st_fail(err, STORE_E_TOOBIG, "%s: a value of %zu bytes", st->describe, p[i].len);
			types[i] = OID_BYTEA;
			vals[i] = p[i].len ? p[i].s : "";
			lens[i] = (int)p[i].len;
			fmts[i] = 1;
			break;
		}
	}
	PGresult *res = pg_run(st, q, (int)np, types, vals, lens, fmts);
	ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		int rc = pg_transient(st, state) ? STORE_E_UNAVAILABLE : STORE_E_INTERNAL;
		const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(CONN(st));
		st_fail(err, rc, "%s: %.*s", st->describe, (int)strcspn(m, "\n"), m);
		PQclear(res);
		return rc;
	}
	if (out) {
		size_t nrow = (size_t)PQntuples(res), ncol = (size_t)PQnfields(res);
		out->nrow = nrow;
		out->ncol = ncol;
		out->v = xcalloc(nrow * ncol + 1, sizeof *out->v);
		out->len = xcalloc(nrow * ncol + 1, sizeof *out->len);
		for (size_t r = 0; r < nrow; r++) {
			for (size_t c = 0; c < ncol; c++) {
				size_t k = r * ncol + c;
				if (PQgetisnull(res, (int)r, (int)c))
					continue;
				const char *v = PQgetvalue(res, (int)r, (int)c);
				size_t n = (size_t)PQgetlength(res, (int)r, (int)c);
				if (PQftype(res, (int)c) == OID_BYTEA) {
					size_t un = 0;
					unsigned char *u = PQunescapeBytea((const unsigned char *)v, &un);
					if (!u) {
						PQclear(res);
						sres_free(out);
						return st_fail(err, STORE_E_INTERNAL, "%s: bad bytea", st->describe);
					}
					out->v[k] = xmalloc(un + 1);
					memcpy(out->v[k], u, un);
					out->v[k][un] = '\0';
					out->len[k] = un;
					PQfreemem(u);
				} else {
					out->v[k] = xmalloc(n + 1);
					memcpy(out->v[k], v, n);
					out->v[k][n] = '\0';
					out->len[k] = n;
				}
			}
		}
	}
	PQclear(res);
	return 0;
}

static int pg_begin(struct store *st, struct pyti_err *err)
{
	return pg_exec(st, "BEGIN", NULL, 0, NULL, err);
}

const struct store_engine_ops store_pg_ops = {
	.connect = pg_connect,
	.disconnect = pg_disconnect,
	.connected = pg_connected,
	.exec = pg_exec,
	.begin = pg_begin,
	.blob_type = "BYTEA",
	.for_update = " FOR UPDATE",
	.skip_locked = " FOR UPDATE SKIP LOCKED",
	.random_lease = "replace(gen_random_uuid()::text, '-', '')",
};
