/* rpc: JSON-RPC 2.0 processing of one body (https://www.jsonrpc.org/specification), to the letter:
 *   - a body that is not JSON: one -32700 response with id null;
 *   - an empty batch, or anything but an object or array: one -32600 response with id null;
 *   - in a batch each element is answered on its own, invalid ones with -32600 and id null; the
 *     answers of notifications are left out, and a batch of notifications gets no answer at all;
 *   - a request is valid when it is an object with "jsonrpc": "2.0", a string "method", "params"
 *     absent or an object or array, and "id" absent (a notification) or a string, number or null;
 *     no other members;
 *   - the id of the answer is the request's, or null when it could not be read from it.
 * Our own rules on top: params are by name (an array is -32602), checked against the method's
 * table; the caller's token must grant the method's auth kind (else -32000, nothing runs).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"

static const struct {
	int code;
	const char *msg;
} code_msgs[] = {
	{RPC_PARSE_ERROR, "Parse error"},
	{RPC_INVALID_REQUEST, "Invalid Request"},
	{RPC_METHOD_NOT_FOUND, "Method not found"},
	{RPC_INVALID_PARAMS, "Invalid params"},
	{RPC_INTERNAL_ERROR, "Internal error"},
	{RPC_UNAUTHORIZED, "unauthorized"},
	{RPC_STALE_LEASE, "stale lease"},
	{RPC_SLOW_DOWN, "slow down"},
	{RPC_NOT_FOUND, "not found"},
	{RPC_MISSING_ARTEFACTS, "missing artefacts"},
	{RPC_TOO_LARGE, "request too large"},
	{RPC_STORE_UNAVAILABLE, "store unavailable"},
};

const char *rpc_code_message(int code)
{
	for (size_t i = 0; i < sizeof code_msgs / sizeof code_msgs[0]; i++)
		if (code_msgs[i].code == code)
			return code_msgs[i].msg;
	return "error";
}

json_t *rpc_error_set(struct rpc_error *e, int code, json_t *data, const char *fmt, ...)
{
	if (!e) {
		json_decref(data);
		return NULL;
	}
	json_decref(e->data);
	e->code = code;
	e->data = data;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->message, sizeof e->message, fmt, ap);
		va_end(ap);
	} else {
		snprintf(e->message, sizeof e->message, "%s", rpc_code_message(code));
	}
	return NULL;
}

void rpc_error_clear(struct rpc_error *e)
{
	json_decref(e->data);
	e->data = NULL;
	e->code = 0;
	e->message[0] = '\0';
}

static json_t *error_object(int code, const char *message, json_t *data)
{
	/* A message cut to its buffer may end inside a UTF-8 sequence, which jansson refuses: then the
	 * code's standard message stands in. */
	json_t *msg = message && *message ? json_string(message) : NULL;
	if (!msg)
		msg = json_string(rpc_code_message(code));
	json_t *o = json_object();
	json_object_set_new(o, "code", json_integer(code));
	json_object_set_new(o, "message", msg);
	if (data)
		json_object_set_new(o, "data", data);
	return o;
}

static json_t *response(const json_t *id, json_t *result, json_t *error)
{
	json_t *r = json_object();
	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	if (error)
		json_object_set_new(r, "error", error);
	else
		json_object_set_new(r, "result", result ? result : json_null());
	json_object_set_new(r, "id", id ? json_deep_copy(id) : json_null());
	return r;
}

json_t *rpc_error_response(int code, const char *message, json_t *data)
{
	return response(NULL, NULL, error_object(code, message, data));
}

/* ---- parameters ---- */
static const char *type_name(unsigned t)
{
	if (t & RPC_T_STRING)
		return "a string";
	if (t & RPC_T_INT)
		return "an integer";
	if (t & RPC_T_NUMBER)
		return "a number";
	if (t & RPC_T_BOOL)
		return "a boolean";
	if (t & RPC_T_OBJECT)
		return "an object";
	if (t & RPC_T_ARRAY)
		return "an array";
	return "null";
}

static bool type_ok(unsigned types, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return types & RPC_T_STRING;
	case JSON_INTEGER:
		return types & (RPC_T_INT | RPC_T_NUMBER);
	case JSON_REAL:
		return types & RPC_T_NUMBER;
	case JSON_TRUE:
	case JSON_FALSE:
		return types & RPC_T_BOOL;
	case JSON_OBJECT:
		return types & RPC_T_OBJECT;
	case JSON_ARRAY:
		return types & RPC_T_ARRAY;
	case JSON_NULL:
		return types & RPC_T_NULL;
	}
	return false;
}

