/* Unit tests for the rpc module: JSON-RPC 2.0 processing to the letter (the specification's own
 * examples among them), auth per method, parameter checks, and the OpenRPC document against the
 * method table (the document rpc.discover returns is the one embedded here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"

static int calls;

/* A dispatcher that echoes: "subtract" semantics are ours to choose, so every method answers
 * {"method": name, "params": params}; a param "fail" makes it fail with that code. */
static json_t *echo(void *ctx, const struct rpc_call *call, struct rpc_error *e)
{
	(void)ctx;
	calls++;
	if (call->method->id == RPC_M_RUNS && json_object_get(call->params, "dist") &&
	    strcmp(json_string_value(json_object_get(call->params, "dist")), "boom") == 0)
		return rpc_error_set(e, RPC_STORE_UNAVAILABLE, json_pack("{s:i}", "retry_after_s", 2), NULL);
	if (call->method->id == RPC_M_RUNS && json_object_get(call->params, "dist") &&
	    strcmp(json_string_value(json_object_get(call->params, "dist")), "silent") == 0)
		return NULL; /* failed without saying why */
	return json_pack("{s:s, s:O}", "method", call->method->name, "params", call->params);
}

static json_t *run(const char *body, unsigned granted)
{
	calls = 0;
	return rpc_process(body, strlen(body), granted, 10, echo, NULL, NULL);
}

static void expect_error(json_t *r, int code, const char *id_json)
{
	assert_non_null(r);
	assert_true(json_is_object(r));
	assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
	assert_null(json_object_get(r, "result"));
	json_t *e = json_object_get(r, "error");
	assert_non_null(e);
	assert_int_equal(json_integer_value(json_object_get(e, "code")), code);
	assert_true(json_is_string(json_object_get(e, "message")));
	char *id = json_dumps(json_object_get(r, "id"), JSON_ENCODE_ANY);
	assert_string_equal(id, id_json);
	free(id);
}

static void test_parse_error(void **state)
{
	(void)state;
	json_t *r = run("{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]", 0);
	expect_error(r, RPC_PARSE_ERROR, "null");
	json_decref(r);
	/* the spec's batch with a parse error */
	r = run("[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},{\"jsonrpc\": \"2.0\", "
		"\"method\"]",
		0);
	expect_error(r, RPC_PARSE_ERROR, "null");
	json_decref(r);
	r = run("", 0);
	expect_error(r, RPC_PARSE_ERROR, "null");
	json_decref(r);
	/* duplicate keys and NUL: refused, so that no two readers disagree */
	r = run("{\"jsonrpc\":\"2.0\",\"method\":\"runs\",\"method\":\"submit\",\"id\":1}", RPC_GRANT_USER);
	expect_error(r, RPC_PARSE_ERROR, "null");
	json_decref(r);
	r = run("{\"jsonrpc\":\"2.0\",\"method\":\"run\\u0000s\",\"id\":1}", 0);
	expect_error(r, RPC_PARSE_ERROR, "null");
	json_decref(r);
	assert_int_equal(calls, 0);
}

static void test_invalid_request(void **state)
{
	(void)state;
	const char *bad[] = {
		"{\"jsonrpc\": \"2.0\", \"method\": 1, \"params\": \"bar\"}",
		"{\"jsonrpc\": \"1.0\", \"method\": \"runs\", \"id\": 1}",
		"{\"method\": \"runs\", \"id\": 1}",
		"{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"params\": 3, \"id\": 1}",
		"{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"id\": 1, \"extra\": true}",
		"1",
		"\"x\"",
		"null",
		"[]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *r = run(bad[i], 0);
		/* the id is echoed when it could be read, else null */
		expect_error(r, RPC_INVALID_REQUEST, strstr(bad[i], "\"id\": 1") ? "1" : "null");
		json_decref(r);
	}
	/* an id that is not a string, number or null: answered with null */
	json_t *r = run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"id\": {\"a\": 1}}", 0);
	expect_error(r, RPC_INVALID_REQUEST, "null");
	json_decref(r);
	r = run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"id\": [1]}", 0);
	expect_error(r, RPC_INVALID_REQUEST, "null");
	json_decref(r);
	assert_int_equal(calls, 0);
}

