/* master: one function per JSON-RPC method, each a few store calls on a borrowed handle. The
 * parameters were checked against the API table (src/rpc/methods.c) before a handler runs, so a
 * handler reads them without re-checking types; what the table cannot say (exactly one of run_id and
 * job_id, a recipe that parses, base64 that matches its size) is checked here. Every event that
 * changes the store is one log line naming run, job, attempt and worker where they are known.
 */
#include <pthread.h>
#include <string.h>

#include "master-int.h"
#include "recipe.h"

/* A store failure as a JSON-RPC error (docs/rpc.md "Errors"), logged when it is the server's. */
static json_t *store_fail(struct master *m, const struct rpc_call *call, int rc, const struct pyti_err *err,
			  struct rpc_error *e)
{
	const char *meth = call->method->name;
	json_t *p = call->params;
	switch (rc) {
	case STORE_E_STALE:
		master_log(m, "stale-lease", "method=%s job=%s attempt=%lld", meth, pj_str(p, "job_id", "-"),
			   pj_int(p, "attempt", 0));
		return rpc_error_set(
			e, RPC_STALE_LEASE,
			json_pack("{s:s, s:I}", "job_id", pj_str(p, "job_id", ""), "attempt",
				  (json_int_t)pj_int(p, "attempt", 0)),
			"stale lease: attempt %lld of this job is no longer the current one; nothing stored",
			pj_int(p, "attempt", 0));
	case STORE_E_UNAVAILABLE:
		master_log(m, "store-unavailable", "method=%s error=\"%s\"", meth, pyti_err_str(err));
		return rpc_error_set(e, RPC_STORE_UNAVAILABLE, json_pack("{s:i}", "retry_after_s", 2),
				     "store unavailable; retry later");
	case STORE_E_NOTFOUND:
		return rpc_error_set(e, RPC_NOT_FOUND, NULL, "%s", err->msg[0] ? err->msg : "not found");
	case STORE_E_INVALID:
		return rpc_error_set(e, RPC_INVALID_PARAMS, NULL, "%s: %s", meth, err->msg);
	case STORE_E_TOOBIG:
		return rpc_error_set(e, RPC_TOO_LARGE, json_pack("{s:I}", "limit", (json_int_t)m->lim.blob_max), "%s",
				     err->msg[0] ? err->msg : "blob too large");
	case STORE_E_MISSING:
		return rpc_error_set(e, RPC_MISSING_ARTEFACTS, json_pack("{s:[]}", "missing"), "missing artefacts");
	default:
		/* the details are for the operator's log, not for the client */
		master_log(m, "internal-error", "method=%s error=\"%s\"", meth, pyti_err_str(err));
		return rpc_error_set(e, RPC_INTERNAL_ERROR, NULL, "internal error (see the master's log)");
	}
}

#define WITH_STORE(h)                                                                                                  \
	struct master_handle h = {0};                                                                                  \
	if (master_handle_get(m, &h, e) < 0)                                                                           \
		return NULL;

static struct store_lease lease_of(const json_t *p)
{
	return (struct store_lease){.job_id = pj_str(p, "job_id", ""),
				    .attempt = (int)pj_int(p, "attempt", 0),
				    .lease = pj_str(p, "lease", "")};
}