static int bad_param(struct rpc_error *e, const struct rpc_method *m, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int bad_param(struct rpc_error *e, const struct rpc_method *m, const char *name, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rpc_error_set(e, RPC_INVALID_PARAMS, json_pack("{s:s}", "param", name), "%s: %s", m->name, msg);
	return -1;
}

static int check_one(const struct rpc_method *m, const struct rpc_param *p, const json_t *v, struct rpc_error *e)
{
	if (!type_ok(p->types, v))
		return bad_param(e, m, p->name, "'%s' must be %s", p->name, type_name(p->types));
	bool ranged = p->max > p->min;
	char lim[96];
	if (json_is_integer(v) || json_is_real(v)) {
		double x = json_number_value(v);
		if (ranged && (x < (double)p->min || x > (double)p->max)) {
			snprintf(lim, sizeof lim, "between %lld and %lld", p->min, p->max);
			return bad_param(e, m, p->name, "'%s' must be %s", p->name, lim);
		}
	} else if (json_is_string(v)) {
		size_t n = json_string_length(v);
		if (ranged && ((long long)n < p->min || (long long)n > p->max)) {
			snprintf(lim, sizeof lim, "of %lld to %lld bytes", p->min, p->max);
			return bad_param(e, m, p->name, "'%s' must be a string %s", p->name, lim);
		}
		if (p->format != RPC_FMT_NONE && !rpc_format_ok(p->format, json_string_value(v)))
			return bad_param(e, m, p->name, "'%s' must match %s", p->name, rpc_format_pattern(p->format));
	} else if (json_is_array(v)) {
		size_t n = json_array_size(v);
		if (ranged && ((long long)n < p->min || (long long)n > p->max)) {
			snprintf(lim, sizeof lim, "of %lld to %lld elements", p->min, p->max);
			return bad_param(e, m, p->name, "'%s' must be an array %s", p->name, lim);
		}
		size_t i;
		const json_t *x;
		if (p->items)
			json_array_foreach(v, i, x)
				if (!type_ok(p->items, x))
					return bad_param(e, m, p->name, "every element of '%s' must be %s", p->name,
							 type_name(p->items));
	}
	return 0;
}

int rpc_check_params(const struct rpc_method *m, const json_t *params, struct rpc_error *e)
{
	if (params && !json_is_object(params)) {
		rpc_error_set(e, RPC_INVALID_PARAMS, NULL, "%s: params must be an object (by name)", m->name);
		return -1;
	}
	for (const struct rpc_param *p = m->params; p && p->name; p++) {
		const json_t *v = params ? json_object_get(params, p->name) : NULL;
		if (!v) {
			if (p->required)
				return bad_param(e, m, p->name, "'%s' is required", p->name);
			continue;
		}
		if (check_one(m, p, v, e) < 0)
			return -1;
	}
	const char *k;
	const json_t *v;
	if (params)
		json_object_foreach((json_t *)params, k, v) {
			bool known = false;
			for (const struct rpc_param *p = m->params; p && p->name && !known; p++)
				known = strcmp(p->name, k) == 0;
			if (!known)
				return bad_param(e, m, k, "unknown parameter '%.64s'", k);
		}
	return 0;
}

/* ---- one request object ---- */
static bool id_ok(const json_t *id)
{
	return json_is_string(id) || json_is_integer(id) || json_is_real(id) || json_is_null(id);
}

static bool auth_ok(enum rpc_auth a, unsigned granted)
{
	switch (a) {
	case RPC_AUTH_NONE:
		return true;
	case RPC_AUTH_WORKER:
		return granted & RPC_GRANT_WORKER;
	case RPC_AUTH_USER:
		return granted & RPC_GRANT_USER;
	}
	return false;
}

/* The answer to one element, or NULL for a notification. */
static json_t *process_one(json_t *req, unsigned granted, rpc_dispatch_fn fn, void *ctx, struct rpc_stats *st)
{
	st->requests++;
	if (!json_is_object(req)) {
		st->errors++;
		st->invalid++;
		return response(NULL, NULL, error_object(RPC_INVALID_REQUEST, "request must be an object", NULL));
	}
	json_t *id = json_object_get(req, "id");
	const json_t *ver = json_object_get(req, "jsonrpc");
	const json_t *meth = json_object_get(req, "method");
	json_t *params = json_object_get(req, "params");
	const char *why = NULL;
	if (id && !id_ok(id)) {
		why = "'id' must be a string, number or null";
		id = NULL; /* unreadable: answered with null */
	} else if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
		why = "'jsonrpc' must be \"2.0\"";
	} else if (!json_is_string(meth)) {
		why = "'method' must be a string";
	} else if (params && !json_is_object(params) && !json_is_array(params)) {
		why = "'params' must be an object or array";
	} else {
		const char *k;
		json_t *v;
		json_object_foreach(req, k, v)
			if (strcmp(k, "jsonrpc") && strcmp(k, "method") && strcmp(k, "params") && strcmp(k, "id"))
				why = "unknown member in the request object";
	}
	if (why) {
		st->errors++;
		st->invalid++;
		return response(id, NULL, error_object(RPC_INVALID_REQUEST, why, NULL));
	}

	bool notification = id == NULL;
	if (notification)
		st->notifications++;
	struct rpc_error e = {0};
	json_t *result = NULL;
	const struct rpc_method *m = rpc_method_find(json_string_value(meth));
	if (!m) {
		/* the name is not echoed: it may be anything a client sent */
		rpc_error_set(&e, RPC_METHOD_NOT_FOUND, NULL, NULL);
	} else if (!auth_ok(m->auth, granted)) {
		st->unauthorized++;
		rpc_error_set(&e, RPC_UNAUTHORIZED, NULL, "%s needs a %s token", m->name, rpc_auth_name(m->auth));
	} else if (rpc_check_params(m, params, &e) == 0) {
		json_t *empty = params ? NULL : json_object();
		struct rpc_call call = {.method = m, .params = params ? params : empty, .id = id};
		result = fn(ctx, &call, &e);
		json_decref(empty);
		if (!result && !e.code) /* a handler that failed without saying why */
			rpc_error_set(&e, RPC_INTERNAL_ERROR, NULL, NULL);
	}
	if (!result)
		st->errors++;
	if (notification) {
		json_decref(result);
		rpc_error_clear(&e);
		return NULL;
	}
	if (result)
		return response(id, result, NULL);
	json_t *err = error_object(e.code, e.message, e.data);
	e.data = NULL;
	return response(id, NULL, err);
}

