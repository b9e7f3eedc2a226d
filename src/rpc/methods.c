/* rpc: the API's definition — every method, who may call it and its parameters (docs/rpc.md; the
 * OpenRPC document docs/openrpc.json says the same, and test_rpc checks that it does). Results are
 * the handlers' business (src/master); their shapes are in the documents. */
#include <string.h>

#include "rpc.h"
#include "openrpc_json.h"

/* One initialiser a line reads as a table. */
/* clang-format off */
#define STR(n, req) {n, RPC_T_STRING, req, RPC_FMT_NONE, 0, 0, 0}
#define STRN(n, req, lo, hi) {n, RPC_T_STRING, req, RPC_FMT_NONE, lo, hi, 0}
#define FMT(n, req, f) {n, RPC_T_STRING, req, f, 0, 0, 0}
#define INT(n, req, lo, hi) {n, RPC_T_INT, req, RPC_FMT_NONE, lo, hi, 0}
#define NUM(n, req, lo, hi) {n, RPC_T_NUMBER, req, RPC_FMT_NONE, lo, hi, 0}
#define OBJ(n, req) {n, RPC_T_OBJECT, req, RPC_FMT_NONE, 0, 0, 0}
#define ARR(n, req, lo, hi, it) {n, RPC_T_ARRAY, req, RPC_FMT_NONE, lo, hi, it}
#define END {NULL, 0, false, RPC_FMT_NONE, 0, 0, 0}
/* clang-format on */

/* A lease's three names, which every call about a leased job carries (fencing). */
#define LEASE_PARAMS                                                                                                   \
	FMT("job_id", true, RPC_FMT_JOB_ID), INT("attempt", true, 1, 1000000), FMT("lease", true, RPC_FMT_LEASE)

static const struct rpc_param p_hello[] = {STRN("name", true, 1, 256), OBJ("capabilities", true), END};
static const struct rpc_param p_claim[] = {FMT("worker_id", true, RPC_FMT_WORKER_ID),
					   INT("max", false, 1, RPC_MAX_CLAIM), NUM("wait_s", false, 0, RPC_MAX_WAIT_S),
					   END};
static const struct rpc_param p_heartbeat[] = {LEASE_PARAMS, OBJ("progress", false), END};
static const struct rpc_param p_report[] = {LEASE_PARAMS, STRN("task", true, 1, 256), OBJ("result", true), END};
static const struct rpc_param p_upload[] = {FMT("sha256", true, RPC_FMT_SHA256), INT("size", true, 0, 1LL << 40),
					    STR("data", true), END};
static const struct rpc_param p_finish[] = {LEASE_PARAMS,
					    STRN("status", true, 1, 64),
					    {"failure_class", RPC_T_STRING | RPC_T_NULL, false, RPC_FMT_NONE, 0, 0, 0},
					    OBJ("results", false),
					    ARR("artefacts", false, 0, 10000, RPC_T_OBJECT),
					    {"error", RPC_T_STRING | RPC_T_NULL, false, RPC_FMT_NONE, 0, 0, 0},
					    END};
static const struct rpc_param p_submit[] = {ARR("dists", true, 1, 100000, RPC_T_STRING),
					    ARR("images", false, 1, 64, RPC_T_STRING),
					    {"recipe", RPC_T_STRING | RPC_T_NULL, false, RPC_FMT_NONE, 0, 0, 0},
					    INT("priority", false, -1000000, 1000000),
					    {"backend", RPC_T_STRING | RPC_T_NULL, false, RPC_FMT_NONE, 0, 0, 0},
					    OBJ("env", false),
					    ARR("posargs", false, 0, 1000, RPC_T_STRING),
					    END};
static const struct rpc_param p_run[] = {FMT("run_id", true, RPC_FMT_RUN_ID), END};
static const struct rpc_param p_cancel[] = {FMT("run_id", false, RPC_FMT_RUN_ID), FMT("job_id", false, RPC_FMT_JOB_ID),
					    END};