static void test_single_and_notification(void **state)
{
	(void)state;
	json_t *r = run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"params\": {\"limit\": 3}, \"id\": \"a\"}", 0);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "a");
	assert_null(json_object_get(r, "error"));
	json_t *res = json_object_get(r, "result");
	assert_string_equal(json_string_value(json_object_get(res, "method")), "runs");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "params"), "limit")), 3);
	json_decref(r);
	/* absent params: the handler sees an empty object */
	r = run("{\"jsonrpc\": \"2.0\", \"method\": \"rpc.discover\", \"id\": 7}", 0);
	assert_true(json_is_object(json_object_get(json_object_get(r, "result"), "params")));
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);
	/* id null is a request (answered with null), not a notification */
	r = run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"id\": null}", 0);
	assert_non_null(r);
	assert_true(json_is_null(json_object_get(r, "id")));
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	/* notifications run, and get no answer, even when they fail */
	assert_null(run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\"}", 0));
	assert_int_equal(calls, 1);
	assert_null(run("{\"jsonrpc\": \"2.0\", \"method\": \"nope\"}", 0));
	assert_null(run("{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"params\": {\"limit\": \"x\"}}", 0));
	assert_null(run("{\"jsonrpc\": \"2.0\", \"method\": \"submit\", \"params\": {\"dists\": [\"six\"]}}", 0));
	assert_int_equal(calls, 0);
}

static void test_batch(void **state)
{
	(void)state;
	/* the specification's rpc call batch, with our method names */
	json_t *r = run(
		"[{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"params\": {\"limit\": 1}, \"id\": \"1\"},"
		"{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"params\": {\"limit\": 2}},"
		"{\"jsonrpc\": \"2.0\", \"method\": \"status\", \"params\": {\"run_id\": \"r0123456789abcdef\"}, "
		"\"id\": \"2\"},"
		"{\"foo\": \"boo\"},"
		"{\"jsonrpc\": \"2.0\", \"method\": \"foo.get\", \"params\": {\"name\": \"myself\"}, \"id\": \"5\"},"
		"{\"jsonrpc\": \"2.0\", \"method\": \"runs\", \"id\": \"9\"}]",
		0);
	assert_true(json_is_array(r));
	assert_int_equal(json_array_size(r), 5);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "id")), "1");
	assert_non_null(json_object_get(json_array_get(r, 0), "result"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "id")), "2");
	expect_error(json_array_get(r, 2), RPC_INVALID_REQUEST, "null");
	expect_error(json_array_get(r, 3), RPC_METHOD_NOT_FOUND, "\"5\"");
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 4), "id")), "9");
	assert_int_equal(calls, 4);
	json_decref(r);

	/* the spec's invalid batches */
	r = run("[1]", 0);
	assert_int_equal(json_array_size(r), 1);
	expect_error(json_array_get(r, 0), RPC_INVALID_REQUEST, "null");
	json_decref(r);
	r = run("[1,2,3]", 0);
	assert_int_equal(json_array_size(r), 3);
	for (size_t i = 0; i < 3; i++)
		expect_error(json_array_get(r, i), RPC_INVALID_REQUEST, "null");
	json_decref(r);

	/* all notifications: nothing to answer */
	assert_null(
		run("[{\"jsonrpc\": \"2.0\", \"method\": \"runs\"},{\"jsonrpc\": \"2.0\", \"method\": \"runs\"}]", 0));
	assert_int_equal(calls, 2);

	/* a batch over the limit (10 here): one error, nothing runs */
	char big[2048] = "[";
	for (int i = 0; i < 11; i++)
		strcat(big, i ? ",{\"jsonrpc\":\"2.0\",\"method\":\"runs\",\"id\":1}"
			      : "{\"jsonrpc\":\"2.0\",\"method\":\"runs\",\"id\":1}");
	strcat(big, "]");
	r = run(big, 0);
	expect_error(r, RPC_TOO_LARGE, "null");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(json_object_get(r, "error"), "data"), "limit")), 10);
	assert_int_equal(calls, 0);
	json_decref(r);
}