json_t *rpc_process(const char *body, size_t len, unsigned granted, size_t max_batch, rpc_dispatch_fn fn, void *ctx,
		    struct rpc_stats *stats)
{
	struct rpc_stats local = {0};
	struct rpc_stats *st = stats ? stats : &local;
	*st = (struct rpc_stats){0};
	if (max_batch == 0 || max_batch > RPC_MAX_BATCH)
		max_batch = RPC_MAX_BATCH;

	json_error_t je;
	/* Duplicate keys and NUL in strings are refused: two readers of one request must not disagree
	 * about what it says. JSON_DECODE_ANY: a bare scalar is JSON, answered as an invalid request. */
	json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!doc) {
		st->errors++;
		st->invalid++;
		char msg[200];
		snprintf(msg, sizeof msg, "Parse error: %.150s (line %d, column %d)", je.text, je.line, je.column);
		return rpc_error_response(RPC_PARSE_ERROR, msg, NULL);
	}
	json_t *out = NULL;
	if (json_is_array(doc)) {
		size_t n = json_array_size(doc);
		if (n == 0) {
			st->errors++;
			st->invalid++;
			out = rpc_error_response(RPC_INVALID_REQUEST, "empty batch", NULL);
		} else if (n > max_batch) {
			st->errors++;
			out = rpc_error_response(RPC_TOO_LARGE, "batch too long",
						 json_pack("{s:I}", "limit", (json_int_t)max_batch));
		} else {
			out = json_array();
			size_t i;
			json_t *req;
			json_array_foreach(doc, i, req) {
				json_t *r = process_one(req, granted, fn, ctx, st);
				if (r)
					json_array_append_new(out, r);
			}
			if (json_array_size(out) == 0) {
				json_decref(out);
				out = NULL;
			}
		}
	} else {
		out = process_one(doc, granted, fn, ctx, st);
	}
	json_decref(doc);
	return out;
}