static const struct rpc_param p_runs[] = {INT("limit", false, 1, 10000), STRN("dist", false, 1, 256), END};
static const struct rpc_param p_show[] = {STRN("id", true, 5, 17), END};
static const struct rpc_param p_none[] = {END};

const struct rpc_method rpc_methods[RPC_M_COUNT] = {
	[RPC_M_HELLO] = {"hello", RPC_M_HELLO, RPC_AUTH_WORKER, p_hello},
	[RPC_M_CLAIM] = {"claim", RPC_M_CLAIM, RPC_AUTH_WORKER, p_claim},
	[RPC_M_HEARTBEAT] = {"heartbeat", RPC_M_HEARTBEAT, RPC_AUTH_WORKER, p_heartbeat},
	[RPC_M_REPORT] = {"report", RPC_M_REPORT, RPC_AUTH_WORKER, p_report},
	[RPC_M_UPLOAD] = {"upload", RPC_M_UPLOAD, RPC_AUTH_WORKER, p_upload},
	[RPC_M_FINISH] = {"finish", RPC_M_FINISH, RPC_AUTH_WORKER, p_finish},
	[RPC_M_SUBMIT] = {"submit", RPC_M_SUBMIT, RPC_AUTH_USER, p_submit},
	[RPC_M_STATUS] = {"status", RPC_M_STATUS, RPC_AUTH_NONE, p_run},
	[RPC_M_RESULTS] = {"results", RPC_M_RESULTS, RPC_AUTH_NONE, p_run},
	[RPC_M_CANCEL] = {"cancel", RPC_M_CANCEL, RPC_AUTH_USER, p_cancel},
	[RPC_M_RERUN] = {"rerun", RPC_M_RERUN, RPC_AUTH_USER, p_cancel},
	[RPC_M_RUNS] = {"runs", RPC_M_RUNS, RPC_AUTH_NONE, p_runs},
	[RPC_M_SHOW] = {"show", RPC_M_SHOW, RPC_AUTH_NONE, p_show},
	[RPC_M_DISCOVER] = {"rpc.discover", RPC_M_DISCOVER, RPC_AUTH_NONE, p_none},
};

const struct rpc_method *rpc_method_find(const char *name)
{
	for (size_t i = 0; i < RPC_M_COUNT; i++)
		if (strcmp(rpc_methods[i].name, name) == 0)
			return &rpc_methods[i];
	return NULL;
}

const char *rpc_auth_name(enum rpc_auth a)
{
	switch (a) {
	case RPC_AUTH_WORKER:
		return "worker";
	case RPC_AUTH_USER:
		return "user";
	case RPC_AUTH_NONE:
		break;
	}
	return "none";
}

const char *rpc_format_pattern(enum rpc_format f)
{
	switch (f) {
	case RPC_FMT_RUN_ID:
		return "^r[0-9a-f]{16}$";
	case RPC_FMT_JOB_ID:
		return "^j[0-9a-f]{16}$";
	case RPC_FMT_WORKER_ID:
		return "^w[0-9a-f]{16}$";
	case RPC_FMT_LEASE:
		return "^[0-9a-f]{32}$";
	case RPC_FMT_SHA256:
		return "^[0-9a-f]{64}$";
	case RPC_FMT_NONE:
		break;
	}
	return NULL;
}

static bool hex_n(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0';
}

bool rpc_format_ok(enum rpc_format f, const char *s)
{
	size_t n = strlen(s);
	switch (f) {
	case RPC_FMT_RUN_ID:
		return n == 17 && s[0] == 'r' && hex_n(s + 1, 16);
	case RPC_FMT_JOB_ID:
		return n == 17 && s[0] == 'j' && hex_n(s + 1, 16);
	case RPC_FMT_WORKER_ID:
		return n == 17 && s[0] == 'w' && hex_n(s + 1, 16);
	case RPC_FMT_LEASE:
		return n == 32 && hex_n(s, 32);
	case RPC_FMT_SHA256:
		return n == 64 && hex_n(s, 64);
	case RPC_FMT_NONE:
		break;
	}
	return true;
}

const char *rpc_openrpc_text(void)
{
	return openrpc_json;
}
