/* store: the skeleton of the API (every call answers "not implemented yet"), so that callers build;
 * replaced by the real code. */
#include <string.h>

#include "store.h"

#pragma GCC diagnostic ignored "-Wunused-parameter"

int store_rpc_code(int rc)
{
	return -1;
}

const char *store_rc_name(int rc)
{
	return "";
}

void store_id_new(char kind, char out[STORE_ID_SIZE])
{

}

char store_id_kind(const char *id)
{
	return 0;
}

const char *store_state_name(enum store_state s)
{
	return "";
}

int store_state_parse(const char *name)
{
	return -1;
}

const char *store_verdict_name(enum store_verdict v)
{
	return "";
}

int store_verdict_parse(const char *name)
{
	return -1;
}

enum store_verdict store_verdict_of(const json_t *results)
{
	return STORE_V_NONE;
}

bool store_fclass_retried(enum pyti_fclass fc)
{
	return false;
}

int store_open(const char *url, struct store **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_open_version(const char *url, int version, struct store **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

void store_close(struct store *st)
{

}

char *store_default_url(const char *state_dir)
{
	return NULL;
}

enum store_engine store_engine_of(const struct store *st)
{
	return STORE_SQLITE;
}

const char *store_describe(const struct store *st)
{
	return "";
}

int store_schema_version(struct store *st, int *version, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_ping(struct store *st, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

void store_limits_get(const struct store *st, struct store_limits *out)
{

}

void store_limits_set(struct store *st, const struct store_limits *lim)
{

}

int store_submit(struct store *st, const struct store_run_spec *spec, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_run_new(struct store *st, const struct store_run_spec *spec, char run_id[STORE_ID_SIZE], struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_record_job(struct store *st, const char *run_id, const struct store_job_record *rec, char job_id[STORE_ID_SIZE], struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_cancel(struct store *st, const char *id, int *n, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_worker_hello(struct store *st, const char *name, const json_t *capabilities, char worker_id[STORE_ID_SIZE], struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_workers(struct store *st, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_claim(struct store *st, const char *worker_id, int max, json_t **jobs, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_heartbeat(struct store *st, const struct store_lease *l, const json_t *progress, int *expires_in_s, bool *cancel, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_report(struct store *st, const struct store_lease *l, const char *task, const json_t *result, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_finish(struct store *st, const struct store_finish *f, enum store_state *state, json_t **missing, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_expire(struct store *st, int *n, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_status(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_results(struct store *st, const char *run_id, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_runs(struct store *st, const struct store_runs_query *q, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_show(struct store *st, const char *id, json_t **out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_blob_put(struct store *st, const void *data, size_t len, const char *sha256, char out_sha[65], struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_blob_has(struct store *st, const char *sha256, bool *has, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_blob_get(struct store *st, const char *sha256, struct buf *out, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}

int store_copy(struct store *src, struct store *dst, struct store_copy_stats *stats, struct pyti_err *err)
{
	return pyti_err_set(err, 0, "store: not implemented yet");
}
