/* store: ids, names, the verdict rule, opening by URL, limits, and the engine-neutral statement
 * helpers every other file of the store uses (store-int.h lists the files). */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "store-int.h"

/* ---- return codes ---- */
int store_rpc_code(int rc)
{
	switch (rc) {
	case STORE_OK:
		return 0;
	case STORE_E_STALE:
		return -32001;
	case STORE_E_NOTFOUND:
		return -32003;
	case STORE_E_UNAVAILABLE:
		return -32006;
	case STORE_E_MISSING:
		return -32004;
	case STORE_E_INVALID:
		return -32602;
	case STORE_E_TOOBIG:
		return -32005;
	default:
		return -32603;
	}
}

const char *store_rc_name(int rc)
{
	switch (rc) {
	case STORE_OK:
		return "ok";
	case STORE_E_STALE:
		return "stale lease";
	case STORE_E_NOTFOUND:
		return "not found";
	case STORE_E_UNAVAILABLE:
		return "store unavailable";
	case STORE_E_MISSING:
		return "missing artefacts";
	case STORE_E_INVALID:
		return "invalid parameters";
	case STORE_E_TOOBIG:
		return "too large";
	default:
		return "internal error";
	}
}

int st_fail(struct pyti_err *err, int rc, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		err->errnum = 0;
		err->fclass = PYTI_FC_NONE;
		err->status = (rc == STORE_E_NOTFOUND || rc == STORE_E_INVALID) ? PYTI_EXIT_USAGE : PYTI_EXIT_INFRA;
	}
	return rc < 0 ? rc : STORE_E_INTERNAL;
}

/* ---- ids ---- */
static void random_bytes(void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = getrandom(b, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			abort(); /* a Linux ≥ 3.17 without getrandom: nothing sane to do */
		}
		b += r;
		n -= (size_t)r;
	}
}

void store_id_new(char kind, char out[STORE_ID_SIZE])
{
	uint64_t r;
	random_bytes(&r, sizeof r);
	snprintf(out, STORE_ID_SIZE, "%c%016llx", kind, (unsigned long long)r);
}