static void test_auth(void **state)
{
	(void)state;
	const char *hb =
		"{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{\"name\":\"w\",\"capabilities\":{}},\"id\":1}";
	const char *sub = "{\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{\"dists\":[\"six\"]},\"id\":1}";
	json_t *r = run(hb, 0);
	expect_error(r, RPC_UNAUTHORIZED, "1");
	json_decref(r);
	r = run(hb, RPC_GRANT_USER); /* a user token is not a worker token */
	expect_error(r, RPC_UNAUTHORIZED, "1");
	json_decref(r);
	r = run(sub, RPC_GRANT_WORKER);
	expect_error(r, RPC_UNAUTHORIZED, "1");
	json_decref(r);
	assert_int_equal(calls, 0);
	r = run(hb, RPC_GRANT_WORKER);
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	r = run(sub, RPC_GRANT_USER);
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	/* auth comes before params: an unauthenticated caller learns nothing about them */
	r = run("{\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{\"x\":1},\"id\":1}", 0);
	expect_error(r, RPC_UNAUTHORIZED, "1");
	json_decref(r);
}

static void expect_params_error(const char *params, const char *method, unsigned grant, const char *param)
{
	char body[1024];
	snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}", method, params);
	json_t *r = run(body, grant);
	expect_error(r, RPC_INVALID_PARAMS, "1");
	json_t *data = json_object_get(json_object_get(r, "error"), "data");
	if (param)
		assert_string_equal(json_string_value(json_object_get(data, "param")), param);
	assert_int_equal(calls, 0);
	json_decref(r);
}

static void test_params(void **state)
{
	(void)state;
	const unsigned W = RPC_GRANT_WORKER, U = RPC_GRANT_USER;
	expect_params_error("[1, 2]", "runs", 0, NULL); /* by position */
	expect_params_error("{\"limit\": \"3\"}", "runs", 0, "limit");
	expect_params_error("{\"limit\": 0}", "runs", 0, "limit");
	expect_params_error("{\"limit\": 1.5}", "runs", 0, "limit");
	expect_params_error("{\"limit\": 20000}", "runs", 0, "limit");
	expect_params_error("{\"dist\": \"\"}", "runs", 0, "dist");
	expect_params_error("{\"colour\": 1}", "runs", 0, "colour");
	expect_params_error("{}", "status", 0, "run_id");
	expect_params_error("{\"run_id\": \"j0123456789abcdef\"}", "status", 0, "run_id");
	expect_params_error("{\"run_id\": \"r0123456789ABCDEF\"}", "status", 0, "run_id");
	expect_params_error("{\"run_id\": \"r0123456789abcdef0\"}", "status", 0, "run_id");
	expect_params_error("{\"worker_id\": \"w0123456789abcdef\", \"wait_s\": 31}", "claim", W, "wait_s");
	expect_params_error("{\"worker_id\": \"w0123456789abcdef\", \"max\": 65}", "claim", W, "max");
	expect_params_error("{\"dists\": []}", "submit", U, "dists");
	expect_params_error("{\"dists\": [\"six\", 1]}", "submit", U, "dists");
	expect_params_error("{\"dists\": [\"six\"], \"recipe\": 5}", "submit", U, "recipe");
	expect_params_error("{\"job_id\": \"j0123456789abcdef\", \"attempt\": 0, \"lease\": "
			    "\"0123456789abcdef0123456789abcdef\", \"task\": \"t\", \"result\": {}}",
			    "report", W, "attempt");
	expect_params_error("{\"job_id\": \"j0123456789abcdef\", \"attempt\": 1, \"lease\": \"short\", "
			    "\"task\": \"t\", \"result\": {}}",
			    "report", W, "lease");
	expect_params_error("{\"sha256\": \"00\", \"size\": 1, \"data\": \"\"}", "upload", W, "sha256");

	/* the good ones pass */
	json_t *r = run("{\"jsonrpc\":\"2.0\",\"method\":\"claim\",\"params\":{\"worker_id\":\"w0123456789abcdef\","
			"\"max\":2,\"wait_s\":0.5},\"id\":1}",
			W);
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	r = run("{\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{\"dists\":[\"six\"],\"recipe\":null,"
		"\"backend\":null,\"priority\":-3,\"env\":{},\"posargs\":[]},\"id\":1}",
		U);
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
}