static json_t *m_hello(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	struct pyti_err err = {0};
	char wid[STORE_ID_SIZE];
	WITH_STORE(h);
	int rc = store_worker_hello(h.st, pj_str(p, "name", ""), json_object_get(p, "capabilities"), wid, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	json_t *caps = json_object_get(p, "capabilities");
	master_log(m, "hello", "worker=%s name=\"%s\" slots=%lld version=\"%s\"", wid, pj_str(p, "name", ""),
		   pj_int(caps, "slots", 0), pj_str(caps, "version", ""));
	return json_pack("{s:s, s:i, s:i}", "worker_id", wid, "lease_s", m->lim.lease_s, "heartbeat_s",
			 m->lim.heartbeat_s);
}

/* The long poll: claim, and while nothing came and wait_s has not passed, wait for this master's
 * own submits and requeues (woken at once) or a short step (another master's, seen by polling). No
 * store handle is held while waiting. */
static json_t *m_claim(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	const char *wid = pj_str(p, "worker_id", "");
	int max = (int)pj_int(p, "max", 1);
	double wait_s = pj_num(p, "wait_s", 0);
	double deadline = now_mono() + wait_s;
	for (;;) {
		struct pyti_err err = {0};
		json_t *jobs = NULL;
		WITH_STORE(h);
		int rc = store_claim(h.st, wid, max, &jobs, &err);
		master_handle_put(&h);
		if (rc < 0)
			return store_fail(m, call, rc, &err, e);
		bool stopping;
		pthread_mutex_lock(&m->mu);
		stopping = m->stopping;
		pthread_mutex_unlock(&m->mu);
		if (json_array_size(jobs) > 0 || now_mono() >= deadline || stopping) {
			size_t i;
			json_t *j;
			json_array_foreach(jobs, i, j) {
				json_t *cfg = json_object_get(j, "config");
				master_log(m, "claim", "worker=%s run=%s job=%s attempt=%lld dist=\"%s\" suite=%s", wid,
					   pj_str(cfg, "run_id", pj_str(j, "run_id", "-")), pj_str(j, "job_id", "-"),
					   pj_int(j, "attempt", 0), pj_str(cfg, "dist", ""), pj_str(cfg, "suite", ""));
			}
			return json_pack("{s:o}", "jobs", jobs ? jobs : json_array());
		}
		json_decref(jobs);
		master_work_wait(m, deadline, 0.25);
	}
}

static json_t *m_heartbeat(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	struct store_lease l = lease_of(p);
	struct pyti_err err = {0};
	int expires = 0;
	bool cancel = false;
	WITH_STORE(h);
	int rc = store_heartbeat(h.st, &l, json_object_get(p, "progress"), &expires, &cancel, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	if (m->cfg->verbose || cancel)
		master_log(m, "heartbeat", "job=%s attempt=%d task=\"%s\" cancel=%s", l.job_id, l.attempt,
			   pj_str(json_object_get(p, "progress"), "task", ""), cancel ? "true" : "false");
	return json_pack("{s:i, s:b}", "lease_expires_in_s", expires, "cancel", cancel);
}

static json_t *m_report(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	struct store_lease l = lease_of(p);
	struct pyti_err err = {0};
	const json_t *result = json_object_get(p, "result");
	WITH_STORE(h);
	int rc = store_report(h.st, &l, pj_str(p, "task", ""), result, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "report", "job=%s attempt=%d task=\"%s\" status=%s failure_class=%s", l.job_id, l.attempt,
		   pj_str(p, "task", ""), pj_str(result, "status", "-"), pj_str(result, "failure_class", "-"));
	return json_pack("{s:b}", "stored", true);
}

static json_t *m_upload(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	const json_t *data = json_object_get(p, "data");
	_cleanup_free_ unsigned char *bytes = NULL;
	size_t n = 0;
	if (master_base64_decode(json_string_value(data), json_string_length(data), &bytes, &n) < 0)
		return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "data"),
				     "upload: 'data' is not base64 (RFC 4648, padded)");
	if ((long long)n != pj_int(p, "size", -1))
		return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "size"),
				     "upload: 'size' is %lld, the data has %zu bytes", pj_int(p, "size", -1), n);
	struct pyti_err err = {0};
	WITH_STORE(h);
	int rc = store_blob_put(h.st, bytes, n, pj_str(p, "sha256", ""), NULL, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "upload", "sha256=%s size=%zu", pj_str(p, "sha256", ""), n);
	return json_pack("{s:b}", "stored", true);
}

static json_t *m_finish(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	struct store_finish f = {
		.lease = lease_of(p),
		.status = pj_str(p, "status", ""),
		.failure_class = pj_str(p, "failure_class", NULL),
		.results = json_object_get(p, "results"),
		.artefacts = json_object_get(p, "artefacts"),
		.error = pj_str(p, "error", NULL),
	};
	struct pyti_err err = {0};
	enum store_state state = STORE_QUEUED;
	json_t *missing = NULL;
	WITH_STORE(h);
	int rc = store_finish(h.st, &f, &state, &missing, &err);
	master_handle_put(&h);
	if (rc == STORE_E_MISSING) {
		master_log(m, "finish-refused", "job=%s attempt=%d reason=missing-artefacts n=%zu", f.lease.job_id,
			   f.lease.attempt, json_array_size(missing));
		return rpc_error_set(e, RPC_MISSING_ARTEFACTS,
				     json_pack("{s:o}", "missing", missing ? missing : json_array()),
				     "missing artefacts: upload them first");
	}
	json_decref(missing);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "finish", "job=%s attempt=%d status=%s failure_class=%s state=%s", f.lease.job_id,
		   f.lease.attempt, f.status, f.failure_class ? f.failure_class : "-", store_state_name(state));
	if (state == STORE_QUEUED)
		master_work_signal(m); /* a retry: a waiting worker may take it now */
	return json_pack("{s:s}", "state", store_state_name(state));
}