char store_id_kind(const char *id)
{
	if (!id || strlen(id) != STORE_ID_SIZE - 1 || !strchr("rjw", id[0]))
		return 0;
	for (size_t i = 1; i < STORE_ID_SIZE - 1; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return 0;
	return id[0];
}

/* ---- states and verdicts ---- */
static const char *const state_names[STORE_STATE_COUNT] = {"queued", "leased", "done", "failed", "cancelled"};
static const char *const verdict_names[STORE_VERDICT_COUNT] = {NULL,	       "passed",   "test-failed",
							       "build-failed", "no-tests", "infra"};

const char *store_state_name(enum store_state s)
{
	return (unsigned)s < STORE_STATE_COUNT ? state_names[s] : "unknown";
}

int store_state_parse(const char *name)
{
	for (int i = 0; name && i < STORE_STATE_COUNT; i++)
		if (strcmp(state_names[i], name) == 0)
			return i;
	return -1;
}

const char *store_verdict_name(enum store_verdict v)
{
	return (unsigned)v < STORE_VERDICT_COUNT ? verdict_names[v] : NULL;
}

int store_verdict_parse(const char *name)
{
	for (int i = 1; name && i < STORE_VERDICT_COUNT; i++)
		if (strcmp(verdict_names[i], name) == 0)
			return i;
	return -1;
}

bool store_fclass_retried(enum pyti_fclass fc)
{
	return fc == PYTI_FC_CRASH || fc == PYTI_FC_INFRA;
}

static bool is_build_task(const char *name)
{
	return strncmp(name, "install", 7) == 0 || strncmp(name, "build", 5) == 0 || strcmp(name, "fetch") == 0;
}

/* TODO(lead): replace by manager_verdict() once it lands, so that the CLI's summary and the store
 * agree by construction. Until then this is the one rule, documented in store.h. */
enum store_verdict store_verdict_of(const json_t *res)
{
	if (!json_is_object(res))
		return STORE_V_INFRA;
	const char *status = pj_str(res, "status", "");
	if (pyti_fclass_parse(pj_str(res, "failure_class", NULL)) == PYTI_FC_BUILDFAIL)
		return STORE_V_BUILD_FAILED; /* {"status": "failed", "failure_class": "BuildFail", …} */
	if (strcmp(status, "error") == 0) {
		int fc = pyti_fclass_parse(pj_str(res, "failure_class", NULL));
		switch (fc) {
		case PYTI_FC_FETCH:
			return STORE_V_BUILD_FAILED; /* the distribution could not be resolved or built */
		case PYTI_FC_TIMEOUT:
		case PYTI_FC_OOM:
		case PYTI_FC_NOOUTPUT:
		case PYTI_FC_NOSPACE:
		case PYTI_FC_PIDS:
		case PYTI_FC_TAMPERED:
			return STORE_V_TEST_FAILED; /* the package's own doing, not the machinery's */
		default:
			return STORE_V_INFRA;
		}
	}
	const json_t *tasks = json_object_get(res, "tasks"), *t;
	size_t i;
	json_array_foreach(tasks, i, t) {
		int fc = pyti_fclass_parse(pj_str(t, "failure_class", NULL));
		if (fc == PYTI_FC_CRASH || fc == PYTI_FC_INFRA || fc == PYTI_FC_NETWORK)
			return STORE_V_INFRA;
	}
	bool any_tests = false, any_no_tests = false;
	json_array_foreach(tasks, i, t) {
		if (strcmp(pj_str(t, "status", ""), "failed") == 0)
			return is_build_task(pj_str(t, "task", "")) ? STORE_V_BUILD_FAILED : STORE_V_TEST_FAILED;
		const json_t *tests = json_object_get(t, "tests");
		if (json_is_object(tests)) {
			if (pj_bool(tests, "no_tests", false) || pj_int(tests, "total", 0) == 0)
				any_no_tests = true;
			else
				any_tests = true;
		}
	}
	if (strcmp(status, "passed") != 0)
		return STORE_V_TEST_FAILED; /* failed without a failed task: say so rather than pass it */
	return any_no_tests && !any_tests ? STORE_V_NO_TESTS : STORE_V_PASSED;
}

/* ---- results of a query ---- */
void sres_free(struct sres *r)
{
	if (!r || !r->v)
		return;
	for (size_t i = 0; i < r->nrow * r->ncol; i++)
		free(r->v[i]);
	free(r->v);
	free(r->len);
	r->v = NULL;
	r->len = NULL;
	r->nrow = r->ncol = 0;
}

const char *sres_s(const struct sres *r, size_t row, size_t col)
{
	if (row >= r->nrow || col >= r->ncol)
		return NULL;
	return r->v[row * r->ncol + col];
}

long long sres_i(const struct sres *r, size_t row, size_t col)
{
	const char *s = sres_s(r, row, col);
	return s ? strtoll(s, NULL, 10) : 0;
}

double sres_d(const struct sres *r, size_t row, size_t col)
{
	const char *s = sres_s(r, row, col);
	return s ? strtod(s, NULL) : 0;
}

json_t *sres_json(const struct sres *r, size_t row, size_t col)
{
	const char *s = sres_s(r, row, col);
	json_t *j = s ? json_loadb(s, r->len[row * r->ncol + col], JSON_DECODE_ANY, NULL) : NULL;
	return j ? j : json_null();
}

json_t *sres_jstr(const struct sres *r, size_t row, size_t col)
{
	const char *s = sres_s(r, row, col);
	return s ? pj_string_lossy(s, strlen(s)) : json_null();
}

/* ---- statements ---- */
int st_query(struct store *st, const char *sql, const struct sparam *p, size_t np, struct sres *out,
	     struct pyti_err *err)
{
	if (out)
		*out = (struct sres){0};
	return st->ops->exec(st, sql, p, np, out, err);
}

int st_exec(struct store *st, const char *sql, const struct sparam *p, size_t np, struct pyti_err *err)
{
	return st->ops->exec(st, sql, p, np, NULL, err);
}

int st_begin(struct store *st, struct pyti_err *err)
{
	int rc = st->ops->begin(st, err);
	if (rc == 0)
		st->in_tx = true;
	return rc;
}

int st_commit(struct store *st, struct pyti_err *err)
{
	st->in_tx = false;
	int rc = st->ops->exec(st, "COMMIT", NULL, 0, NULL, err);
	if (rc < 0) {
		struct pyti_err e2 = {0};
		st->ops->exec(st, "ROLLBACK", NULL, 0, NULL, &e2);
	}
	return rc;
}

void st_rollback(struct store *st)
{
	if (!st->in_tx)
		return;
	st->in_tx = false;
	struct pyti_err e = {0};
	st->ops->exec(st, "ROLLBACK", NULL, 0, NULL, &e);
}

int store_lock(struct store *st, struct pyti_err *err)
{
	pthread_mutex_lock(&st->mu);
	if (!st->ops->connected(st)) {
		int rc = st->ops->connect(st, err);
		if (rc < 0) {
			pthread_mutex_unlock(&st->mu);
			return rc;
		}
	}
	return 0;
}

void store_unlock(struct store *st)
{
	st_rollback(st); /* an error path that left a transaction open */
	pthread_mutex_unlock(&st->mu);
}

/* ---- opening ---- */
static bool is_pg_url(const char *url)
{
	if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
		return true;
	const char *eq = strchr(url, '='), *slash = strchr(url, '/');
	return eq && (!slash || slash > eq);
}

char *store_default_url(const char *state_dir)
{
	return xasprintf("%s/pyti.db", state_dir);
}

static int open_store(const char *url, int version, bool no_create, struct store **out, struct pyti_err *err)
{
	*out = NULL;
	if (!url || !*url)
		return st_fail(err, STORE_E_INVALID, "store: empty URL");
	if (version < 1 || version > STORE_SCHEMA_VERSION)
		return st_fail(err, STORE_E_INVALID, "store: no schema version %d", version);
	struct store *st = xcalloc(1, sizeof *st);
	pthread_mutex_init(&st->mu, NULL);
	st->lim = (struct store_limits){0};
	store_limits_set(st, &st->lim);
	st->url = xstrdup(url);
	st->no_create = no_create;
	if (is_pg_url(url)) {
		st->engine = STORE_POSTGRES;
		st->ops = &store_pg_ops;
		st->describe = xstrdup("postgresql");
	} else {
		const char *path = url;
		if (strncmp(path, "sqlite:", 7) == 0) {
			path += 7;
			if (strncmp(path, "//", 2) == 0)
				path += 2; /* sqlite:///abs/path */
		}
		if (!*path) {
			store_close(st);
			return st_fail(err, STORE_E_INVALID, "store: '%s' names no file", url);
		}
		st->engine = STORE_SQLITE;
		st->ops = &store_sqlite_ops;
		st->path = xstrdup(path);
		st->describe = xasprintf("sqlite:%s", path);
	}
	int rc = store_lock(st, err);
	if (rc < 0) {
		store_close(st);
		return rc;
	}
	rc = schema_migrate(st, version, err);
	store_unlock(st);
	if (rc < 0) {
		pyti_err_prefix(err, "store %s", st->describe);
		store_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

int store_open_version(const char *url, int version, struct store **out, struct pyti_err *err)
{
	return open_store(url, version, false, out, err);
}

int store_open(const char *url, struct store **out, struct pyti_err *err)
{
	return open_store(url, STORE_SCHEMA_VERSION, false, out, err);
}

int store_open_existing(const char *url, struct store **out, struct pyti_err *err)
{
	return open_store(url, STORE_SCHEMA_VERSION, true, out, err);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	if (st->ops)
		st->ops->disconnect(st);
	pthread_mutex_destroy(&st->mu);
	free(st->url);
	free(st->path);
	free(st->describe);
	free(st);
}

enum store_engine store_engine_of(const struct store *st)
{
	return st->engine;
}

const char *store_describe(const struct store *st)
{
	return st ? st->describe : "(no store)";
}

int store_schema_version(struct store *st, int *version, struct pyti_err *err)
{
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	rc = schema_version(st, version, err);
	store_unlock(st);
	return rc;
}

int store_ping(struct store *st, struct pyti_err *err)
{
	int rc = store_lock(st, err);
	if (rc < 0)
		return rc;
	rc = st_exec(st, "SELECT 1", NULL, 0, err);
	store_unlock(st);
	return rc;
}

void store_limits_get(const struct store *st, struct store_limits *out)
{
	*out = st->lim;
}

void store_limits_set(struct store *st, const struct store_limits *lim)
{
	struct store_limits l = *lim;
	if (l.lease_s <= 0)
		l.lease_s = 60;
	if (l.heartbeat_s <= 0)
		l.heartbeat_s = l.lease_s / 3 > 0 ? l.lease_s / 3 : 1;
	if (l.max_attempts <= 0)
		l.max_attempts = 3;
	if (l.blob_max == 0)
		l.blob_max = 64ull << 20;
	st->lim = l;
}