static void test_handler_errors(void **state)
{
	(void)state;
	json_t *r = run("{\"jsonrpc\":\"2.0\",\"method\":\"runs\",\"params\":{\"dist\":\"boom\"},\"id\":3}", 0);
	expect_error(r, RPC_STORE_UNAVAILABLE, "3");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(r, "error"), "data"),
							    "retry_after_s")),
			 2);
	json_decref(r);
	r = run("{\"jsonrpc\":\"2.0\",\"method\":\"runs\",\"params\":{\"dist\":\"silent\"},\"id\":3}", 0);
	expect_error(r, RPC_INTERNAL_ERROR, "3");
	json_decref(r);
	struct rpc_stats st;
	const char *b = "[{\"jsonrpc\":\"2.0\",\"method\":\"runs\"},{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":1},2]";
	r = rpc_process(b, strlen(b), 0, 0, echo, NULL, &st);
	assert_int_equal(st.requests, 3);
	assert_int_equal(st.notifications, 1);
	assert_int_equal(st.errors, 2);
	assert_int_equal(st.invalid, 1);
	assert_int_equal(st.unauthorized, 0);
	json_decref(r);
	r = rpc_process("[{\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{},\"id\":1}]", 56, 0, 0, echo, NULL,
			&st);
	assert_int_equal(st.unauthorized, 1);
	json_decref(r);
	assert_string_equal(rpc_code_message(RPC_SLOW_DOWN), "slow down");
	assert_string_equal(rpc_code_message(RPC_PARSE_ERROR), "Parse error");
}

/* ---- the OpenRPC document against the table ---- */
static unsigned schema_types(const json_t *schema)
{
	const json_t *t = json_object_get(schema, "type");
	unsigned mask = 0;
	const json_t *one;
	size_t i;
	json_t *arr = json_is_array(t) ? json_incref((json_t *)t) : json_pack("[O]", t);
	json_array_foreach(arr, i, one) {
		const char *s = json_string_value(one);
		assert_non_null(s);
		mask |= !strcmp(s, "string")	? RPC_T_STRING
			: !strcmp(s, "integer") ? RPC_T_INT
			: !strcmp(s, "number")	? RPC_T_NUMBER
			: !strcmp(s, "boolean") ? RPC_T_BOOL
			: !strcmp(s, "object")	? RPC_T_OBJECT
			: !strcmp(s, "array")	? RPC_T_ARRAY
			: !strcmp(s, "null")	? RPC_T_NULL
						: 0x8000u;
	}
	json_decref(arr);
	return mask;
}

static void check_bounds(const char *where, const struct rpc_param *p, const json_t *schema)
{
	const char *lo = "minimum", *hi = "maximum";
	if (p->types & RPC_T_STRING)
		lo = "minLength", hi = "maxLength";
	else if (p->types & RPC_T_ARRAY)
		lo = "minItems", hi = "maxItems";
	const json_t *jlo = json_object_get(schema, lo), *jhi = json_object_get(schema, hi);
	if (p->max > p->min) {
		if (!jlo || !jhi || json_number_value(jlo) != (double)p->min ||
		    json_number_value(jhi) != (double)p->max)
			fail_msg("%s: the document's %s/%s are not %lld/%lld", where, lo, hi, p->min, p->max);
	} else if (jlo || jhi) {
		fail_msg("%s: the document has %s/%s, the table no bounds", where, lo, hi);
	}
}