/* inih keeps its options in globals, which the recipe parser sets and restores around each parse:
 * one parse at a time in this process. */
static pthread_mutex_t recipe_mu = PTHREAD_MUTEX_INITIALIZER;

static json_t *m_submit(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	json_t *p = call->params;
	json_t *dists = json_object_get(p, "dists"), *images = json_object_get(p, "images");
	size_t nd = json_array_size(dists), ni = json_array_size(images);
	_cleanup_free_ const char **dv = xcalloc(nd + 1, sizeof *dv);
	_cleanup_free_ const char **iv = xcalloc(ni + 1, sizeof *iv);
	for (size_t i = 0; i < nd; i++) {
		dv[i] = json_string_value(json_array_get(dists, i));
		if (!*dv[i] || strlen(dv[i]) > 1024)
			return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "dists"),
					     "submit: dists[%zu] is empty or longer than 1024 bytes", i);
	}
	for (size_t i = 0; i < ni; i++)
		iv[i] = json_string_value(json_array_get(images, i));
	const char *recipe = pj_str(p, "recipe", NULL);
	_cleanup_free_ char *recipe_name = NULL;
	if (recipe) {
		/* refused now, with its line, rather than failing on every worker */
		struct recipe *r = NULL;
		struct pyti_err rerr = {0};
		pthread_mutex_lock(&recipe_mu);
		int rrc = recipe_load_buffer("recipe", recipe, strlen(recipe), &r, &rerr);
		pthread_mutex_unlock(&recipe_mu);
		if (rrc < 0)
			return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "recipe"), "submit: %s",
					     rerr.msg);
		recipe_name = xstrdup(r->name);
		recipe_free(r);
	}
	const char *backend = pj_str(p, "backend", NULL);
	if (backend && strcmp(backend, "ns") != 0 && strcmp(backend, "vm") != 0)
		return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "backend"),
				     "submit: 'backend' must be \"ns\", \"vm\" or null");
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(p, "env"), k, v)
		if (!json_is_string(v))
			return rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", "env"),
					     "submit: every value of 'env' must be a string");
	struct store_run_spec spec = {
		.dists = dv,
		.n_dists = nd,
		.suites = ni ? iv : NULL,
		.n_suites = ni,
		.recipe = recipe,
		.recipe_name = recipe_name,
		.backend = backend,
		.env = json_object_get(p, "env"),
		.posargs = json_object_get(p, "posargs"),
		.priority = (int)pj_int(p, "priority", 0),
		.origin = "submit",
	};
	struct pyti_err err = {0};
	json_t *out = NULL;
	WITH_STORE(h);
	int rc = store_submit(h.st, &spec, &out, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "submit", "run=%s jobs=%zu priority=%d recipe=%s", pj_str(out, "run_id", "-"),
		   json_array_size(json_object_get(out, "jobs")), spec.priority, recipe_name ? recipe_name : "default");
	master_work_signal(m);
	return out;
}

typedef int (*read_fn)(struct store *, const char *, json_t **, struct pyti_err *);

