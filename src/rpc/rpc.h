/* rpc: the master's JSON-RPC 2.0 protocol, with no transport and no store.
 *
 * Two parts: the API's definition (rpc_methods: every method's name, who may call it and its
 * parameters, as docs/rpc.md and docs/openrpc.json describe them — a unit test checks that the table
 * and the document agree), and the JSON-RPC 2.0 processing of one HTTP body (parse, single request,
 * batch, notifications, request validation, auth per method, parameter checks against the table,
 * response building). Pure functions over jansson: the master puts HTTP around it, the fuzzer calls
 * it directly. The caller's dispatch function runs a validated call and fills a struct rpc_error when
 * the call fails; rpc_process never lets a handler see a request that did not pass the table.
 */
#ifndef PYTI_RPC_H
#define PYTI_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* ---- error codes (docs/rpc.md "Errors") ---- */
enum rpc_code {
	RPC_PARSE_ERROR = -32700,
	RPC_INVALID_REQUEST = -32600,
	RPC_METHOD_NOT_FOUND = -32601,
	RPC_INVALID_PARAMS = -32602,
	RPC_INTERNAL_ERROR = -32603,
	RPC_UNAUTHORIZED = -32000,
	RPC_STALE_LEASE = -32001,
	RPC_SLOW_DOWN = -32002,
	RPC_NOT_FOUND = -32003,
	RPC_MISSING_ARTEFACTS = -32004,
	RPC_TOO_LARGE = -32005,
	RPC_STORE_UNAVAILABLE = -32006,
};
/* The standard message of a code ("Parse error", "stale lease", …); "error" for an unknown one. */
const char *rpc_code_message(int code);

/* ---- the API's definition ---- */
enum rpc_auth {
	RPC_AUTH_NONE,	 /* reading methods: no token needed */
	RPC_AUTH_WORKER, /* a worker token */
	RPC_AUTH_USER,	 /* a user token */
};
/* What the request's Authorization header proved: a bit set per kind. */
#define RPC_GRANT_WORKER 0x1u
#define RPC_GRANT_USER 0x2u
const char *rpc_auth_name(enum rpc_auth a); /* "none", "worker", "user" (OpenRPC's x-auth) */

/* JSON types a parameter may have, as a mask. */
#define RPC_T_STRING 0x01u
#define RPC_T_INT 0x02u
#define RPC_T_NUMBER 0x04u /* int or real */
#define RPC_T_BOOL 0x08u
#define RPC_T_OBJECT 0x10u
#define RPC_T_ARRAY 0x20u
#define RPC_T_NULL 0x40u

/* Formats of string parameters (ids of docs/rpc.md "Ids"). */
enum rpc_format {
	RPC_FMT_NONE,
	RPC_FMT_RUN_ID,	   /* r + 16 lowercase hex digits */
	RPC_FMT_JOB_ID,	   /* j + 16 */
	RPC_FMT_WORKER_ID, /* w + 16 */
	RPC_FMT_LEASE,	   /* 32 lowercase hex digits */
	RPC_FMT_SHA256,	   /* 64 lowercase hex digits */
};
/* The format's regular expression as the OpenRPC document writes it, or NULL for RPC_FMT_NONE. */
const char *rpc_format_pattern(enum rpc_format f);
bool rpc_format_ok(enum rpc_format f, const char *s);

struct rpc_param {
	const char *name;
	unsigned types; /* RPC_T_* mask */
	bool required;
	enum rpc_format format; /* strings only */
	/* Bounds, inclusive, when max > min: an integer's or number's value, a string's length in bytes,
	 * an array's length. */
	long long min, max;
	unsigned items; /* arrays: the elements' RPC_T_* mask (0 = anything) */
};

enum rpc_method_id {
	RPC_M_HELLO,
	RPC_M_CLAIM,
	RPC_M_HEARTBEAT,
	RPC_M_REPORT,
	RPC_M_UPLOAD,
	RPC_M_FINISH,
	RPC_M_SUBMIT,
	RPC_M_STATUS,
	RPC_M_RESULTS,
	RPC_M_CANCEL,
	RPC_M_RERUN,
	RPC_M_RUNS,
	RPC_M_SHOW,
	RPC_M_DISCOVER,
	RPC_M_COUNT
};

struct rpc_method {
	const char *name;
	enum rpc_method_id id;
	enum rpc_auth auth;
	const struct rpc_param *params; /* terminated by a NULL name */
};
/* The table, indexed by enum rpc_method_id. */
extern const struct rpc_method rpc_methods[RPC_M_COUNT];
const struct rpc_method *rpc_method_find(const char *name); /* NULL: no such method */

/* Limits of the API itself (the master's configuration may lower the batch limit). */
#define RPC_MAX_BATCH 1000
#define RPC_MAX_WAIT_S 30
#define RPC_MAX_CLAIM 64

/* docs/openrpc.json, embedded at build time: the answer to rpc.discover. */
const char *rpc_openrpc_text(void);

/* ---- processing ---- */
struct rpc_error {
	int code;
	char message[256];
	json_t *data; /* owned; may be NULL */
};
/* Fill e (message printf-style; NULL fmt: the code's standard message); data is stolen (may be NULL).
 * Returns NULL so that a handler can `return rpc_error_set(e, …);`. */
json_t *rpc_error_set(struct rpc_error *e, int code, json_t *data, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void rpc_error_clear(struct rpc_error *e);

struct rpc_call {
	const struct rpc_method *method;
	json_t *params;	  /* an object, checked against the table (an empty one when absent) */
	const json_t *id; /* the request's id, or NULL for a notification */
};
/* Run one validated call: a result (new reference), or NULL with e filled. */
typedef json_t *(*rpc_dispatch_fn)(void *ctx, const struct rpc_call *call, struct rpc_error *e);

struct rpc_stats {
	size_t requests;      /* request objects seen (valid or not) */
	size_t notifications; /* of which notifications */
	size_t errors;	      /* error responses built (notifications' errors included) */
	size_t unauthorized;  /* calls refused for their token (-32000) */
	size_t invalid;	      /* not JSON, or not a valid request object (-32700, -32600) */
};

/* Process one HTTP body: a request object or a batch. granted = RPC_GRANT_* mask of the caller's
 * token; max_batch caps a batch's length (0: RPC_MAX_BATCH). Returns the response to send (an object,
 * or an array for a batch), or NULL when there is nothing to answer (only notifications). stats may be
 * NULL. Never fails: every problem becomes an error object. */
json_t *rpc_process(const char *body, size_t len, unsigned granted, size_t max_batch, rpc_dispatch_fn fn, void *ctx,
		    struct rpc_stats *stats);

/* A whole-body error response ({"jsonrpc","error","id":null}), e.g. for a body over the limit.
 * data is stolen. */
json_t *rpc_error_response(int code, const char *message, json_t *data);

/* Check params (an object, or NULL for absent) against m's table: 0, or -1 with e filled
 * (-32602, naming the parameter). */
int rpc_check_params(const struct rpc_method *m, const json_t *params, struct rpc_error *e);

#endif