static void test_openrpc_agrees(void **state)
{
	(void)state;
	json_error_t je;
	json_t *doc = json_loads(rpc_openrpc_text(), JSON_REJECT_DUPLICATES, &je);
	if (!doc)
		fail_msg("docs/openrpc.json: %s (line %d)", je.text, je.line);
	assert_string_equal(json_string_value(json_object_get(doc, "openrpc")), "1.2.6");
	json_t *methods = json_object_get(doc, "methods");
	assert_int_equal(json_array_size(methods), RPC_M_COUNT);
	size_t i;
	json_t *dm;
	json_array_foreach(methods, i, dm) {
		const char *name = json_string_value(json_object_get(dm, "name"));
		assert_non_null(name);
		const struct rpc_method *m = rpc_method_find(name);
		if (!m)
			fail_msg("docs/openrpc.json: method '%s' is not in the server's table", name);
		if (strcmp(json_string_value(json_object_get(dm, "x-auth")), rpc_auth_name(m->auth)) != 0)
			fail_msg("%s: x-auth is not '%s'", name, rpc_auth_name(m->auth));
		assert_non_null(json_object_get(dm, "result"));
		json_t *dparams = json_object_get(dm, "params");
		size_t n = 0;
		for (const struct rpc_param *p = m->params; p->name; p++)
			n++;
		if (json_array_size(dparams) != n)
			fail_msg("%s: %zu params in the document, %zu in the table", name, json_array_size(dparams), n);
		size_t k;
		json_t *dp;
		json_array_foreach(dparams, k, dp) {
			const struct rpc_param *p = &m->params[k]; /* same order too */
			char where[128];
			snprintf(where, sizeof where, "%s.%s", name, p->name);
			if (strcmp(json_string_value(json_object_get(dp, "name")), p->name) != 0)
				fail_msg("%s: the document's param %zu is '%s'", where, k,
					 json_string_value(json_object_get(dp, "name")));
			if (json_is_true(json_object_get(dp, "required")) != p->required)
				fail_msg("%s: required differs", where);
			json_t *schema = json_object_get(dp, "schema");
			if (schema_types(schema) != p->types)
				fail_msg("%s: type %#x in the document, %#x in the table", where, schema_types(schema),
					 p->types);
			const char *pat = json_string_value(json_object_get(schema, "pattern"));
			const char *want = rpc_format_pattern(p->format);
			if ((pat || want) && (!pat || !want || strcmp(pat, want) != 0))
				fail_msg("%s: pattern '%s' in the document, '%s' in the table", where, pat ? pat : "-",
					 want ? want : "-");
			check_bounds(where, p, schema);
			if (p->items && schema_types(json_object_get(schema, "items")) != p->items)
				fail_msg("%s: items' type differs", where);
		}
	}
	/* every application error code is documented */
	int codes[] = {RPC_UNAUTHORIZED,      RPC_STALE_LEASE, RPC_SLOW_DOWN,	     RPC_NOT_FOUND,
		       RPC_MISSING_ARTEFACTS, RPC_TOO_LARGE,   RPC_STORE_UNAVAILABLE};
	json_t *errs = json_object_get(json_object_get(doc, "components"), "errors");
	for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++) {
		bool found = false;
		const char *key;
		json_t *ev;
		json_object_foreach(errs, key, ev)
			if (json_integer_value(json_object_get(ev, "code")) == codes[c]) {
				found = true;
				assert_string_equal(json_string_value(json_object_get(ev, "message")),
						    rpc_code_message(codes[c]));
			}
		if (!found)
			fail_msg("error %d is not in the document's components.errors", codes[c]);
	}
	json_decref(doc);
}

static void test_formats(void **state)
{
	(void)state;
	assert_true(rpc_format_ok(RPC_FMT_JOB_ID, "j0123456789abcdef"));
	assert_false(rpc_format_ok(RPC_FMT_JOB_ID, "j0123456789abcde"));
	assert_false(rpc_format_ok(RPC_FMT_JOB_ID, "r0123456789abcdef"));
	assert_true(rpc_format_ok(RPC_FMT_LEASE, "0123456789abcdef0123456789abcdef"));
	assert_false(rpc_format_ok(RPC_FMT_LEASE, "0123456789abcdef0123456789abcdeg"));
	assert_true(rpc_format_ok(RPC_FMT_NONE, "anything"));
	for (size_t i = 0; i < RPC_M_COUNT; i++) {
		assert_int_equal(rpc_methods[i].id, i);
		assert_ptr_equal(rpc_method_find(rpc_methods[i].name), &rpc_methods[i]);
	}
	assert_null(rpc_method_find("rpc.nope"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_error),
		cmocka_unit_test(test_invalid_request),
		cmocka_unit_test(test_single_and_notification),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_handler_errors),
		cmocka_unit_test(test_openrpc_agrees),
		cmocka_unit_test(test_formats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