static json_t *m_read(struct master *m, const struct rpc_call *call, read_fn fn, struct rpc_error *e)
{
	struct pyti_err err = {0};
	json_t *out = NULL;
	WITH_STORE(h);
	int rc = fn(h.st, pj_str(call->params, "run_id", ""), &out, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	return out;
}

static json_t *m_cancel(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	const char *run = pj_str(call->params, "run_id", NULL), *job = pj_str(call->params, "job_id", NULL);
	if (!run == !job)
		return rpc_error_set(e, RPC_INVALID_PARAMS, NULL, "cancel: exactly one of 'run_id' and 'job_id'");
	struct pyti_err err = {0};
	int n = 0;
	WITH_STORE(h);
	int rc = store_cancel(h.st, run ? run : job, &n, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "cancel", "%s=%s cancelled=%d", run ? "run" : "job", run ? run : job, n);
	return json_pack("{s:i}", "cancelled", n);
}

/* rerun: a new run of a run's jobs or of one job, same configuration, its parent named */
static json_t *m_rerun(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	const char *run = pj_str(call->params, "run_id", NULL), *job = pj_str(call->params, "job_id", NULL);
	if (!run == !job)
		return rpc_error_set(e, RPC_INVALID_PARAMS, NULL, "rerun: exactly one of 'run_id' and 'job_id'");
	struct pyti_err err = {0};
	json_t *out = NULL;
	WITH_STORE(h);
	int rc = store_rerun(h.st, run ? run : job, &out, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	master_log(m, "rerun", "run=%s of=%s jobs=%zu", pj_str(out, "run_id", "-"), run ? run : job,
		   json_array_size(json_object_get(out, "jobs")));
	master_work_signal(m);
	return out;
}

static json_t *m_runs(struct master *m, const struct rpc_call *call, struct rpc_error *e)
{
	struct store_runs_query q = {.limit = (int)pj_int(call->params, "limit", 0),
				     .dist = pj_str(call->params, "dist", NULL)};
	struct pyti_err err = {0};
	json_t *out = NULL;
	WITH_STORE(h);
	int rc = store_runs(h.st, &q, &out, &err);
	master_handle_put(&h);
	if (rc < 0)
		return store_fail(m, call, rc, &err, e);
	return out;
}

static json_t *openrpc_doc;
static void openrpc_load(void)
{
	openrpc_doc = json_loads(rpc_openrpc_text(), 0, NULL);
}

static json_t *m_discover(struct rpc_error *e)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, openrpc_load);
	if (!openrpc_doc)
		return rpc_error_set(e, RPC_INTERNAL_ERROR, NULL, "the embedded OpenRPC document does not parse");
	return json_deep_copy(openrpc_doc);
}

json_t *master_dispatch(void *ctx, const struct rpc_call *call, struct rpc_error *e)
{
	struct master *m = ctx;
	switch (call->method->id) {
	case RPC_M_HELLO:
		return m_hello(m, call, e);
	case RPC_M_CLAIM:
		return m_claim(m, call, e);
	case RPC_M_HEARTBEAT:
		return m_heartbeat(m, call, e);
	case RPC_M_REPORT:
		return m_report(m, call, e);
	case RPC_M_UPLOAD:
		return m_upload(m, call, e);
	case RPC_M_FINISH:
		return m_finish(m, call, e);
	case RPC_M_SUBMIT:
		return m_submit(m, call, e);
	case RPC_M_STATUS:
		return m_read(m, call, store_status, e);
	case RPC_M_RESULTS:
		return m_read(m, call, store_results, e);
	case RPC_M_CANCEL:
		return m_cancel(m, call, e);
	case RPC_M_RERUN:
		return m_rerun(m, call, e);
	case RPC_M_RUNS:
		return m_runs(m, call, e);
	case RPC_M_SHOW: {
		struct pyti_err err = {0};
		json_t *out = NULL;
		WITH_STORE(h);
		int rc = store_show(h.st, pj_str(call->params, "id", ""), &out, &err);
		master_handle_put(&h);
		return rc < 0 ? store_fail(m, call, rc, &err, e) : out;
	}
	case RPC_M_DISCOVER:
		return m_discover(e);
	case RPC_M_COUNT:
		break;
	}
	return rpc_error_set(e, RPC_METHOD_NOT_FOUND, NULL, NULL);
}

/* ---- base64 ---- */
static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int master_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
	if (!s || n % 4)
		return -1;
	unsigned char *o = xmalloc(n / 4 * 3 + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)s[i + j];
			if (c == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad || (v[j] = b64_val(c)) < 0) {
				free(o);
				return -1;
			}
		}
		unsigned x = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
		o[k++] = (unsigned char)(x >> 16);
		if (pad < 2)
			o[k++] = (unsigned char)(x >> 8);
		if (pad < 1)
			o[k++] = (unsigned char)x;
	}
	*out = o;
	*out_len = k;
	return 0;
}
